"""Properties of the log: what is appended reads back; damage never yields a wrong record."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from memoryd.storage import AppendedRecord, Durability, FileLog, LogCorruptionError, check_log
from memoryd.storage.record import RECORD_TIMESTAMP_MS_MAX, RECORD_TIMESTAMP_MS_MIN, RecordType

Event = tuple[int, int, bytes]
Row = tuple[int, int, int, bytes]  # seq, type, timestamp, payload

event = st.tuples(
    st.sampled_from([int(RecordType.FRAME_PUT), int(RecordType.FRAME_DELETE)]),
    st.integers(RECORD_TIMESTAMP_MS_MIN, RECORD_TIMESTAMP_MS_MAX),
    st.binary(max_size=300),
)
batches = st.lists(st.lists(event, max_size=12), min_size=1, max_size=8)
segment_bytes_max = st.integers(64, 2_000)  # small, so that most cases roll over


def append_all(
    log_dir: Path, batches: list[list[Event]], bytes_max: int, durability: Durability
) -> tuple[list[Row], list[AppendedRecord]]:
    log, _ = FileLog.open(log_dir, segment_bytes_max=bytes_max, durability=durability)
    appended: list[AppendedRecord] = []
    for batch in batches:
        appended.extend(log.append(batch))
        log._check()
    log.close()
    events = [e for batch in batches for e in batch]
    rows = [(a.seq, t, ts, p) for a, (t, ts, p) in zip(appended, events, strict=True)]
    return rows, appended


def read_rows(log: FileLog, seq: int = 1) -> list[Row]:
    return [
        (e.record.seq, e.record.record_type, e.record.timestamp_ms, e.record.payload)
        for e in log.read_from(seq)
    ]


@settings(max_examples=40, deadline=None)
@given(batches, segment_bytes_max, st.sampled_from(Durability), st.integers(0, 120))
def test_appended_events_read_back_identically_after_reopen(
    batches: list[list[Event]], bytes_max: int, durability: Durability, start: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp) / "log"
        rows, appended = append_all(log_dir, batches, bytes_max, durability)
        assert [r[0] for r in rows] == list(range(1, len(rows) + 1))

        log, report = FileLog.open(log_dir, segment_bytes_max=bytes_max)
        assert report.torn_tail is None and report.last_seq == len(rows)
        assert read_rows(log) == rows
        assert read_rows(log, start) == [r for r in rows if r[0] >= start]
        for a, row in zip(appended, rows, strict=True):
            record = log.read_at(a.location)
            assert (record.seq, record.record_type, record.timestamp_ms, record.payload) == row
        log.close()
        assert check_log(log_dir).ok


@settings(max_examples=40, deadline=None)
@given(batches, segment_bytes_max, st.floats(0, 1))
def test_truncating_the_last_segment_anywhere_yields_exactly_the_whole_records_before_the_cut(
    batches: list[list[Event]], bytes_max: int, where: float
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp) / "log"
        rows, appended = append_all(log_dir, batches, bytes_max, Durability.FSYNC)
        segments = sorted(log_dir.iterdir())
        if not segments:
            return
        last = segments[-1]
        data = last.read_bytes()
        cut = round(where * len(data))
        last.write_bytes(data[:cut])
        last_first_seq = int(last.stem)

        log, report = FileLog.open(log_dir)
        recovered = read_rows(log)
        log.close()

        survivors = [
            row
            for row, a in zip(rows, appended, strict=True)
            if a.location.segment != last_first_seq or a.location.offset + a.location.length <= cut
        ]
        assert recovered == survivors
        ends = {
            a.location.offset + a.location.length
            for a in appended
            if a.location.segment == last_first_seq
        }
        if cut in ends or cut == 0:
            assert report.torn_tail is None
        else:
            assert report.torn_tail is not None
            assert report.torn_tail.offset + report.torn_tail.bytes_dropped == cut


@settings(max_examples=40, deadline=None)
@given(batches, segment_bytes_max, st.data())
def test_damaging_any_bytes_never_yields_a_wrong_record(
    batches: list[list[Event]], bytes_max: int, data: st.DataObject
) -> None:
    """Whatever is overwritten, a start either refuses or returns a prefix of what was written."""
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp) / "log"
        rows, _ = append_all(log_dir, batches, bytes_max, Durability.FSYNC)
        segments = sorted(log_dir.iterdir())
        non_empty = [p for p in segments if p.stat().st_size > 0]
        if not non_empty:
            return
        target = data.draw(st.sampled_from(non_empty))
        content = bytearray(target.read_bytes())
        offset = data.draw(st.integers(0, len(content) - 1))
        junk = data.draw(st.binary(min_size=1, max_size=16))
        content[offset : offset + len(junk)] = junk  # may run past the end: the file grows
        target.write_bytes(bytes(content))

        try:
            log, _ = FileLog.open(log_dir)
        except LogCorruptionError as error:
            assert error.segment.parent == log_dir
            return
        recovered = read_rows(log)
        log.close()
        assert recovered == rows[: len(recovered)]
        if target != segments[-1]:
            assert recovered == rows  # a start accepted it, so nothing there was damaged
