"""What every import reader yields, and how readers report bad input.

A reader turns a file into ``ImportItem``s (a put or a delete, with where in
the file it came from) and ``LineError``s (a part of the file it could not
use; the rest is still imported).  A file that cannot be imported at all
(bad magic, a truncated block, a checksum mismatch) raises
``ImportFormatError`` before the first item is yielded, so that nothing is
half-applied.  Readers are pure: no I/O beyond reading their file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol


@dataclass(frozen=True, slots=True)
class ImportItem:
    """One change to apply: ``action`` "put" (``args`` are put's) or "delete" (``args["id"]``).

    ``line`` is where it came from: a line number (JSON Lines), an element
    number (JSON documents) or a block number (.m8), counted from 1.
    ``expect_id``, when the source names the frame's id, is checked against
    the id the daemon gives it.
    """

    line: int
    action: str
    args: dict[str, Any]
    expect_id: str | None = None


@dataclass(frozen=True, slots=True)
class LineError:
    """A part of the input that was not imported, and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ImportFormatError(Exception):
    """The whole file is refused (nothing was imported); the message says why and where."""


class ImportSource(Protocol):
    """A reader over one file."""

    format_name: str
    total_bytes: int  # the file's size: progress is reported against it

    @property
    def bytes_read(self) -> int:
        """How far into the file reading has got (for progress)."""
        ...

    def __iter__(self) -> Iterator[ImportItem | LineError]: ...


# Numbers below this are seconds, below the next milliseconds, else microseconds:
# 1e11 s is the year 5138, 1e14 ms the year 5138 too.
_SECONDS_BELOW: Final = 10**11
_MILLISECONDS_BELOW: Final = 10**14
DOCUMENT_BYTES_MAX: Final = 512 * 1024 * 1024  # a JSON document (or its decompressed form)


def time_ms(value: object) -> int:
    """Milliseconds since the epoch from an ISO-8601 string or a number of s, ms or µs.

    A naive ISO time is taken as UTC.  Raises ValueError if ``value`` is neither.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"not a time: {value!r}")
        if value < _SECONDS_BELOW:
            return int(value * 1000)
        if value < _MILLISECONDS_BELOW:
            return int(value)
        return int(value // 1000)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an ISO-8601 time: {value[:40]!r}") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    raise ValueError(f"not a time: {type(value).__name__}")


def read_document(path: Path) -> bytes:
    """A whole file, refused (ImportFormatError) over DOCUMENT_BYTES_MAX."""
    size = os.path.getsize(path)
    if size > DOCUMENT_BYTES_MAX:
        raise ImportFormatError(
            f"{path} is {size} bytes, over document_bytes_max={DOCUMENT_BYTES_MAX}; "
            "split it, or export it as JSON Lines"
        )
    return path.read_bytes()
