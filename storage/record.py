"""The log record: its byte layout, encoding and decoding.

This module is the single definition of the on-disk record format; FORMAT.md
beside it is the prose version of the same contract, and the writer, the
reader, recovery, ``check`` and ``repair`` all use only the constants and
functions defined here.

Layout of one record (all integers little-endian)::

    offset  size  field
    0       4     magic            b"MDR\\x01"
    4       1     format version   1
    5       1     record type      RecordType
    6       2     flags            reserved, 0
    8       4     payload length   bytes, <= RECORD_PAYLOAD_BYTES_MAX
    12      8     sequence number  u64, 1 for the first record of a log, +1 each
    20      8     timestamp        i64, milliseconds since the Unix epoch
    28      32    previous hash    SHA-256 of the previous record's bytes
    60      N     payload          orjson-encoded event (see events.py)
    60+N    4     CRC-32           zlib.crc32 over bytes [0, 60+N)

The hash chain: ``prev_hash`` of record *n* is SHA-256 over every byte of
record *n-1* (header, payload and CRC).  The first record of a log carries 32
zero bytes.  Editing, dropping or reordering any record therefore breaks the
chain at the following record, even when the CRC of the edited record was
recomputed.
"""

from __future__ import annotations

import enum
import hashlib
import struct
import zlib
from dataclasses import dataclass

RECORD_MAGIC = b"MDR\x01"
RECORD_FORMAT_VERSION = 1
RECORD_HEADER_STRUCT = struct.Struct("<4sBBHIQq32s")
RECORD_HEADER_BYTES = RECORD_HEADER_STRUCT.size  # 60
RECORD_TRAILER_STRUCT = struct.Struct("<I")
RECORD_TRAILER_BYTES = RECORD_TRAILER_STRUCT.size  # 4
RECORD_OVERHEAD_BYTES = RECORD_HEADER_BYTES + RECORD_TRAILER_BYTES
# One record holds one event; a put_batch is many records.  The largest event
# is a frame at the protocol's content limit plus metadata, well under this.
RECORD_PAYLOAD_BYTES_MAX = 16 * 1024 * 1024
HASH_BYTES = 32
GENESIS_HASH = bytes(HASH_BYTES)
# The header's field widths bound these; checking them in encode_record turns an
# out-of-range value into a RecordError instead of a struct.error.
RECORD_SEQ_MAX = 2**64 - 1
RECORD_TIMESTAMP_MS_MIN = -(2**63)
RECORD_TIMESTAMP_MS_MAX = 2**63 - 1

assert RECORD_HEADER_BYTES == 60
assert RECORD_OVERHEAD_BYTES == 64


class RecordType(enum.IntEnum):
    """What kind of event a record holds.  Values are stable on disk."""

    FRAME_PUT = 1
    FRAME_DELETE = 2
    BLOCK_UPDATE = 3  # a change of a core memory block (events.BlockChange)
    KEY_ROTATION = 4  # reserved: key hierarchy changes
    COMPACTION = 5  # a compacted segment's marker (marker.py): how its chain continues


KNOWN_RECORD_TYPES = frozenset(int(t) for t in RecordType)


class RecordError(ValueError):
    """A byte range is not a valid record; ``reason`` says which check failed."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded record.  ``raw`` is its exact bytes (for hashing and repair)."""

    record_type: int
    seq: int
    timestamp_ms: int
    prev_hash: bytes
    payload: bytes
    raw: bytes

    @property
    def size(self) -> int:
        return len(self.raw)

    def hash(self) -> bytes:
        """SHA-256 of the record's bytes: the next record's ``prev_hash``."""
        return hashlib.sha256(self.raw).digest()


def encode_record(
    record_type: int, seq: int, timestamp_ms: int, prev_hash: bytes, payload: bytes
) -> bytes:
    """Return the bytes of one record.  Validates its inputs before writing."""
    if record_type not in KNOWN_RECORD_TYPES:
        raise RecordError("bad_type", f"unknown record type {record_type}")
    if len(payload) > RECORD_PAYLOAD_BYTES_MAX:
        raise RecordError("too_large", f"payload of {len(payload)} bytes")
    if len(prev_hash) != HASH_BYTES:
        raise RecordError("bad_hash", f"prev_hash of {len(prev_hash)} bytes")
    if not 1 <= seq <= RECORD_SEQ_MAX:
        raise RecordError("bad_seq", f"sequence number {seq}")
    if not RECORD_TIMESTAMP_MS_MIN <= timestamp_ms <= RECORD_TIMESTAMP_MS_MAX:
        raise RecordError("bad_timestamp", f"timestamp {timestamp_ms} ms")
    body = (
        RECORD_HEADER_STRUCT.pack(
            RECORD_MAGIC,
            RECORD_FORMAT_VERSION,
            record_type,
            0,
            len(payload),
            seq,
            timestamp_ms,
            prev_hash,
        )
        + payload
    )
    return body + RECORD_TRAILER_STRUCT.pack(zlib.crc32(body))


def record_length_at(buf: bytes | memoryview, offset: int) -> int:
    """Total length of the record whose header starts at ``offset``.

    Raises RecordError("truncated", ...) when fewer than a header's bytes
    remain, and RecordError("bad_magic"/"bad_version"/"bad_length") when the
    header is not one this version writes.
    """
    if len(buf) - offset < RECORD_HEADER_BYTES:
        raise RecordError("truncated", f"{len(buf) - offset} bytes left, header needs 60")
    magic, version, _rtype, _flags, length, _seq, _ts, _prev = RECORD_HEADER_STRUCT.unpack_from(
        buf, offset
    )
    if magic != RECORD_MAGIC:
        raise RecordError("bad_magic", f"magic {bytes(magic)!r}")
    if version != RECORD_FORMAT_VERSION:
        raise RecordError("bad_version", f"format version {version}")
    if length > RECORD_PAYLOAD_BYTES_MAX:
        raise RecordError("bad_length", f"payload length {length}")
    return RECORD_OVERHEAD_BYTES + int(length)


def decode_record(buf: bytes | memoryview, offset: int = 0) -> Record:
    """Decode and verify the record at ``offset`` of ``buf``.

    Checks, in order: a whole header, magic, version, length bound, a whole
    record, the CRC, the type and the flags.  Any failure raises RecordError
    whose ``reason`` is one of: truncated, bad_magic, bad_version, bad_length,
    bad_crc, bad_type, bad_flags.  Chain and sequence checks need the previous
    record and are the reader's job.
    """
    total = record_length_at(buf, offset)
    end = offset + total
    if len(buf) < end:
        raise RecordError("truncated", f"record of {total} bytes, {len(buf) - offset} present")
    raw = bytes(buf[offset:end])
    (crc,) = RECORD_TRAILER_STRUCT.unpack_from(raw, total - RECORD_TRAILER_BYTES)
    if zlib.crc32(memoryview(raw)[: total - RECORD_TRAILER_BYTES]) != crc:
        raise RecordError("bad_crc", "checksum mismatch")
    _magic, _version, rtype, flags, length, seq, ts, prev = RECORD_HEADER_STRUCT.unpack_from(raw)
    if rtype not in KNOWN_RECORD_TYPES:
        raise RecordError("bad_type", f"record type {rtype}")
    if flags != 0:
        raise RecordError("bad_flags", f"flags {flags:#x}")
    payload = raw[RECORD_HEADER_BYTES : RECORD_HEADER_BYTES + length]
    return Record(rtype, seq, ts, prev, payload, raw)
