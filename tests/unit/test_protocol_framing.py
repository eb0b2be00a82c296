"""Framing, parsing and error mapping of the wire protocol (no I/O)."""

from __future__ import annotations

import builtins
import itertools
import pickle
import struct

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from memoryd.client import errors, protocol
from memoryd.client.protocol import FramingError, MessageDecoder


def _frame(body: bytes, version: int = protocol.PROTOCOL_VERSION) -> bytes:
    return struct.pack(">IB", len(body), version) + body


# --- encoding -------------------------------------------------------------------


def test_header_is_length_big_endian_then_version() -> None:
    message = protocol.encode_request(1, "ping", {})
    body = b'{"id":1,"op":"ping","args":{}}'
    assert message == len(body).to_bytes(4, "big") + b"\x01" + body
    assert protocol.HEADER_BYTES == 5


def test_encode_keeps_unicode_as_utf8() -> None:
    message = protocol.encode_ok("a", {"content": "é🧠\u0000"})
    body = message[protocol.HEADER_BYTES :]
    assert orjson.loads(body) == {"id": "a", "ok": True, "result": {"content": "é🧠\u0000"}}
    assert "é🧠".encode() in body


def test_encode_error_leaves_out_empty_details() -> None:
    body = protocol.encode_error(3, "not_found", "gone")[protocol.HEADER_BYTES :]
    assert orjson.loads(body) == {
        "id": 3,
        "ok": False,
        "error": {"code": "not_found", "message": "gone"},
    }
    body = protocol.encode_error(None, "bad_request", "x", {"index": 2})[protocol.HEADER_BYTES :]
    assert orjson.loads(body)["error"]["details"] == {"index": 2}


def test_encode_refuses_a_body_over_the_limit() -> None:
    with pytest.raises(FramingError) as info:
        protocol.encode_message({"content": "x" * protocol.MESSAGE_BYTES_MAX})
    assert info.value.code == errors.MESSAGE_TOO_LARGE


# --- decoding -------------------------------------------------------------------


def test_feeding_byte_by_byte_yields_each_message_when_complete() -> None:
    first = protocol.encode_request(1, "ping", {})
    second = protocol.encode_request("b", "get", {"id": "x"})
    stream = first + second
    decoder = MessageDecoder()
    seen: list[tuple[int, bytes]] = []
    for offset in range(len(stream)):
        for body in decoder.feed(stream[offset : offset + 1]):
            seen.append((offset, body))
    assert seen == [
        (len(first) - 1, first[protocol.HEADER_BYTES :]),
        (len(stream) - 1, second[protocol.HEADER_BYTES :]),
    ]
    assert decoder.buffered_bytes == 0


def test_one_feed_may_hold_many_messages_and_a_partial_one() -> None:
    messages = [protocol.encode_request(i, "ping", {}) for i in range(5)]
    decoder = MessageDecoder()
    partial = messages[4][:7]
    bodies = decoder.feed(b"".join(messages[:4]) + partial)
    assert bodies == [m[protocol.HEADER_BYTES :] for m in messages[:4]]
    assert decoder.buffered_bytes == len(partial)
    assert decoder.feed(messages[4][7:]) == [messages[4][protocol.HEADER_BYTES :]]


def test_empty_body_frames_fine_and_is_left_to_the_parser() -> None:
    assert MessageDecoder().feed(_frame(b"")) == [b""]
    with pytest.raises(errors.MemorydError) as info:
        protocol.parse_request(b"")
    assert info.value.code == errors.BAD_JSON


def test_oversize_length_is_refused_from_the_header_alone() -> None:
    decoder = MessageDecoder(message_bytes_max=100)
    assert decoder.feed(_frame(b"x" * 100)) == [b"x" * 100]
    with pytest.raises(FramingError) as info:
        decoder.feed(struct.pack(">IB", 101, 1))  # no body sent at all
    assert info.value.code == errors.MESSAGE_TOO_LARGE
    assert "101" in info.value.message and "100" in info.value.message


def test_huge_length_prefix_is_refused_before_buffering() -> None:
    decoder = MessageDecoder()
    with pytest.raises(FramingError) as info:
        decoder.feed(b"\xff\xff\xff\xff\x01" + b"{")
    assert info.value.code == errors.MESSAGE_TOO_LARGE
    assert decoder.buffered_bytes < 10


def test_bad_version_byte_is_refused() -> None:
    with pytest.raises(FramingError) as info:
        MessageDecoder().feed(_frame(b"{}", version=2))
    assert info.value.code == errors.UNSUPPORTED_VERSION
    assert isinstance(info.value, errors.MemorydError)


def test_framing_error_carries_the_complete_messages_before_it() -> None:
    good = [protocol.encode_request(i, "ping", {}) for i in range(2)]
    with pytest.raises(FramingError) as info:
        MessageDecoder().feed(b"".join(good) + _frame(b"{}", version=9))
    assert info.value.bodies == [m[protocol.HEADER_BYTES :] for m in good]
    with pytest.raises(FramingError) as alone:
        MessageDecoder().feed(_frame(b"{}", version=9))
    assert alone.value.bodies == []


@given(
    bodies=st.lists(st.binary(max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
)
def test_any_split_of_the_stream_decodes_the_same(bodies: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(_frame(body) for body in bodies)
    points = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    decoder = MessageDecoder()
    out: list[bytes] = []
    for start, end in itertools.pairwise(points):
        out.extend(decoder.feed(stream[start:end]))
    assert out == bodies
    assert decoder.buffered_bytes == 0


# --- parsing requests -----------------------------------------------------------


def test_parse_request_reads_id_op_and_args() -> None:
    request = protocol.parse_request(b'{"id":"r1","op":"put","args":{"content":"x"},"extra":1}')
    assert request == protocol.Request("r1", "put", {"content": "x"})
    assert protocol.parse_request(b'{"id":2,"op":"ping"}').args == {}
    assert protocol.parse_request(b'{"op":"ping"}').id is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", errors.BAD_JSON),
        (b"\xff\xfe", errors.BAD_JSON),
        (b"[1, 2]", errors.BAD_JSON),
        (b'"just a string"', errors.BAD_JSON),
        (b'{"id":true,"op":"ping"}', errors.BAD_REQUEST),
        (b'{"id":1.5,"op":"ping"}', errors.BAD_REQUEST),
        (b'{"id":[1],"op":"ping"}', errors.BAD_REQUEST),
        (b'{"id":"' + b"x" * 65 + b'","op":"ping"}', errors.BAD_REQUEST),
    ],
)
def test_parse_request_errors_without_a_readable_id(body: bytes, code: str) -> None:
    with pytest.raises(errors.MemorydError) as info:
        protocol.parse_request(body)
    assert info.value.code == code
    assert "id" not in info.value.details


def test_request_id_limit_counts_utf8_bytes() -> None:
    sixteen_emoji = "🧠" * 16  # 16 characters, 64 bytes: the most allowed
    body = orjson.dumps({"id": sixteen_emoji, "op": "ping"})
    assert protocol.parse_request(body).id == sixteen_emoji
    with pytest.raises(errors.MemorydError, match="64 bytes"):
        protocol.parse_request(orjson.dumps({"id": sixteen_emoji + "x", "op": "ping"}))


@pytest.mark.parametrize(
    "body",
    [b'{"id":9,"args":{}}', b'{"id":9,"op":5}', b'{"id":9,"op":"get","args":[1]}'],
)
def test_parse_request_errors_carry_the_id_when_readable(body: bytes) -> None:
    with pytest.raises(errors.MemorydError) as info:
        protocol.parse_request(body)
    assert info.value.code == errors.BAD_REQUEST
    assert info.value.details == {"id": 9}


def test_parse_response_requires_an_object_with_ok() -> None:
    assert protocol.parse_response(b'{"id":1,"ok":true,"result":{}}')["ok"] is True
    for body in (b"nope", b"[]", b'{"id":1}'):
        with pytest.raises(errors.ProtocolViolationError) as info:
            protocol.parse_response(body)
        assert info.value.code == errors.PROTOCOL_VIOLATION


# --- limits and errors ----------------------------------------------------------


def test_limits_table_matches_the_constants() -> None:
    assert protocol.LIMITS["message_bytes_max"] == protocol.MESSAGE_BYTES_MAX
    assert protocol.LIMITS["content_bytes_max"] == protocol.CONTENT_BYTES_MAX
    assert all(name.endswith("_max") for name in protocol.LIMITS)
    assert protocol.CONTENT_BYTES_MAX < protocol.MESSAGE_BYTES_MAX


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (errors.NOT_FOUND, errors.NotFoundError),
        (errors.BUSY, errors.UnavailableError),
        (errors.LOCKED, errors.UnavailableError),
        (errors.DISK_FULL, errors.UnavailableError),
        (errors.BAD_REQUEST, errors.RequestError),
        (errors.PERMISSION_DENIED, errors.RequestError),
        ("a_code_from_the_future", errors.RequestError),
    ],
)
def test_error_from_wire_picks_the_class_by_code(code: str, cls: type[Exception]) -> None:
    exc = errors.error_from_wire({"code": code, "message": "m", "details": {"index": 1}})
    assert type(exc) is cls
    assert (exc.code, exc.message, exc.details) == (code, "m", {"index": 1})
    assert str(exc) == f"{code}: m"


def test_error_from_wire_tolerates_missing_fields() -> None:
    exc = errors.error_from_wire({"details": "not an object"})
    assert (exc.code, exc.message, exc.details) == (errors.INTERNAL, "", {})


def test_every_error_class_ends_in_error_and_survives_pickling() -> None:
    classes = [
        errors.MemorydError,
        errors.RequestError,
        errors.NotFoundError,
        errors.UnavailableError,
        errors.DaemonConnectionError,
        errors.ClientTimeoutError,
        errors.ProtocolViolationError,
        FramingError,
    ]
    builtin_names = set(dir(builtins))
    for cls in classes:
        assert cls.__name__.endswith("Error")
        assert cls.__name__ not in builtin_names
        exc = cls("busy", "m", {"k": 1})
        copy = pickle.loads(pickle.dumps(exc))
        assert (type(copy), copy.code, copy.message, copy.details) == (cls, "busy", "m", {"k": 1})
