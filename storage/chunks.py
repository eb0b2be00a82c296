"""Chunks: immutable files of built frames, laid out by time.

The builder batches committed frames into chunks.  A chunk is derived state:
it can always be rebuilt from the log, so it is written atomically (temporary
file, then rename) but not fsynced on its own; a checkpoint that refers to
chunks syncs them first.

Path: ``<chunks_dir>/YYYY/MM/<first_seq:020d>.chunk`` where YYYY/MM is the UTC
month of the chunk's first frame, so old months can be archived by moving a
folder.  Contents are never used in a file name.

Layout (little-endian)::

    offset  size  field
    0       4     magic        b"MDC\\x01"
    4       1     version      1
    5       1     codec        0 = raw, 1 = zlib
    6       2     reserved     0
    8       4     frame count
    12      8     first seq
    20      8     last seq
    28      4     body length  bytes after the header
    32      4     CRC-32       of the body as stored
    36      N     body         orjson list of frame objects (Frame.to_dict()), maybe compressed

A private frame is stored as the log holds it: sealed.  Its object has empty
``content``, ``tags``, ``metadata`` and ``source`` and its envelope, base64,
in ``sealed``; no plaintext of it is ever in a chunk.

A body is compressed only when that saves at least ``COMPRESS_SAVING_MIN``
of its size (short frames often do not pay for zlib's header).
"""

from __future__ import annotations

import base64
import os
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from memoryd.storage.events import Frame

CHUNK_MAGIC = b"MDC\x01"
CHUNK_VERSION = 1
CODEC_RAW = 0
CODEC_ZLIB = 1
CHUNK_HEADER = struct.Struct("<4sBBHIQQII")
CHUNK_HEADER_BYTES = CHUNK_HEADER.size  # 36
COMPRESS_LEVEL = 1  # fast: the builder must keep up with ingest
COMPRESS_SAVING_MIN = 0.10
CHUNK_FRAMES_MAX = 10_000

assert CHUNK_HEADER_BYTES == 36


class ChunkError(ValueError):
    """A chunk file is damaged or not a chunk; it can be rebuilt from the log."""


@dataclass(frozen=True, slots=True)
class ChunkInfo:
    path: Path
    frames: int
    first_seq: int
    last_seq: int
    stored_bytes: int
    raw_bytes: int


CHUNK_SUFFIX = ".chunk"  # a chunk file is DATA_DIR/chunks/YYYY/MM/<first seq, 20 digits>.chunk
TEMPORARY_SUFFIX = ".tmp"  # a chunk being written, renamed once whole


def chunk_path(chunks_dir: Path, first_seq: int, first_timestamp_ms: int) -> Path:
    month = time.strftime("%Y/%m", time.gmtime(first_timestamp_ms / 1000))
    return chunks_dir / month / f"{first_seq:020d}{CHUNK_SUFFIX}"


def encode_chunk(frames: Sequence[Frame]) -> tuple[bytes, int]:
    """The bytes of a chunk holding ``frames`` (in seq order) and its raw body size."""
    if not 0 < len(frames) <= CHUNK_FRAMES_MAX:
        raise ChunkError(f"a chunk holds 1 to {CHUNK_FRAMES_MAX} frames, not {len(frames)}")
    raw = orjson.dumps([_frame_object(frame) for frame in frames])
    body, codec = raw, CODEC_RAW
    packed = zlib.compress(raw, COMPRESS_LEVEL)
    if len(packed) <= len(raw) * (1 - COMPRESS_SAVING_MIN):
        body, codec = packed, CODEC_ZLIB
    header = CHUNK_HEADER.pack(
        CHUNK_MAGIC,
        CHUNK_VERSION,
        codec,
        0,
        len(frames),
        frames[0].seq,
        frames[-1].seq,
        len(body),
        zlib.crc32(body),
    )
    return header + body, len(raw)


def _frame_object(frame: Frame) -> dict[str, object]:
    if frame.sealed is None:
        return frame.to_dict()
    obj = frame.to_dict()
    obj.update(content="", tags=[], metadata={}, source="")  # a sealed frame holds none
    obj["sealed"] = base64.b64encode(frame.sealed).decode("ascii")
    return obj


def write_chunk(chunks_dir: Path, frames: Sequence[Frame]) -> ChunkInfo:
    """Write one immutable chunk atomically (temporary file, rename)."""
    data, raw_bytes = encode_chunk(frames)
    path = chunk_path(chunks_dir, frames[0].seq, frames[0].timestamp_ms)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(TEMPORARY_SUFFIX)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    return ChunkInfo(path, len(frames), frames[0].seq, frames[-1].seq, len(data), raw_bytes)


def read_chunk(path: Path) -> list[Frame]:
    """Decode and verify a chunk; raises ChunkError if it is damaged."""
    data = path.read_bytes()
    if len(data) < CHUNK_HEADER_BYTES:
        raise ChunkError(f"{path}: shorter than a chunk header")
    magic, version, codec, _reserved, count, first, last, length, crc = CHUNK_HEADER.unpack_from(
        data
    )
    if magic != CHUNK_MAGIC or version != CHUNK_VERSION:
        raise ChunkError(f"{path}: not a version {CHUNK_VERSION} chunk")
    body = data[CHUNK_HEADER_BYTES:]
    if len(body) != length or zlib.crc32(body) != crc:
        raise ChunkError(f"{path}: body length or checksum mismatch")
    if codec == CODEC_ZLIB:
        body = zlib.decompress(body)
    elif codec != CODEC_RAW:
        raise ChunkError(f"{path}: unknown codec {codec}")
    frames = [
        Frame(
            id=obj["id"],
            seq=obj["seq"],
            timestamp_ms=obj["timestamp_ms"],
            namespace=obj["namespace"],
            kind=obj["kind"],
            content=obj["content"],
            tags=obj["tags"],
            importance=obj["importance"],
            metadata=obj["metadata"],
            private=obj["private"],
            source=obj["source"],
            sealed=base64.b64decode(obj["sealed"]) if "sealed" in obj else None,
            significance=obj.get("significance"),
        )
        for obj in orjson.loads(body)
    ]
    if len(frames) != count or frames[0].seq != first or frames[-1].seq != last:
        raise ChunkError(f"{path}: header does not match its frames")
    return frames


def iter_chunk_paths(chunks_dir: Path) -> Iterator[Path]:
    """Every chunk file, in first-seq order."""
    paths = chunks_dir.glob(f"*/*/*{CHUNK_SUFFIX}") if chunks_dir.exists() else iter(())
    yield from sorted(paths, key=lambda p: p.name)


def remove_chunks_after(chunks_dir: Path, built_seq: int) -> int:
    """Remove chunk files (and leftover temporary files) beyond ``built_seq``; how many.

    A start runs it before it serves: it reads the month folders' entries by name
    (``os.scandir``), with no Path per file, since a million frames lie in
    20,000 chunk files (90 ms with a Path each, against about 20).
    """
    chunks_dir.mkdir(mode=0o700, exist_ok=True)
    removed = 0
    for year in _subfolders(chunks_dir):
        for month in _subfolders(year):
            with os.scandir(month) as entries:
                for entry in entries:
                    name = entry.name
                    if name.endswith(TEMPORARY_SUFFIX):
                        Path(entry.path).unlink(missing_ok=True)
                    elif name.endswith(CHUNK_SUFFIX) and _first_seq(name) > built_seq:
                        Path(entry.path).unlink(missing_ok=True)
                        removed += 1
    return removed


def _first_seq(chunk_name: str) -> int:
    return int(chunk_name[: -len(CHUNK_SUFFIX)])


def _subfolders(path: str | Path) -> list[str]:
    with os.scandir(path) as entries:
        return [entry.path for entry in entries if entry.is_dir(follow_symlinks=False)]
