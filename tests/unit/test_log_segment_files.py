"""Segment files: listing, naming, and the bounded set of descriptors readers share."""

from __future__ import annotations

import os
from pathlib import Path

from memoryd.storage import FileLog
from memoryd.storage.layout import parse_segment_file_name, segment_file_name
from memoryd.storage.record import RecordType
from memoryd.storage.segment import SegmentReadFiles, list_segments


def test_segment_names_round_trip_and_sort_as_numbers() -> None:
    names = [segment_file_name(s) for s in (1, 9, 10, 2**64 - 1)]
    assert names[0] == "00000000000000000001.seg"
    assert sorted(names) == names
    assert [parse_segment_file_name(n) for n in names] == [1, 9, 10, 2**64 - 1]
    for other in ("1.seg", "00000000000000000000.seg", "0000000000000000000a.seg", "LOCK", ".seg"):
        assert parse_segment_file_name(other) is None


def test_list_segments_orders_by_first_seq_and_reports_other_entries(tmp_path: Path) -> None:
    for seq in (10, 2, 1):
        (tmp_path / segment_file_name(seq)).write_bytes(b"x" * seq)
    (tmp_path / "notes").write_bytes(b"")
    (tmp_path / segment_file_name(5)).mkdir()  # a directory with a segment's name is not one
    segments, others = list_segments(tmp_path)
    assert [(s.first_seq, s.size) for s in segments] == [(1, 1), (2, 2), (10, 10)]
    assert others == [segment_file_name(5), "notes"]


def test_read_files_stay_within_their_bound_and_never_close_under_a_reader(tmp_path: Path) -> None:
    log, _ = FileLog.open(tmp_path / "log", segment_bytes_max=100)
    log.append([(int(RecordType.FRAME_PUT), 0, b"p" * 36)] * 4)  # segments 1, 2, 3, 4
    log.close()
    files = SegmentReadFiles(tmp_path / "log", files_max=2)
    in_use = files.acquire(1)
    for seq in (2, 3, 4):
        files.release(files.acquire(seq))
        assert len(files) <= 2
    assert os.pread(in_use.fd, 4, 0) == b"MDR\x01"  # evicted meanwhile, still open for its user
    files.release(in_use)
    assert in_use.evicted
    again = files.acquire(1)
    assert os.pread(again.fd, 4, 0) == b"MDR\x01"
    files.release(again)
    files.close()
    assert len(files) == 0
