"""Which reader reads a file: by ``--format``, else by looking at its first bytes.

Detection, in order: a ``.m8`` file starts with the magic ``MEM8``; a zlib
stream (first byte 0x78 with a valid header check) is MEM8 JSON contexts;
otherwise the text is JSON: a first line that is an object with an
``event`` field is a memoryd export (JSON Lines); a document that is an
object with ``contexts`` is MEM8 JSON; a list, or an object with
``results`` or ``memories``, is a mem0 export.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

import orjson

from .import_jsonl import JsonlSource
from .import_mem0 import Mem0Source
from .import_mem8 import M8_MAGIC, M8Source, Mem8JsonSource
from .import_source import ImportFormatError, ImportSource

SNIFF_BYTES: Final = 64 * 1024

FORMATS: Final[dict[str, str]] = {
    "jsonl": "memoryd export (JSON Lines)",
    "mem8-json": 'MEM8 JSON contexts ({"contexts": [...]}, plain or zlib)',
    "m8": "MEM8 binary (.m8)",
    "mem0": "mem0 export (a list of memories)",
}


def open_source(
    path: Path, format_name: str = "auto", namespace: str | None = None
) -> ImportSource:
    """The reader for ``path``; ImportFormatError if the format is unknown or unrecognised."""
    if format_name == "auto":
        format_name = detect_format(path)
    makers: dict[str, Callable[[], ImportSource]] = {
        "jsonl": lambda: JsonlSource(path),
        "mem8-json": lambda: Mem8JsonSource(path, namespace),
        "m8": lambda: M8Source(path, namespace),
        "mem0": lambda: Mem0Source(path, namespace),
    }
    maker = makers.get(format_name)
    if maker is None:
        raise ImportFormatError(
            f"unknown format {format_name!r}; one of: auto, {', '.join(FORMATS)}"
        )
    return maker()


def detect_format(path: Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if head.startswith(M8_MAGIC):
        return "m8"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        return "mem8-json"
    text = head.lstrip()
    if text.startswith(b"["):
        return "mem0"
    if text.startswith(b"{"):
        first_line = text.split(b"\n", 1)[0]
        try:
            first = orjson.loads(first_line)
        except orjson.JSONDecodeError:
            first = None
        if isinstance(first, dict):
            if "event" in first:
                return "jsonl"
            if "contexts" in first:
                return "mem8-json"
            if "results" in first or "memories" in first:
                return "mem0"
        # A document over several lines: look for its top-level key.
        if b'"contexts"' in head:
            return "mem8-json"
        if b'"results"' in head or b'"memories"' in head:
            return "mem0"
    raise ImportFormatError(
        f"cannot tell the format of {path}; name it with --format ({', '.join(FORMATS)})"
    )
