"""The data key store: one wrapped key per sealed frame, destroyable (FORMAT.md section 6).

The store holds wrapped keys only (it never sees a key in the clear), so it
works while the keyring is locked: forgetting a frame while locked destroys
its key at once.  Entries have a fixed size, which lets an entry be destroyed
by overwriting it in place, and lets a reader find them without an index on
disk; in memory, a map from data key id to entry offset.

Crash safety, write by write:

* ``append`` writes entries at the end with one ``pwrite`` and fdatasyncs
  before returning; the caller hands a key out only after that.  A crash in
  between leaves a torn tail, cut before the next write.
* ``destroy`` overwrites entries in place and fdatasyncs.  A torn overwrite
  leaves a damaged entry: its key unusable, which is what was asked.
* ``rewrap`` (a rotation step) appends the new entries, syncs, then destroys the
  old ones and syncs.  A crash in between leaves two live entries for one id:
  the later one wins and the earlier is destroyed before the next write.
* ``compact`` replaces the file atomically.

Not thread-safe on its own: the keyring serialises every call with its mutex.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from memoryd.crypto.envelope import KeyKind, read_header
from memoryd.crypto.errors import (
    CryptoError,
    ForgottenError,
    KeyringError,
    LimitError,
    TamperedError,
)
from memoryd.crypto.fsio import pread_exact, pwrite_all, replace_atomically
from memoryd.crypto.keywrap import WRAPPED_KEY_BYTES
from memoryd.crypto.nonces import KEYRING_ID_BYTES

MAGIC = b"MDD\x01"
FORMAT_VERSION = 1
HEADER_BYTES = 96
ENTRY_BYTES = 96
DATA_KEY_ID_MAX = 2**64 - 1
SCAN_CHUNK_ENTRIES = 4096  # entries read per pread while scanning (384 KiB)
INDEX_BYTES_PER_KEY = 100  # what one id -> offset pair costs in a dict, roughly (for stats)
# Private frames per keyring: bounds the in-memory index (about 1 GB) and the file (960 MB).
DATA_KEYS_LIVE_MAX = 10_000_000

_HEADER = struct.Struct("<4sB3s16sQ60sI")  # magic, version, reserved, keyring id, next id, ...
_ENTRY = struct.Struct(f"<B3sQ{WRAPPED_KEY_BYTES}s5sI")  # state, reserved, id, wrapped, ...
_CRC_AT = ENTRY_BYTES - 4
_CRC = struct.Struct("<I")
assert _HEADER.size == HEADER_BYTES and _ENTRY.size == ENTRY_BYTES
assert KEYRING_ID_BYTES == 16
_STATE_LIVE = 1
_STATE_DESTROYED = 2
_WHAT = "data key store"
# What compaction swaps in from a freshly opened store.
_STATE_FIELDS = (
    "_fd",
    "_index",
    "_vault_of",
    "_live_by_vault",
    "_destroyed",
    "_damaged",
    "_superseded",
    "_end",
    "_file_bytes",
    "_next_key_id",
    "_needs_cut",
)


class EntryState(Enum):
    LIVE = "live"
    DESTROYED = "destroyed"
    DAMAGED = "damaged"


@dataclass(frozen=True, slots=True)
class Entry:
    """One decoded entry.  For a damaged one, ``key_id`` is what the bytes say, unverified."""

    offset: int
    state: EntryState
    key_id: int
    vault_key_id: int = 0  # live entries only
    wrapped: bytes = field(default=b"", repr=False)  # live entries only


@dataclass(frozen=True, slots=True)
class StoreCounts:
    """How full the store is, for ``stats`` and ``check``."""

    live: int
    destroyed: int
    damaged: int
    superseded: int  # duplicates left by a crash in a rotation step, destroyed at next write
    torn_tail_bytes: int
    live_by_vault_key: dict[int, int]
    file_bytes: int
    index_bytes: int  # estimate of the in-memory index


@dataclass(frozen=True, slots=True)
class CompactionReport:
    kept: int
    dropped_destroyed: int
    dropped_damaged: int
    bytes_before: int
    bytes_after: int


def encode_header(keyring_id: bytes, next_key_id: int) -> bytes:
    body = _HEADER.pack(MAGIC, FORMAT_VERSION, bytes(3), keyring_id, next_key_id, bytes(60), 0)
    return body[:_CRC_AT] + struct.pack("<I", zlib.crc32(body[:_CRC_AT]))


def encode_entry(key_id: int, wrapped: bytes | None) -> bytes:
    """A live entry for ``wrapped``, or (None) the destroyed form of entry ``key_id``."""
    assert 1 <= key_id <= DATA_KEY_ID_MAX
    state = _STATE_LIVE if wrapped is not None else _STATE_DESTROYED
    body = _ENTRY.pack(state, bytes(3), key_id, wrapped or bytes(WRAPPED_KEY_BYTES), bytes(5), 0)
    return body[:_CRC_AT] + struct.pack("<I", zlib.crc32(body[:_CRC_AT]))


def encode_live_entries(entries: Iterable[tuple[int, bytes]]) -> Iterator[bytes]:
    """``encode_entry`` of each ``(key id, wrapped)``, as alternating bodies and CRCs
    (a pool of thousands at a time: one join)."""
    pack, crc = _ENTRY.pack, zlib.crc32
    reserved, reserved2 = bytes(3), bytes(5)
    for key_id, wrapped in entries:
        assert 1 <= key_id <= DATA_KEY_ID_MAX and len(wrapped) == WRAPPED_KEY_BYTES
        body = pack(_STATE_LIVE, reserved, key_id, wrapped, reserved2, 0)[:_CRC_AT]
        yield body
        yield _CRC.pack(crc(body))


def decode_entry(raw: bytes, offset: int) -> Entry:
    """Decode one entry; anything that does not check out is DAMAGED, never an error."""
    state, reserved, key_id, wrapped, reserved2, crc = _ENTRY.unpack(raw)
    damaged = Entry(offset, EntryState.DAMAGED, key_id)
    if crc != zlib.crc32(raw[:_CRC_AT]) or any(reserved) or any(reserved2) or key_id == 0:
        return damaged
    if state == _STATE_DESTROYED:
        return Entry(offset, EntryState.DESTROYED, key_id) if not any(wrapped) else damaged
    if state != _STATE_LIVE:
        return damaged
    try:
        header = read_header(wrapped, what="data key")
    except TamperedError:
        return damaged
    if header.key_kind != KeyKind.VAULT:
        return damaged
    return Entry(offset, EntryState.LIVE, key_id, header.key_id, wrapped)


class KeyStore:
    """An open data key store file and its in-memory index."""

    def __init__(self, path: Path, fd: int, keyring_id: bytes, *, read_only: bool) -> None:
        """Use ``KeyStore.open``; this takes ownership of ``fd``."""
        self.path = path
        self.read_only = read_only
        self.keyring_id = keyring_id
        self._fd = fd
        self._index: dict[int, int] = {}  # data key id -> offset of its live entry
        self._vault_of: dict[int, int] = {}  # offset of a live entry -> its vault key id
        self._live_by_vault: Counter[int] = Counter()
        self._destroyed = 0
        self._damaged: list[Entry] = []
        self._superseded: list[int] = []  # offsets of older live duplicates
        self._end = HEADER_BYTES  # where the next entry goes
        self._file_bytes = HEADER_BYTES
        self._next_key_id = 1
        self._needs_cut = False  # bytes past _end to cut (a torn tail, a failed append)

    # -- opening -------------------------------------------------------------------

    @staticmethod
    def create(path: Path, keyring_id: bytes) -> None:
        """Write an empty store for keyring ``keyring_id`` (atomically)."""
        replace_atomically(path, encode_header(keyring_id, 1))

    @classmethod
    def open(cls, path: Path, keyring_id: bytes, *, read_only: bool = False) -> KeyStore:
        """Open and scan the store; TamperedError if its header is damaged or not this keyring's.

        Opening never writes: a torn tail and superseded duplicates are dealt
        with before the first write.
        """
        flags = os.O_RDONLY if read_only else os.O_RDWR
        try:
            fd = os.open(path, flags | os.O_CLOEXEC)
        except FileNotFoundError:
            raise KeyringError(
                f"the data key store {path} is missing: no private frame can be opened"
            ) from None
        store = cls(path, fd, keyring_id, read_only=read_only)
        try:
            store._scan()
        except BaseException:
            os.close(fd)
            raise
        return store

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _scan(self) -> None:
        size = os.fstat(self._fd).st_size
        self._file_bytes = size
        self._read_header(size)
        count = (size - HEADER_BYTES) // ENTRY_BYTES
        good_end = HEADER_BYTES  # just past the last entry that is not damaged
        max_id = 0
        for start in range(0, count, SCAN_CHUNK_ENTRIES):
            n = min(SCAN_CHUNK_ENTRIES, count - start)
            base = HEADER_BYTES + start * ENTRY_BYTES
            chunk = pread_exact(self._fd, n * ENTRY_BYTES, base)
            for i in range(len(chunk) // ENTRY_BYTES):
                raw = chunk[i * ENTRY_BYTES : (i + 1) * ENTRY_BYTES]
                entry = decode_entry(raw, base + i * ENTRY_BYTES)
                if entry.state == EntryState.DAMAGED:
                    self._damaged.append(entry)
                    continue
                good_end = entry.offset + ENTRY_BYTES
                max_id = max(max_id, entry.key_id)
                if entry.state == EntryState.DESTROYED:
                    self._destroyed += 1
                else:
                    self._add_live(entry.key_id, entry.offset, entry.vault_key_id)
        # Damage reaching the end of the file is a torn tail: an append that never
        # completed, whose keys were never handed out.  Cut before the next write.
        self._damaged = [e for e in self._damaged if e.offset < good_end]
        self._end = good_end
        self._needs_cut = size > good_end
        self._next_key_id = max(self._next_key_id, max_id + 1)

    def _read_header(self, size: int) -> None:
        raw = pread_exact(self._fd, HEADER_BYTES, 0)
        if len(raw) < HEADER_BYTES:
            raise TamperedError(_WHAT, "truncated", detail=f"{size} bytes")
        magic, version, reserved, keyring_id, next_id, reserved2, crc = _HEADER.unpack(raw)
        if crc != zlib.crc32(raw[:_CRC_AT]):
            raise TamperedError(_WHAT, "bad_crc", detail="header")
        if magic != MAGIC:
            raise TamperedError(_WHAT, "bad_magic")
        if version != FORMAT_VERSION:
            raise KeyringError(f"data key store version {version} is not supported")
        if any(reserved) or any(reserved2) or next_id < 1:
            raise TamperedError(_WHAT, "bad_field", detail="header")
        if keyring_id != self.keyring_id:
            raise TamperedError(_WHAT, "keyring_mismatch", detail="it belongs to another keyring")
        self._next_key_id = next_id

    def _add_live(self, key_id: int, offset: int, vault_key_id: int) -> None:
        older = self._index.get(key_id)
        if older is not None:  # a rotation step's copy: the later entry is the key
            self._superseded.append(older)
            self._live_by_vault[self._vault_of.pop(older)] -= 1
        self._index[key_id] = offset
        self._vault_of[offset] = vault_key_id
        self._live_by_vault[vault_key_id] += 1

    # -- reading -------------------------------------------------------------------

    @property
    def next_key_id(self) -> int:
        return self._next_key_id

    def get(self, key_id: int) -> Entry:
        """The live entry of ``key_id``; ForgottenError if it was destroyed."""
        offset = self._index.get(key_id)
        if offset is None:
            if any(e.key_id == key_id for e in self._damaged):
                raise TamperedError("data key", "damaged_entry", key_id=key_id)
            if key_id >= self._next_key_id:
                raise TamperedError("data key", "unknown_key", key_id=key_id)
            if self._damaged:
                # A damaged entry's id cannot be trusted: this key may be one of them.
                # Saying "forgotten" could hide damage, so say what is known.
                raise TamperedError(
                    "data key",
                    "missing_key",
                    key_id=key_id,
                    detail=f"not found, and {len(self._damaged)} damaged entries exist",
                )
            raise ForgottenError(key_id)
        entry = decode_entry(pread_exact(self._fd, ENTRY_BYTES, offset), offset)
        if entry.state != EntryState.LIVE or entry.key_id != key_id:
            # Changed on disk since the scan (someone else wrote the file).
            raise TamperedError("data key", "entry_changed", key_id=key_id)
        return entry

    def live_under(self, vault_key_id: int, start: int, limit: int) -> tuple[list[Entry], int]:
        """Up to ``limit`` live entries wrapped by ``vault_key_id``, from offset ``start`` on.

        Returns them and the offset to continue from (``end`` once done).
        """
        found: list[Entry] = []
        offset = max(start, HEADER_BYTES)
        while offset < self._end and len(found) < limit:
            n = min(SCAN_CHUNK_ENTRIES, (self._end - offset) // ENTRY_BYTES)
            chunk = pread_exact(self._fd, n * ENTRY_BYTES, offset)
            for i in range(n):
                at = offset + i * ENTRY_BYTES
                if self._vault_of.get(at) != vault_key_id:
                    continue
                found.append(decode_entry(chunk[i * ENTRY_BYTES : (i + 1) * ENTRY_BYTES], at))
                if len(found) == limit:
                    return found, at + ENTRY_BYTES
            offset += n * ENTRY_BYTES
        return found, offset

    @property
    def end(self) -> int:
        return self._end

    def is_live_at(self, key_id: int, offset: int) -> bool:
        """Whether ``key_id``'s live entry is still the one at ``offset``."""
        return self._index.get(key_id) == offset

    def vault_key_of(self, key_id: int) -> int | None:
        """The vault key id wrapping live data key ``key_id``, or None if it is not live."""
        offset = self._index.get(key_id)
        return None if offset is None else self._vault_of[offset]

    def counts(self) -> StoreCounts:
        return StoreCounts(
            live=len(self._index),
            destroyed=self._destroyed,
            damaged=len(self._damaged),
            superseded=len(self._superseded),
            torn_tail_bytes=self._file_bytes - self._end if self._needs_cut else 0,
            live_by_vault_key={k: v for k, v in sorted(self._live_by_vault.items()) if v},
            file_bytes=self._file_bytes,
            index_bytes=len(self._index) * INDEX_BYTES_PER_KEY,
        )

    # -- writing -------------------------------------------------------------------

    def allocate_ids(self, count: int) -> range:
        """``count`` fresh data key ids (never used before in this store)."""
        if len(self._index) + count > DATA_KEYS_LIVE_MAX:
            raise LimitError("data_keys_live_max", len(self._index) + count, DATA_KEYS_LIVE_MAX)
        first = self._next_key_id
        if first + count - 1 > DATA_KEY_ID_MAX:
            raise CryptoError("data key ids are exhausted")
        self._next_key_id = first + count
        return range(first, first + count)

    def append(self, entries: list[tuple[int, bytes]], vault_key_id: int) -> None:
        """Append live entries ``(key id, wrapped key)``, all wrapped by ``vault_key_id``,
        with one write, durably."""
        self._prepare_write()
        data = b"".join(encode_live_entries(entries))
        try:
            pwrite_all(self._fd, data, self._end)
            os.fdatasync(self._fd)
        except BaseException:
            self._needs_cut = True  # whatever reached the file is cut before the next write
            self._file_bytes = max(self._file_bytes, os.fstat(self._fd).st_size)
            raise
        ids = [key_id for key_id, _ in entries]
        offsets = range(self._end, self._end + len(data), ENTRY_BYTES)
        if self._index.keys().isdisjoint(ids):  # fresh keys (a pool): no copy to supersede
            self._index.update(zip(ids, offsets, strict=True))
            self._vault_of.update(dict.fromkeys(offsets, vault_key_id))
            self._live_by_vault[vault_key_id] += len(ids)
        else:
            for key_id, offset in zip(ids, offsets, strict=True):
                self._add_live(key_id, offset, vault_key_id)
        self._end += len(data)
        self._file_bytes = max(self._file_bytes, self._end)

    def destroy(self, key_ids: Iterable[int]) -> int:
        """Destroy the keys ``key_ids`` in place, durably; how many were live."""
        self._prepare_write()
        wanted = set(key_ids)
        live = [key_id for key_id in wanted if key_id in self._index]
        # A damaged entry that may hold one of these keys is overwritten as well.
        damaged = [e for e in self._damaged if e.key_id in wanted]
        offsets = [(self._index[k], k) for k in live] + [(e.offset, e.key_id) for e in damaged]
        self._overwrite_destroyed(offsets)
        for key_id in live:
            offset = self._index.pop(key_id)
            self._live_by_vault[self._vault_of.pop(offset)] -= 1
        self._damaged = [e for e in self._damaged if e not in damaged]
        self._destroyed += len(offsets)
        return len(live)

    def rewrap(self, replacements: list[tuple[Entry, bytes]], vault_key_id: int) -> None:
        """Replace each live entry by one with the same id and a key newly wrapped by
        ``vault_key_id`` (a rotation step).

        New entries are appended and synced before the old ones are destroyed.
        """
        if not replacements:
            return
        self.append([(old.key_id, wrapped) for old, wrapped in replacements], vault_key_id)
        # append() made the new entries the live ones; the old are now superseded.
        self._destroy_superseded()

    def compact(self) -> CompactionReport:
        """Rewrite the store with its live entries only, in id order, atomically."""
        self._require_writable()
        before = self._file_bytes
        live = sorted(self._index.items())

        def chunks() -> Iterator[bytes]:
            yield encode_header(self.keyring_id, self._next_key_id)
            for start in range(0, len(live), SCAN_CHUNK_ENTRIES):
                batch = live[start : start + SCAN_CHUNK_ENTRIES]
                yield b"".join(pread_exact(self._fd, ENTRY_BYTES, at) for _, at in batch)

        report = CompactionReport(
            kept=len(live),
            dropped_destroyed=self._destroyed + len(self._superseded),
            dropped_damaged=len(self._damaged),
            bytes_before=before,
            bytes_after=HEADER_BYTES + len(live) * ENTRY_BYTES,
        )
        replace_atomically(self.path, chunks())
        os.close(self._fd)
        self._fd = -1
        fresh = KeyStore.open(self.path, self.keyring_id)
        self._adopt(fresh)
        return report

    def _adopt(self, other: KeyStore) -> None:
        for name in _STATE_FIELDS:
            setattr(self, name, getattr(other, name))
        other._fd = -1

    def _prepare_write(self) -> None:
        """Before any write: cut a torn tail, destroy superseded duplicates."""
        self._require_writable()
        if self._needs_cut:
            os.ftruncate(self._fd, self._end)
            os.fdatasync(self._fd)
            self._file_bytes = self._end
            self._needs_cut = False
        if self._superseded:
            self._destroy_superseded()

    def _destroy_superseded(self) -> None:
        pairs = []
        for offset in self._superseded:
            raw = pread_exact(self._fd, ENTRY_BYTES, offset)
            pairs.append((offset, decode_entry(raw, offset).key_id))
        self._overwrite_destroyed(pairs)
        self._destroyed += len(pairs)
        self._superseded = []

    def _overwrite_destroyed(self, offsets: list[tuple[int, int]]) -> None:
        """Overwrite entries with their destroyed form; adjacent ones in one write."""
        if not offsets:
            return
        run_start, run = -1, bytearray()
        for offset, key_id in sorted(offsets):
            if run and offset != run_start + len(run):
                pwrite_all(self._fd, bytes(run), run_start)
                run = bytearray()
            if not run:
                run_start = offset
            run += encode_entry(key_id, None)
        pwrite_all(self._fd, bytes(run), run_start)
        os.fdatasync(self._fd)

    def _require_writable(self) -> None:
        if self.read_only:
            raise KeyringError("the key files were opened read-only")
        if self._fd < 0:
            raise KeyringError("the data key store is closed")

    # -- invariants ----------------------------------------------------------------

    def _check(self) -> None:
        """Verify the in-memory index against the file (tests call it after each change)."""
        assert self._fd >= 0
        size = os.fstat(self._fd).st_size
        assert (size - HEADER_BYTES) % ENTRY_BYTES == 0 or self._needs_cut
        assert self._end <= size and (self._end - HEADER_BYTES) % ENTRY_BYTES == 0
        by_vault: Counter[int] = Counter()
        for key_id, offset in self._index.items():
            entry = decode_entry(pread_exact(self._fd, ENTRY_BYTES, offset), offset)
            assert entry.state == EntryState.LIVE and entry.key_id == key_id, (key_id, offset)
            assert self._vault_of[offset] == entry.vault_key_id
            assert key_id < self._next_key_id
            by_vault[entry.vault_key_id] += 1
        assert len(self._vault_of) == len(self._index)
        assert +by_vault == +self._live_by_vault, (by_vault, self._live_by_vault)
