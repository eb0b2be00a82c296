"""The commit writer: group commit on its own thread, failures, bounds, stop, relaxed syncs."""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from memoryd.client import errors
from memoryd.client.errors import MemorydError
from memoryd.daemon.writer import CommitWriter, Event
from memoryd.storage import AppendedRecord, FileLog
from memoryd.storage.record import RecordType
from tests.unit.gated_log import GatedLog

PUT = int(RecordType.FRAME_PUT)


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[GatedLog]:
    log, _report = FileLog.open(tmp_path / "log")
    yield GatedLog(log)
    log.close()


def make_writer(log: GatedLog, **overrides: int | None) -> CommitWriter:
    settings: dict[str, int | None] = {
        "queue_events_max": 100,
        "batch_events_max": 10,
        "relaxed_sync_interval_ms": None,
    }
    settings.update(overrides)
    return CommitWriter(log, **settings)  # type: ignore[arg-type]


def events(count: int, tag: str = "x") -> list[Event]:
    return [(PUT, 1_000 + i, f'{{"id":"{tag}{i}"}}'.encode()) for i in range(count)]


def seqs(appended: Sequence[AppendedRecord]) -> list[int]:
    return [record.seq for record in appended]


async def stop(writer: CommitWriter, task: asyncio.Task[None]) -> None:
    writer.stop()
    await task
    writer.close()


async def test_submissions_queued_together_share_one_append_in_order(gated: GatedLog) -> None:
    writer = make_writer(gated)
    task = asyncio.create_task(writer.run())
    gated.gate.clear()  # the first append waits: the rest queue up behind it
    first = writer.submit(events(1, "a"), seqs)
    await asyncio.sleep(0.05)
    applied_on: list[str] = []

    def apply(appended: Sequence[AppendedRecord]) -> list[int]:
        applied_on.append(threading.current_thread().name)
        return seqs(appended)

    later = [writer.submit(events(2, f"b{i}"), apply) for i in range(3)]
    assert writer.queued_events == 7
    gated.gate.set()
    assert await first == [1]
    assert [await future for future in later] == [[2, 3], [4, 5], [6, 7]]
    assert gated.appends == [1, 6]  # group commit: one append for the three
    assert gated.threads == {"memoryd-log"}
    assert applied_on == [threading.current_thread().name] * 3  # apply runs on the loop
    assert (writer.commits, writer.events_committed, writer.queued_events) == (2, 7, 0)
    await stop(writer, task)


async def test_a_group_stops_at_batch_events_max(gated: GatedLog) -> None:
    writer = make_writer(gated, batch_events_max=4)
    task = asyncio.create_task(writer.run())
    gated.gate.clear()
    futures = [writer.submit(events(3, f"s{i}"), seqs) for i in range(3)]
    await asyncio.sleep(0.05)
    gated.gate.set()
    assert [await future for future in futures] == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert gated.appends == [3, 3, 3]  # 3 + 3 > 4: never two in one group
    await stop(writer, task)


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), errors.DISK_FULL),
        (OSError(errno.EIO, "Input/output error"), errors.STORAGE_ERROR),
        (ValueError("a bug"), errors.INTERNAL),
    ],
)
async def test_a_failed_append_fails_its_group_and_the_writer_carries_on(
    gated: GatedLog, failure: Exception, code: str
) -> None:
    writer = make_writer(gated)
    task = asyncio.create_task(writer.run())
    gated.fail_with = failure
    forgotten: list[str] = []
    futures = [
        writer.submit(events(1, name), seqs, lambda name=name: forgotten.append(name))  # type: ignore[misc]
        for name in ("a", "b")
    ]
    for future in futures:
        with pytest.raises(MemorydError) as caught:
            await future
        assert caught.value.code == code
    assert sorted(forgotten) == ["a", "b"]  # on_failure ran for each, before the future failed
    assert writer.commit_failures >= 1
    assert writer.queued_events == 0
    gated.fail_with = None
    assert await writer.submit(events(1, "c"), seqs) == [1]  # the log is as before the failure
    await stop(writer, task)


async def test_a_failing_apply_answers_internal_and_the_rest_of_the_group_is_applied(
    gated: GatedLog,
) -> None:
    writer = make_writer(gated)
    task = asyncio.create_task(writer.run())
    gated.gate.clear()

    def broken(appended: Sequence[AppendedRecord]) -> None:
        raise RuntimeError("projection bug")

    bad = writer.submit(events(1, "a"), broken)
    good = writer.submit(events(1, "b"), seqs)
    gated.gate.set()
    with pytest.raises(MemorydError) as caught:
        await bad
    assert caught.value.code == errors.INTERNAL
    assert await good == [2]
    await stop(writer, task)


async def test_while_writing_runs_on_the_loop_while_its_group_is_written_before_apply(
    gated: GatedLog,
) -> None:
    writer = make_writer(gated)
    task = asyncio.create_task(writer.run())
    gated.gate.clear()  # the append holds, as a slow write and fsync would
    order: list[tuple[str, ...]] = []
    loop_thread = threading.current_thread().name

    def early(name: str) -> Callable[[], None]:
        def run() -> None:
            order.append(("early", name, threading.current_thread().name))

        return run

    def apply(name: str) -> Callable[[Sequence[AppendedRecord]], list[int]]:
        def applied(appended: Sequence[AppendedRecord]) -> list[int]:
            order.append(("apply", name))
            return seqs(appended)

        return applied

    first = writer.submit(events(1, "a"), apply("a"), while_writing=early("a"))
    for _ in range(100):  # the hook runs while the append is still held
        if order:
            break
        await asyncio.sleep(0.01)
    assert order == [("early", "a", loop_thread)]
    assert not first.done()
    # Queued behind it, one group: a function two submissions share runs once.
    shared = early("bc")
    later = [
        writer.submit(events(1, "b"), apply("b"), while_writing=shared),
        writer.submit(events(1, "c"), apply("c"), while_writing=shared),
        writer.submit(events(1, "d"), apply("d")),
    ]
    gated.gate.set()
    assert await first == [1]
    assert [await future for future in later] == [[2], [3], [4]]
    assert gated.appends == [1, 3]
    assert order == [
        ("early", "a", loop_thread),
        ("apply", "a"),
        ("early", "bc", loop_thread),
        ("apply", "b"),
        ("apply", "c"),
        ("apply", "d"),
    ]
    await stop(writer, task)


async def test_a_failing_while_writing_leaves_the_commit_whole(gated: GatedLog) -> None:
    writer = make_writer(gated)
    task = asyncio.create_task(writer.run())

    def broken() -> None:
        raise RuntimeError("overlapping work failed")

    assert await writer.submit(events(2, "a"), seqs, while_writing=broken) == [1, 2]
    assert await writer.submit(events(1, "b"), seqs) == [3]
    assert writer.commit_failures == 0
    await stop(writer, task)


async def test_submit_is_bounded_by_queue_events_max(gated: GatedLog) -> None:
    writer = make_writer(gated, queue_events_max=5, batch_events_max=5)
    task = asyncio.create_task(writer.run())
    gated.gate.clear()
    held = writer.submit(events(4, "a"), seqs)
    with pytest.raises(MemorydError) as caught:
        writer.submit(events(2, "b"), seqs)
    assert caught.value.code == errors.BUSY
    assert "commit_queue_events_max=5" in caught.value.message
    gated.gate.set()
    assert await held == [1, 2, 3, 4]
    assert await writer.submit(events(5, "c"), seqs) == [5, 6, 7, 8, 9]  # room again
    await stop(writer, task)


async def test_stop_commits_what_is_queued_then_refuses(gated: GatedLog) -> None:
    writer = make_writer(gated)
    task = asyncio.create_task(writer.run())
    gated.gate.clear()
    futures = [writer.submit(events(1, f"q{i}"), seqs) for i in range(3)]
    writer.stop()
    with pytest.raises(MemorydError) as caught:
        writer.submit(events(1, "late"), seqs)
    assert caught.value.code == errors.SHUTTING_DOWN
    gated.gate.set()
    await task
    assert [await future for future in futures] == [[1], [2], [3]]
    assert gated.syncs == 1  # the final sync
    writer.close()
    assert gated.log.last_seq == 3


async def test_cancelling_run_leaves_no_append_behind(gated: GatedLog) -> None:
    writer = make_writer(gated)
    task = asyncio.create_task(writer.run())
    gated.gate.clear()
    writer.submit(events(2, "a"), seqs)
    await asyncio.sleep(0.05)
    opener = threading.Timer(0.05, gated.gate.set)  # not the loop's: run() blocks it to join
    opener.start()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # run() joined the thread: the append is over, the log may be closed now.
    assert gated.log.last_seq == 2
    assert gated.syncs == 1
    opener.join()


async def test_relaxed_mode_syncs_once_the_queue_stays_idle(tmp_path: Path) -> None:
    from memoryd.storage import Durability

    log, _report = FileLog.open(
        tmp_path / "log", durability=Durability.RELAXED, relaxed_sync_interval_ms=60_000
    )
    gated = GatedLog(log)
    writer = make_writer(gated, relaxed_sync_interval_ms=20)
    task = asyncio.create_task(writer.run())
    await writer.submit(events(1), seqs)
    assert log.stats()["syncs"] == 0  # acknowledged after the write only
    await wait_for(lambda: log.stats()["syncs"] == 1, timeout_s=2.0)
    await stop(writer, task)
    log.close()


async def wait_for(condition: Callable[[], bool], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


async def test_deferred_payloads_get_their_record_seq_and_a_refusal_fails_only_its_own(
    gated: GatedLog,
) -> None:
    writer = make_writer(gated)
    task = asyncio.create_task(writer.run())
    gated.gate.clear()
    first = writer.submit(events(1, "a"), seqs)
    await asyncio.sleep(0.05)
    made_on: list[str] = []

    def deferred(*tags: str) -> Callable[[int], list[bytes]]:
        def payloads(first_seq: int) -> list[bytes]:
            made_on.append(threading.current_thread().name)
            return [
                f'{{"id":"{tag}","seq":{first_seq + i}}}'.encode() for i, tag in enumerate(tags)
            ]

        return payloads

    def refuse(first_seq: int) -> list[bytes]:
        raise MemorydError(errors.LOCKED, "locked meanwhile")

    failures: list[str] = []
    placeholders = [(PUT, 1, b""), (PUT, 1, b"")]
    ok_before = writer.submit(placeholders, seqs, deferred=deferred("b", "c"))
    refused = writer.submit(
        [(PUT, 1, b"")], seqs, lambda: failures.append("refused"), deferred=refuse
    )
    ok_after = writer.submit([(PUT, 1, b"")], seqs, deferred=deferred("d"))
    wrong_count = writer.submit([(PUT, 1, b"")], seqs, deferred=deferred("e", "f"))
    gated.gate.set()
    assert await first == [1]
    assert await ok_before == [2, 3]
    with pytest.raises(MemorydError) as exc:
        await refused
    assert exc.value.code == errors.LOCKED and failures == ["refused"]
    assert await ok_after == [4]  # the refused submission took no seq
    with pytest.raises(MemorydError) as exc:
        await wrong_count  # two payloads for one event: refused, never written
    assert exc.value.code == errors.INTERNAL
    assert made_on == ["memoryd-log"] * 3
    written = [entry.record.payload for entry in gated.log.read_from(2)]
    assert written == [b'{"id":"b","seq":2}', b'{"id":"c","seq":3}', b'{"id":"d","seq":4}']
    assert writer.queued_events == 0
    await stop(writer, task)
