"""Recovery, tested by editing the bytes of real log files (LevelDB's log_test style).

The pristine log: five 100-byte records, seq 1..5, in one segment; record i
starts at offset 100 * (i - 1).  Each case edits a copy and asserts exactly
what ``FileLog.open`` returns, reports and leaves on disk.
"""

from __future__ import annotations

import hashlib
import random
import struct
import zlib
from pathlib import Path

import pytest

from memoryd.storage import FileLog, LogCorruptionError, RecoveryReport
from memoryd.storage.layout import repair_ready_dir, repair_tmp_dir, segment_file_name
from memoryd.storage.record import GENESIS_HASH, RecordType, encode_record

PUT = int(RecordType.FRAME_PUT)
RECORDS = 5
RECORD_BYTES = 100
LAST = (RECORDS - 1) * RECORD_BYTES  # offset of the last record
MIDDLE = 2 * RECORD_BYTES  # offset of record 3
SEGMENT_1 = segment_file_name(1)


def events(n: int, start: int = 0) -> list[tuple[int, int, bytes]]:
    return [(PUT, 1_000 + i, f"{i:036d}".encode()) for i in range(start, start + n)]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    log_dir = tmp_path_factory.mktemp("pristine") / "log"
    log, _ = FileLog.open(log_dir)
    log.append(events(RECORDS))
    log.close()
    data = (log_dir / SEGMENT_1).read_bytes()
    assert len(data) == RECORDS * RECORD_BYTES
    return data


def make_log(data_dir: Path, segments: dict[str, bytes]) -> Path:
    log_dir = data_dir / "log"
    log_dir.mkdir(parents=True)
    for name, data in segments.items():
        (log_dir / name).write_bytes(data)
    return log_dir


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and directory under ``root``."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def open_and_read(log_dir: Path) -> tuple[RecoveryReport, list[bytes]]:
    log, report = FileLog.open(log_dir)
    raws = [e.record.raw for e in log.read_from(1)]
    log._check()
    log.close()
    return report, raws


def records_of(data: bytes, n: int) -> list[bytes]:
    return [data[i * RECORD_BYTES : (i + 1) * RECORD_BYTES] for i in range(n)]


def flipped(data: bytes, offset: int) -> bytes:
    edited = bytearray(data)
    edited[offset] ^= 0xFF
    return bytes(edited)


def with_crc_fixed(data: bytes, record_offset: int) -> bytes:
    edited = bytearray(data)
    body_end = record_offset + RECORD_BYTES - 4
    struct.pack_into("<I", edited, body_end, zlib.crc32(edited[record_offset:body_end]))
    return bytes(edited)


# (a) A crash in the middle of writing the last record.


def test_cut_anywhere_inside_the_last_record_is_a_torn_tail(
    tmp_path: Path, pristine: bytes
) -> None:
    for cut in range(LAST + 1, LAST + RECORD_BYTES):
        log_dir = make_log(tmp_path / f"cut-{cut}", {SEGMENT_1: pristine[:cut]})
        report, raws = open_and_read(log_dir)
        assert raws == records_of(pristine, RECORDS - 1), cut
        assert (report.records, report.last_seq) == (RECORDS - 1, RECORDS - 1)
        torn = report.torn_tail
        assert torn is not None
        assert (torn.segment, torn.offset, torn.bytes_dropped) == (
            log_dir / SEGMENT_1,
            LAST,
            cut - LAST,
        ), cut
        assert torn.saved_to == tmp_path / f"cut-{cut}" / "quarantine" / f"torn-{1:020d}-{LAST}.bin"
        assert torn.saved_to.read_bytes() == pristine[LAST:cut]
        assert (log_dir / SEGMENT_1).stat().st_size == LAST


def test_cut_at_a_record_boundary_is_a_clean_shorter_log(tmp_path: Path, pristine: bytes) -> None:
    log_dir = make_log(tmp_path, {SEGMENT_1: pristine[:LAST]})
    report, raws = open_and_read(log_dir)
    assert raws == records_of(pristine, RECORDS - 1)
    assert report.torn_tail is None
    assert not (tmp_path / "quarantine").exists()


def test_after_a_torn_tail_appends_continue_the_seq_and_chain(
    tmp_path: Path, pristine: bytes
) -> None:
    log_dir = make_log(tmp_path, {SEGMENT_1: pristine[: LAST + 37]})
    log, report = FileLog.open(log_dir)
    assert report.torn_tail is not None
    appended = log.append(events(1, start=50))
    assert appended[0].seq == RECORDS
    assert appended[0].location.offset == LAST
    log.close()
    report, raws = open_and_read(log_dir)
    assert report.torn_tail is None
    assert raws[-1][28:60] == hashlib.sha256(raws[-2]).digest()


# (b) The last record damaged: not followed by anything valid, so a torn tail.


def test_any_flipped_byte_in_the_last_record_is_a_torn_tail(
    tmp_path: Path, pristine: bytes
) -> None:
    for offset in range(LAST, LAST + RECORD_BYTES):
        damaged = flipped(pristine, offset)
        log_dir = make_log(tmp_path / f"flip-{offset}", {SEGMENT_1: damaged})
        report, raws = open_and_read(log_dir)
        assert raws == records_of(pristine, RECORDS - 1), offset
        torn = report.torn_tail
        assert torn is not None
        assert (torn.offset, torn.bytes_dropped) == (LAST, RECORD_BYTES), offset
        assert torn.saved_to.read_bytes() == damaged[LAST:]


# (c) A damaged record with a valid record after it: corruption, and nothing is touched.


def test_any_flipped_byte_in_a_middle_record_is_corruption_and_changes_nothing(
    tmp_path: Path, pristine: bytes
) -> None:
    for offset in range(MIDDLE, MIDDLE + RECORD_BYTES):
        data_dir = tmp_path / f"flip-{offset}"
        log_dir = make_log(data_dir, {SEGMENT_1: flipped(pristine, offset)})
        before = tree(data_dir)
        with pytest.raises(LogCorruptionError) as caught:
            FileLog.open(log_dir)
        error = caught.value
        assert (error.segment, error.offset) == (log_dir / SEGMENT_1, MIDDLE), offset
        assert error.reason in {"bad_crc", "bad_magic", "bad_version", "bad_length", "truncated"}
        assert f"segment {SEGMENT_1} at offset {MIDDLE}: {error.reason}" in str(error)
        assert "nothing was changed" in str(error)
        assert tree(data_dir) == before, offset


def test_damage_at_the_end_of_a_segment_that_is_not_the_last_is_corruption(
    tmp_path: Path, pristine: bytes
) -> None:
    """Only the last segment can be torn: the writer syncs a segment before the next."""
    segments = {SEGMENT_1: pristine[: LAST - 10], segment_file_name(RECORDS): pristine[LAST:]}
    log_dir = make_log(tmp_path, segments)
    before = tree(tmp_path)
    with pytest.raises(LogCorruptionError) as caught:
        FileLog.open(log_dir)
    assert (caught.value.segment.name, caught.value.offset) == (SEGMENT_1, 3 * RECORD_BYTES)
    assert caught.value.reason == "truncated"
    assert tree(tmp_path) == before


# (d) An edited record whose CRC was fixed up: the chain breaks at the next record.


def test_edited_payload_with_fixed_crc_breaks_the_chain_at_the_next_record(
    tmp_path: Path, pristine: bytes
) -> None:
    edited = with_crc_fixed(flipped(pristine, MIDDLE + 70), MIDDLE)
    log_dir = make_log(tmp_path, {SEGMENT_1: edited})
    before = tree(tmp_path)
    with pytest.raises(LogCorruptionError) as caught:
        FileLog.open(log_dir)
    assert (caught.value.segment.name, caught.value.offset, caught.value.reason) == (
        SEGMENT_1,
        MIDDLE + RECORD_BYTES,
        "chain_break",
    )
    assert tree(tmp_path) == before


def test_chain_break_across_a_segment_boundary_names_the_next_segment(
    tmp_path: Path, pristine: bytes
) -> None:
    edited = with_crc_fixed(flipped(pristine, MIDDLE + 70), MIDDLE)
    segments = {
        SEGMENT_1: edited[: MIDDLE + RECORD_BYTES],
        segment_file_name(4): edited[3 * RECORD_BYTES :],
    }
    log_dir = make_log(tmp_path, segments)
    with pytest.raises(LogCorruptionError) as caught:
        FileLog.open(log_dir)
    assert (caught.value.segment.name, caught.value.offset, caught.value.reason) == (
        segment_file_name(4),
        0,
        "chain_break",
    )


def test_a_valid_record_repeated_at_the_end_is_a_seq_that_does_not_increase(
    tmp_path: Path, pristine: bytes
) -> None:
    log_dir = make_log(tmp_path, {SEGMENT_1: pristine + records_of(pristine, 3)[2]})
    with pytest.raises(LogCorruptionError) as caught:
        FileLog.open(log_dir)
    assert (caught.value.offset, caught.value.reason) == (
        RECORDS * RECORD_BYTES,
        "seq_not_increasing",
    )


def test_a_segment_not_named_after_its_first_record_is_corruption(
    tmp_path: Path, pristine: bytes
) -> None:
    segments = {SEGMENT_1: pristine[:MIDDLE], segment_file_name(4): pristine[MIDDLE:]}
    with pytest.raises(LogCorruptionError) as caught:
        FileLog.open(make_log(tmp_path, segments))
    assert (caught.value.segment.name, caught.value.reason) == (
        segment_file_name(4),
        "segment_name",
    )


# (e) Garbage after a valid log: a torn tail.


@pytest.mark.parametrize(
    "garbage",
    [
        bytes(4096),
        random.Random(7).randbytes(777),
        b"MDR\x01" + random.Random(8).randbytes(200),
        b"MDR\x01" * 50,
    ],
    ids=["zeros", "random", "magic_then_random", "repeated_magic"],
)
def test_garbage_after_a_valid_log_is_a_torn_tail(
    tmp_path: Path, pristine: bytes, garbage: bytes
) -> None:
    log_dir = make_log(tmp_path, {SEGMENT_1: pristine + garbage})
    report, raws = open_and_read(log_dir)
    assert raws == records_of(pristine, RECORDS)
    torn = report.torn_tail
    assert torn is not None
    assert (torn.offset, torn.bytes_dropped) == (RECORDS * RECORD_BYTES, len(garbage))
    assert torn.saved_to.read_bytes() == garbage


def test_a_last_segment_holding_only_a_torn_fragment_is_emptied(
    tmp_path: Path, pristine: bytes
) -> None:
    segments = {SEGMENT_1: pristine[:LAST], segment_file_name(RECORDS): pristine[LAST : LAST + 30]}
    log_dir = make_log(tmp_path, segments)
    log, report = FileLog.open(log_dir)
    assert report.torn_tail is not None
    assert (report.torn_tail.segment.name, report.torn_tail.offset) == (
        segment_file_name(RECORDS),
        0,
    )
    assert (log_dir / segment_file_name(RECORDS)).stat().st_size == 0
    assert log.append(events(1))[0].location.segment == RECORDS  # appends go into it
    log.close()


def test_a_second_torn_tail_at_the_same_offset_gets_its_own_quarantine_file(
    tmp_path: Path, pristine: bytes
) -> None:
    log_dir = make_log(tmp_path, {SEGMENT_1: pristine[: LAST + 10]})
    first, _ = open_and_read(log_dir)
    with open(log_dir / SEGMENT_1, "ab") as f:
        f.write(pristine[LAST : LAST + 20])
    second, _ = open_and_read(log_dir)
    assert first.torn_tail is not None and second.torn_tail is not None
    assert second.torn_tail.saved_to.name == f"torn-{1:020d}-{LAST}-2.bin"
    assert first.torn_tail.saved_to.read_bytes() == pristine[LAST : LAST + 10]
    assert second.torn_tail.saved_to.read_bytes() == pristine[LAST : LAST + 20]


def test_a_seq_gap_left_by_repair_is_accepted_with_a_notice(tmp_path: Path) -> None:
    one = encode_record(PUT, 1, 0, GENESIS_HASH, b"a")
    five = encode_record(PUT, 5, 0, hashlib.sha256(one).digest(), b"b")
    log_dir = make_log(tmp_path, {SEGMENT_1: one + five})
    log, report = FileLog.open(log_dir)
    assert report.last_seq == 5
    assert any("seqs 2..4 are missing" in n for n in report.notices)
    assert log.append(events(1))[0].seq == 6
    log.close()


def test_an_empty_last_segment_not_named_after_the_next_seq_is_removed(
    tmp_path: Path, pristine: bytes
) -> None:
    log_dir = make_log(tmp_path, {SEGMENT_1: pristine, segment_file_name(9): b""})
    log, report = FileLog.open(log_dir)
    assert not (log_dir / segment_file_name(9)).exists()
    assert report.segments == 1
    assert log.append(events(1))[0].location.segment == 1
    log.close()


def test_open_finishes_a_repair_interrupted_between_its_renames(
    tmp_path: Path, pristine: bytes
) -> None:
    log_dir = tmp_path / "log"
    ready = repair_ready_dir(log_dir)
    ready.mkdir()
    (ready / SEGMENT_1).write_bytes(pristine)
    repair_tmp_dir(log_dir).mkdir()  # an even older, unfinished one: ignored
    report, raws = open_and_read(log_dir)
    assert raws == records_of(pristine, RECORDS)
    assert not ready.exists()
    assert any("finished an interrupted repair" in n for n in report.notices)
    assert any("repair-tmp" in n for n in report.notices)
    assert repair_tmp_dir(log_dir).exists()


def test_other_files_in_the_log_dir_are_ignored_and_reported(
    tmp_path: Path, pristine: bytes
) -> None:
    log_dir = make_log(tmp_path, {SEGMENT_1: pristine, "notes.txt": b"hello", "1.seg": b"x"})
    report, raws = open_and_read(log_dir)
    assert len(raws) == RECORDS
    assert sorted(n.split("'")[1] for n in report.notices) == ["1.seg", "notes.txt"]
