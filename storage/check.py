"""``check``: verify a whole log offline and report every problem, changing nothing.

Verifies every record's CRC, every seq, every segment's name and the hash
chain, and keeps going after a problem so that one run lists them all.

``ok`` means exactly that ``FileLog.open`` would accept the log without
dropping a valid record.  A torn tail at the end of the last segment is
therefore reported apart from the problems: it is what a crash leaves, the
next start moves it to quarantine by itself, and it is what a check sees
while the daemon is in the middle of an append.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memoryd.storage.fsio import read_file
from memoryd.storage.layout import LOG_DIR_NAME, repair_ready_dir
from memoryd.storage.record import Record, RecordType
from memoryd.storage.scan import Damage, Link, scan_segment
from memoryd.storage.segment import SegmentFile, list_segments

CHECK_PROBLEMS_SHOWN_MAX = 50  # summary() lists this many; to_dict() has them all


@dataclass(frozen=True, slots=True)
class CheckProblem:
    """Bytes [offset, offset + length) of ``segment`` are bad for ``reason``."""

    segment: Path
    offset: int
    length: int
    reason: str
    detail: str

    def describe(self) -> str:
        return (
            f"segment {self.segment.name} offset {self.offset} ({self.length} bytes): "
            f"{self.reason} ({self.detail})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "segment": self.segment.name,
            "offset": self.offset,
            "length": self.length,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass(slots=True)
class CheckReport:
    """Totals and every problem found in one log."""

    log_dir: Path
    segments: int = 0
    records: int = 0
    log_bytes: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    records_by_type: dict[str, int] = field(default_factory=dict)
    problems: list[CheckProblem] = field(default_factory=list)
    torn_tail: CheckProblem | None = None
    notices: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the log opens without losing a valid record."""
        return not self.problems

    def summary(self) -> str:
        """A human-readable report, one fact per line."""
        seqs = f"seq {self.first_seq}..{self.last_seq}" if self.records else "no records"
        lines = [
            f"log {self.log_dir}: {self.segments} segments, {self.records} records "
            f"({seqs}), {self.log_bytes} bytes"
        ]
        if self.records_by_type:
            counts = ", ".join(f"{name} {n}" for name, n in sorted(self.records_by_type.items()))
            lines.append(f"records by type: {counts}")
        lines.extend(f"notice: {notice}" for notice in self.notices)
        if self.torn_tail is not None:
            lines.append(
                f"torn tail (the next start moves it to quarantine): {self.torn_tail.describe()}"
            )
        if self.ok:
            lines.append("OK: every record is intact and the hash chain is whole")
            return "\n".join(lines)
        lines.append(f"CORRUPT: {len(self.problems)} problems")
        lines.extend(f"  {p.describe()}" for p in self.problems[:CHECK_PROBLEMS_SHOWN_MAX])
        if len(self.problems) > CHECK_PROBLEMS_SHOWN_MAX:
            lines.append(f"  ... and {len(self.problems) - CHECK_PROBLEMS_SHOWN_MAX} more")
        lines.append(
            "Run 'memoryd repair' (with the daemon stopped) to move damaged records aside."
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "log_dir": str(self.log_dir),
            "ok": self.ok,
            "segments": self.segments,
            "records": self.records,
            "log_bytes": self.log_bytes,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "records_by_type": dict(self.records_by_type),
            "problems": [p.to_dict() for p in self.problems],
            "torn_tail": None if self.torn_tail is None else self.torn_tail.to_dict(),
            "notices": list(self.notices),
        }


def check_data_dir(data_dir: Path) -> CheckReport:
    """Check the log of a data directory (``<data_dir>/log``)."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"no data directory at {data_dir}")
    return check_log(data_dir / LOG_DIR_NAME)


def check_log(log_dir: Path) -> CheckReport:
    """Read every segment of ``log_dir`` and report every problem.  Read-only."""
    report = CheckReport(log_dir)
    if not log_dir.is_dir():
        ready = repair_ready_dir(log_dir)
        if not ready.is_dir():
            report.notices.append("no log directory: nothing has been written yet")
            return report
        report.notices.append(
            f"checking {ready.name}: the next start moves this repaired log into place"
        )
        log_dir = ready
    segments, others = list_segments(log_dir)
    report.notices.extend(f"ignored {name!r}: not a segment file" for name in others)
    report.segments = len(segments)
    checker = _Checker(report)
    for index, segment in enumerate(segments):
        checker.check_segment(segment, is_last=index == len(segments) - 1)
    return report


class _Checker:
    """Walks the segments in order, carrying the link from record to record."""

    def __init__(self, report: CheckReport) -> None:
        self.report = report
        self.link = Link()
        # False right after damage: the chain cannot be checked across bytes we
        # could not read, so the next valid record starts it afresh.
        self.linked = True

    def check_segment(self, segment: SegmentFile, is_last: bool) -> None:
        report = self.report
        buf = read_file(segment.path)
        report.log_bytes += len(buf)
        if segment.first_seq <= self.link.seq:
            self._problem(
                segment,
                0,
                0,
                "segment_name",
                f"named {segment.first_seq} after seq {self.link.seq}",
            )
        if not buf and not is_last:
            report.notices.append(f"segment {segment.path.name} is empty")
        for item in scan_segment(buf):
            if isinstance(item, Damage):
                problem = CheckProblem(
                    segment.path, item.offset, item.length, item.reason, item.detail
                )
                if is_last and item.offset + item.length == len(buf):
                    report.torn_tail = problem
                else:
                    report.problems.append(problem)
                self.linked = False
                continue
            self._check_record(segment, item.offset, item.record)
        self.link.end_segment()

    def _check_record(self, segment: SegmentFile, offset: int, record: Record) -> None:
        report = self.report
        link = self.link
        if offset == 0 and record.seq != segment.first_seq:
            self._problem(
                segment, 0, record.size, "segment_name", f"first record has seq {record.seq}"
            )
        if record.seq <= link.seq:
            # Skip it: the records after it still link to the last good one.
            self._problem(
                segment,
                offset,
                record.size,
                "seq_not_increasing",
                f"seq {record.seq} after seq {link.seq}",
            )
            return
        problem = link.problem(record)
        if problem is not None and self.linked:
            self._problem(segment, offset, record.size, *problem)
        elif self.linked and link.gap(record):
            report.notices.append(
                f"seqs {link.seq + 1}..{record.seq - 1} are missing before offset {offset} "
                f"of segment {segment.path.name} (left by a repair)"
            )
        link.advance(record)
        self.linked = True
        report.records += 1
        if report.first_seq is None:
            report.first_seq = record.seq
        report.last_seq = record.seq
        name = RecordType(record.record_type).name.lower()
        report.records_by_type[name] = report.records_by_type.get(name, 0) + 1

    def _problem(
        self, segment: SegmentFile, offset: int, length: int, reason: str, detail: str
    ) -> None:
        self.report.problems.append(CheckProblem(segment.path, offset, length, reason, detail))
