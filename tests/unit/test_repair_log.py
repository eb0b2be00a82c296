"""repair: keeps every valid record, quarantines exactly the bad bytes, then check is ok."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import orjson
import pytest

from memoryd.storage import (
    DataDirLock,
    DataDirLockedError,
    FileLog,
    check_log,
    repair_data_dir,
    repair_log,
)
from memoryd.storage.layout import repair_ready_dir, repair_tmp_dir, segment_file_name
from memoryd.storage.record import RecordType

PUT = int(RecordType.FRAME_PUT)
RECORD_BYTES = 100
NOW_S = 1_700_000_000


def events(n: int, start: int = 0) -> list[tuple[int, int, bytes]]:
    return [(PUT, 1_000 + i, f"{i:036d}".encode()) for i in range(start, start + n)]


def write_log(log_dir: Path, n: int) -> dict[int, tuple[int, int, bytes]]:
    """``n`` records, two per segment; returns seq -> (type, timestamp, payload)."""
    log, _ = FileLog.open(log_dir, segment_bytes_max=2 * RECORD_BYTES)
    log.append(events(n))
    log.close()
    return {i + 1: e for i, e in enumerate(events(n))}


def read_back(log_dir: Path) -> dict[int, tuple[int, int, bytes]]:
    log, report = FileLog.open(log_dir)
    assert report.torn_tail is None
    entries = {
        e.record.seq: (e.record.record_type, e.record.timestamp_ms, e.record.payload)
        for e in log.read_from(1)
    }
    log.close()
    return entries


def damage(path: Path, offset: int, fix_crc_of_record_at: int | None = None) -> bytes:
    """Flip one byte; returns the segment's bytes after the edit."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    if fix_crc_of_record_at is not None:
        end = fix_crc_of_record_at + RECORD_BYTES - 4
        struct.pack_into("<I", data, end, zlib.crc32(data[fix_crc_of_record_at:end]))
    path.write_bytes(bytes(data))
    return bytes(data)


def tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def test_repair_keeps_every_valid_record_and_quarantines_exactly_the_bad_bytes(
    tmp_path: Path,
) -> None:
    log_dir = tmp_path / "log"
    written = write_log(log_dir, 10)  # segments 1, 3, 5, 7, 9
    seg1 = damage(log_dir / segment_file_name(1), RECORD_BYTES + 50)  # record 2: bad CRC
    damage(log_dir / segment_file_name(5), 70, fix_crc_of_record_at=0)  # record 5 edited
    seg7 = damage(log_dir / segment_file_name(7), 0)  # record 7: bad magic
    seg9 = log_dir / segment_file_name(9)
    seg9.write_bytes(seg9.read_bytes() + b"torn!")  # a torn tail after record 10
    original = tree(log_dir)

    report = repair_log(log_dir, tmp_path / "quarantine", unix_s=lambda: NOW_S)

    assert report.changed
    expected_bad = seg1[RECORD_BYTES : 2 * RECORD_BYTES] + seg7[:RECORD_BYTES] + b"torn!"
    assert report.quarantine_file == tmp_path / "quarantine" / f"repair-{NOW_S}.bin"
    assert report.quarantine_file.read_bytes() == expected_bad
    index = orjson.loads((tmp_path / "quarantine" / f"repair-{NOW_S}.json").read_bytes())
    assert [
        (r["segment"], r["offset"], r["length"], r["reason"], r["quarantine_offset"])
        for r in index["ranges"]
    ] == [
        (segment_file_name(1), RECORD_BYTES, RECORD_BYTES, "bad_crc", 0),
        (segment_file_name(7), 0, RECORD_BYTES, "bad_magic", RECORD_BYTES),
        (segment_file_name(9), 2 * RECORD_BYTES, 5, "truncated", 2 * RECORD_BYTES),
    ]
    assert report.relinked_at == [3, 6, 8]  # after record 2's range, the edit, record 7's range
    assert report.records_kept == 8

    assert check_log(log_dir).ok
    edited_payload = bytearray(written[5][2])
    edited_payload[10] ^= 0xFF  # offset 70 of the record is byte 10 of its payload
    kept = {seq: e for seq, e in written.items() if seq not in (2, 7)}
    kept[5] = (kept[5][0], kept[5][1], bytes(edited_payload))
    assert read_back(log_dir) == kept
    assert report.backup_dir == tmp_path / f"log.before-repair-{NOW_S}"
    assert tree(report.backup_dir) == original

    log, _ = FileLog.open(log_dir)
    assert log.append(events(1, start=10))[0].seq == 11
    log.close()
    assert check_log(log_dir).ok


def test_repair_renames_a_segment_whose_first_record_was_damaged(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    write_log(log_dir, 6)
    damage(log_dir / segment_file_name(3), 20)  # record 3, first of segment 3
    report = repair_log(log_dir, tmp_path / "quarantine", unix_s=lambda: NOW_S)
    assert sorted(p.name for p in log_dir.iterdir()) == [segment_file_name(s) for s in (1, 4, 5)]
    assert report.records_kept == 5
    assert check_log(log_dir).ok
    assert sorted(read_back(log_dir)) == [1, 2, 4, 5, 6]


def test_repair_quarantines_a_record_whose_seq_does_not_increase(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    log, _ = FileLog.open(log_dir)
    log.append(events(3))
    log.close()
    segment = log_dir / segment_file_name(1)
    data = segment.read_bytes()
    duplicate = data[:RECORD_BYTES]
    segment.write_bytes(data + duplicate)
    report = repair_log(log_dir, tmp_path / "quarantine", unix_s=lambda: NOW_S)
    assert [(r.offset, r.reason) for r in report.quarantined] == [
        (3 * RECORD_BYTES, "seq_not_increasing")
    ]
    assert report.quarantine_file is not None and report.quarantine_file.read_bytes() == duplicate
    assert sorted(read_back(log_dir)) == [1, 2, 3]


def test_repair_of_a_healthy_log_changes_nothing(tmp_path: Path) -> None:
    write_log(tmp_path / "log", 5)
    before = tree(tmp_path)
    report = repair_data_dir(tmp_path, unix_s=lambda: NOW_S)
    assert not report.changed
    assert report.records_kept == 5
    assert "nothing to repair" in report.summary()
    assert tree(tmp_path) == {**before, "LOCK": (tmp_path / "LOCK").read_bytes()}


def test_repair_refuses_while_the_data_dir_is_locked(tmp_path: Path) -> None:
    write_log(tmp_path / "log", 3)
    damage(tmp_path / "log" / segment_file_name(1), 5)
    with DataDirLock(tmp_path):
        before = tree(tmp_path)
        with pytest.raises(DataDirLockedError):
            repair_data_dir(tmp_path)
        assert tree(tmp_path) == before
    assert repair_data_dir(tmp_path, unix_s=lambda: NOW_S).changed


def test_repair_removes_what_an_interrupted_repair_left(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    write_log(log_dir, 3)
    damage(log_dir / segment_file_name(1), 5)
    repair_tmp_dir(log_dir).mkdir()
    (repair_tmp_dir(log_dir) / segment_file_name(1)).write_bytes(b"half written")
    repair_ready_dir(log_dir).mkdir()
    report = repair_log(log_dir, tmp_path / "quarantine", unix_s=lambda: NOW_S)
    assert not repair_tmp_dir(log_dir).exists()
    assert not repair_ready_dir(log_dir).exists()
    assert len([n for n in report.notices if "interrupted repair" in n]) == 2
    assert check_log(log_dir).ok


def test_a_log_whose_repair_was_cut_before_the_swap_still_opens_as_before(tmp_path: Path) -> None:
    """A crash after the new log was written but before it was swapped in changes nothing."""
    log_dir = tmp_path / "log"
    written = write_log(log_dir, 4)
    repair_tmp_dir(log_dir).mkdir()
    (repair_tmp_dir(log_dir) / segment_file_name(1)).write_bytes(b"garbage")
    assert read_back(log_dir) == written


def test_repair_report_summary_and_dict(tmp_path: Path) -> None:
    write_log(tmp_path / "log", 4)
    damage(tmp_path / "log" / segment_file_name(1), 70)  # a payload byte
    report = repair_data_dir(tmp_path, unix_s=lambda: NOW_S)
    summary = report.summary()
    assert "kept 3 records" in summary
    assert f"offset 0 ({RECORD_BYTES} bytes): bad_crc" in summary
    as_dict = orjson.loads(orjson.dumps(report.to_dict()))
    assert as_dict["changed"] is True
    assert as_dict["quarantine_file"] == str(tmp_path / "quarantine" / f"repair-{NOW_S}.bin")
