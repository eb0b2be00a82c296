"""A failed append (full disk, I/O error) leaves the log exactly as it was, and the next works."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from memoryd.storage import Durability, FileLog, check_log
from memoryd.storage.layout import segment_file_name
from memoryd.storage.record import RecordType

PUT = int(RecordType.FRAME_PUT)


def events(n: int, start: int = 0) -> list[tuple[int, int, bytes]]:
    """Each event makes a 100-byte record."""
    return [(PUT, 1_000 + i, f"{i:036d}".encode()) for i in range(start, start + n)]


class FailAt:
    """Fault injector: raise ``OSError(err)`` at the ``nth`` call of ``point``, once."""

    def __init__(self, point: str, nth: int = 1, err: int = errno.ENOSPC) -> None:
        self.point = point
        self.nth = nth
        self.err = err
        self.seen = 0
        self.fired = False
        self.armed = False

    def __call__(self, point: str) -> None:
        if not self.armed or point != self.point:
            return
        self.seen += 1
        if self.seen == self.nth:
            self.armed = False
            self.fired = True
            raise OSError(self.err, os.strerror(self.err))


def snapshot(log_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(log_dir.iterdir())}


def payloads(log: FileLog) -> list[tuple[int, bytes]]:
    return [(e.record.seq, e.record.payload) for e in log.read_from(1)]


@pytest.mark.parametrize("point", ["write", "sync"])
@pytest.mark.parametrize("durability", [Durability.FSYNC, Durability.RELAXED])
def test_enospc_leaves_the_log_as_before_and_a_later_append_works(
    tmp_path: Path, point: str, durability: Durability
) -> None:
    fault = FailAt(point)
    clock = [0]
    log, _ = FileLog.open(
        tmp_path / "log",
        durability=durability,
        relaxed_sync_interval_ms=10,
        now_ms=lambda: clock[0],
        fault_injector=fault,
    )
    log.append(events(3))
    log.sync()
    before = snapshot(tmp_path / "log")
    clock[0] += 100  # relaxed: due for a sync, so the append reaches a "sync" point
    fault.armed = True
    with pytest.raises(OSError) as caught:
        log.append(events(4, start=3))
    assert fault.fired
    assert caught.value.errno == errno.ENOSPC
    log._check()
    assert snapshot(tmp_path / "log") == before
    assert log.last_seq == 3
    assert payloads(log) == [(i + 1, p) for i, (_, _, p) in enumerate(events(3))]

    appended = log.append(events(2, start=100))
    assert [a.seq for a in appended] == [4, 5]
    log._check()
    log.close()
    assert check_log(tmp_path / "log").ok
    log, report = FileLog.open(tmp_path / "log")
    assert report.torn_tail is None
    assert payloads(log) == [
        (i + 1, p) for i, (_, _, p) in enumerate(events(3) + events(2, start=100))
    ]
    log.close()


def test_failure_at_any_point_of_an_append_that_rolls_over_undoes_all_of_it(
    tmp_path: Path,
) -> None:
    """Fail each write and sync of a batch spanning three segments in turn."""
    for point in ("write", "sync"):
        nth = 1
        while True:
            log_dir = tmp_path / f"{point}-{nth}" / "log"
            fault = FailAt(point, nth)
            log, _ = FileLog.open(log_dir, segment_bytes_max=250, fault_injector=fault)
            log.append(events(1))
            before = snapshot(log_dir)
            fault.armed = True
            try:
                log.append(events(5, start=1))  # segments 1 (one more), 3 and 5
            except OSError:
                assert fault.fired
                log._check()
                assert snapshot(log_dir) == before, (point, nth)
                assert log.last_seq == 1
                assert [a.seq for a in log.append(events(5, start=1))] == [2, 3, 4, 5, 6]
                log.close()
                assert check_log(log_dir).ok
                nth += 1
                continue
            assert not fault.fired
            log.close()
            break
        # Every point up to the last one was tried: 3 writes; 3 data syncs + 2x2 for new files.
        assert nth - 1 == {"write": 3, "sync": 7}[point]


def test_a_partial_write_before_the_error_is_truncated_away(tmp_path: Path) -> None:
    segment = tmp_path / "log" / segment_file_name(1)
    armed = [False]

    def short_write_then_full(point: str) -> None:
        if armed[0] and point == "write":
            armed[0] = False
            with open(segment, "ab") as f:  # the kernel wrote part of the batch, then ran out
                f.write(b"MDR\x01partial record bytes")
            raise OSError(errno.ENOSPC, "No space left on device")

    log, _ = FileLog.open(tmp_path / "log", fault_injector=short_write_then_full)
    log.append(events(2))
    before = snapshot(tmp_path / "log")
    armed[0] = True
    with pytest.raises(OSError):
        log.append(events(3, start=2))
    assert snapshot(tmp_path / "log") == before
    log._check()
    assert [a.seq for a in log.append(events(1, start=2))] == [3]
    log.close()
    assert check_log(tmp_path / "log").ok


def test_other_io_errors_are_reraised_unchanged(tmp_path: Path) -> None:
    fault = FailAt("sync", err=errno.EIO)
    log, _ = FileLog.open(tmp_path / "log", fault_injector=fault)
    fault.armed = True
    with pytest.raises(OSError) as caught:
        log.append(events(1))
    assert caught.value.errno == errno.EIO
    assert log.last_seq == 0
    assert snapshot(tmp_path / "log") == {}  # the segment this append created is gone
    log.close()


def test_failed_sync_call_keeps_data_unsynced_and_retries(tmp_path: Path) -> None:
    fault = FailAt("sync")
    clock = [0]
    log, _ = FileLog.open(
        tmp_path / "log",
        durability=Durability.RELAXED,
        now_ms=lambda: clock[0],
        fault_injector=fault,
    )
    log.append(events(2))
    fault.armed = True
    with pytest.raises(OSError):
        log.sync()
    syncs = log.stats()["syncs"]
    log.sync()  # still unsynced, so this one really syncs
    assert log.stats()["syncs"] == syncs + 1
    assert log.last_seq == 2  # a failed sync() undoes nothing: the records were acknowledged
    log.close()
