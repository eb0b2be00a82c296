"""The record byte format: round trips, the documented layout, every RecordError reason."""

from __future__ import annotations

import hashlib
import struct
import zlib

import pytest

from memoryd.storage.record import (
    GENESIS_HASH,
    RECORD_HEADER_BYTES,
    RECORD_MAGIC,
    RECORD_OVERHEAD_BYTES,
    RECORD_PAYLOAD_BYTES_MAX,
    RECORD_SEQ_MAX,
    RECORD_TIMESTAMP_MS_MAX,
    RECORD_TIMESTAMP_MS_MIN,
    RecordError,
    RecordType,
    decode_record,
    encode_record,
    record_length_at,
)

PREV = hashlib.sha256(b"previous").digest()


def _with_crc_fixed(raw: bytearray) -> bytes:
    """Recompute the trailing CRC after editing header or payload bytes."""
    body = bytes(raw[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


def test_round_trip_keeps_every_field() -> None:
    raw = encode_record(RecordType.FRAME_PUT, 42, 1_700_000_000_123, PREV, b'{"id":"a"}')
    record = decode_record(raw)
    assert record.record_type == RecordType.FRAME_PUT
    assert record.seq == 42
    assert record.timestamp_ms == 1_700_000_000_123
    assert record.prev_hash == PREV
    assert record.payload == b'{"id":"a"}'
    assert record.raw == raw
    assert record.size == len(raw) == RECORD_OVERHEAD_BYTES + 10


@pytest.mark.parametrize("timestamp_ms", [RECORD_TIMESTAMP_MS_MIN, -1, 0, RECORD_TIMESTAMP_MS_MAX])
@pytest.mark.parametrize("seq", [1, RECORD_SEQ_MAX])
def test_round_trip_at_the_field_limits(seq: int, timestamp_ms: int) -> None:
    record = decode_record(encode_record(RecordType.FRAME_DELETE, seq, timestamp_ms, PREV, b""))
    assert (record.seq, record.timestamp_ms, record.payload) == (seq, timestamp_ms, b"")


def test_layout_matches_the_documented_offsets() -> None:
    raw = encode_record(RecordType.FRAME_DELETE, 7, -5, GENESIS_HASH, b"xyz")
    assert raw[0:4] == RECORD_MAGIC == b"MDR\x01"
    assert raw[4] == 1  # format version
    assert raw[5] == RecordType.FRAME_DELETE
    assert raw[6:8] == b"\x00\x00"  # flags
    assert struct.unpack_from("<I", raw, 8)[0] == 3
    assert struct.unpack_from("<Q", raw, 12)[0] == 7
    assert struct.unpack_from("<q", raw, 20)[0] == -5
    assert raw[28:60] == GENESIS_HASH
    assert raw[60:63] == b"xyz"
    assert struct.unpack_from("<I", raw, 63)[0] == zlib.crc32(raw[:63])


def test_hash_is_sha256_of_every_byte() -> None:
    record = decode_record(encode_record(RecordType.FRAME_PUT, 1, 0, GENESIS_HASH, b"p"))
    assert record.hash() == hashlib.sha256(record.raw).digest()


def test_decode_at_an_offset_inside_a_larger_buffer() -> None:
    first = encode_record(RecordType.FRAME_PUT, 1, 0, GENESIS_HASH, b"one")
    second = encode_record(RecordType.FRAME_PUT, 2, 0, hashlib.sha256(first).digest(), b"two")
    buf = memoryview(first + second + b"trailing")
    assert record_length_at(buf, len(first)) == len(second)
    assert decode_record(buf, len(first)).payload == b"two"


def _reason(buf: bytes) -> str:
    with pytest.raises(RecordError) as caught:
        decode_record(buf)
    return caught.value.reason


GOOD = encode_record(RecordType.FRAME_PUT, 3, 10, PREV, b"payload")


def test_decode_rejects_a_partial_header_as_truncated() -> None:
    assert _reason(GOOD[: RECORD_HEADER_BYTES - 1]) == "truncated"


def test_decode_rejects_a_partial_record_as_truncated() -> None:
    assert _reason(GOOD[:-1]) == "truncated"


def test_decode_rejects_bad_magic() -> None:
    assert _reason(b"XDR\x01" + GOOD[4:]) == "bad_magic"


def test_decode_rejects_another_format_version() -> None:
    raw = bytearray(GOOD)
    raw[4] = 2
    assert _reason(bytes(raw)) == "bad_version"


def test_decode_rejects_a_length_over_the_limit() -> None:
    raw = bytearray(GOOD)
    struct.pack_into("<I", raw, 8, RECORD_PAYLOAD_BYTES_MAX + 1)
    assert _reason(bytes(raw)) == "bad_length"


def test_decode_rejects_a_flipped_payload_byte_as_bad_crc() -> None:
    raw = bytearray(GOOD)
    raw[RECORD_HEADER_BYTES] ^= 0xFF
    assert _reason(bytes(raw)) == "bad_crc"


def test_decode_rejects_an_unknown_type_with_a_good_crc() -> None:
    raw = bytearray(GOOD)
    raw[5] = 99
    assert _reason(_with_crc_fixed(raw)) == "bad_type"


def test_decode_rejects_nonzero_flags_with_a_good_crc() -> None:
    raw = bytearray(GOOD)
    raw[6] = 1
    assert _reason(_with_crc_fixed(raw)) == "bad_flags"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((99, 1, 0, PREV, b""), "bad_type"),
        ((RecordType.FRAME_PUT, 1, 0, PREV, b"x" * (RECORD_PAYLOAD_BYTES_MAX + 1)), "too_large"),
        ((RecordType.FRAME_PUT, 1, 0, b"short", b""), "bad_hash"),
        ((RecordType.FRAME_PUT, 0, 0, PREV, b""), "bad_seq"),
        ((RecordType.FRAME_PUT, RECORD_SEQ_MAX + 1, 0, PREV, b""), "bad_seq"),
        ((RecordType.FRAME_PUT, 1, RECORD_TIMESTAMP_MS_MAX + 1, PREV, b""), "bad_timestamp"),
        ((RecordType.FRAME_PUT, 1, RECORD_TIMESTAMP_MS_MIN - 1, PREV, b""), "bad_timestamp"),
    ],
    ids=[
        "unknown_type",
        "payload_too_large",
        "short_prev_hash",
        "seq_zero",
        "seq_over_u64",
        "timestamp_over_i64",
        "timestamp_under_i64",
    ],
)
def test_encode_rejects_invalid_input(
    args: tuple[int, int, int, bytes, bytes], reason: str
) -> None:
    with pytest.raises(RecordError) as caught:
        encode_record(*args)
    assert caught.value.reason == reason


def test_record_error_message_names_reason_and_detail() -> None:
    error = RecordError("bad_crc", "checksum mismatch")
    assert str(error) == "bad_crc: checksum mismatch"
    assert isinstance(error, ValueError)
