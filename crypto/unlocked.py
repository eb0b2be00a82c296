"""The unlocked keyring: seal and open frames, rotate keys, change the master, blind terms.

Holds the vault keys (and the keys derived from the master that rewrite the
keyring file) until ``lock``.  Sealing takes a data key from a pool of keys
whose entries are already durable in the data key store, so a seal does no
I/O of its own except, once every ``DATA_KEY_POOL_KEYS`` seals, one append and
one fdatasync to refill the pool (``fill_data_key_pool`` does that ahead of
time).  The pool's unused keys are destroyed on ``lock``; after a crash they
stay in the store, unused (at most 1.5 x ``DATA_KEY_POOL_KEYS`` per crash: a
half-empty pool and the batch being made).

Threads: every method may be called from any thread.  Seals take keys from the
pool under a lock of their own and need the keyring's mutex only to refill;
opens, rotation writes and forgets take the mutex; a rotation step re-wraps
its keys outside the mutex.  So a background rotation leaves seals and opens
running (benchmarks/results/crypto.md measures it).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from memoryd.crypto.aad import Aad
from memoryd.crypto.blinding import TermBlinder
from memoryd.crypto.envelope import (
    PLAINTEXT_BYTES_MAX,
    EnvelopeKey,
    KeyKind,
    open_envelope,
    read_header,
    seal_envelope,
    seal_under_data_keys,
)
from memoryd.crypto.errors import LimitError, LockedError, RotationError, TamperedError
from memoryd.crypto.heldkeys import HeldKey, master_subkeys, wrap_vault_key
from memoryd.crypto.keyring_file import VAULT_KEY_ID_MAX
from memoryd.crypto.keys import SecretKey, generate_key, generate_keys
from memoryd.crypto.keystore import HEADER_BYTES, Entry
from memoryd.crypto.keywrap import data_key_aad, unwrap_key, wrap_data_keys, wrap_key
from memoryd.crypto.master import MasterKey, MasterKind
from memoryd.crypto.nonces import new_salt

if TYPE_CHECKING:
    from memoryd.crypto.keyring import Keyring

DATA_KEY_POOL_KEYS = 2048  # keys made (and synced) per refill: one fdatasync per 2048 seals
# Data keys re-wrapped per rotation step, by default: small, so that a step's two
# writes (under the mutex) and its CPU time (under the GIL) stay short.
ROTATION_STEP_KEYS_MAX = 256
ROTATION_STEP_KEYS_LIMIT = 65536  # the most one step may take (its scan and writes hold the mutex)


@dataclass(frozen=True, slots=True)
class RotationProgress:
    """Where a vault key rotation stands; all counts are of live data keys."""

    old_vault_key_id: int
    new_vault_key_id: int
    remaining: int  # still wrapped by the old vault key (and not known to be unreadable)
    rewrapped: int  # wrapped by the new vault key (including keys made since it began)
    unreadable: int  # under the old key but failing to unwrap: damaged, reported, skipped

    @property
    def done(self) -> bool:
        return self.remaining == 0


class UnlockedKeyring:
    """A keyring with its keys in memory; made by ``Keyring.unlock`` or ``Keyring.create``."""

    def __init__(
        self, keyring: Keyring, mac_key: SecretKey, wrap: HeldKey, vaults: dict[int, HeldKey]
    ) -> None:
        self._keyring = keyring
        self._mac_key: SecretKey | None = mac_key
        self._wrap: HeldKey | None = wrap
        self._vaults = vaults  # by vault key id: the current one, and the old during a rotation
        # The pool has its own lock, so that a seal waits for the keyring's mutex only
        # when the pool is empty.  Order: pool lock, then mutex, never the other way.
        self._pool_lock = threading.Lock()
        self._pool: deque[tuple[int, SecretKey]] = deque()
        self._blinder: TermBlinder | None = self._make_blinder()
        self._rotation_cursor = HEADER_BYTES  # where the next rotation step reads from
        self._unreadable: set[int] = set()  # ids of old-key data keys that did not unwrap

    def __repr__(self) -> str:
        state = "locked" if self.locked else "unlocked"
        return f"UnlockedKeyring({self._keyring.directory}, {state})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("keyrings cannot be pickled")

    @property
    def keyring(self) -> Keyring:
        """The locked handle this belongs to (forget, compact and info live there)."""
        return self._keyring

    @property
    def locked(self) -> bool:
        return self._mac_key is None

    @property
    def index_key_id(self) -> int:
        """The vault key id the blinding key comes from; an index built under another is stale."""
        return self._require_blinder().index_key_id

    # -- frames --------------------------------------------------------------------

    def seal_frame(self, plaintext: bytes | bytearray, aad: Aad) -> bytes:
        """Seal ``plaintext`` under a fresh data key, bound to ``aad`` (see ``frame_aad``).

        The blob names its data key; the key itself is in the data key store,
        durable before this returns, so the blob may be written at once.
        """
        if len(plaintext) > PLAINTEXT_BYTES_MAX:
            raise LimitError("plaintext_bytes_max", len(plaintext), PLAINTEXT_BYTES_MAX)
        with self._pool_lock:
            self._require_unlocked()
            if not self._pool:
                with self._keyring._mutex:
                    self._refill_pool()
            key_id, data_key = self._pool.popleft()
        try:
            return seal_envelope(EnvelopeKey(KeyKind.DATA, key_id, data_key), plaintext, aad)
        finally:
            data_key.wipe()

    def seal_frames(
        self, plaintexts: Sequence[bytes | bytearray], aads: Sequence[bytes]
    ) -> list[bytes]:
        """``seal_frame`` of each plaintext, each under a fresh data key, in one pass.

        ``aads`` are encoded frame AADs (``encode_frame_aad``).  The keys are
        taken from the pool together, refilled (durably) while it runs short.
        """
        if any(len(plaintext) > PLAINTEXT_BYTES_MAX for plaintext in plaintexts):
            raise LimitError("plaintext_bytes_max", max(map(len, plaintexts)), PLAINTEXT_BYTES_MAX)
        count = len(plaintexts)
        with self._pool_lock:
            self._require_unlocked()
            while len(self._pool) < count:
                with self._keyring._mutex:
                    self._refill_pool()
            pool = self._pool
            taken = [pool.popleft() for _ in range(count)]
        try:
            return seal_under_data_keys(taken, plaintexts, aads)
        finally:
            for _, data_key in taken:
                data_key.wipe()

    def open_frame(self, blob: bytes, aad: Aad) -> bytes:
        """The plaintext of a sealed frame.

        TamperedError (with the data key id) if the blob, its data key entry or
        the AAD do not match what was sealed; ForgottenError if the frame was
        forgotten.  Never a wrong plaintext.
        """
        header = read_header(blob, what="frame")
        if header.key_kind != KeyKind.DATA:
            raise TamperedError("frame", "bad_key_kind", key_id=header.key_id)
        with self._keyring._mutex:
            self._require_unlocked()
            entry = self._keyring._store.get(header.key_id)
            vault = self._vaults.get(entry.vault_key_id)
            if vault is None:
                raise TamperedError(
                    "data key",
                    "unknown_vault_key",
                    key_id=header.key_id,
                    detail=f"wrapped by vault key {entry.vault_key_id}, which is not held",
                )
            aad_key = data_key_aad(self._keyring_id, header.key_id)
            data_key = unwrap_key(vault.envelope, entry.wrapped, aad_key)
        try:
            return open_envelope(EnvelopeKey(KeyKind.DATA, header.key_id, data_key), blob, aad)
        finally:
            data_key.wipe()

    @property
    def data_key_pool_low(self) -> bool:
        """Whether the pool is below half (a hint, read without the lock)."""
        return len(self._pool) < DATA_KEY_POOL_KEYS // 2

    def fill_data_key_pool(self) -> int:
        """Refill the data key pool if it is below half; how many keys were made.

        For the daemon to call off the request path (a thread of its own): the
        keys are made and synced under the keyring's mutex only, so seals keep
        taking keys from the pool meanwhile and never wait for the fdatasync.
        Keys made while a ``lock`` runs stay in the store unused, as after a crash.
        """
        with self._pool_lock:
            self._require_unlocked()
            if len(self._pool) >= DATA_KEY_POOL_KEYS // 2:
                return 0
        with self._keyring._mutex:
            self._require_unlocked()
            made = self._make_data_keys()
        with self._pool_lock:
            if self.locked:
                for _, key in made:
                    key.wipe()
                return 0
            self._pool.extend(made)
        return len(made)

    def _refill_pool(self) -> int:
        """Make a batch of data keys, durably, into the pool (both locks are held)."""
        made = self._make_data_keys()
        self._pool.extend(made)
        return len(made)

    def _make_data_keys(self) -> list[tuple[int, SecretKey]]:
        """A batch of data keys, durable in the store before they are returned (mutex held)."""
        self._require_unlocked()
        store = self._keyring._store
        current = self._vaults[self._current_id]
        ids = store.allocate_ids(DATA_KEY_POOL_KEYS)
        keys = generate_keys(DATA_KEY_POOL_KEYS)
        try:
            made = list(zip(ids, keys, strict=True))
            wrapped = wrap_data_keys(current.envelope, self._keyring_id, made)
            entries = list(zip(ids, wrapped, strict=True))
            store.append(entries, current.key_id)  # durable before any key seals anything
        except BaseException:
            for key in keys:
                key.wipe()
            raise
        return made

    # -- blinded index terms -------------------------------------------------------

    def blind_term(self, term: str) -> bytes:
        """The 16-byte blinded token of ``term`` under the index key (FORMAT.md section 8)."""
        return self._require_blinder().blind(term)

    def blind_terms(self, terms: Iterable[str]) -> list[bytes]:
        """``blind_term`` of each term, in order."""
        blinder = self._require_blinder()
        return [blinder.blind(term) for term in terms]

    # -- the master key ------------------------------------------------------------

    def change_master(self, new_master: MasterKey) -> None:
        """Re-wrap the vault keys under ``new_master``; no frame is re-encrypted.

        The keyring file is replaced atomically: a crash leaves the old master
        working or the new one, never neither.  A passphrase gets a new salt and
        ``new_master.kdf_params``.  Afterwards the old master no longer unlocks
        this file (an old copy of the file still opens with it).
        """
        self._require_unlocked()
        keyring_id = self._keyring_id
        passphrase = new_master.kind == MasterKind.PASSPHRASE
        salt = new_salt() if passphrase else None
        params = new_master.kdf_params if passphrase else None
        # The KDF is slow by design: run it before taking the mutex.
        mac_key, wrap = master_subkeys(new_master, keyring_id, salt, params)
        try:
            with self._keyring._mutex:
                self._require_unlocked()
                file = self._keyring._file
                wrapped = tuple(
                    (key_id, wrap_vault_key(wrap, vault, keyring_id))
                    for key_id, vault in sorted(self._vaults.items())
                )
                changed = dataclasses.replace(
                    file,
                    master_kind=new_master.kind,
                    kdf_salt=salt,
                    kdf_params=params,
                    wrapped_vault_keys=wrapped,
                )
                self._keyring._write_file(changed, mac_key)
                old_mac, old_wrap = self._mac_key, self._wrap
                self._mac_key, self._wrap = mac_key, wrap
        except BaseException:
            mac_key.wipe()
            wrap.wipe()
            raise
        assert old_mac is not None and old_wrap is not None
        old_mac.wipe()
        old_wrap.wipe()

    # -- vault key rotation (FORMAT.md section 7) ----------------------------------

    def begin_rotation(self) -> int:
        """Start rotating to a new vault key; its id.  New data keys use it from now on.

        Persisted at once (atomic replace of the keyring file); after a crash,
        ``unlock`` finds the rotation in progress and ``rotate_step`` continues it.
        """
        with self._keyring._mutex:
            self._require_unlocked()
            file = self._keyring._file
            if file.rotating_from is not None:
                raise RotationError(
                    f"a rotation from vault key {file.rotating_from} to "
                    f"{file.current_vault_key_id} is in progress: finish it first"
                )
            new_id = file.current_vault_key_id + 1
            if new_id > VAULT_KEY_ID_MAX:
                raise RotationError("vault key ids are exhausted")
            assert self._mac_key is not None and self._wrap is not None
            vault = HeldKey.make(KeyKind.VAULT, new_id, generate_key())
            wrapped = wrap_vault_key(self._wrap, vault, self._keyring_id)
            changed = dataclasses.replace(
                file,
                current_vault_key_id=new_id,
                rotating_from=file.current_vault_key_id,
                wrapped_vault_keys=(*file.wrapped_vault_keys, (new_id, wrapped)),
            )
            try:
                self._keyring._write_file(changed, self._mac_key)
            except BaseException:
                vault.wipe()
                raise
            self._vaults[new_id] = vault
            self._replace_blinder()
            self._rotation_cursor = HEADER_BYTES
            self._unreadable = set()
            return new_id

    def rotate_step(self, keys_max: int = ROTATION_STEP_KEYS_MAX) -> RotationProgress:
        """Re-wrap up to ``keys_max`` data keys from the old vault key to the new; progress.

        Each step is durable on return and safe to interrupt at any point;
        call it until ``done``, then ``finish_rotation``.  The re-wrapping runs
        without holding the keyring's mutex, so seals and opens go on meanwhile;
        an entry forgotten (or moved by a compaction) in between is left for a
        later step.
        """
        if not 1 <= keys_max <= ROTATION_STEP_KEYS_LIMIT:
            raise LimitError("rotation_step_keys_limit", keys_max, ROTATION_STEP_KEYS_LIMIT)
        with self._keyring._mutex:
            old, new = self._rotation_keys()
            store = self._keyring._store
            entries, cursor = store.live_under(old.key_id, self._rotation_cursor, keys_max)
            if not entries and self._rotation_cursor > HEADER_BYTES:
                # Past the end: start over, since a compaction may have moved old-key
                # entries behind the cursor.  (Re-wrapped entries are skipped cheaply.)
                entries, cursor = store.live_under(old.key_id, HEADER_BYTES, keys_max)
            entries = [e for e in entries if e.key_id not in self._unreadable]
        rewrapped = [(entry, self._rewrap(entry, old, new)) for entry in entries]
        with self._keyring._mutex:
            now_old, now_new = self._rotation_keys()
            if now_old is not old or now_new is not new:
                raise RotationError("the rotation changed during the step")
            self._unreadable |= {entry.key_id for entry, wrapped in rewrapped if wrapped is None}
            replacements = [
                (entry, wrapped)
                for entry, wrapped in rewrapped
                if wrapped is not None and store.is_live_at(entry.key_id, entry.offset)
            ]
            store.rewrap(replacements, new.key_id)
            self._rotation_cursor = cursor
            return self._progress(old.key_id, new.key_id)

    def rotation_progress(self) -> RotationProgress | None:
        """The rotation in progress, or None."""
        with self._keyring._mutex:
            self._require_unlocked()
            file = self._keyring._file
            if file.rotating_from is None:
                return None
            return self._progress(file.rotating_from, file.current_vault_key_id)

    def finish_rotation(self, *, compact: bool = True) -> None:
        """End a rotation whose steps are done: destroy the old vault key, compact the store.

        RotationError if data keys are still wrapped by the old vault key.  The
        keyring file is replaced first (the old vault key is gone from then on),
        then the store is compacted; a crash between leaves only destroyed
        entries for a later ``compact``.  Compaction holds the keyring's mutex
        (opens wait) for about 6 µs per data key: pass ``compact=False`` to
        leave it to ``Keyring.compact`` at a quieter time.
        """
        with self._keyring._mutex:
            old, new = self._rotation_keys()
            progress = self._progress(old.key_id, new.key_id)
            if not progress.done:
                raise RotationError(
                    f"{progress.remaining} data keys are still wrapped by vault key "
                    f"{old.key_id}: call rotate_step until it is done"
                )
            file = self._keyring._file
            assert self._mac_key is not None
            changed = dataclasses.replace(
                file,
                rotating_from=None,
                wrapped_vault_keys=tuple(w for w in file.wrapped_vault_keys if w[0] == new.key_id),
            )
            self._keyring._write_file(changed, self._mac_key)
            del self._vaults[old.key_id]
            old.wipe()
            self._unreadable = set()
            if compact:
                self._keyring._store.compact()

    def _rotation_keys(self) -> tuple[HeldKey, HeldKey]:
        self._require_unlocked()
        file = self._keyring._file
        if file.rotating_from is None:
            raise RotationError("no vault key rotation is in progress")
        return self._vaults[file.rotating_from], self._vaults[file.current_vault_key_id]

    def _rewrap(self, entry: Entry, old: HeldKey, new: HeldKey) -> bytes | None:
        aad = data_key_aad(self._keyring_id, entry.key_id)
        try:
            data_key = unwrap_key(old.envelope, entry.wrapped, aad)
        except TamperedError:
            return None
        try:
            return wrap_key(new.envelope, data_key, aad)
        finally:
            data_key.wipe()

    def _progress(self, old_id: int, new_id: int) -> RotationProgress:
        store = self._keyring._store
        live = store.counts().live_by_vault_key
        # A key found unreadable may have been forgotten since: count the live ones only.
        self._unreadable = {k for k in self._unreadable if store.vault_key_of(k) == old_id}
        return RotationProgress(
            old_vault_key_id=old_id,
            new_vault_key_id=new_id,
            remaining=live.get(old_id, 0) - len(self._unreadable),
            rewrapped=live.get(new_id, 0),
            unreadable=len(self._unreadable),
        )

    def _drop_from_pool(self, key_ids: list[int]) -> None:
        """Wipe and drop pool keys about to be destroyed (before the mutex is taken)."""
        doomed = set(key_ids)
        with self._pool_lock:
            kept: deque[tuple[int, SecretKey]] = deque()
            for key_id, key in self._pool:
                if key_id in doomed:
                    key.wipe()
                else:
                    kept.append((key_id, key))
            self._pool = kept

    # -- locking -------------------------------------------------------------------

    def lock(self) -> None:
        """Wipe every key held (best effort: see keys.py) and drop the ciphers.  Idempotent.

        The data keys made for the pool but never used are destroyed in the
        store too (one fdatasync), so locking leaves no unused keys behind.  If
        that write fails, the keys in memory are wiped all the same and the
        OSError is raised after.
        """
        with self._pool_lock, self._keyring._mutex:
            if self.locked:
                return
            unused = [key_id for key_id, _ in self._pool]
            try:
                if unused and not self._keyring.read_only:
                    self._keyring._store.destroy(unused)
            finally:
                self._wipe_all()

    def _wipe_all(self) -> None:
        """Wipe and drop every key (both locks are held)."""
        while self._pool:
            self._pool.popleft()[1].wipe()
        for vault in self._vaults.values():
            vault.wipe()
        self._vaults.clear()
        assert self._mac_key is not None and self._wrap is not None
        self._mac_key.wipe()
        self._wrap.wipe()
        self._mac_key = self._wrap = None
        if self._blinder is not None:
            self._blinder.wipe()
            self._blinder = None
        self._keyring._forget_unlocked()

    # -- helpers -------------------------------------------------------------------

    @property
    def _keyring_id(self) -> bytes:
        return self._keyring._file.keyring_id

    @property
    def _current_id(self) -> int:
        return self._keyring._file.current_vault_key_id

    def _make_blinder(self) -> TermBlinder:
        current = self._vaults[self._current_id]
        return TermBlinder(current.secret, self._keyring_id, current.key_id)

    def _replace_blinder(self) -> None:
        if self._blinder is not None:
            self._blinder.wipe()
        self._blinder = self._make_blinder()

    def _require_blinder(self) -> TermBlinder:
        blinder = self._blinder
        if blinder is None:
            raise LockedError("the keyring is locked")
        return blinder

    def _require_unlocked(self) -> None:
        if self.locked:
            raise LockedError("the keyring is locked")

    def _check(self) -> None:
        """Invariants between memory and the files (the keyring's ``_check`` calls this)."""
        if self.locked:
            assert not self._pool and not self._vaults and self._blinder is None
            return
        file = self._keyring._file
        assert tuple(sorted(self._vaults)) == file.vault_key_ids()
        assert self._blinder is not None
        assert self._blinder.index_key_id == file.current_vault_key_id
        store = self._keyring._store
        for key_id, _ in list(self._pool):
            assert store.get(key_id).vault_key_id in self._vaults
