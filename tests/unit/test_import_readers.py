"""The import readers, on real files: MEM8 JSON, MEM8 binary, mem0, detection, times."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memoryd.client.import_formats import detect_format, open_source
from memoryd.client.import_mem8 import (
    M8_BLOCK_BYTES,
    M8_CONTENT_BYTES_MAX,
    M8_HEADER,
    encode_m8,
    parse_m8,
)
from memoryd.client.import_source import ImportFormatError, ImportItem, LineError, time_ms

BLOCKS: list[dict[str, Any]] = [
    {
        "content": "first memory 🌊",
        "index": 7,
        "wave_signature": bytes(range(16)),
        "timestamp_us": 1_700_000_000_123_456,
        "importance": 1.0,
        "token_id": 42,
        "previous_hash": b"\xab" * 32,
    },
    {"content": "second", "importance": 0.0, "timestamp_us": 5_000},
]


def items(path: Path, **kwargs: Any) -> list[ImportItem | LineError]:
    return list(open_source(path, **kwargs))


def test_m8_blocks_become_puts_with_every_field(tmp_path: Path) -> None:
    path = tmp_path / "memory.m8"
    path.write_bytes(encode_m8(BLOCKS, identity_frequency=42.73, temporal_phase=0.5))
    assert detect_format(path) == "m8"
    first, second = items(path, namespace="ns")
    assert isinstance(first, ImportItem) and isinstance(second, ImportItem)
    assert first.line == 1 and first.action == "put"
    assert first.args["content"] == "first memory 🌊"
    assert first.args["namespace"] == "ns"
    assert first.args["importance"] == 1.0
    assert first.args["timestamp_ms"] == 1_700_000_000_123
    mem8 = first.args["metadata"]["mem8"]
    assert mem8["index"] == 7 and mem8["token_id"] == 42
    assert mem8["wave_signature"] == bytes(range(16)).hex()
    assert mem8["previous_hash"] == "ab" * 32
    assert mem8["identity_frequency"] == 42.73 and mem8["temporal_phase"] == 0.5
    assert second.args["importance"] == 0.0 and second.args["timestamp_ms"] == 5


def test_m8_importance_scales_from_u16() -> None:
    (item,) = parse_m8(encode_m8([{"content": "x", "importance": 0.5}]), "ns")
    assert item.args["importance"] == round(0.5 * 65535) / 65535


def _refused(data: bytes, match: str) -> None:
    with pytest.raises(ImportFormatError, match=match):
        parse_m8(data, "ns")


def test_m8_bad_magic_is_refused() -> None:
    data = bytearray(encode_m8(BLOCKS))
    data[:4] = b"MEM9"
    _refused(bytes(data), "bad magic")


def test_m8_truncated_block_is_refused_naming_it() -> None:
    data = encode_m8(BLOCKS)
    _refused(data[:-1], r"truncated block 2 of 2 at offset 4126")
    _refused(data[: M8_HEADER.size + 10], r"truncated block 1 of 2 at offset 30")
    _refused(data[:20], "truncated header")


def test_m8_trailing_bytes_and_damage_are_refused() -> None:
    data = encode_m8(BLOCKS)
    _refused(data + b"\0", "1 bytes after the last of 2 blocks")
    damaged = bytearray(data)
    damaged[M8_HEADER.size + 80] ^= 1
    _refused(bytes(damaged), "crc32 mismatch")


def _with_crc(header: bytes, body: bytes) -> bytes:
    fields = list(M8_HEADER.unpack(header))
    fields[-1] = zlib.crc32(body)
    return M8_HEADER.pack(*fields) + body


def test_m8_bad_blocks_are_refused_even_with_a_good_crc() -> None:
    data = encode_m8([{"content": "abc"}])
    header, body = data[: M8_HEADER.size], bytearray(data[M8_HEADER.size :])
    struct.pack_into("<I", body, 68, M8_CONTENT_BYTES_MAX + 1)
    with pytest.raises(ImportFormatError, match="block 1 at offset 30: content length 4025"):
        parse_m8(_with_crc(header, bytes(body)), "ns")
    body = bytearray(data[M8_HEADER.size :])
    body[M8_BLOCK_BYTES - 1] = 1
    with pytest.raises(ImportFormatError, match="padding"):
        parse_m8(_with_crc(header, bytes(body)), "ns")
    body = bytearray(data[M8_HEADER.size :])
    body[72] = 0xFF
    with pytest.raises(ImportFormatError, match="not UTF-8"):
        parse_m8(_with_crc(header, bytes(body)), "ns")


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "content": st.text(max_size=300),
                "timestamp_us": st.integers(0, 2**63),
                "importance": st.floats(0, 1),
                "token_id": st.integers(0, 65535),
            }
        ),
        max_size=5,
    ),
    st.integers(0, 2**20),
)
def test_m8_round_trips_and_any_cut_is_refused(blocks: list[dict[str, Any]], cut: int) -> None:
    data = encode_m8(blocks)
    parsed = parse_m8(data, "ns")
    assert [item.args["content"] for item in parsed] == [b["content"] for b in blocks]
    assert [item.args["timestamp_ms"] for item in parsed] == [
        b["timestamp_us"] // 1000 for b in blocks
    ]
    if cut % len(data):
        with pytest.raises(ImportFormatError):
            parse_m8(data[: cut % len(data)], "ns")


CONTEXTS = {
    "contexts": [
        {"content": "plain", "score": 0.25, "timestamp": 1_700_000_000, "tags": ["a"]},
        {"text": "other text key", "score": 1, "created_at": "2024-05-01T10:00:00Z", "x": 1},
        {"content": "no score, no time", "type": "fact", "namespace": "given"},
        {"content": "score out of range", "score": 1.5},
        "not an object",
        {"score": 0.3},
        {"content": "bad time", "timestamp": "yesterday"},
    ]
}


@pytest.mark.parametrize("compressed", [False, True])
def test_mem8_json_contexts_plain_or_zlib(tmp_path: Path, compressed: bool) -> None:
    raw = orjson.dumps(CONTEXTS)
    path = tmp_path / "contexts.json"
    path.write_bytes(zlib.compress(raw) if compressed else raw)
    assert detect_format(path) == "mem8-json"
    got = items(path)
    good = [i for i in got if isinstance(i, ImportItem)]
    bad = [i for i in got if isinstance(i, LineError)]
    assert [i.line for i in good] == [1, 2, 3]
    assert good[0].args["importance"] == 0.25
    assert good[0].args["timestamp_ms"] == 1_700_000_000_000
    assert good[0].args["tags"] == ["a"] and good[0].args["namespace"] == "mem8"
    assert good[1].args["content"] == "other text key"
    assert good[1].args["timestamp_ms"] == 1_714_557_600_000
    assert good[1].args["metadata"] == {"mem8": {"x": 1}}
    assert good[2].args["kind"] == "fact" and good[2].args["namespace"] == "given"
    assert [(e.line, e.message.split(" ")[0]) for e in bad] == [
        (4, "score"),
        (5, "context"),
        (6, "context"),
        (7, "timestamp:"),
    ]


def test_mem8_json_refuses_a_document_without_contexts(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_bytes(orjson.dumps({"contexts": 3}))
    with pytest.raises(ImportFormatError, match='no "contexts" list'):
        items(path, format_name="mem8-json")
    path.write_bytes(zlib.compress(b'{"contexts": []}')[:-3])
    with pytest.raises(ImportFormatError, match="truncated zlib"):
        items(path, format_name="mem8-json")


MEM0 = [
    {
        "id": "m-1",
        "memory": "Likes tea",
        "user_id": "alice",
        "created_at": "2024-07-20T10:11:12.345-07:00",
        "metadata": {"source": "chat"},
        "categories": ["food"],
        "hash": "abc",
    },
    {"memory": "No owner", "created_at": None, "metadata": None},
    {"memory": 3},
    {"memory": "bad metadata", "metadata": [1]},
]


@pytest.mark.parametrize("wrapped", [False, True])
def test_mem0_export(tmp_path: Path, wrapped: bool) -> None:
    path = tmp_path / "mem0.json"
    path.write_bytes(
        orjson.dumps({"results": MEM0} if wrapped else MEM0, option=orjson.OPT_INDENT_2)
    )
    assert detect_format(path) == "mem0"
    first, second, third, fourth = items(path, namespace="fallback")
    assert isinstance(first, ImportItem) and isinstance(second, ImportItem)
    assert first.args == {
        "content": "Likes tea",
        "namespace": "alice",
        "kind": "fact",
        "source": "mem0",
        "timestamp_ms": 1_721_495_472_345,
        "tags": ["food"],
        "metadata": {"source": "chat", "mem0": {"id": "m-1", "hash": "abc"}},
    }
    assert second.args["namespace"] == "fallback" and "timestamp_ms" not in second.args
    assert isinstance(third, LineError) and third.line == 3
    assert isinstance(fourth, LineError) and "metadata" in fourth.message


def test_times_in_every_unit() -> None:
    assert time_ms(1_700_000_000) == 1_700_000_000_000
    assert time_ms(1_700_000_000.5) == 1_700_000_000_500
    assert time_ms(1_700_000_000_000) == 1_700_000_000_000
    assert time_ms(1_700_000_000_000_000) == 1_700_000_000_000
    assert time_ms("1970-01-01T00:00:01") == 1000
    for bad in (-1, True, float("nan"), "soon", None):
        with pytest.raises(ValueError):
            time_ms(bad)


def test_detection_of_an_export_and_of_nothing_known(tmp_path: Path) -> None:
    path = tmp_path / "e"
    path.write_bytes(b'{"event": "frame_put", "content": "x"}\n')
    assert detect_format(path) == "jsonl"
    path.write_bytes(b"hello")
    with pytest.raises(ImportFormatError, match="--format"):
        detect_format(path)
    with pytest.raises(ImportFormatError, match="unknown format"):
        open_source(path, "csv")
