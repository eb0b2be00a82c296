"""The keyring: a data directory's key files, opened locked (FORMAT.md sections 1, 2, 5, 6).

``Keyring.open`` reads the keyring file and scans the data key store without
any secret: a locked keyring can report its state, forget frames (destroy
their data keys) and compact the store.  ``unlock`` derives the master key,
verifies it, unwraps the vault keys and returns an ``UnlockedKeyring``, which
seals and opens frames until it is locked again.  One ``Keyring`` per
directory, in one process (the daemon's data-directory LOCK sees to that);
its methods may be called from several threads.

Every change to the keyring file is an atomic replacement, and every change to
the store is synced before it is relied on, so after a crash ``open`` and
``unlock`` find one consistent state (FORMAT.md section 7).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from memoryd.crypto.envelope import KeyKind, read_header
from memoryd.crypto.errors import KeyringError, TamperedError, WrongKeyError
from memoryd.crypto.fsio import ensure_private_dir, read_small_file, replace_atomically
from memoryd.crypto.heldkeys import HeldKey, master_subkeys, wrap_vault_key
from memoryd.crypto.kdf import KdfParams
from memoryd.crypto.keyring_file import (
    KEYRING_FILE_BYTES_MAX,
    KeyringFile,
    decode_keyring_file,
    encode_keyring_file,
    mac_matches,
)
from memoryd.crypto.keys import SecretKey, generate_key
from memoryd.crypto.keystore import HEADER_BYTES, CompactionReport, KeyStore, StoreCounts
from memoryd.crypto.keywrap import vault_key_aad
from memoryd.crypto.master import MasterKey, MasterKind
from memoryd.crypto.nonces import new_keyring_id, new_salt
from memoryd.crypto.unlocked import UnlockedKeyring

KEYS_DIR_NAME = "keys"  # <data_dir>/keys
KEYRING_FILE_NAME = "keyring"
DATA_KEYS_FILE_NAME = "datakeys"
FIRST_VAULT_KEY_ID = 1


@dataclass(frozen=True, slots=True)
class KeyringInfo:
    """What can be known about a keyring without its key (for status, doctor, check)."""

    directory: Path
    keyring_id: str  # hex
    master_kind: str  # "passphrase" or "key"
    kdf_params: KdfParams | None
    vault_key_ids: tuple[int, ...]
    current_vault_key_id: int
    rotating_from: int | None
    data_keys: StoreCounts
    unlocked: bool


class Keyring:
    """A data directory's key files, open and locked.  See the module docstring."""

    def __init__(
        self, directory: Path, file: KeyringFile, raw: bytes, store: KeyStore, *, read_only: bool
    ) -> None:
        """Use ``Keyring.open`` or ``Keyring.create``."""
        self.directory = directory
        self.read_only = read_only
        self._file = file
        self._raw = raw  # the keyring file's bytes, as last read or written
        self._store = store
        self._mutex = threading.RLock()  # guards the files and all in-memory state
        self._unlocked: UnlockedKeyring | None = None

    # -- creating and opening ------------------------------------------------------

    @staticmethod
    def exists(directory: Path) -> bool:
        """Whether ``directory`` holds a keyring file."""
        return (directory / KEYRING_FILE_NAME).exists()

    @classmethod
    def create(cls, directory: Path, master: MasterKey) -> UnlockedKeyring:
        """Make a new keyring in ``directory`` (created 0700 if missing), returned unlocked.

        The first vault key is new and random.  Refused if a keyring exists, or
        if a data key store holding keys does (they would be lost).
        """
        ensure_private_dir(directory)
        if cls.exists(directory):
            raise KeyringError(f"a keyring already exists in {directory}")
        store_path = directory / DATA_KEYS_FILE_NAME
        if store_path.exists() and store_path.stat().st_size > HEADER_BYTES:
            raise KeyringError(
                f"{store_path} holds data keys but there is no keyring file: "
                "refusing to replace it (restore the keyring file instead)"
            )
        keyring_id = new_keyring_id()
        salt = new_salt() if master.kind == MasterKind.PASSPHRASE else None
        params = master.kdf_params
        mac_key, wrap = master_subkeys(master, keyring_id, salt, params)
        vault = HeldKey.make(KeyKind.VAULT, FIRST_VAULT_KEY_ID, generate_key())
        file = KeyringFile(
            keyring_id=keyring_id,
            master_kind=master.kind,
            kdf_salt=salt,
            kdf_params=params,
            current_vault_key_id=FIRST_VAULT_KEY_ID,
            rotating_from=None,
            wrapped_vault_keys=((FIRST_VAULT_KEY_ID, wrap_vault_key(wrap, vault, keyring_id)),),
        )
        # The store first: a keyring file never exists without its store.
        KeyStore.create(store_path, keyring_id)
        raw = encode_keyring_file(file, mac_key)
        replace_atomically(directory / KEYRING_FILE_NAME, raw)
        store = KeyStore.open(store_path, keyring_id)
        keyring = cls(directory, file, raw, store, read_only=False)
        unlocked = UnlockedKeyring(keyring, mac_key, wrap, {FIRST_VAULT_KEY_ID: vault})
        keyring._unlocked = unlocked
        return unlocked

    @classmethod
    def open(cls, directory: Path, *, read_only: bool = False) -> Keyring:
        """Open the key files in ``directory``, locked.  Reads only; never writes.

        KeyringError if there is no keyring, TamperedError if a file is damaged.
        """
        path = directory / KEYRING_FILE_NAME
        try:
            raw = read_small_file(path, KEYRING_FILE_BYTES_MAX)
        except FileNotFoundError:
            raise KeyringError(f"no keyring in {directory}: create one first") from None
        if raw is None:
            raise TamperedError("keyring file", "too_long")
        file = decode_keyring_file(raw)
        store = KeyStore.open(directory / DATA_KEYS_FILE_NAME, file.keyring_id, read_only=read_only)
        return cls(directory, file, raw, store, read_only=read_only)

    def close(self) -> None:
        """Lock (if unlocked) and close the files."""
        unlocked = self._unlocked
        if unlocked is not None:
            unlocked.lock()  # takes the pool lock before the mutex: not under the mutex
        with self._mutex:
            self._store.close()

    # -- unlocking -----------------------------------------------------------------

    @property
    def unlocked(self) -> UnlockedKeyring | None:
        """The unlocked keyring, while there is one."""
        return self._unlocked

    def unlock(self, master: MasterKey) -> UnlockedKeyring:
        """Verify ``master`` and unwrap the vault keys.  A wrong key changes nothing.

        WrongKeyError for a wrong passphrase or key (or the wrong kind of
        master), TamperedError for a wrapped vault key that does not open.
        The caller still owns ``master`` (and wipes it).
        """
        with self._mutex:
            if self._unlocked is not None:
                raise KeyringError("the keyring is already unlocked")
            file, raw = self._file, self._raw
        if master.kind != file.master_kind:
            expected = "a passphrase" if file.master_kind == MasterKind.PASSPHRASE else "a key"
            raise WrongKeyError(f"this keyring is unlocked with {expected}, not a {master.source}")
        # The KDF is slow by design: run it without holding the mutex.
        mac_key, wrap = master_subkeys(master, file.keyring_id, file.kdf_salt, file.kdf_params)
        if not mac_matches(raw, mac_key):
            mac_key.wipe()
            wrap.wipe()
            raise WrongKeyError(
                "the passphrase or key does not unlock this keyring; nothing was changed"
            )
        vaults: dict[int, HeldKey] = {}
        try:
            for key_id, wrapped in file.wrapped_vault_keys:
                aad = vault_key_aad(file.keyring_id, key_id)
                vaults[key_id] = HeldKey.unwrap(KeyKind.VAULT, key_id, wrap, wrapped, aad)
        except TamperedError:
            _wipe(mac_key, wrap, *vaults.values())
            raise
        with self._mutex:
            if self._unlocked is not None:
                _wipe(mac_key, wrap, *vaults.values())
                raise KeyringError("the keyring is already unlocked")
            self._unlocked = UnlockedKeyring(self, mac_key, wrap, vaults)
            return self._unlocked

    # -- work that needs no key ----------------------------------------------------

    def forget(self, data_key_ids: Iterable[int]) -> int:
        """Destroy these data keys (crypto-shredding), durably; how many were live.

        Every copy of their frames, in old segments and backups alike, can no
        longer be opened.  Works locked or unlocked.  Take the ids from the
        sealed blobs with ``frame_key_id``.
        """
        ids = list(data_key_ids)
        unlocked = self._unlocked
        if unlocked is not None:
            # Only a forged blob names a key not yet handed out; never seal with it.
            unlocked._drop_from_pool(ids)
        with self._mutex:
            return self._store.destroy(ids)

    def compact(self) -> CompactionReport:
        """Rewrite the data key store without destroyed entries (atomic)."""
        with self._mutex:
            return self._store.compact()

    def info(self) -> KeyringInfo:
        with self._mutex:
            file = self._file
            return KeyringInfo(
                directory=self.directory,
                keyring_id=file.keyring_id.hex(),
                master_kind="passphrase" if file.master_kind == MasterKind.PASSPHRASE else "key",
                kdf_params=file.kdf_params,
                vault_key_ids=file.vault_key_ids(),
                current_vault_key_id=file.current_vault_key_id,
                rotating_from=file.rotating_from,
                data_keys=self._store.counts(),
                unlocked=self._unlocked is not None,
            )

    # -- for UnlockedKeyring (under the mutex) -------------------------------------

    def _write_file(self, file: KeyringFile, mac_key: SecretKey) -> None:
        """Replace the keyring file with ``file`` atomically; memory follows only on success."""
        if self.read_only:
            raise KeyringError("the key files were opened read-only")
        raw = encode_keyring_file(file, mac_key)
        replace_atomically(self.directory / KEYRING_FILE_NAME, raw)
        self._file, self._raw = file, raw

    def _forget_unlocked(self) -> None:
        self._unlocked = None

    def _check(self) -> None:
        """Verify invariants across the files and memory (tests call it after each change)."""
        with self._mutex:
            assert self._file.problem() is None
            assert decode_keyring_file(self._raw) == self._file
            if self._store.closed:
                assert self._unlocked is None
                return
            self._store._check()
            if self._unlocked is not None:
                self._unlocked._check()


def frame_key_id(blob: bytes) -> int:
    """The data key id a sealed frame names (to ``forget`` it); TamperedError if not one."""
    header = read_header(blob, what="frame")
    if header.key_kind != KeyKind.DATA:
        raise TamperedError("frame", "bad_key_kind", key_id=header.key_id)
    return header.key_id


def _wipe(*keys: SecretKey | HeldKey) -> None:
    for key in keys:
        key.wipe()
