"""check: every problem in one pass, totals, torn tail apart, read-only, agrees with open."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import orjson
import pytest

from memoryd.storage import FileLog, LogCorruptionError, check_data_dir, check_log
from memoryd.storage.layout import segment_file_name
from memoryd.storage.record import RecordType

PUT = int(RecordType.FRAME_PUT)
DELETE = int(RecordType.FRAME_DELETE)
RECORD_BYTES = 100


def events(n: int, start: int = 0) -> list[tuple[int, int, bytes]]:
    return [
        (DELETE if i % 4 == 3 else PUT, 1_000 + i, f"{i:036d}".encode())
        for i in range(start, start + n)
    ]


def write_log(log_dir: Path, n: int) -> None:
    """``n`` records, two per segment: segments 1, 3, 5, ..."""
    log, _ = FileLog.open(log_dir, segment_bytes_max=2 * RECORD_BYTES)
    log.append(events(n))
    log.close()


def edit(path: Path, offset: int, fix_crc_of_record_at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    if fix_crc_of_record_at is not None:
        end = fix_crc_of_record_at + RECORD_BYTES - 4
        struct.pack_into("<I", data, end, zlib.crc32(data[fix_crc_of_record_at:end]))
    path.write_bytes(bytes(data))


def tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def test_a_healthy_log_is_ok_with_totals(tmp_path: Path) -> None:
    write_log(tmp_path / "log", 7)
    report = check_log(tmp_path / "log")
    assert report.ok
    assert report.problems == [] and report.torn_tail is None
    assert (report.segments, report.records, report.log_bytes) == (4, 7, 700)
    assert (report.first_seq, report.last_seq) == (1, 7)
    assert report.records_by_type == {"frame_put": 6, "frame_delete": 1}
    assert "OK" in report.summary()
    assert orjson.loads(orjson.dumps(report.to_dict()))["records"] == 7


def test_check_reports_every_problem_not_just_the_first(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    write_log(log_dir, 10)  # segments 1, 3, 5, 7, 9 with two records each
    edit(log_dir / segment_file_name(1), RECORD_BYTES + 70)  # record 2: bad CRC
    edit(log_dir / segment_file_name(5), 70, fix_crc_of_record_at=0)  # record 5 edited, CRC fixed
    edit(log_dir / segment_file_name(7), 3)  # record 7: bad magic
    last = log_dir / segment_file_name(9)
    last.write_bytes(last.read_bytes()[: RECORD_BYTES + 40])  # record 10 torn
    before = tree(tmp_path)

    report = check_log(log_dir)

    assert not report.ok
    assert [(p.segment.name, p.offset, p.length, p.reason) for p in report.problems] == [
        (segment_file_name(1), RECORD_BYTES, RECORD_BYTES, "bad_crc"),
        (segment_file_name(5), RECORD_BYTES, RECORD_BYTES, "chain_break"),
        (segment_file_name(7), 0, RECORD_BYTES, "bad_magic"),
    ]
    torn = report.torn_tail
    assert torn is not None
    assert (torn.segment.name, torn.offset, torn.length) == (segment_file_name(9), RECORD_BYTES, 40)
    assert report.records == 7  # 1, 3, 4, 5, 6, 8, 9
    assert (report.first_seq, report.last_seq) == (1, 9)
    summary = report.summary()
    assert "CORRUPT: 3 problems" in summary
    assert f"segment {segment_file_name(5)} offset 100 (100 bytes): chain_break" in summary
    assert tree(tmp_path) == before  # read-only


def test_a_duplicated_record_is_reported_and_the_chain_continues_past_it(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    log, _ = FileLog.open(log_dir)
    log.append(events(4))
    log.close()
    segment = log_dir / segment_file_name(1)
    data = segment.read_bytes()
    segment.write_bytes(
        data[: 2 * RECORD_BYTES] + data[RECORD_BYTES : 2 * RECORD_BYTES] + data[2 * RECORD_BYTES :]
    )
    report = check_log(log_dir)
    assert [(p.offset, p.reason) for p in report.problems] == [
        (2 * RECORD_BYTES, "seq_not_increasing")
    ]
    assert report.records == 4


def test_ok_means_open_succeeds_and_a_torn_tail_alone_is_ok(tmp_path: Path) -> None:
    log_dir = tmp_path / "torn" / "log"
    write_log(log_dir, 3)
    last = log_dir / segment_file_name(3)
    last.write_bytes(last.read_bytes() + b"\x00" * 50)
    report = check_log(log_dir)
    assert report.ok and report.torn_tail is not None
    assert "torn tail" in report.summary()
    FileLog.open(log_dir)[0].close()

    log_dir = tmp_path / "corrupt" / "log"
    write_log(log_dir, 3)
    edit(log_dir / segment_file_name(1), 10)
    assert not check_log(log_dir).ok
    with pytest.raises(LogCorruptionError):
        FileLog.open(log_dir)


def test_check_data_dir_finds_the_log_inside(tmp_path: Path) -> None:
    write_log(tmp_path / "log", 2)
    report = check_data_dir(tmp_path)
    assert report.ok and report.records == 2
    assert report.log_dir == tmp_path / "log"


def test_check_of_a_data_dir_without_a_log_is_empty_and_ok(tmp_path: Path) -> None:
    report = check_data_dir(tmp_path)
    assert report.ok and report.records == 0
    assert report.notices == ["no log directory: nothing has been written yet"]
    assert not (tmp_path / "log").exists()


def test_check_of_a_missing_data_dir_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        check_data_dir(tmp_path / "nowhere")
