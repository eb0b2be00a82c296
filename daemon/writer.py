"""The commit writer: the one task that appends to the log (group commit).

Handlers ``submit`` events; the writer takes everything pending at once,
appends it with one write and one fsync on its own thread (so the event loop
keeps reading requests meanwhile, which become the next group), then, on the
loop thread and in log order, runs each submission's ``apply`` (the
projection) and resolves its future.  A put is therefore acknowledged only
after its record is durable and visible to reads.

If the append fails (a full disk, an I/O error) the log has already undone
the partial write; every submission in that group fails with ``disk_full``
or ``storage_error`` and the writer carries on with the next group.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from memoryd.client import errors
from memoryd.client.errors import MemorydError
from memoryd.storage import AppendedRecord, EventLog

log = logging.getLogger("memoryd.writer")

Event = tuple[int, int, bytes]  # (record_type, timestamp_ms, payload)
ApplyFn = Callable[[Sequence[AppendedRecord]], object]
T = TypeVar("T")


@dataclass(slots=True)
class Submission:
    events: list[Event]
    apply: ApplyFn
    future: asyncio.Future[object]


class CommitWriter:
    """Owns all writes to one EventLog.  Bounded: beyond the queue limit, submit says busy."""

    def __init__(
        self,
        event_log: EventLog,
        *,
        queue_events_max: int,
        batch_events_max: int,
        relaxed_sync_interval_ms: int | None,
        on_committed: Callable[[int], None] | None = None,
    ) -> None:
        self._log = event_log
        # Told the last committed seq after every group (the builder follows it).
        self._on_committed = on_committed
        self._queue: deque[Submission] = deque()
        self._queued_events = 0
        self._queue_events_max = queue_events_max
        self._batch_events_max = batch_events_max
        self._relaxed_sync_interval_s = (
            relaxed_sync_interval_ms / 1000 if relaxed_sync_interval_ms else None
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memoryd-log")
        self._wake = asyncio.Event()
        self._accepting = True
        self._unsynced = False
        self.commits = 0
        self.events_committed = 0
        self.commit_failures = 0

    @property
    def queued_events(self) -> int:
        return self._queued_events

    def submit(self, events: list[Event], apply: ApplyFn) -> asyncio.Future[object]:
        """Queue events to commit together.

        The returned future resolves to ``apply``'s return value once the
        events are durable and applied, or fails with MemorydError.
        """
        if not self._accepting:
            raise MemorydError(errors.SHUTTING_DOWN, "memoryd is shutting down")
        if self._queued_events + len(events) > self._queue_events_max:
            raise MemorydError(
                errors.BUSY,
                f"commit queue is full (commit_queue_events_max={self._queue_events_max})",
            )
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._queue.append(Submission(events, apply, future))
        self._queued_events += len(events)
        self._wake.set()
        return future

    async def run(self) -> None:
        """Commit groups until ``stop`` is called and the queue is empty."""
        sync_task = (
            asyncio.create_task(self._relaxed_sync_loop(), name="memoryd-relaxed-sync")
            if self._relaxed_sync_interval_s
            else None
        )
        try:
            while True:
                if not self._queue:
                    if not self._accepting:
                        break
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self._commit(self._take_group())
        finally:
            if sync_task is not None:
                sync_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sync_task
            await self._in_thread(self._log.sync)

    def stop(self) -> None:
        """Refuse new submissions; ``run`` returns after committing what is queued."""
        self._accepting = False
        self._wake.set()

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def _take_group(self) -> list[Submission]:
        group = [self._queue.popleft()]
        size = len(group[0].events)
        while self._queue and size + len(self._queue[0].events) <= self._batch_events_max:
            submission = self._queue.popleft()
            size += len(submission.events)
            group.append(submission)
        self._queued_events -= size
        return group

    async def _commit(self, group: list[Submission]) -> None:
        events = [event for submission in group for event in submission.events]
        try:
            appended = await self._in_thread(self._log.append, events)
        except OSError as exc:
            self.commit_failures += 1
            failure = _storage_failure(exc)
            log.error("commit of %d events failed: %s", len(events), failure.message)
            for submission in group:
                if not submission.future.done():
                    submission.future.set_exception(failure)
            return
        self.commits += 1
        self.events_committed += len(events)
        self._unsynced = self._relaxed_sync_interval_s is not None
        start = 0
        for submission in group:
            end = start + len(submission.events)
            try:
                result = submission.apply(appended[start:end])
            except Exception as exc:  # a projection bug must not take the writer down
                log.exception("applying committed events %d-%d failed", start, end)
                if not submission.future.done():
                    submission.future.set_exception(
                        MemorydError(errors.INTERNAL, f"committed but not applied: {exc}")
                    )
            else:
                if not submission.future.done():
                    submission.future.set_result(result)
            start = end
        if self._on_committed is not None and appended:
            self._on_committed(appended[-1].seq)

    async def _relaxed_sync_loop(self) -> None:
        assert self._relaxed_sync_interval_s is not None
        while True:
            await asyncio.sleep(self._relaxed_sync_interval_s)
            if self._unsynced:
                self._unsynced = False
                try:
                    await self._in_thread(self._log.sync)
                except OSError as exc:
                    log.error("relaxed-mode sync failed: %s", exc)

    async def _in_thread(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def _storage_failure(exc: OSError) -> MemorydError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return MemorydError(
            errors.DISK_FULL, "the disk is full: nothing was stored; reads still work"
        )
    return MemorydError(
        errors.STORAGE_ERROR, f"the log could not be written ({exc.strerror}); nothing was stored"
    )
