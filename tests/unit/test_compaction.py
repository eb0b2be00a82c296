"""Compaction on real files: what it drops, what it keeps, the chain, and crashes at each step."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from memoryd.storage import DataDirLock, DataDirLockedError, FileLog, check_log, repair_data_dir
from memoryd.storage.compaction import COMPACTION_STEPS, compact_data_dir, expired_by
from memoryd.storage.events import Frame, encode_frame_delete, encode_frame_put, frame_id
from memoryd.storage.layout import repair_ready_dir, repair_tmp_dir
from memoryd.storage.marker import CompactionMarker
from memoryd.storage.projection import Projection, frame_at
from memoryd.storage.record import RECORD_HEADER_BYTES, RecordType, decode_record

PUT = int(RecordType.FRAME_PUT)
DELETE = int(RecordType.FRAME_DELETE)
SEGMENT_BYTES_MAX = 2048


class CrashError(Exception):
    """Stands for the process dying at a step (nothing after it runs)."""


def frame(n: int) -> Frame:
    content = f"memory number {n} " + "x" * 40
    return Frame(frame_id("ns", "note", content), 0, 1_000 + n, "ns", "note", content)


def build(data_dir: Path, deletes: list[int], puts: int = 40) -> dict[str, Frame]:
    """``puts`` frames over many small segments, then deletes of some; a tail put last."""
    log, _ = FileLog.open(data_dir / "log", segment_bytes_max=SEGMENT_BYTES_MAX)
    frames = [frame(n) for n in range(puts)]
    log.append([(PUT, f.timestamp_ms, encode_frame_put(f)) for f in frames])
    log.append([(DELETE, 5_000, encode_frame_delete(frames[n].id)) for n in deletes])
    tail = frame(puts)
    log.append([(PUT, tail.timestamp_ms, encode_frame_put(tail))])
    log.close()
    return live(data_dir)


def live(data_dir: Path) -> dict[str, Frame]:
    """Every live frame (seq, time and all) as a fresh start folds it from the log."""
    log, _ = FileLog.open(data_dir / "log", segment_bytes_max=SEGMENT_BYTES_MAX)
    try:
        projection = Projection()
        projection.replay(log.read_from(1))
        return {
            fid: frame_at(log, slot)
            for fid in [frame(n).id for n in range(200)]
            if (slot := projection.table.get(fid)) is not None
        }
    finally:
        log.close()


def deletions_in_last_segment(data_dir: Path) -> int:
    data = sorted((data_dir / "log").iterdir())[-1].read_bytes()
    offset = count = 0
    while offset < len(data):
        record = decode_record(data, offset)
        count += record.record_type == DELETE
        offset += record.size
    return count


def log_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in (data_dir / "log").iterdir())


def test_compaction_drops_deleted_frames_and_keeps_every_live_one_exactly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    before = build(data_dir, deletes=list(range(0, 40, 2)))
    size_before = log_bytes(data_dir)
    report = compact_data_dir(data_dir)
    # 20 puts and their deletions, but for those in the last segment (where appends go).
    assert report.records_dropped == 40 - deletions_in_last_segment(data_dir)
    assert report.segments_rewritten > 0 and report.bytes_reclaimed > 0
    assert log_bytes(data_dir) == report.bytes_after < size_before
    assert live(data_dir) == before  # ids, seqs, times, contents
    checked = check_log(data_dir / "log")
    assert checked.ok and not checked.notices, checked.problems
    assert checked.records_by_type["compaction"] == report.segments_rewritten
    assert not repair_tmp_dir(data_dir / "log").exists()
    assert sorted(p.name for p in data_dir.iterdir()) == ["LOCK", "log"]

    # The log goes on: appends link to it, and a second pass compacts compacted segments.
    leftover = deletions_in_last_segment(data_dir)  # sealed by the appends below
    log, recovered = FileLog.open(data_dir / "log", segment_bytes_max=SEGMENT_BYTES_MAX)
    assert recovered.last_seq == 61
    doomed = [f for f in before.values() if f.seq < 30]
    log.append([(DELETE, 6_000, encode_frame_delete(f.id)) for f in doomed])
    log.append([(PUT, 7_000, encode_frame_put(frame(100)))])
    log.close()
    expected = live(data_dir)
    second = compact_data_dir(data_dir)
    assert second.records_dropped == (
        2 * len(doomed) + leftover - deletions_in_last_segment(data_dir)
    )
    assert live(data_dir) == expected
    assert check_log(data_dir / "log").ok
    assert compact_data_dir(data_dir).segments_rewritten == 0  # nothing more to reclaim


def test_a_frame_stored_again_after_its_deletion_keeps_only_its_last_put(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    log, _ = FileLog.open(data_dir / "log", segment_bytes_max=SEGMENT_BYTES_MAX)
    again = frame(1)
    log.append(
        [(PUT, 1, encode_frame_put(again))]
        + [(PUT, 2, encode_frame_put(frame(n))) for n in range(2, 30)]
    )
    log.append([(DELETE, 3, encode_frame_delete(again.id))])
    log.append([(PUT, 4, encode_frame_put(again))])
    log.append([(PUT, 5, encode_frame_put(frame(99)))])
    log.close()
    before = live(data_dir)
    assert before[again.id].seq == 31
    # The first put goes; the deletion stays while it is in the last segment.
    dropped = compact_data_dir(data_dir).records_dropped
    assert dropped == 2 - deletions_in_last_segment(data_dir)
    assert live(data_dir) == before
    first = sorted((data_dir / "log").iterdir())[0].read_bytes()
    assert decode_record(first).record_type == RecordType.COMPACTION


def test_the_marker_is_proved_by_the_chain(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    build(data_dir, deletes=[3])
    compact_data_dir(data_dir)
    for path in sorted((data_dir / "log").iterdir()):
        data = bytearray(path.read_bytes())
        offset = 0
        while offset < len(data):
            record = decode_record(bytes(data), offset)
            if record.record_type == RecordType.COMPACTION:
                marker = CompactionMarker.decode(record.payload)
                forged = CompactionMarker(b"\x01" * 32, marker.last_seq, 0, 0).encode()
                assert len(forged) <= len(record.payload)
                # Same length (the JSON has room), CRC fixed: only the chain can tell.
                payload = forged.ljust(len(record.payload), b" ")
                start = offset + RECORD_HEADER_BYTES
                data[start : start + len(payload)] = payload
                end = offset + record.size - 4
                struct.pack_into("<I", data, end, zlib.crc32(data[offset:end]))
                path.write_bytes(bytes(data))
                checked = check_log(data_dir / "log")
                # The next segment's first record no longer links (and any after the marker).
                assert checked.problems and {p.reason for p in checked.problems} == {"chain_break"}
                assert checked.problems[-1].segment != path
                return
            offset += record.size
    raise AssertionError("no compaction marker found")


@pytest.mark.parametrize("step", COMPACTION_STEPS)
def test_a_crash_at_any_step_leaves_the_old_or_the_new_log(tmp_path: Path, step: str) -> None:
    data_dir = tmp_path / "data"
    before = build(data_dir, deletes=list(range(0, 40, 3)))
    old_size = log_bytes(data_dir)

    def crash(at: str) -> None:
        if at == step:
            raise CrashError(at)

    with pytest.raises(CrashError):
        compact_data_dir(data_dir, fault=crash)
    # The next start: recovery finishes a swap cut between its renames.
    assert live(data_dir) == before
    checked = check_log(data_dir / "log")
    assert checked.ok, checked.problems
    swapped = COMPACTION_STEPS.index(step) >= COMPACTION_STEPS.index("moved_aside")
    assert (log_bytes(data_dir) < old_size) == swapped
    # And a later compaction cleans up and finishes the job.
    compact_data_dir(data_dir)
    assert live(data_dir) == before
    assert not repair_ready_dir(data_dir / "log").exists()
    assert check_log(data_dir / "log").ok


def test_compaction_refuses_a_running_daemon_and_repair_keeps_the_chain(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    before = build(data_dir, deletes=[0, 5, 9])
    with DataDirLock(data_dir), pytest.raises(DataDirLockedError):
        compact_data_dir(data_dir)
    compact_data_dir(data_dir)
    # Damage the last segment's middle: repair re-links across the compacted segments.
    last = sorted((data_dir / "log").iterdir())[-2]
    data = bytearray(last.read_bytes())
    data[RECORD_HEADER_BYTES + 3] ^= 0xFF
    last.write_bytes(bytes(data))
    assert not check_log(data_dir / "log").ok
    repair_data_dir(data_dir)
    assert check_log(data_dir / "log").ok
    assert len(live(data_dir)) == len(before) - 1


def test_expired_frames_are_dropped_and_unexpired_ones_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    log, _ = FileLog.open(data_dir / "log", segment_bytes_max=SEGMENT_BYTES_MAX)
    frames = [frame(n) for n in range(30)]
    for n, f in enumerate(frames):
        f.expires_at_ms = 10_000 if n % 3 == 0 else (20_000 if n % 3 == 1 else None)
    log.append([(PUT, f.timestamp_ms, encode_frame_put(f)) for f in frames])
    tail = frame(30)
    log.append([(PUT, tail.timestamp_ms, encode_frame_put(tail))])
    log.close()

    report = compact_data_dir(data_dir, frame_dead=expired_by(15_000))
    assert report.bytes_reclaimed > 0
    kept = live(data_dir)
    # Expired at 10 s: gone unless in the last (never rewritten) segment; the rest kept.
    expired = {f.id for n, f in enumerate(frames) if n % 3 == 0}
    unexpired = {f.id for n, f in enumerate(frames) if n % 3 != 0}
    assert unexpired <= set(kept)
    assert len(expired & set(kept)) < len(expired) // 2
    assert check_log(data_dir / "log").ok
