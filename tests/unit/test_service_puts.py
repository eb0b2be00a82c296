"""Service puts in process: content-addressed dedup (live, in one batch, in flight), failures."""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from memoryd.client import errors
from memoryd.client.errors import MemorydError
from memoryd.daemon.config import Config
from memoryd.daemon.near_duplicates import NearDuplicates
from memoryd.daemon.service import Service
from memoryd.daemon.writer import CommitWriter
from memoryd.storage import FileLog
from memoryd.storage.derived import DerivedState
from memoryd.storage.projection import Projection
from tests.unit.gated_log import GatedLog


@dataclass
class Daemon:
    service: Service
    log: GatedLog
    projection: Projection


@contextlib.asynccontextmanager
async def running_service(tmp_path: Path, queue_events_max: int) -> AsyncIterator[Daemon]:
    """A Service over a real log (appends behind a gate) and a running CommitWriter."""
    log, _report = FileLog.open(tmp_path / "log")
    gated = GatedLog(log)
    projection = Projection()
    writer = CommitWriter(
        gated,
        queue_events_max=queue_events_max,
        batch_events_max=1_000,
        relaxed_sync_interval_ms=None,
    )
    task = asyncio.create_task(writer.run())
    config = Config(data_dir=tmp_path / "data", socket_path=tmp_path / "s.sock")
    service = Service(config, gated, projection, writer, dict)  # type: ignore[arg-type]
    try:
        yield Daemon(service, gated, projection)
    finally:
        gated.gate.set()
        writer.stop()
        await task
        writer.close()
        log.close()


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with running_service(tmp_path, queue_events_max=10_000) as running:
        yield running


async def answer(result: Any) -> dict[str, Any]:
    return result if isinstance(result, dict) else await result  # type: ignore[no-any-return]


async def test_a_put_is_new_once_then_answered_from_the_table(daemon: Daemon) -> None:
    first = await answer(daemon.service.put({"content": "hello", "timestamp_ms": 1234}))
    assert first["is_new"] is True
    assert (first["seq"], first["timestamp_ms"]) == (1, 1234)
    # Acknowledged means readable.
    got = daemon.service.get({"id": first["id"]})
    assert isinstance(got, dict) and got["frame"]["content"] == "hello"
    again = daemon.service.put({"content": "hello"})
    assert isinstance(again, dict)  # a live frame is answered at once, nothing written
    assert again == {**first, "is_new": False}
    assert daemon.log.last_seq == 1


async def test_the_same_frame_twice_in_one_batch_is_written_once(daemon: Daemon) -> None:
    result = await answer(
        daemon.service.put_batch(
            {"frames": [{"content": "a"}, {"content": "b"}, {"content": "a"}, {"content": "a"}]}
        )
    )
    a, b, a2, a3 = result["results"]
    assert (a["is_new"], b["is_new"], a2["is_new"], a3["is_new"]) == (True, True, False, False)
    assert a2 == a3 == {**a, "is_new": False}
    assert daemon.log.last_seq == 2
    daemon.projection.table._check()


async def test_a_put_of_a_frame_in_flight_waits_for_that_commit(daemon: Daemon) -> None:
    daemon.log.gate.clear()
    writing = daemon.service.put({"content": "a", "kind": "fact"})
    batch = daemon.service.put_batch(
        {"frames": [{"content": "b"}, {"content": "a", "kind": "fact"}]}
    )
    single = daemon.service.put({"content": "a", "kind": "fact"})
    assert not isinstance(writing, dict) and not isinstance(batch, dict)
    assert not isinstance(single, dict)
    await asyncio.sleep(0.02)
    assert not batch.done()  # waits for the first put's commit
    daemon.log.gate.set()
    written = await writing
    b, a = (await batch)["results"]
    assert written["is_new"] is True and b["is_new"] is True
    assert a == {**written, "is_new": False}
    assert await single == {**written, "is_new": False}
    assert daemon.log.last_seq == 2  # "a" once, "b" once
    assert daemon.service._in_flight == {}


async def test_a_failed_commit_fails_its_waiters_and_a_retry_writes(daemon: Daemon) -> None:
    daemon.log.gate.clear()
    daemon.log.fail_with = OSError(errno.ENOSPC, "No space left on device")
    writing = daemon.service.put({"content": "a"})
    waiting = daemon.service.put_batch({"frames": [{"content": "a"}]})
    assert not isinstance(writing, dict) and not isinstance(waiting, dict)
    daemon.log.gate.set()
    for future in (writing, waiting):
        with pytest.raises(MemorydError) as caught:
            await future
        assert caught.value.code == errors.DISK_FULL
    assert daemon.service._in_flight == {}
    assert len(daemon.projection.table) == 0
    daemon.log.fail_with = None
    retry = await answer(daemon.service.put({"content": "a"}))
    assert retry["is_new"] is True and retry["seq"] == 1


async def test_private_puts_are_refused_before_anything_is_written(daemon: Daemon) -> None:
    with pytest.raises(MemorydError) as caught:
        daemon.service.put_batch({"frames": [{"content": "a"}, {"content": "b", "private": True}]})
    assert caught.value.code == errors.LOCKED
    assert daemon.log.last_seq == 0 and daemon.service._in_flight == {}


async def test_a_put_refused_as_busy_leaves_no_near_twin_work_behind(tmp_path: Path) -> None:
    async with running_service(tmp_path, queue_events_max=1) as running:
        service = running.service
        service.near_duplicates = NearDuplicates(DerivedState(tmp_path / "chunks"))
        running.log.gate.clear()  # the first put holds the queue's one place
        first = service.put({"content": "the first memory"})
        with pytest.raises(MemorydError) as caught:
            service.put({"content": "a second memory"})
        assert caught.value.code == errors.BUSY
        running.log.gate.set()
        put = await answer(first)
        assert put["is_new"] and "near_duplicate_of" not in put
        # Nothing of either put waits for, or holds, a twin any longer.
        assert service._near_waiting == {} and service._near_found == {}
