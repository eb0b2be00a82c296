"""Compaction: rewrite the log without the records of dead frames, swapped in atomically.

Offline (the caller holds the data directory's lock; ``memoryd compact``).
Every segment but the last (where the next start appends) is *sealed* and
may be rewritten; a segment without a dead record is carried over as it is
(a hard link, no copy).  Dead records:

* a FRAME_PUT whose frame is not live at that seq (deleted, or stored again
  later), or that the pluggable ``frame_dead`` predicate calls dead (expired
  frames, once frames have a time to live; the projection must then also
  treat them as gone);
* every FRAME_DELETE in a sealed segment: the puts it deletes come before it,
  so they are in sealed segments and dead, and dropped in the same pass;
* a compaction marker of an earlier pass, when its segment is rewritten.

Other records (block updates, key rotations, unreadable payloads) are kept.
A rewritten segment keeps its name and its first seq; it gets one
COMPACTION marker at the seq of its first dropped record (marker.py), which
carries the hash and seq the next segment links to, so ``check`` proves the
whole chain as before.

The swap is repair's (FORMAT.md, section 8), safe against a crash at any
point: the new log is written into ``log.repair-tmp/`` and synced, renamed
to ``log.repair-ready/``; the old log is renamed aside, the new one into
place (recovery finishes this step if a crash falls between the two), and
only then is the old one deleted.  After a crash the log is the old one or
the new one, never a mix.  ``fault`` is a test seam called with the name of
each step just before it runs.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memoryd.storage.check import check_log
from memoryd.storage.events import EventError, Frame, decode_frame_put
from memoryd.storage.frame_table import FrameTable
from memoryd.storage.fsio import fsync_dir, read_file, write_new_file_durably
from memoryd.storage.layout import (
    LOG_DIR_NAME,
    QUARANTINE_DIR_NAME,
    repair_ready_dir,
    repair_tmp_dir,
    segment_file_name,
    unused_path,
)
from memoryd.storage.lock import DataDirLock
from memoryd.storage.log import FileLog
from memoryd.storage.marker import CompactionMarker
from memoryd.storage.projection import Projection
from memoryd.storage.record import GENESIS_HASH, Record, RecordType, encode_record
from memoryd.storage.recovery import complete_interrupted_repair
from memoryd.storage.scan import Link, ScannedRecord, scan_segment
from memoryd.storage.segment import SegmentFile, list_segments

FrameDead = Callable[[Frame], bool]
COMPACTION_STEPS = ("written", "ready", "moved_aside", "swapped", "removed_old")

_PUT = int(RecordType.FRAME_PUT)
_DELETE = int(RecordType.FRAME_DELETE)
_COMPACTION = int(RecordType.COMPACTION)


class CompactionFailedError(Exception):
    """Compaction stopped before the swap; the log is unchanged."""


def never_dead(frame: Frame) -> bool:
    return False


def expired_by(now_ms: int) -> FrameDead:
    """Dead: frames whose time to live ended at or before ``now_ms``."""

    def expired(frame: Frame) -> bool:
        return frame.expires_at_ms is not None and frame.expires_at_ms <= now_ms

    return expired


@dataclass(slots=True)
class CompactionReport:
    segments: int = 0
    segments_rewritten: int = 0
    records_before: int = 0
    records_dropped: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    notices: list[str] = field(default_factory=list)

    @property
    def bytes_reclaimed(self) -> int:
        return self.bytes_before - self.bytes_after

    def to_dict(self) -> dict[str, Any]:
        return {
            "segments": self.segments,
            "segments_rewritten": self.segments_rewritten,
            "records_before": self.records_before,
            "records_dropped": self.records_dropped,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "bytes_reclaimed": self.bytes_reclaimed,
            "notices": self.notices,
        }

    def summary(self) -> str:
        return (
            f"compacted {self.segments_rewritten} of {self.segments} segments: dropped "
            f"{self.records_dropped} of {self.records_before} records, reclaimed "
            f"{self.bytes_reclaimed} bytes ({self.bytes_before} -> {self.bytes_after})"
        )


def compact_data_dir(
    data_dir: Path,
    *,
    frame_dead: FrameDead = never_dead,
    fault: Callable[[str], None] | None = None,
) -> CompactionReport:
    """Compact ``<data_dir>/log``.  Raises DataDirLockedError while a daemon runs."""
    with DataDirLock(data_dir):
        return compact_log(data_dir / LOG_DIR_NAME, frame_dead=frame_dead, fault=fault)


def compact_log(
    log_dir: Path,
    *,
    frame_dead: FrameDead = never_dead,
    fault: Callable[[str], None] | None = None,
) -> CompactionReport:
    """Compact the log in ``log_dir`` (the caller holds the data directory's lock)."""
    report = CompactionReport()
    if complete_interrupted_repair(log_dir):
        report.notices.append("finished an interrupted swap before starting")
    for leftover in (repair_tmp_dir(log_dir), repair_ready_dir(log_dir)):
        if leftover.exists():
            shutil.rmtree(leftover)
            fsync_dir(leftover.parent)
            report.notices.append(f"removed {leftover.name} left by an interrupted run")
    live = _live_frames(log_dir)
    segments, _others = list_segments(log_dir)
    report.segments = len(segments)
    tmp = repair_tmp_dir(log_dir)
    tmp.mkdir(mode=0o700)
    end_hash = GENESIS_HASH
    for index, segment in enumerate(segments):
        sealed = index < len(segments) - 1
        end_hash = _carry(segment, sealed, end_hash, live, frame_dead, tmp, report)
    fsync_dir(tmp)
    if report.segments_rewritten == 0:
        shutil.rmtree(tmp)
        report.bytes_after = report.bytes_before
        return report
    checked = check_log(tmp)
    if not checked.ok or checked.torn_tail is not None:
        raise CompactionFailedError(
            f"the compacted log in {tmp} does not check clean: "
            f"{[p.describe() for p in checked.problems[:3]]}"
        )
    _swap(log_dir, tmp, fault or (lambda step: None))
    return report


def _live_frames(log_dir: Path) -> FrameTable:
    """Recover the log (a torn tail is cut) and fold it: where every live frame is."""
    quarantine = log_dir.parent / QUARANTINE_DIR_NAME
    event_log, _recovered = FileLog.open(log_dir, quarantine_dir=quarantine)
    try:
        projection = Projection()
        projection.replay(event_log.read_from(1))
    finally:
        event_log.close()
    return projection.table


def _carry(
    segment: SegmentFile,
    sealed: bool,
    prev_end_hash: bytes,
    live: FrameTable,
    frame_dead: FrameDead,
    tmp: Path,
    report: CompactionReport,
) -> bytes:
    """Put ``segment`` (compacted if sealed and worth it) into ``tmp``; returns its end hash."""
    buf = read_file(segment.path)
    records = [item for item in scan_segment(buf) if isinstance(item, ScannedRecord)]
    link = Link(hash=prev_end_hash)
    for item in records:
        link.advance(item.record)
    old_marker = link.marker
    link.end_segment()
    report.records_before += len(records)
    report.bytes_before += len(buf)
    dead = {item.record.seq for item in records if sealed and _dead(item.record, live, frame_dead)}
    target = tmp / segment.path.name
    if not dead - {r.record.seq for r in records if r.record.record_type == _COMPACTION}:
        os.link(segment.path, target)  # nothing to reclaim: the same bytes, no copy
        report.bytes_after += len(buf)
        return link.hash
    dropped = len(dead) - (1 if old_marker else 0)  # an old marker is replaced, not dropped
    marker = CompactionMarker(
        end_hash=link.hash,
        last_seq=max(records[-1].record.seq, old_marker.last_seq if old_marker else 0),
        records_dropped=dropped + (old_marker.records_dropped if old_marker else 0),
        bytes_before=old_marker.bytes_before if old_marker else len(buf),
    )
    data = _rewrite(records, dead, marker, prev_end_hash)
    write_new_file_durably(target, data)
    report.segments_rewritten += 1
    report.records_dropped += dropped
    report.bytes_after += len(data)
    assert segment_file_name(records[0].record.seq) == segment.path.name
    return link.hash


def _dead(record: Record, live: FrameTable, frame_dead: FrameDead) -> bool:
    if record.record_type in (_DELETE, _COMPACTION):
        return True
    if record.record_type != _PUT:
        return False
    try:
        frame = decode_frame_put(record.payload, record.seq, record.timestamp_ms)
    except EventError:
        return False  # kept, as replay keeps it: reported there
    slot = live.get(frame.id)
    return slot is None or slot.seq != record.seq or frame_dead(frame)


def _rewrite(
    records: list[ScannedRecord], dead: set[int], marker: CompactionMarker, prev_hash: bytes
) -> bytes:
    """The kept records, re-chained, with ``marker`` at the seq of the first dead one."""
    out: list[bytes] = []
    first_dead = min(dead)
    for item in records:
        record = item.record
        if record.seq == first_dead:
            raw = encode_record(
                _COMPACTION, record.seq, record.timestamp_ms, prev_hash, marker.encode()
            )
        elif record.seq in dead:
            continue
        else:
            raw = encode_record(
                record.record_type, record.seq, record.timestamp_ms, prev_hash, record.payload
            )
        out.append(raw)
        prev_hash = Record(0, 0, 0, b"", b"", raw).hash()
    return b"".join(out)


def _swap(log_dir: Path, tmp: Path, fault: Callable[[str], None]) -> None:
    """Repair's swap (FORMAT.md, section 8), then the old log is deleted."""
    parent = log_dir.parent
    fault("written")
    ready = repair_ready_dir(log_dir)
    tmp.rename(ready)
    fsync_dir(parent)
    fault("ready")
    old = unused_path(parent / f"{log_dir.name}.before-compact-{int(time.time())}")
    log_dir.rename(old)
    fsync_dir(parent)
    fault("moved_aside")
    ready.rename(log_dir)
    fsync_dir(parent)
    fault("swapped")
    shutil.rmtree(old)
    fsync_dir(parent)
    fault("removed_old")
