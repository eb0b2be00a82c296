"""The builder: the one task that changes derived state, following the log.

It reads committed records in log order (never anything uncommitted: the
writer tells it how far the log is committed) and folds them into
``DerivedState`` a step at a time, each stored as chunks of at most
``chunk_frames_max`` frames: decoding and embedding on its own thread, then
applying the result on the event loop thread, so that search always sees one
consistent state.  A step is one chunk while puts wait for their commit, and
up to ``step_chunks_max`` chunks otherwise (a backlog is built in fewer,
larger passes).

When to build (``BuildPolicy``):
- fewer than ``min_frames`` records wait: build after ``idle_ms`` without
  new commits (a lone put is searchable within about idle_ms);
- at least ``min_frames`` wait: build once commits pause for ``quiet_ms``, so
  that puts arriving together, or one at a time back to back, share a chunk
  (a step started between two lone puts delays the next one);
- ``queue_bound`` or more wait, or a search waits for what is committed:
  build at once, chunk after chunk;
- but while puts wait for their commit, hold back (``yield_ms_max`` at a time,
  up to a lag of ``yield_lag_max``, never while a search waits): on two cores
  the builder's Python work and the write path share one interpreter lock, and
  an acknowledgement should not wait behind indexing.

Private frames committed while the vault is locked (or taken out of the
indexes on lock or a key change) wait in ``derived.private_pending``; once no
committed record waits and the vault is unlocked, the builder indexes them a
chunk at a time (``_step_private``: opened and blinded on its thread).

Once it has caught up after building at least ``HEAP_TRIM_FRAMES`` frames, it
gives the heap's free pages back to the system (daemon/heap.py) on its thread.

Once it has been idle for ``merge_idle_s`` with more than two keyword segments
(each query term costs a lookup per segment), it merges them down to one or two
(``InvertedIndex.start_merge``) on a thread of its own, building on meanwhile,
and swaps the result in between two steps.

It never dies silently: a failed step is logged, counted, shown in ``stats``
and retried with a back-off; ``progressing`` tells health checks whether it
keeps up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from memoryd.daemon import heap
from memoryd.daemon.build_policy import BuildPolicy
from memoryd.storage import EventLog, LogEntry, RecordLocation
from memoryd.storage.derived import BuildStep, DerivedState, Prepared, PreparedPrivate
from memoryd.storage.search.inverted import InvertedIndex, SegmentMerge

log = logging.getLogger("memoryd.builder")

RETRY_DELAY_S_MAX = 5.0
HEAP_TRIM_FRAMES = 10_000  # frames built between two returns of free heap memory
MERGE_IDLE_S = 1.0  # idle this long before the keyword index's segments are merged


class Builder:
    """Follows ``event_log`` into ``derived``.  Start with ``run``; stop with ``stop``."""

    def __init__(
        self,
        event_log: EventLog,
        derived: DerivedState,
        policy: BuildPolicy,
        on_built: Callable[[BuildStep], None] | None = None,
        keyword: InvertedIndex | None = None,
    ) -> None:
        self._log = event_log
        self.derived = derived
        # Told what each step changed (search caches drop what it makes stale).
        self.on_built = on_built
        # The keyword index whose segments it merges when idle (None: no merges), and
        # who is told after a merge (it may drop deleted docs' postings, moving BM25).
        self.keyword = keyword
        self.on_merged: Callable[[], None] | None = None
        self.merge_idle_s = MERGE_IDLE_S
        self._merge: SegmentMerge | None = None
        self._merge_future: asyncio.Future[None] | None = None
        self._merge_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memoryd-merge")
        self.merges = 0
        self._policy = policy
        self._committed_seq = event_log.last_seq
        self._wake = asyncio.Event()
        self._stopping = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memoryd-build")
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        # How many events wait for their commit (the writer's queue); 0 when unknown.
        self.writes_pending: Callable[[], int] = lambda: 0
        self.yields = 0
        # Held while a step changes derived state: a checkpoint captures between steps.
        self.step_lock = asyncio.Lock()
        # True while a step runs; stays True if one was cancelled half way.
        self.step_interrupted = False
        self.steps = 0
        self.heap_trims = 0
        self._frames_at_trim = derived.frames_built
        self.failures = 0
        self.last_error: str | None = None
        self.last_progress_monotonic = time.monotonic()

    # -- inputs ---------------------------------------------------------------------

    def notify_committed(self, seq: int) -> None:
        """The writer committed everything up to ``seq``."""
        if seq > self._committed_seq:
            self._committed_seq = seq
            self._wake.set()

    @property
    def lag(self) -> int:
        """Committed records not yet built."""
        return max(0, self._committed_seq - self.derived.built_seq)

    def wake(self) -> None:
        """Look again for work (the vault was unlocked, or its index key changed)."""
        self._wake.set()

    @property
    def searchable_seq(self) -> int:
        """Every record up to this seq is searchable (private ones only while unlocked)."""
        private = self.derived.private
        unlocked = private is not None and private.index_key_id is not None
        return self.derived.searchable_seq(unlocked)

    def _private_work(self) -> bool:
        private = self.derived.private
        return (
            bool(self.derived.private_pending)
            and private is not None
            and private.index_key_id is not None
        )

    @property
    def progressing(self) -> bool:
        """False when records wait and the builder has not moved for a while."""
        stalled_s = time.monotonic() - self.last_progress_monotonic
        return self.lag == 0 or stalled_s < 10 * RETRY_DELAY_S_MAX

    async def wait_built(self, seq: int, timeout_s: float) -> bool:
        """Wait until everything up to ``seq`` is built; False on timeout."""
        if self.searchable_seq >= seq:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, future))
        self._wake.set()  # a search waits: gathering more frames ends now
        try:
            async with asyncio.timeout(timeout_s):
                await future
            return True
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove((seq, future))

    # -- the loop -------------------------------------------------------------------

    async def run(self) -> None:
        retry_delay_s = 0.05
        while True:
            if self._merge_future is not None and self._merge_future.done():
                await self._finish_merge()
            lag = self.lag
            private_work = lag == 0 and not self._stopping and self._private_work()
            if lag == 0 and not private_work:
                if self._stopping:
                    return
                if self.derived.frames_built - self._frames_at_trim >= HEAP_TRIM_FRAMES:
                    await self._trim_heap()
                    continue  # commits may have come in meanwhile
                self._wake.clear()
                if self._merge_wanted():
                    if await self._idle_for(self.merge_idle_s):
                        async with self.step_lock:
                            self._start_merge()
                    continue
                await self._wake.wait()
                continue
            if not private_work:
                await self._gather(lag)
            await self._yield_to_writes()
            try:
                async with self.step_lock:
                    await (self._step_private() if private_work else self._step())
            except Exception as exc:  # a bug or an I/O error must not end the builder
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("build step after seq %d failed; retrying", self.derived.built_seq)
                await asyncio.sleep(retry_delay_s)
                retry_delay_s = min(retry_delay_s * 2, RETRY_DELAY_S_MAX)
                continue
            retry_delay_s = 0.05
            self._release_waiters()
            await asyncio.sleep(0)  # let requests run between chunks

    async def _trim_heap(self) -> None:
        self._frames_at_trim = self.derived.frames_built
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        if await loop.run_in_executor(self._executor, heap.trim):
            self.heap_trims += 1
            log.debug("free heap memory returned in %.1f ms", (time.monotonic() - started) * 1e3)

    async def _idle_for(self, seconds: float) -> bool:
        """True once ``seconds`` pass without a wake-up (new commits, a merge done)."""
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            return True
        return False

    def _merge_wanted(self) -> bool:
        keyword = self.keyword
        return keyword is not None and self._merge_future is None and keyword.segment_count > 2

    def _start_merge(self) -> None:
        """Begin a merge of the keyword segments (sealing the tail: a change of
        derived state, so the caller holds ``step_lock``) on the merge thread."""
        assert self.keyword is not None
        merge = self.keyword.start_merge()
        if merge is None:
            return
        self._merge = merge
        future = asyncio.get_running_loop().run_in_executor(self._merge_executor, merge.run)
        future.add_done_callback(lambda _done: self._wake.set())
        self._merge_future = future

    async def _finish_merge(self) -> None:
        """Swap a finished merge in between two steps (or drop a failed one)."""
        future, merge = self._merge_future, self._merge
        self._merge_future = self._merge = None
        assert future is not None and merge is not None and self.keyword is not None
        if future.cancelled() or future.exception() is not None:
            # The segments it read are untouched: searches go on as before.
            if not future.cancelled():
                log.error("keyword segment merge failed: %r", future.exception())
            self.keyword.finish_merge(merge)  # releases the merge; changes nothing
            return
        async with self.step_lock:
            merged = self.keyword.finish_merge(merge)
            if merged:
                self.merges += 1
                if self.on_merged is not None:
                    self.on_merged()
        if merged:
            # The merged-away segments were freed in pieces the allocator keeps
            # (~230 MiB at a million frames): give them back.
            del future, merge
            await self._trim_heap()

    async def _gather(self, lag: int) -> None:
        """Wait briefly for more records to share this chunk, as the policy says."""
        policy = self._policy
        if self._stopping or lag >= policy.queue_bound or self._waiters:
            return
        while self.lag < policy.min_frames:
            if not await self._next_commit(policy.idle_ms) or self._stopping or self._waiters:
                return
        if policy.quiet_ms == 0:
            await asyncio.sleep(0)  # puts arriving together share the chunk
            return
        while self.lag < policy.queue_bound:
            if not await self._next_commit(policy.quiet_ms) or self._stopping or self._waiters:
                return

    async def _next_commit(self, within_ms: int) -> bool:
        """True if woken (a commit, a search waiting, a stop) within ``within_ms``."""
        self._wake.clear()
        try:
            async with asyncio.timeout(within_ms / 1000):
                await self._wake.wait()
        except TimeoutError:
            return False
        return True

    async def _yield_to_writes(self) -> None:
        """Hold back while puts wait for their commit, within the policy's bounds."""
        policy = self._policy
        deadline = time.monotonic() + policy.yield_ms_max / 1000
        while (
            self.writes_pending() > 0
            and not self._stopping
            and not self._waiters
            and self.lag < policy.yield_lag_max
            and time.monotonic() < deadline
        ):
            self.yields += 1
            await asyncio.sleep(0.001)

    async def _step(self) -> None:
        """Read and prepare the next step's records on the builder thread (decoding
        and embedding are the slow part), apply them here, on the loop thread,
        where searches run, so that a search never sees half a step, then write
        its chunk files on the builder thread.

        ``steps`` counts a step once applied, as ``lag`` does: a reader that sees
        the lag fall to 0 sees every step that built it (its chunk files may still
        be being written, and ``chunks_written`` counts them once they are)."""
        derived = self.derived
        built_seq, resume_at = derived.built_seq, derived.resume_at
        loop = asyncio.get_running_loop()
        self.step_interrupted = True
        # Several chunks in one pass while no put waits for its commit (a backlog built
        # after a burst): one chunk at a time while puts stream, so that applying a step
        # on the loop never holds their acknowledgements long.
        policy = self._policy
        records_max = policy.chunk_frames_max if self.writes_pending() else policy.step_records_max
        prepared = await loop.run_in_executor(
            self._executor, self._read_and_prepare, built_seq, resume_at, records_max
        )
        step = derived.apply(prepared) if prepared.entries else None
        self.steps += 1
        if step is not None:
            if self.on_built is not None:
                self.on_built(step)
            # File creation can wait behind the log's fdatasync (ext4 orders them),
            # so the chunk is written on the builder thread, never on the loop.
            await loop.run_in_executor(
                self._executor,
                derived.store_chunk,
                step.chunk_frames,
                policy.chunk_frames_max,
            )
        self.step_interrupted = False
        self.last_progress_monotonic = time.monotonic()

    async def _step_private(self) -> None:
        """Index a chunk's worth of pending private frames: read, opened and blinded on
        the builder thread, applied here."""
        derived = self.derived
        batch = derived.pending_batch(self._policy.chunk_frames_max)
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(self._executor, self._read_private, batch)
        if prepared is not None:
            step = derived.apply_private(prepared)
            if step.frames and self.on_built is not None:
                self.on_built(step)
        self.steps += 1
        self.last_progress_monotonic = time.monotonic()

    def _read_private(self, batch: list[tuple[int, RecordLocation]]) -> PreparedPrivate | None:
        entries = [LogEntry(self._log.read_at(location), location) for _, location in batch]
        return self.derived.prepare_private(entries)

    def _read_and_prepare(
        self, built_seq: int, resume_at: RecordLocation | None, records_max: int
    ) -> Prepared:
        entries = list(itertools.islice(self._log.read_from(built_seq + 1, resume_at), records_max))
        return self.derived.prepare(entries)

    def _release_waiters(self) -> None:
        built = self.searchable_seq
        for seq, future in self._waiters:
            if seq <= built and not future.done():
                future.set_result(None)

    def stop(self) -> None:
        """Finish building what is committed, then return from ``run``."""
        self._stopping = True
        self._wake.set()

    def close(self) -> None:
        """Release the builder thread (after ``run`` has returned or been cancelled)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._merge_executor.shutdown(wait=True, cancel_futures=True)

    def stats(self) -> dict[str, Any]:
        return {
            "builder_lag": self.lag,
            "builder_steps": self.steps,
            "builder_yields": self.yields,
            "builder_heap_trims": self.heap_trims,
            "keyword_segments": 0 if self.keyword is None else self.keyword.segment_count,
            "keyword_merges": self.merges,
            "keyword_merging": self._merge_future is not None,
            "builder_failures": self.failures,
            "builder_last_error": self.last_error,
            "builder_progressing": self.progressing,
            **self.derived.stats(),
        }
