"""Scanning: splitting a segment's bytes into valid records and damaged ranges.

Pure functions over bytes, shared by recovery (which stops at the first
problem), ``check`` (which reports them all) and ``repair`` (which keeps the
valid records and moves the damaged ranges aside), so that the three can never
disagree about what is damaged.

A *damaged range* starts where a record fails to decode and ends where the
next valid record starts (found by searching for the magic and decoding
there), or at the end of the segment if no valid record follows.

*Links* are the checks between consecutive valid records: the seq strictly
increases (a gap is allowed: repair can leave one) and ``prev_hash`` is the
SHA-256 of the previous record's bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from memoryd.storage.marker import CompactionMarker, MarkerError
from memoryd.storage.record import (
    GENESIS_HASH,
    RECORD_MAGIC,
    Record,
    RecordError,
    RecordType,
    decode_record,
)

_COMPACTION = int(RecordType.COMPACTION)


@dataclass(frozen=True, slots=True)
class ScannedRecord:
    """A valid record (CRC good) found at ``offset``."""

    offset: int
    record: Record


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes [offset, offset + length) hold no valid record; ``reason`` is the first failure."""

    offset: int
    length: int
    reason: str
    detail: str


def scan_segment(buf: bytes, start: int = 0) -> Iterator[ScannedRecord | Damage]:
    """Yield, in file order, every valid record and every damaged range of a segment
    from offset ``start`` (a record boundary) on."""
    offset = start
    end = len(buf)
    while offset < end:
        try:
            record = decode_record(buf, offset)
        except RecordError as exc:
            resume = next_valid_offset(buf, offset + 1)
            yield Damage(offset, resume - offset, exc.reason, exc.detail)
            offset = resume
            continue
        yield ScannedRecord(offset, record)
        offset += record.size


def next_valid_offset(buf: bytes, start: int) -> int:
    """The first offset >= ``start`` where a valid record starts, else ``len(buf)``."""
    candidate = buf.find(RECORD_MAGIC, start)
    while candidate != -1:
        try:
            decode_record(buf, candidate)
        except RecordError:
            candidate = buf.find(RECORD_MAGIC, candidate + 1)
            continue
        return candidate
    return len(buf)


@dataclass(slots=True)
class Link:
    """What the next record must link to: the seq and hash of the last valid record.

    A compacted segment (marker.py) ends differently: ``end_segment``, called
    after each segment's last record, takes the seq and hash its marker names.
    """

    seq: int = 0
    hash: bytes = GENESIS_HASH
    marker: CompactionMarker | None = None  # of the segment being read

    def problem(self, record: Record) -> tuple[str, str] | None:
        """``(reason, detail)`` if ``record`` cannot follow the last record, else None."""
        if record.record_type == _COMPACTION:
            if self.marker is not None:
                return "bad_marker", f"a second compaction marker at seq {record.seq}"
            try:
                CompactionMarker.decode(record.payload)
            except MarkerError as exc:
                return "bad_marker", str(exc)
        if record.seq <= self.seq:
            return "seq_not_increasing", f"seq {record.seq} after seq {self.seq}"
        if record.prev_hash != self.hash:
            return (
                "chain_break",
                f"prev_hash of seq {record.seq} is not the hash of seq {self.seq}",
            )
        return None

    def gap(self, record: Record) -> int:
        """How many seqs are missing between the last record and ``record`` (none are
        missing after a compaction marker: compaction dropped them)."""
        if self.marker is not None:
            return 0
        return max(0, record.seq - self.seq - 1)

    def advance(self, record: Record) -> None:
        self.seq = record.seq
        self.hash = hashlib.sha256(record.raw).digest()
        if record.record_type == _COMPACTION and self.marker is None:
            # A malformed one is reported by ``problem``; the segment then ends as usual.
            with contextlib.suppress(MarkerError):
                self.marker = CompactionMarker.decode(record.payload)

    def end_segment(self) -> None:
        """The segment ended: after a compacted one, continue where its marker says."""
        marker, self.marker = self.marker, None
        if marker is not None:
            self.seq = max(self.seq, marker.last_seq)
            self.hash = marker.end_hash
