"""Relaxed durability: append syncs only when the interval has passed, at roll-over, sync, close."""

from __future__ import annotations

from pathlib import Path

from memoryd.storage import Durability, FileLog
from memoryd.storage.record import RecordType

PUT = int(RecordType.FRAME_PUT)
INTERVAL_MS = 50


def events(n: int, start: int = 0) -> list[tuple[int, int, bytes]]:
    """Each event makes a 100-byte record."""
    return [(PUT, 1_000 + i, f"{i:036d}".encode()) for i in range(start, start + n)]


class Recorder:
    """Fault injector that only records which syscalls the log makes."""

    def __init__(self) -> None:
        self.points: list[str] = []

    def __call__(self, point: str) -> None:
        self.points.append(point)

    def take(self) -> list[str]:
        points, self.points = self.points, []
        return points


def open_relaxed(log_dir: Path, clock: list[int], recorder: Recorder, **options: int) -> FileLog:
    log, _ = FileLog.open(
        log_dir,
        durability=Durability.RELAXED,
        relaxed_sync_interval_ms=INTERVAL_MS,
        now_ms=lambda: clock[0],
        fault_injector=recorder,
        **options,
    )
    return log


def test_append_does_not_sync_within_the_interval(tmp_path: Path) -> None:
    clock, recorder = [0], Recorder()
    log = open_relaxed(tmp_path / "log", clock, recorder)
    log.append(events(1))
    assert recorder.take() == ["sync", "sync", "write"]  # the new segment file and dir only
    for i in range(1, 5):
        clock[0] += INTERVAL_MS // 5
        log.append(events(1, start=i))
        assert recorder.take() == ["write"]
    assert log.stats()["syncs"] == 0
    log.close()


def test_append_syncs_once_more_than_the_interval_has_passed(tmp_path: Path) -> None:
    clock, recorder = [0], Recorder()
    log = open_relaxed(tmp_path / "log", clock, recorder)
    log.append(events(1))
    recorder.take()
    clock[0] += INTERVAL_MS
    log.append(events(1, start=1))
    assert recorder.take() == ["write"]  # exactly the interval: not more than it
    clock[0] += 1
    log.append(events(1, start=2))
    assert recorder.take() == ["write", "sync"]
    log.append(events(1, start=3))
    assert recorder.take() == ["write"]  # the interval restarts at the sync
    assert log.stats()["syncs"] == 1
    log.close()


def test_sync_syncs_only_when_something_is_unsynced(tmp_path: Path) -> None:
    clock, recorder = [0], Recorder()
    log = open_relaxed(tmp_path / "log", clock, recorder)
    log.sync()
    assert recorder.take() == []
    log.append(events(2))
    recorder.take()
    log.sync()
    assert recorder.take() == ["sync"]
    log.sync()
    assert recorder.take() == []
    log.close()


def test_close_syncs_what_is_unsynced(tmp_path: Path) -> None:
    clock, recorder = [0], Recorder()
    log = open_relaxed(tmp_path / "log", clock, recorder)
    log.append(events(2))
    recorder.take()
    log.close()
    assert recorder.take() == ["sync"]


def test_roll_over_syncs_the_full_segment_first(tmp_path: Path) -> None:
    """Only the last segment may end torn after a power loss, in relaxed mode too."""
    clock, recorder = [0], Recorder()
    log = open_relaxed(tmp_path / "log", clock, recorder, segment_bytes_max=250)
    log.append(events(1))
    recorder.take()
    log.append(events(2, start=1))  # record 2 fills segment 1, record 3 starts segment 3
    assert recorder.take() == ["write", "sync", "sync", "sync", "write"]
    assert log.stats()["syncs"] == 1
    log.close()


def test_relaxed_records_read_back_and_survive_reopen(tmp_path: Path) -> None:
    clock, recorder = [0], Recorder()
    log = open_relaxed(tmp_path / "log", clock, recorder, segment_bytes_max=500)
    for start in range(0, 20, 4):
        log.append(events(4, start=start))
    log.close()
    log, report = FileLog.open(tmp_path / "log")
    assert report.last_seq == 20
    assert [e.record.payload for e in log.read_from(1)] == [p for _, _, p in events(20)]
    log.close()
