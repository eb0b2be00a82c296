"""Recovery: verify the whole log before it is opened, and cut a torn tail.

Run by ``FileLog.open``.  Reads every segment in seq order and verifies every
record's CRC, that seqs strictly increase (a gap is allowed and reported: repair
can leave one), that each segment's name is the seq of its first record, and
the hash chain across segment boundaries.

A crash can only leave damage at the very end of the last segment, because
the writer syncs a segment before it starts the next one.  So:

* Damage at the end of the last segment with no valid record after it is a
  *torn tail*: its bytes are copied to the quarantine directory (and synced),
  then the segment is truncated to where the damage starts (and synced).
* Any other problem is *corruption*: LogCorruptionError is raised and nothing
  is changed.  A start never drops a valid record.

Given a ``TrustedPrefix`` (what a checkpoint of derived state vouches for:
the log as it was when the checkpoint was written, which that run had
verified at its own start or appended itself), recovery skips the sealed
segments before the one holding the checkpoint's record when the files
still match it exactly (same segments, same sizes, and that record, with
the same hash, where it was); it verifies that segment and every later one
in full, as always (the first record's link to the skipped segment is
taken as written).  When that segment is the last one (the one being
written, which compaction never rewrites) and its bytes before the
checkpoint's record still have the CRC-32 the checkpoint noted, verifying
starts at that record; a mismatch means verifying that segment whole, which
names the damaged record.
Every record read later is still checked (CRC) when read, and
``memoryd check`` verifies the whole log offline.  When anything
differs, the whole log is verified, as without a prefix.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from memoryd.storage.errors import LogCorruptionError
from memoryd.storage.fsio import (
    fsync_dir,
    make_dir_durable,
    pread_exact,
    read_file,
    write_new_file_durably,
)
from memoryd.storage.layout import (
    repair_ready_dir,
    repair_tmp_dir,
    torn_tail_file_name,
    unused_path,
)
from memoryd.storage.record import GENESIS_HASH, RecordError, decode_record
from memoryd.storage.scan import Damage, Link, scan_segment
from memoryd.storage.segment import SegmentFile, list_segments


@dataclass(frozen=True, slots=True)
class TornTail:
    """A torn tail that recovery cut from the last segment and saved to quarantine."""

    segment: Path
    offset: int
    bytes_dropped: int
    saved_to: Path
    reason: str

    def describe(self) -> str:
        return (
            f"dropped a torn tail of {self.bytes_dropped} bytes at offset {self.offset} "
            f"of segment {self.segment.name} ({self.reason}); saved to {self.saved_to}"
        )


@dataclass(slots=True)
class RecoveryReport:
    """What recovery found; ``last_seq``/``last_hash`` are where the next append links."""

    segments: int = 0
    records: int = 0
    last_seq: int = 0
    last_hash: bytes = GENESIS_HASH
    torn_tail: TornTail | None = None
    notices: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TrustedPrefix:
    """The log up to one record, as a checkpoint saw it (see the module docstring).

    ``segments``: (first_seq, size) of every segment before segment ``segment``,
    which holds the record of ``seq`` at ``offset`` (``length`` bytes) whose
    SHA-256 is ``hash``.
    """

    segments: tuple[tuple[int, int], ...]
    seq: int
    segment: int
    offset: int
    length: int
    hash: bytes
    # CRC-32 of segment ``segment``'s bytes before ``offset``, when known: lets
    # recovery start at the record in that segment too (if it is the last one).
    before_crc32: int | None = None


def recover_log(
    log_dir: Path, quarantine_dir: Path, trusted: TrustedPrefix | None = None
) -> RecoveryReport:
    """Verify the log in ``log_dir`` and cut a torn tail; create ``log_dir`` if missing.

    With ``trusted``, the prefix it describes is not verified again when the
    files still match it.  Raises LogCorruptionError (changing nothing) when
    the log is damaged other than by a torn tail.  The caller must hold the
    data directory's lock.
    """
    report = RecoveryReport()
    _prepare_log_dir(log_dir, report.notices)
    segments, others = list_segments(log_dir)
    report.notices.extend(f"ignored {name!r} in {log_dir}: not a segment file" for name in others)
    link = Link()
    start_index = 0
    start_offset = 0
    before_crc32: int | None = None
    if trusted is not None:
        start = _trusted_start(segments, trusted)
        if start is None:
            report.notices.append(
                "the log does not match the checkpoint's view of it: verified the whole log"
            )
        else:
            start_index = start
            # In the segment being written (never compacted), the records before the
            # checkpoint's are vouched for by their CRC-32: if it matches, verifying
            # starts at that record (else that segment is verified whole).
            if start == len(segments) - 1 and trusted.before_crc32 is not None:
                start_offset = trusted.offset
                before_crc32 = trusted.before_crc32
            report.notices.append(
                f"verified the log from segment {segments[start].path.name}"
                + (f" offset {start_offset}" if start_offset else "")
                + f"; the checkpoint vouches for the {start} sealed segments before it"
                + (" and (by CRC-32) for the records before that offset" if start_offset else "")
            )
    for index, segment in enumerate(segments):
        if index < start_index:
            continue
        is_last = index == len(segments) - 1
        first = index == start_index
        report.records += _verify_segment(
            segment,
            is_last,
            link,
            quarantine_dir,
            report,
            adopt_link=first and start_index > 0,
            start=(start_offset, before_crc32) if first and start_offset else None,
        )
    report.segments = len(segments)
    if segments and _remove_misnamed_empty_tail(segments[-1], link.seq, report.notices):
        report.segments -= 1
    report.last_seq = link.seq
    report.last_hash = link.hash
    return report


def _prepare_log_dir(log_dir: Path, notices: list[str]) -> None:
    """Finish a repair interrupted between its two renames, else make sure the log dir exists."""
    if complete_interrupted_repair(log_dir):
        notices.append(f"finished an interrupted repair: moved {repair_ready_dir(log_dir).name} in")
    elif repair_ready_dir(log_dir).exists():
        notices.append(
            f"ignored {repair_ready_dir(log_dir).name}: a repair that never replaced the log"
        )
    if repair_tmp_dir(log_dir).exists():
        notices.append(f"ignored {repair_tmp_dir(log_dir).name}: an interrupted repair's work")
    make_dir_durable(log_dir)


def complete_interrupted_repair(log_dir: Path) -> bool:
    """If repair moved the old log aside but crashed before moving the new one in, move it in.

    The repaired log is only renamed to its "ready" name once complete and
    synced (repair.py), so it is safe to adopt.  Returns whether it did.
    """
    ready = repair_ready_dir(log_dir)
    if log_dir.exists() or not ready.is_dir():
        return False
    os.rename(ready, log_dir)
    fsync_dir(log_dir.parent)
    return True


def _trusted_start(segments: list[SegmentFile], trusted: TrustedPrefix) -> int | None:
    """The index of the segment where verifying starts, or None if the files differ."""
    firsts = [s.first_seq for s in segments]
    if trusted.segment not in firsts:
        return None
    index = firsts.index(trusted.segment)
    if [(s.first_seq, s.size) for s in segments[:index]] != list(trusted.segments):
        return None
    segment = segments[index]
    end = trusted.offset + trusted.length
    if segment.size < end:
        return None
    fd = os.open(segment.path, os.O_RDONLY)
    try:
        data = pread_exact(fd, trusted.length, trusted.offset)
    finally:
        os.close(fd)
    try:
        record = decode_record(data)
    except RecordError:
        return None
    if record.seq != trusted.seq or hashlib.sha256(record.raw).digest() != trusted.hash:
        return None
    return index


def _verify_segment(
    segment: SegmentFile,
    is_last: bool,
    link: Link,
    quarantine_dir: Path,
    report: RecoveryReport,
    adopt_link: bool = False,
    start: tuple[int, int | None] | None = None,
) -> int:
    """Verify one segment against ``link`` (advancing it); returns how many records
    it verified.

    ``adopt_link``: the segments before were not read, so the link is taken from
    this segment's first record (its seq - 1 and its prev_hash).  ``start``:
    ``(offset, crc32)``, a record boundary a checkpoint vouches for and the CRC-32
    of the bytes before it; when they still match, verifying starts there, the
    link taken from that record.
    """
    buf = read_file(segment.path)
    start_offset = 0
    if start is not None:
        offset, crc = start
        if offset <= len(buf) and zlib.crc32(memoryview(buf)[:offset]) == crc:
            start_offset, adopt_link = offset, True
        else:
            report.notices.append(
                f"segment {segment.path.name} changed before offset {offset} since the "
                "checkpoint: verified it whole"
            )
    if adopt_link and len(buf) > start_offset:
        try:
            first = decode_record(buf, start_offset)
        except RecordError:
            pass  # the scan below reports the damage
        else:
            link.seq, link.hash = first.seq - 1, first.prev_hash
    if start_offset == 0 and segment.first_seq <= link.seq:
        raise LogCorruptionError(
            segment.path, 0, "segment_name", f"named {segment.first_seq} after seq {link.seq}"
        )
    if not buf and not is_last:
        report.notices.append(f"segment {segment.path.name} is empty")
    records = 0
    for item in scan_segment(buf, start_offset):
        if isinstance(item, Damage):
            if is_last and item.offset + item.length == len(buf):
                report.torn_tail = _cut_torn_tail(segment, buf, item, quarantine_dir)
                break
            raise LogCorruptionError(segment.path, item.offset, item.reason, item.detail)
        record = item.record
        if item.offset == 0 and record.seq != segment.first_seq:
            raise LogCorruptionError(
                segment.path, 0, "segment_name", f"first record has seq {record.seq}"
            )
        problem = link.problem(record)
        if problem is not None:
            raise LogCorruptionError(segment.path, item.offset, *problem)
        if link.gap(record):
            report.notices.append(
                f"seqs {link.seq + 1}..{record.seq - 1} are missing before offset "
                f"{item.offset} of segment {segment.path.name} (left by a repair)"
            )
        link.advance(record)
        records += 1
    link.end_segment()
    return records


def _cut_torn_tail(
    segment: SegmentFile, buf: bytes, damage: Damage, quarantine_dir: Path
) -> TornTail:
    """Save the torn bytes to quarantine, durably, and only then truncate them away."""
    make_dir_durable(quarantine_dir)
    saved_to = unused_path(quarantine_dir / torn_tail_file_name(segment.first_seq, damage.offset))
    write_new_file_durably(saved_to, buf[damage.offset :])
    fd = os.open(segment.path, os.O_WRONLY)
    try:
        os.ftruncate(fd, damage.offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    return TornTail(segment.path, damage.offset, damage.length, saved_to, damage.reason)


def _remove_misnamed_empty_tail(segment: SegmentFile, last_seq: int, notices: list[str]) -> bool:
    """Remove an empty last segment whose name is not the next seq (appends would misname it).

    Only a crash between creating a segment and writing it, followed by a cut,
    leaves an empty last segment, and then its name is the next seq; this
    guards the naming rule rather than an expected case.
    """
    if segment.first_seq == last_seq + 1 or segment.path.stat().st_size != 0:
        return False
    segment.path.unlink()
    fsync_dir(segment.path.parent)
    notices.append(f"removed empty segment {segment.path.name}: not named after the next seq")
    return True
