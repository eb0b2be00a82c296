"""The storage layer's corruption error, shared by recovery and the log's readers."""

from __future__ import annotations

from pathlib import Path


class LogCorruptionError(Exception):
    """The log holds a damaged record that a crash cannot explain; nothing was changed.

    ``segment`` is the segment file's path, ``offset`` the byte offset in it of
    the first damaged record (or of the record whose link to its predecessor
    is broken), ``reason`` a short stable code (a RecordError reason, or
    ``chain_break``, ``seq_not_increasing``, ``segment_name``) and ``detail``
    the specifics.
    """

    def __init__(self, segment: Path, offset: int, reason: str, detail: str) -> None:
        super().__init__(
            f"log corrupt in segment {segment.name} at offset {offset}: {reason} ({detail}); "
            "nothing was changed. Run 'memoryd check' for a full report and "
            "'memoryd repair' to move damaged records aside."
        )
        self.segment = segment
        self.offset = offset
        self.reason = reason
        self.detail = detail
