"""Reading MEM8 memories: JSON contexts and binary ``.m8`` files.

**MEM8 JSON contexts**: ``{"contexts": [context, ...]}``, as text or as one
zlib stream.  Each context is an object; its text is ``content`` (else
``text``, ``summary``), its ``score`` (0 to 1) becomes the importance, its
time is ``timestamp`` (else ``created_at``, ``time``: ISO-8601, or seconds,
milliseconds or microseconds since the epoch), ``tags`` (else
``keywords``) its tags, ``kind`` (else ``type``) its kind (default
``note``), ``namespace`` its namespace.  Every other field is kept under
``metadata["mem8"]``.  A context that cannot be used is reported with its
number (from 1); the others are imported.

**MEM8 binary (.m8)**, all integers little-endian, packed::

    header, 30 bytes
      0   4  magic              b"MEM8"
      4   1  version            u8
      5   1  flags              u8
      6   4  block count        u32
      10  8  identity frequency f64
      18  8  temporal phase     f64
      26  4  crc32              u32: zlib CRC-32 of every byte after the header
                                (all blocks, padding included)
    then ``block count`` blocks of exactly 4,096 bytes
      0   8  index              u64
      8   16 wave signature     16 bytes
      24  8  timestamp          u64, microseconds since the epoch
      32  2  importance         u16: 0-65535 scaled to 0-1
      34  2  token id           u16
      36  32 previous hash      32 bytes
      68  4  content length     u32, at most 4,024
      72  n  content            UTF-8
      72+n   zero padding to 4,096

The CRC covers everything after the header, as in MEM8's other container
(whose header CRC is "of the entire file after this field"); the header
itself is protected by the magic, the block count (the file size must match
it exactly) and by every block parsing.  The previous hash is kept in the
metadata, not verified: what MEM8 hashed is not specified.  The whole file
is validated before anything is yielded: a bad magic, a size that is not the
header plus whole blocks, a CRC mismatch, a content length past its block,
content that is not UTF-8 or non-zero padding refuses the file with the
block number and offset, and nothing is imported.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import orjson

from .import_source import (
    DOCUMENT_BYTES_MAX,
    ImportFormatError,
    ImportItem,
    LineError,
    read_document,
    time_ms,
)

M8_MAGIC: Final = b"MEM8"
M8_HEADER: Final = struct.Struct("<4sBBIddI")
M8_BLOCK_HEADER: Final = struct.Struct("<Q16sQHH32sI")
M8_BLOCK_BYTES: Final = 4096
M8_CONTENT_BYTES_MAX: Final = M8_BLOCK_BYTES - M8_BLOCK_HEADER.size
M8_IMPORTANCE_MAX: Final = 65535
assert M8_HEADER.size == 30
assert M8_BLOCK_HEADER.size == 72

MEM8_DEFAULT_NAMESPACE: Final = "mem8"
MEM8_KIND: Final = "note"
MEM8_SOURCE: Final = "mem8"
_CONTENT_KEYS: Final = ("content", "text", "summary")
_TIME_KEYS: Final = ("timestamp", "created_at", "time")
_TAG_KEYS: Final = ("tags", "keywords")
_KIND_KEYS: Final = ("kind", "type")


def _first(obj: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for key in keys:
        if obj.get(key) is not None:
            return key, obj[key]
    return None, None


class Mem8JsonSource:
    """MEM8 JSON contexts, plain or zlib-compressed."""

    format_name = "mem8-json"

    def __init__(self, path: Path, namespace: str | None = None) -> None:
        self.path = path
        self.namespace = namespace
        self.total_bytes = os.path.getsize(path)
        self._done = 0

    @property
    def bytes_read(self) -> int:
        return self._done

    def __iter__(self) -> Iterator[ImportItem | LineError]:
        contexts = self._contexts()
        for number, context in enumerate(contexts, start=1):
            yield context_item(number, context, self.namespace)
            self._done = self.total_bytes * number // len(contexts)

    def _contexts(self) -> list[Any]:
        data = read_document(self.path)
        if data[:1] == b"\x78":
            data = _inflate(data, self.path)
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ImportFormatError(f"{self.path} is not a JSON document: {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get("contexts"), list):
            raise ImportFormatError(f'{self.path} is not MEM8 JSON: no "contexts" list')
        return list(document["contexts"])


def _inflate(data: bytes, path: Path) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, DOCUMENT_BYTES_MAX)
    except zlib.error as exc:
        raise ImportFormatError(f"{path} is not a valid zlib stream: {exc}") from None
    if inflater.unconsumed_tail:
        raise ImportFormatError(
            f"{path} inflates past document_bytes_max={DOCUMENT_BYTES_MAX}; split it"
        )
    if not inflater.eof:
        raise ImportFormatError(f"{path} is a truncated zlib stream")
    return out


def context_item(number: int, context: object, namespace: str | None) -> ImportItem | LineError:
    """The put for one MEM8 JSON context, or why it cannot be imported."""
    if not isinstance(context, dict):
        return LineError(number, "context is not a JSON object")
    content_key, content = _first(context, _CONTENT_KEYS)
    if not isinstance(content, str):
        return LineError(number, "context has no text (content, text or summary)")
    args: dict[str, Any] = {
        "content": content,
        "namespace": context.get("namespace") or namespace or MEM8_DEFAULT_NAMESPACE,
        "source": MEM8_SOURCE,
    }
    score = context.get("score")
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
            return LineError(number, f"score must be a number from 0 to 1, got {score!r}")
        args["importance"] = float(score)
    time_key, when = _first(context, _TIME_KEYS)
    if when is not None:
        try:
            args["timestamp_ms"] = time_ms(when)
        except ValueError as exc:
            return LineError(number, f"{time_key}: {exc}")
    tag_key, tags = _first(context, _TAG_KEYS)
    if tags is not None:
        if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
            return LineError(number, f"{tag_key} must be a list of non-empty strings")
        args["tags"] = tags
    kind_key, kind = _first(context, _KIND_KEYS)
    args["kind"] = kind if isinstance(kind, str) and kind else MEM8_KIND
    used = {content_key, "namespace", "score", time_key, tag_key, kind_key}
    rest = {key: value for key, value in context.items() if key not in used}
    if rest:
        args["metadata"] = {"mem8": rest}
    return ImportItem(number, "put", args)


class M8Source:
    """A MEM8 binary file; validated whole before the first item."""

    format_name = "m8"

    def __init__(self, path: Path, namespace: str | None = None) -> None:
        self.path = path
        self.namespace = namespace or MEM8_DEFAULT_NAMESPACE
        self.total_bytes = os.path.getsize(path)
        self._done = 0

    @property
    def bytes_read(self) -> int:
        return self._done

    def __iter__(self) -> Iterator[ImportItem | LineError]:
        items = parse_m8(read_document(self.path), self.namespace, str(self.path))
        for number, item in enumerate(items, start=1):
            yield item
            self._done = M8_HEADER.size + number * M8_BLOCK_BYTES


def parse_m8(data: bytes, namespace: str, name: str = ".m8 file") -> list[ImportItem]:
    """Every block of a .m8 file as a put; ImportFormatError (nothing yielded) if any is bad."""
    if len(data) < M8_HEADER.size:
        raise ImportFormatError(
            f"{name}: truncated header ({len(data)} bytes, a header is {M8_HEADER.size})"
        )
    magic, version, flags, count, frequency, phase, crc = M8_HEADER.unpack_from(data)
    if magic != M8_MAGIC:
        raise ImportFormatError(f"{name}: bad magic {magic!r}, a .m8 file starts with b'MEM8'")
    expected = M8_HEADER.size + count * M8_BLOCK_BYTES
    if len(data) < expected:
        whole = (len(data) - M8_HEADER.size) // M8_BLOCK_BYTES
        raise ImportFormatError(
            f"{name}: truncated block {whole + 1} of {count} at offset "
            f"{M8_HEADER.size + whole * M8_BLOCK_BYTES} ({len(data)} bytes, {expected} expected)"
        )
    if len(data) > expected:
        raise ImportFormatError(
            f"{name}: {len(data) - expected} bytes after the last of {count} blocks"
        )
    if zlib.crc32(memoryview(data)[M8_HEADER.size :]) != crc:
        raise ImportFormatError(f"{name}: crc32 mismatch: the blocks are damaged")
    header = {"version": version, "flags": flags, "identity_frequency": frequency}
    header["temporal_phase"] = phase
    return [
        _m8_block(data, number, M8_HEADER.size + (number - 1) * M8_BLOCK_BYTES, namespace, header)
        for number in range(1, count + 1)
    ]


def _m8_block(
    data: bytes, number: int, offset: int, namespace: str, header: dict[str, Any]
) -> ImportItem:
    index, wave, micros, importance, token, prev_hash, length = M8_BLOCK_HEADER.unpack_from(
        data, offset
    )
    where = f"block {number} at offset {offset}"
    if length > M8_CONTENT_BYTES_MAX:
        raise ImportFormatError(
            f"{where}: content length {length} exceeds the block ({M8_CONTENT_BYTES_MAX} max)"
        )
    start = offset + M8_BLOCK_HEADER.size
    raw = data[start : start + length]
    if data[start + length : offset + M8_BLOCK_BYTES].strip(b"\x00"):
        raise ImportFormatError(f"{where}: padding after the content is not zero")
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImportFormatError(f"{where}: content is not UTF-8 (byte {exc.start})") from None
    metadata = {
        "mem8": {
            "index": index,
            "wave_signature": wave.hex(),
            "token_id": token,
            "previous_hash": prev_hash.hex(),
            **header,
        }
    }
    args = {
        "content": content,
        "namespace": namespace,
        "kind": MEM8_KIND,
        "importance": importance / M8_IMPORTANCE_MAX,
        "timestamp_ms": micros // 1000,
        "metadata": metadata,
        "source": MEM8_SOURCE,
    }
    return ImportItem(number, "put", args)


def encode_m8(
    blocks: list[dict[str, Any]],
    *,
    version: int = 1,
    flags: int = 0,
    identity_frequency: float = 0.0,
    temporal_phase: float = 0.0,
) -> bytes:
    """A .m8 file holding ``blocks`` (each: content, and optionally index, wave_signature,
    timestamp_us, importance (0-1), token_id, previous_hash).  For tests and tools."""
    body = bytearray()
    for number, block in enumerate(blocks):
        content = str(block["content"]).encode("utf-8")
        if len(content) > M8_CONTENT_BYTES_MAX:
            raise ValueError(f"block {number + 1}: content of {len(content)} bytes")
        body += M8_BLOCK_HEADER.pack(
            int(block.get("index", number)),
            bytes(block.get("wave_signature", bytes(16))),
            int(block.get("timestamp_us", 0)),
            round(float(block.get("importance", 0.5)) * M8_IMPORTANCE_MAX),
            int(block.get("token_id", 0)),
            bytes(block.get("previous_hash", bytes(32))),
            len(content),
        )
        body += content + bytes(M8_CONTENT_BYTES_MAX - len(content))
    header = M8_HEADER.pack(
        M8_MAGIC,
        version,
        flags,
        len(blocks),
        identity_frequency,
        temporal_phase,
        zlib.crc32(body),
    )
    return header + bytes(body)
