"""Chunk files: atomic, verified, laid out by month, compressed only when it pays."""

from __future__ import annotations

import zlib
from pathlib import Path

import orjson
import pytest

from memoryd.storage.chunks import (
    CHUNK_HEADER,
    CODEC_RAW,
    CODEC_ZLIB,
    COMPRESS_LEVEL,
    COMPRESS_SAVING_MIN,
    ChunkError,
    chunk_path,
    encode_chunk,
    iter_chunk_paths,
    read_chunk,
    write_chunk,
)
from memoryd.storage.events import Frame

NOV_2026_MS = 1_795_000_000_000  # 2026-11-19


def frame(seq: int, content: str, ts: int = NOV_2026_MS) -> Frame:
    return Frame(
        id=f"id{seq}",
        seq=seq,
        timestamp_ms=ts,
        namespace="ns",
        kind="fact",
        content=content,
        tags=["t"],
        importance=0.7,
        metadata={"n": seq},
    )


def test_round_trip_preserves_every_field(tmp_path: Path) -> None:
    frames = [frame(1, "emoji 🌈 and ünïcödé"), frame(2, "second"), frame(3, "third")]
    info = write_chunk(tmp_path, frames)
    assert info.path == tmp_path / "2026" / "11" / f"{1:020d}.chunk"
    assert (info.frames, info.first_seq, info.last_seq) == (3, 1, 3)
    assert read_chunk(info.path) == frames
    assert list(iter_chunk_paths(tmp_path)) == [info.path]
    assert not list(tmp_path.rglob("*.tmp"))


def test_month_folder_comes_from_first_frame_time(tmp_path: Path) -> None:
    assert chunk_path(tmp_path, 7, 0).parts[-3:] == ("1970", "01", f"{7:020d}.chunk")


@pytest.mark.parametrize(
    "contents",
    [["the same words again " * 20] * 19, ["x"], ["a b"], ["short", "words"], ["🌈" * 40]],
)
def test_compressed_exactly_when_it_saves_a_tenth(contents: list[str]) -> None:
    frames = [frame(i, text) for i, text in enumerate(contents, start=1)]
    data, raw = encode_chunk(frames)
    body = orjson.dumps([f.to_dict() for f in frames])
    assert raw == len(body)
    pays = len(zlib.compress(body, COMPRESS_LEVEL)) <= raw * (1 - COMPRESS_SAVING_MIN)
    assert CHUNK_HEADER.unpack_from(data)[2] == (CODEC_ZLIB if pays else CODEC_RAW)


@pytest.mark.parametrize("offset", [0, 5, 12, 30, 40, -1])
def test_damaged_chunk_is_detected(tmp_path: Path, offset: int) -> None:
    info = write_chunk(tmp_path, [frame(1, "alpha beta gamma " * 10), frame(2, "delta")])
    data = bytearray(info.path.read_bytes())
    data[offset] ^= 0x40
    info.path.write_bytes(bytes(data))
    with pytest.raises(ChunkError):
        read_chunk(info.path)


def test_empty_chunk_is_refused() -> None:
    with pytest.raises(ChunkError):
        encode_chunk([])
