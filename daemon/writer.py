"""The commit writer: the one thread that appends to the log (group commit).

Handlers ``submit`` events on the event loop.  The writer's thread takes
everything submitted so far (up to ``batch_events_max`` events), appends it
with one write and one fsync, and hands the outcome back to the loop with one
``call_soon_threadsafe``; there, in log order, each submission's ``apply``
(the projection) runs and its future resolves.  A put is therefore
acknowledged only after its record is durable and visible to reads, and the
loop never waits for the disk: while one group is synced, it keeps reading
requests, which become the next group.

A thread of its own, fed by a queue (aiosqlite's single worker), rather than
``run_in_executor`` from a task: a queue put to wake it and one
``call_soon_threadsafe`` to answer cost half an executor round trip (future
wrapping, a task wake-up), which is most of a lone put's overhead beyond the
fsync; and the thread starts on the next group as soon as a sync returns,
while the loop is still applying the group before.

A submission's payloads may be deferred: a function of its first record's
sequence number, called on the writer's thread just before the append, when
the numbers are known, returning one payload per event (private frames are
sealed there, each bound to its seq, all of a batch in one pass, and the
seals' cost stays off the loop).  If it raises, only its submission fails
(MemorydError as raised, else ``internal``); the rest of the group is
committed.

A submission may also bring work to overlap the disk: ``while_writing`` runs on
the loop as soon as the thread starts on its group, while the write and fsync
hold no interpreter lock (a put's near-twin lookup, which its answer needs,
runs there instead of after the commit).

If the append fails (a full disk, an I/O error) the log has already undone
the partial write; every submission in that group fails with ``disk_full``
or ``storage_error`` and the writer carries on with the next group.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from memoryd.client import errors
from memoryd.client.errors import MemorydError
from memoryd.storage import AppendedRecord, EventLog

log = logging.getLogger("memoryd.writer")

Event = tuple[int, int, bytes]  # (record_type, timestamp_ms, payload)
# Made on the writer's thread from the submission's first seq: one payload per event.
DeferredPayloads = Callable[[int], list[bytes]]
ApplyFn = Callable[[Sequence[AppendedRecord]], object]


@dataclass(slots=True)
class Submission:
    events: list[Event]
    apply: ApplyFn
    future: asyncio.Future[object]
    # Called on the loop when the events could not be committed, before the future fails.
    on_failure: Callable[[], None] | None = None
    deferred: DeferredPayloads | None = None  # the payloads, once the seqs are known
    # Run on the loop while the group is being written: work the answer needs that
    # can overlap the write and fsync (the thread holds no interpreter lock in them).
    while_writing: Callable[[], None] | None = None


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
        # Submissions for the thread, then None once stopping.  Unbounded as a
        # queue, bounded by ``submit``'s count of events not yet finished.
        self._queue: queue.SimpleQueue[Submission | None] = queue.SimpleQueue()
        self._queued_events = 0  # submitted and not yet committed or failed (loop thread)
        self._queue_events_max = queue_events_max
        self._batch_events_max = batch_events_max
        # Relaxed mode: the thread syncs when it has been idle this long after a commit.
        self._relaxed_sync_interval_s = (
            relaxed_sync_interval_ms / 1000 if relaxed_sync_interval_ms else None
        )
        self._thread: threading.Thread | None = None
        self._accepting = True
        self.commits = 0
        self.events_committed = 0
        self.commit_failures = 0

    @property
    def queued_events(self) -> int:
        return self._queued_events

    def submit(
        self,
        events: list[Event],
        apply: ApplyFn,
        on_failure: Callable[[], None] | None = None,
        deferred: DeferredPayloads | None = None,
        while_writing: Callable[[], None] | None = None,
    ) -> asyncio.Future[object]:
        """Queue events to commit together.

        The returned future resolves to ``apply``'s return value once the
        events are durable and applied, or fails with MemorydError (after
        ``on_failure`` has run, when given).  With ``deferred``, the payloads
        of ``events`` are placeholders: ``deferred(first seq)`` makes them.
        ``while_writing`` runs on the loop once the thread starts writing the
        events' group, before ``apply`` (once per group, however many of its
        submissions bring the same function); if it raises, the error is logged
        and the commit goes on.
        """
        if not self._accepting:
            raise MemorydError(errors.SHUTTING_DOWN, "memoryd is shutting down")
        if self._queued_events + len(events) > self._queue_events_max:
            raise MemorydError(
                errors.BUSY,
                f"commit queue is full (commit_queue_events_max={self._queue_events_max})",
            )
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._queued_events += len(events)
        self._queue.put(Submission(events, apply, future, on_failure, deferred, while_writing))
        return future

    async def run(self) -> None:
        """Commit groups on the writer's thread until ``stop`` is called and all is committed."""
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(
            target=self._work, args=(loop, finished), name="memoryd-log", daemon=True
        )
        self._thread.start()
        try:
            await asyncio.shield(finished)
        except asyncio.CancelledError:
            # Never leave the thread appending behind our back: whoever cancelled us
            # may close the log next.  It commits what is queued, then ends.
            self.close()
            raise

    def stop(self) -> None:
        """Refuse new submissions; ``run`` returns after committing what is queued."""
        if self._accepting:
            self._accepting = False
            self._queue.put(None)

    def close(self) -> None:
        """Stop, and wait for the thread to commit what is queued and end."""
        self.stop()
        if self._thread is not None:
            self._thread.join()

    # -- the writer's thread ----------------------------------------------------------

    def _work(self, loop: asyncio.AbstractEventLoop, finished: asyncio.Future[None]) -> None:
        """The thread: append group after group, then sync once stopped."""
        outcome: BaseException | None = None
        try:
            carry: Submission | None = None
            stopping = False
            while not stopping:
                first = carry if carry is not None else self._wait_first()
                if first is None:
                    break
                group, carry, stopping = self._gather(first)
                group, refused = self._resolve(group)
                if refused:
                    loop.call_soon_threadsafe(self._fail_refused, refused)
                if not group:
                    continue
                early = list(dict.fromkeys(s.while_writing for s in group if s.while_writing))
                if early:
                    loop.call_soon_threadsafe(_run_each, early)
                try:
                    result: list[AppendedRecord] | Exception = self._log.append(
                        [event for submission in group for event in submission.events]
                    )
                except Exception as exc:  # the log undid the append: fail this group only
                    result = exc
                loop.call_soon_threadsafe(self._finish_group, group, result)
            self._log.sync()
        except BaseException as exc:  # reported through ``run``, never lost with the thread
            outcome = exc
        with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody waits
            loop.call_soon_threadsafe(_settle, finished, outcome)

    def _wait_first(self) -> Submission | None:
        """The next submission; in relaxed mode, sync the log whenever the queue stays idle."""
        if self._relaxed_sync_interval_s is None:
            return self._queue.get()
        while True:
            try:
                return self._queue.get(timeout=self._relaxed_sync_interval_s)
            except queue.Empty:
                try:
                    self._log.sync()  # does nothing when nothing is unsynced
                except OSError as exc:
                    log.error("relaxed-mode sync failed: %s", exc)

    def _gather(self, first: Submission) -> tuple[list[Submission], Submission | None, bool]:
        """A group: ``first`` and whatever else is queued, up to batch_events_max events.

        Returns the group, a submission taken that did not fit (the next
        group's first), and whether the stop marker was reached.
        """
        group = [first]
        size = len(first.events)
        # empty() before get_nowait(): only this thread takes from the queue, so a
        # non-empty queue stays non-empty, and no queue.Empty is raised per group.
        while not self._queue.empty():
            submission = self._queue.get_nowait()
            if submission is None:
                return group, None, True
            if size + len(submission.events) > self._batch_events_max:
                return group, submission, False
            group.append(submission)
            size += len(submission.events)
        return group, None, False

    def _resolve(
        self, group: list[Submission]
    ) -> tuple[list[Submission], list[tuple[Submission, Exception]]]:
        """Make the deferred payloads of ``group`` from the seqs its events will get.

        Returns the submissions to append and those whose payload refused.
        """
        if all(submission.deferred is None for submission in group):
            return group, []
        seq = self._log.last_seq + 1  # this thread is the only appender
        kept: list[Submission] = []
        refused: list[tuple[Submission, Exception]] = []
        for submission in group:
            if submission.deferred is not None:
                try:
                    submission.events = _resolved(submission.events, submission.deferred(seq))
                except Exception as exc:  # only this submission fails
                    refused.append((submission, exc))
                    continue
                submission.deferred = None
            kept.append(submission)
            seq += len(submission.events)
        return kept, refused

    # -- back on the loop ---------------------------------------------------------------

    def _finish_group(
        self, group: list[Submission], result: list[AppendedRecord] | Exception
    ) -> None:
        """Apply a committed group in log order and resolve its futures (or fail them all)."""
        self._queued_events -= sum(len(submission.events) for submission in group)
        if isinstance(result, Exception):
            self._fail_group(group, result)
            return
        self.commits += 1
        self.events_committed += len(result)
        start = 0
        for submission in group:
            end = start + len(submission.events)
            try:
                value = submission.apply(result[start:end])
            except Exception as exc:  # a projection bug must not take the writer down
                log.exception("applying committed events %d-%d failed", start, end)
                if not submission.future.done():
                    submission.future.set_exception(
                        MemorydError(errors.INTERNAL, f"committed but not applied: {exc}")
                    )
            else:
                if not submission.future.done():
                    submission.future.set_result(value)
            start = end
        if self._on_committed is not None and result:
            self._on_committed(result[-1].seq)

    def _fail_refused(self, refused: list[tuple[Submission, Exception]]) -> None:
        """Fail the submissions whose deferred payload raised: nothing of them was written."""
        for submission, exc in refused:
            self._queued_events -= len(submission.events)
            if isinstance(exc, MemorydError):
                failure = exc
            else:
                log.error("a deferred payload failed", exc_info=exc)
                failure = MemorydError(errors.INTERNAL, f"not committed: {type(exc).__name__}")
            if submission.on_failure is not None:
                submission.on_failure()
            if not submission.future.done():
                submission.future.set_exception(failure)

    def _fail_group(self, group: list[Submission], exc: Exception) -> None:
        self.commit_failures += 1
        events = sum(len(submission.events) for submission in group)
        if isinstance(exc, OSError):
            failure = _storage_failure(exc)
            log.error("commit of %d events failed: %s", events, failure.message)
        else:  # a bug (say, an event the record format refuses): nothing was written
            failure = MemorydError(errors.INTERNAL, f"not committed: {type(exc).__name__}")
            log.error("commit of %d events failed", events, exc_info=exc)
        for submission in group:
            if submission.on_failure is not None:
                submission.on_failure()
            if not submission.future.done():
                submission.future.set_exception(failure)


def _run_each(functions: list[Callable[[], None]]) -> None:
    for function in functions:
        try:
            function()
        except Exception:  # logged; the answer's own path does or fails the work
            log.exception("work overlapping a commit failed")


def _resolved(events: list[Event], payloads: list[bytes]) -> list[Event]:
    if len(payloads) != len(events):
        raise ValueError(f"{len(payloads)} deferred payloads for {len(events)} events")
    return [
        (kind, timestamp_ms, payload)
        for (kind, timestamp_ms, _), payload in zip(events, payloads, strict=True)
    ]


def _settle(future: asyncio.Future[None], outcome: BaseException | None) -> None:
    if future.done():
        return
    if outcome is None:
        future.set_result(None)
    else:
        future.set_exception(outcome)


def _storage_failure(exc: OSError) -> MemorydError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return MemorydError(
            errors.DISK_FULL, "the disk is full: nothing was stored; reads still work"
        )
    return MemorydError(
        errors.STORAGE_ERROR, f"the log could not be written ({exc.strerror}); nothing was stored"
    )
