"""FileLog: append, read back, roll over, chain across segments, reopen, follow."""

from __future__ import annotations

import hashlib
import itertools
import threading
from pathlib import Path

import pytest

from memoryd.storage import (
    AppendedRecord,
    FileLog,
    LogCorruptionError,
    RecordLocation,
)
from memoryd.storage.layout import segment_file_name
from memoryd.storage.record import GENESIS_HASH, RECORD_OVERHEAD_BYTES, RecordError, RecordType
from memoryd.storage.segment import READ_CHUNK_BYTES

PUT = int(RecordType.FRAME_PUT)
DELETE = int(RecordType.FRAME_DELETE)


def events(n: int, start: int = 0, payload_bytes: int = 36) -> list[tuple[int, int, bytes]]:
    """``n`` distinct events; record i is ``RECORD_OVERHEAD_BYTES + payload_bytes`` long."""
    return [
        (PUT if i % 3 else DELETE, 1_000 + i, f"{i:0{payload_bytes}d}".encode())
        for i in range(start, start + n)
    ]


def open_log(log_dir: Path, **options: object) -> FileLog:
    log, report = FileLog.open(log_dir, **options)  # type: ignore[arg-type]
    assert report.torn_tail is None
    return log


def read_all(log: FileLog) -> list[tuple[int, int, int, bytes]]:
    return [
        (e.record.seq, e.record.record_type, e.record.timestamp_ms, e.record.payload)
        for e in log.read_from(1)
    ]


def expected(
    evs: list[tuple[int, int, bytes]], first_seq: int = 1
) -> list[tuple[int, int, int, bytes]]:
    return [(first_seq + i, t, ts, p) for i, (t, ts, p) in enumerate(evs)]


def test_new_log_is_empty_and_creates_its_directory(tmp_path: Path) -> None:
    log, report = FileLog.open(tmp_path / "data" / "log")
    assert (tmp_path / "data" / "log").is_dir()
    assert (report.segments, report.records, report.last_seq) == (0, 0, 0)
    assert report.last_hash == GENESIS_HASH
    assert log.last_seq == 0
    assert list(log.read_from(1)) == []
    assert log.append([]) == []
    assert log.stats()["segments"] == 0
    log._check()
    log.close()


def test_append_assigns_consecutive_seqs_and_reads_back(tmp_path: Path) -> None:
    log = open_log(tmp_path / "log")
    first = log.append(events(3))
    second = log.append(events(2, start=3))
    log._check()
    assert [a.seq for a in first + second] == [1, 2, 3, 4, 5]
    assert [a.timestamp_ms for a in first + second] == [1000, 1001, 1002, 1003, 1004]
    assert log.last_seq == 5
    assert read_all(log) == expected(events(5))
    log.close()


def test_locations_point_at_the_records(tmp_path: Path) -> None:
    log = open_log(tmp_path / "log")
    appended = log.append(events(4))
    record_bytes = RECORD_OVERHEAD_BYTES + 36
    assert [a.location for a in appended] == [
        RecordLocation(1, i * record_bytes, record_bytes) for i in range(4)
    ]
    for a, (record_type, timestamp_ms, payload) in zip(appended, events(4), strict=True):
        record = log.read_at(a.location)
        assert (record.seq, record.record_type, record.timestamp_ms, record.payload) == (
            a.seq,
            record_type,
            timestamp_ms,
            payload,
        )
    assert [e.location for e in log.read_from(1)] == [a.location for a in appended]
    log.close()


def test_read_from_starts_at_the_given_seq_in_any_segment(tmp_path: Path) -> None:
    log = open_log(tmp_path / "log", segment_bytes_max=300)  # 3 records of 100 bytes each
    log.append(events(10))
    for seq in range(1, 12):
        assert [e.record.seq for e in log.read_from(seq)] == list(range(seq, 11))
    assert [e.record.seq for e in log.read_from(0)] == list(range(1, 11))
    log.close()


def test_roll_over_names_segments_by_first_seq_and_respects_the_limit(tmp_path: Path) -> None:
    log = open_log(tmp_path / "log", segment_bytes_max=250)  # two 100-byte records fit
    appended = log.append(events(7))
    log._check()
    names = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert names == [segment_file_name(s) for s in (1, 3, 5, 7)]
    assert [a.location.segment for a in appended] == [1, 1, 3, 3, 5, 5, 7]
    assert [(tmp_path / "log" / n).stat().st_size for n in names] == [200, 200, 200, 100]
    assert log.stats()["segments"] == 4
    assert read_all(log) == expected(events(7))
    log.close()


def test_a_record_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    log = open_log(tmp_path / "log", segment_bytes_max=250)
    log.append(events(1))
    big = log.append([(PUT, 5, b"B" * 1000)])
    after = log.append(events(1, start=1))
    log._check()
    assert big[0].location == RecordLocation(2, 0, 1000 + RECORD_OVERHEAD_BYTES)
    assert after[0].location == RecordLocation(3, 0, 100)
    assert [e.record.seq for e in log.read_from(1)] == [1, 2, 3]
    log.close()


def test_hash_chain_links_across_segment_boundaries(tmp_path: Path) -> None:
    log = open_log(tmp_path / "log", segment_bytes_max=250)
    log.append(events(5))
    log.append(events(4, start=5))
    records = [e.record for e in log.read_from(1)]
    assert records[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == hashlib.sha256(before.raw).digest()
    log.close()


def test_reopen_continues_seq_chain_and_segment(tmp_path: Path) -> None:
    log = open_log(tmp_path / "log", segment_bytes_max=250)
    log.append(events(3))
    log.close()
    log, report = FileLog.open(tmp_path / "log", segment_bytes_max=250)
    assert (report.records, report.last_seq, report.segments) == (3, 3, 2)
    appended = log.append(events(2, start=3))
    log._check()
    assert [a.seq for a in appended] == [4, 5]
    assert appended[0].location.segment == 3  # filled the half-full last segment first
    log.close()
    log, report = FileLog.open(tmp_path / "log", segment_bytes_max=250)
    assert report.last_seq == 5
    assert read_all(log) == expected(events(5))
    log.close()


def test_one_batch_spanning_segments_is_one_append(tmp_path: Path) -> None:
    log = open_log(tmp_path / "log", segment_bytes_max=1000)
    log.append(events(9))
    appended = log.append(events(25, start=9))  # crosses three boundaries
    log._check()
    assert [a.seq for a in appended] == list(range(10, 35))
    assert sorted({a.location.segment for a in appended}) == [1, 11, 21, 31]
    assert read_all(log) == expected(events(34))
    log.close()


def test_invalid_event_raises_before_anything_is_written(tmp_path: Path) -> None:
    log = open_log(tmp_path / "log")
    log.append(events(2))
    with pytest.raises(RecordError):
        log.append([*events(2, start=2), (99, 0, b"unknown type")])
    log._check()
    assert log.last_seq == 2
    assert log.append(events(1, start=2))[0].seq == 3
    assert read_all(log) == expected(events(3))
    log.close()


def test_read_at_detects_a_record_damaged_after_it_was_written(tmp_path: Path) -> None:
    log = open_log(tmp_path / "log")
    appended = log.append(events(3))
    segment = tmp_path / "log" / segment_file_name(1)
    data = bytearray(segment.read_bytes())
    data[appended[1].location.offset + 70] ^= 0x01
    segment.write_bytes(bytes(data))
    assert log.read_at(appended[0].location).seq == 1
    with pytest.raises(LogCorruptionError) as caught:
        log.read_at(appended[1].location)
    assert (caught.value.segment, caught.value.offset, caught.value.reason) == (
        segment,
        appended[1].location.offset,
        "bad_crc",
    )
    with pytest.raises(LogCorruptionError):
        list(log.read_from(1))
    log.close()


def test_read_at_a_location_that_is_not_a_record_start(tmp_path: Path) -> None:
    log = open_log(tmp_path / "log")
    appended = log.append(events(2))
    location = appended[0].location
    with pytest.raises(LogCorruptionError) as caught:
        log.read_at(RecordLocation(location.segment, location.offset + 1, location.length))
    assert caught.value.reason == "bad_magic"
    with pytest.raises(LogCorruptionError) as caught:
        log.read_at(RecordLocation(99, 0, 100))
    assert caught.value.reason == "missing_segment"
    log.close()


def test_stats_count_appends_bytes_and_syncs(tmp_path: Path) -> None:
    log = open_log(tmp_path / "log", segment_bytes_max=250)
    log.append(events(3))
    log.append(events(2, start=3))
    stats = log.stats()
    # FSYNC: one data sync per segment an append touched (1, 3 | 3, 5); the fsyncs of a new
    # file and its directory are not counted.
    assert stats == {
        "segments": 3,
        "log_bytes": 500,
        "last_seq": 5,
        "records_appended": 5,
        "bytes_written": 500,
        "syncs": 4,
        "read_files_open": 0,
        "read_files_max": 64,
    }
    log.close()


def test_closed_log_refuses_writes_and_close_is_idempotent(tmp_path: Path) -> None:
    log = open_log(tmp_path / "log")
    log.close()
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.append(events(1))


def test_follow_yields_records_as_they_are_committed(tmp_path: Path) -> None:
    log = open_log(tmp_path / "log", segment_bytes_max=250)
    log.append(events(3))
    seen: list[int] = []
    done = threading.Event()

    def consume() -> None:
        for entry in log.follow(1, 0.001, done.is_set):
            seen.append(entry.record.seq)
            if entry.record.seq == 9:
                done.set()

    reader = threading.Thread(target=consume)
    reader.start()
    for start in range(3, 9, 2):
        log.append(events(2, start=start))
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert seen == list(range(2, 10))
    log.close()


def test_follow_returns_when_told_to_stop(tmp_path: Path) -> None:
    log = open_log(tmp_path / "log")
    log.append(events(2))
    polls: list[int] = []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) > 3

    assert [e.record.seq for e in log.follow(0, 0.001, should_stop)] == [1, 2]
    assert len(polls) == 4
    log.close()


def test_readers_on_other_threads_see_only_whole_committed_records(tmp_path: Path) -> None:
    log = open_log(tmp_path / "log", segment_bytes_max=2000)
    appended: list[AppendedRecord] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read_continuously() -> None:
        try:
            while not stop.is_set():
                last = log.last_seq
                seqs = [e.record.seq for e in log.read_from(1)]
                assert seqs[:last] == list(range(1, last + 1))
                for a in list(appended[-5:]):
                    assert log.read_at(a.location).seq == a.seq
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=read_continuously) for _ in range(2)]
    for reader in readers:
        reader.start()
    for start in range(0, 300, 10):
        appended.extend(log.append(events(10, start=start)))
    stop.set()
    for reader in readers:
        reader.join(timeout=10)
    assert errors == []
    assert read_all(log) == expected(events(300))
    log.close()


def test_records_bigger_than_a_read_chunk_read_back(tmp_path: Path) -> None:
    big = bytes(range(256)) * (READ_CHUNK_BYTES // 256 + 1000)  # more than one pread's worth
    log = open_log(tmp_path / "log")
    log.append(events(2))
    log.append([(PUT, 7, big)])
    log.append(events(2, start=2))
    assert [len(e.record.payload) for e in log.read_from(1)] == [36, 36, len(big), 36, 36]
    assert next(iter(log.read_from(3))).record.payload == big
    log.close()
