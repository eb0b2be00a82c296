"""``repair``: move damaged byte ranges out of the log, keep every valid record.

A valid record is one that decodes with a good CRC.  Every valid record is
kept with its seq, timestamp, type and payload, in its original segment;
the hash chain is re-linked over the kept records (so records after the first
damage get new bytes).  Removed, each noted in a JSON index beside the bytes:

* damaged ranges (including a torn tail), byte for byte;
* valid records whose seq does not increase (duplicates, strays), whole.

The swap is crash safe at every point (FORMAT.md, "Repair"): the new log is
written and synced under ``log.repair-tmp``, renamed to ``log.repair-ready``
once complete, then the old log is renamed to ``log.before-repair-<time>`` and
the ready one to ``log``.  A crash between those two renames leaves no
``log``; recovery finishes the swap at the next start.  A leftover
``log.repair-tmp`` is never read and is removed by the next repair.

Repair holds the data directory lock: it refuses to run beside a daemon.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from memoryd.storage.check import check_log
from memoryd.storage.fsio import fsync_dir, make_dir_durable, read_file, write_new_file_durably
from memoryd.storage.layout import (
    LOG_DIR_NAME,
    QUARANTINE_DIR_NAME,
    repair_backup_dir,
    repair_quarantine_stem,
    repair_ready_dir,
    repair_tmp_dir,
    segment_file_name,
    unused_path,
)
from memoryd.storage.lock import DataDirLock
from memoryd.storage.record import GENESIS_HASH, Record, encode_record
from memoryd.storage.recovery import complete_interrupted_repair
from memoryd.storage.scan import Damage, Link, scan_segment
from memoryd.storage.segment import SegmentFile, list_segments

REPAIR_INDEX_FORMAT = 1


class RepairFailedError(Exception):
    """Repair could not produce a clean log; the old log was left in place, unchanged."""


@dataclass(frozen=True, slots=True)
class QuarantinedRange:
    """Bytes [offset, offset + length) of ``segment`` now at ``quarantine_offset`` of the .bin."""

    segment: str
    offset: int
    length: int
    reason: str
    detail: str
    quarantine_offset: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "segment": self.segment,
            "offset": self.offset,
            "length": self.length,
            "reason": self.reason,
            "detail": self.detail,
            "quarantine_offset": self.quarantine_offset,
        }


@dataclass(slots=True)
class RepairReport:
    """What repair did.  ``changed`` is False when the log needed nothing."""

    log_dir: Path
    changed: bool = False
    records_kept: int = 0
    records_rewritten: int = 0
    relinked_at: list[int] = field(default_factory=list)
    quarantined: list[QuarantinedRange] = field(default_factory=list)
    quarantine_file: Path | None = None
    quarantine_index: Path | None = None
    backup_dir: Path | None = None
    notices: list[str] = field(default_factory=list)

    @property
    def bytes_quarantined(self) -> int:
        return sum(r.length for r in self.quarantined)

    def summary(self) -> str:
        if not self.changed:
            return f"log {self.log_dir}: nothing to repair ({self.records_kept} records intact)"
        lines = [
            f"log {self.log_dir}: repaired; kept {self.records_kept} records "
            f"({self.records_rewritten} rewritten to re-link the hash chain)",
            f"moved {len(self.quarantined)} damaged ranges ({self.bytes_quarantined} bytes) "
            f"to {self.quarantine_file}",
        ]
        lines.extend(
            f"  segment {r.segment} offset {r.offset} ({r.length} bytes): {r.reason} ({r.detail})"
            for r in self.quarantined
        )
        if self.relinked_at:
            lines.append(f"hash chain re-linked at seq {', '.join(map(str, self.relinked_at))}")
        lines.append(f"the log as it was is kept in {self.backup_dir}")
        lines.extend(f"notice: {notice}" for notice in self.notices)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "log_dir": str(self.log_dir),
            "changed": self.changed,
            "records_kept": self.records_kept,
            "records_rewritten": self.records_rewritten,
            "relinked_at": list(self.relinked_at),
            "quarantined": [r.to_dict() for r in self.quarantined],
            "quarantine_file": _str_or_none(self.quarantine_file),
            "quarantine_index": _str_or_none(self.quarantine_index),
            "backup_dir": _str_or_none(self.backup_dir),
            "notices": list(self.notices),
        }


def repair_data_dir(
    data_dir: Path, *, unix_s: Callable[[], int] = lambda: int(time.time())
) -> RepairReport:
    """Repair ``<data_dir>/log``, quarantining into ``<data_dir>/quarantine``."""
    return repair_log(data_dir / LOG_DIR_NAME, data_dir / QUARANTINE_DIR_NAME, unix_s=unix_s)


def repair_log(
    log_dir: Path, quarantine_dir: Path, *, unix_s: Callable[[], int] = lambda: int(time.time())
) -> RepairReport:
    """Repair the log in ``log_dir``; its parent is the data directory, whose lock it takes.

    Raises DataDirLockedError if a daemon (or another repair) holds the lock.
    """
    with DataDirLock(log_dir.parent):
        report = RepairReport(log_dir)
        if complete_interrupted_repair(log_dir):
            report.notices.append("finished an interrupted repair before starting")
        _remove_leftovers(log_dir, report.notices)
        if not log_dir.is_dir():
            report.notices.append("no log directory: nothing to repair")
            return report
        checked = check_log(log_dir)
        if checked.ok and checked.torn_tail is None:
            report.records_kept = checked.records
            return report
        _rewrite(log_dir, quarantine_dir, unix_s(), report)
        return report


def _remove_leftovers(log_dir: Path, notices: list[str]) -> None:
    """Remove what an interrupted repair left that was never swapped in."""
    for leftover in (repair_tmp_dir(log_dir), repair_ready_dir(log_dir)):
        if leftover.exists():
            shutil.rmtree(leftover)
            fsync_dir(leftover.parent)
            notices.append(f"removed {leftover.name} left by an interrupted repair")


def _rewrite(log_dir: Path, quarantine_dir: Path, now_s: int, report: RepairReport) -> None:
    """Write the repaired log and the quarantine, then swap the new log in."""
    tmp = repair_tmp_dir(log_dir)
    tmp.mkdir(mode=0o700)
    segments, others = list_segments(log_dir)
    if others:
        report.notices.append(f"not carried over (kept in the backup): {', '.join(others)}")
    damaged = bytearray()
    rewriter = _Rewriter(report)
    for segment in segments:
        first_seq, kept = rewriter.rewrite_segment(segment, damaged)
        if kept:
            # Named after its first kept record, which may differ from the original name.
            write_new_file_durably(tmp / segment_file_name(first_seq), b"".join(kept))
    fsync_dir(tmp)
    _verify_rewritten(tmp)
    if report.quarantined:
        _write_quarantine(quarantine_dir, now_s, log_dir, bytes(damaged), report)
    ready = repair_ready_dir(log_dir)
    tmp.rename(ready)
    fsync_dir(log_dir.parent)
    backup = unused_path(repair_backup_dir(log_dir, now_s))
    log_dir.rename(backup)
    fsync_dir(log_dir.parent)
    ready.rename(log_dir)
    fsync_dir(log_dir.parent)
    report.backup_dir = backup
    report.changed = True


class _Rewriter:
    """Carries the re-linked chain (``link``) and the original one across segments."""

    def __init__(self, report: RepairReport) -> None:
        self.report = report
        self.link = Link()  # over the records as rewritten
        self.original_hash = GENESIS_HASH  # hash of the previous kept record as it was

    def rewrite_segment(self, segment: SegmentFile, damaged: bytearray) -> tuple[int, list[bytes]]:
        """The first kept seq and the bytes of every record kept from ``segment``.

        Damaged ranges and out-of-order records are appended to ``damaged``.
        """
        buf = read_file(segment.path)
        first_seq = 0
        kept: list[bytes] = []
        for item in scan_segment(buf):
            if isinstance(item, Damage):
                end = item.offset + item.length
                self._quarantine(segment, item.offset, buf[item.offset : end], item, damaged)
                continue
            record = item.record
            if record.seq <= self.link.seq:
                reason = Damage(
                    item.offset,
                    record.size,
                    "seq_not_increasing",
                    f"seq {record.seq} after seq {self.link.seq}",
                )
                self._quarantine(segment, item.offset, record.raw, reason, damaged)
                continue
            if not kept:
                first_seq = record.seq
            kept.append(self._relink(record))
        if self.link.marker is not None:
            # A compacted segment: the next one links to its marker's end_hash, as it was.
            self.original_hash = self.link.marker.end_hash
        self.link.end_segment()
        return first_seq, kept

    def _relink(self, record: Record) -> bytes:
        report = self.report
        if record.prev_hash != self.original_hash:
            report.relinked_at.append(record.seq)
        self.original_hash = record.hash()
        raw = record.raw
        if record.prev_hash != self.link.hash:
            raw = encode_record(
                record.record_type, record.seq, record.timestamp_ms, self.link.hash, record.payload
            )
            report.records_rewritten += 1
        self.link.advance(record)
        self.link.hash = hashlib.sha256(raw).digest()
        report.records_kept += 1
        return raw

    def _quarantine(
        self, segment: SegmentFile, offset: int, data: bytes, why: Damage, damaged: bytearray
    ) -> None:
        self.report.quarantined.append(
            QuarantinedRange(
                segment.path.name, offset, len(data), why.reason, why.detail, len(damaged)
            )
        )
        damaged += data


def _verify_rewritten(tmp: Path) -> None:
    """Check the new log before it replaces the old one: a bug here must not cost a log."""
    checked = check_log(tmp)
    if not checked.ok or checked.torn_tail is not None:
        problems = [p.describe() for p in checked.problems[:3]]
        raise RepairFailedError(f"the repaired log in {tmp} does not check clean: {problems}")


def _write_quarantine(
    quarantine_dir: Path, now_s: int, log_dir: Path, damaged: bytes, report: RepairReport
) -> None:
    make_dir_durable(quarantine_dir)
    data_path = unused_path(quarantine_dir / f"{repair_quarantine_stem(now_s)}.bin")
    index_path = data_path.with_suffix(".json")
    index = {
        "format": REPAIR_INDEX_FORMAT,
        "created_unix_s": now_s,
        "log_dir": str(log_dir),
        "data_file": data_path.name,
        "ranges": [r.to_dict() for r in report.quarantined],
    }
    write_new_file_durably(data_path, damaged)
    write_new_file_durably(index_path, orjson.dumps(index, option=orjson.OPT_INDENT_2))
    report.quarantine_file = data_path
    report.quarantine_index = index_path


def _str_or_none(path: Path | None) -> str | None:
    return None if path is None else str(path)
