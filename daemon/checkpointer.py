"""The checkpointer: saves derived state now and then, and once more at a clean stop.

Every ``interval_s``, when the builder has built something since the last
checkpoint (or merged keyword segments: a start should load them merged), it
takes the builder's step lock just long enough to capture a snapshot (views of
append-only arrays, copies of the few that change in place: milliseconds), then
writes it on a thread while the builder goes on
(storage/checkpoint.py: temporary file, fsync, rename).  At shutdown,
``final`` writes one last checkpoint of what the builder reached, bounded by
``deadline_s``: past it the write is abandoned and the previous checkpoint
stays (a start then replays a longer tail; nothing is lost).

A failure is logged and counted, never fatal: the log is the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

from memoryd.daemon.builder import Builder
from memoryd.storage import EventLog
from memoryd.storage.arrayfile import WriteCancelledError
from memoryd.storage.checkpoint import CheckpointInfo, Snapshot, capture, write_checkpoint
from memoryd.storage.search import SearchIndex

log = logging.getLogger("memoryd.checkpoint")


class Checkpointer:
    """Periodic and final checkpoints of ``builder.derived`` and ``index``."""

    def __init__(
        self,
        data_dir: Path,
        event_log: EventLog,
        builder: Builder,
        index: SearchIndex,
        *,
        interval_s: float,
        deadline_s: float,
        last: CheckpointInfo | None = None,
    ) -> None:
        self._data_dir = data_dir
        self._log = event_log
        self._builder = builder
        self._index = index
        self.interval_s = interval_s
        self.deadline_s = deadline_s
        self.last = last  # the newest checkpoint on disk (restored or written)
        self.written = 0
        self.failures = 0
        self.skipped_private_pending = 0
        self.last_error: str | None = None
        self._cancel = threading.Event()
        self._merges_saved = builder.merges  # the builder's merges the last one holds

    async def run(self) -> None:
        """Checkpoint every ``interval_s`` while there is something new; until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            await self.checkpoint()

    async def checkpoint(self) -> CheckpointInfo | None:
        """One checkpoint now, if the builder has moved since the last; None if not."""
        if not self._due():
            return None
        async with self._builder.step_lock:
            merges = self._builder.merges
            snapshot = self._capture()
        if snapshot is None:
            return None
        info = await asyncio.to_thread(self._write, snapshot)
        if info is not None:
            self._merges_saved = merges
        return info

    async def final(self) -> CheckpointInfo | None:
        """The checkpoint of a clean stop (the builder has stopped), within ``deadline_s``."""
        if not self._due() or self._builder.step_interrupted:
            return None  # a step cut short may not have written its chunk
        merges = self._builder.merges
        snapshot = self._capture()
        if snapshot is None:
            return None
        write = asyncio.ensure_future(asyncio.to_thread(self._write, snapshot))
        try:
            async with asyncio.timeout(self.deadline_s):
                info = await asyncio.shield(write)
                if info is not None:
                    self._merges_saved = merges
                return info
        except TimeoutError:
            self._cancel.set()
            with contextlib.suppress(Exception):
                await write
            log.warning(
                "the shutdown checkpoint took over %.1fs and was abandoned; "
                "the next start replays from the previous one",
                self.deadline_s,
            )
            return None

    def _due(self) -> bool:
        derived = self._builder.derived
        built = derived.built_seq
        if derived.private_pending:
            # Private frames that wait for the vault are in no index, and a restore
            # rebuilds the frame table from the catalog: they would be left out.  So
            # no checkpoint until they are indexed (the previous one stays valid).
            self.skipped_private_pending += 1
            return False
        if built > 0 and self._builder.merges > self._merges_saved:
            return True
        return built > 0 and (self.last is None or built > self.last.built_seq)

    def _capture(self) -> Snapshot | None:
        derived = self._builder.derived
        try:
            snapshot = capture(derived, self._index)
        except ValueError as exc:
            self._failed(derived.built_seq, exc)
            return None
        derived.unsynced_chunks = []
        return snapshot

    def _failed(self, seq: int, exc: Exception) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.error("checkpoint at seq %d failed: %s", seq, exc)

    def _write(self, snapshot: Snapshot) -> CheckpointInfo | None:
        try:
            info = write_checkpoint(self._data_dir, snapshot, self._log, self._cancel.is_set)
        except WriteCancelledError:
            self._restore_unsynced(snapshot)
            return None
        except (OSError, ValueError) as exc:
            self._restore_unsynced(snapshot)
            self._failed(snapshot.built_seq, exc)
            return None
        self.written += 1
        self.last = info
        log.info(
            "checkpoint at seq %d: %d bytes in %.2fs",
            info.built_seq,
            info.size_bytes,
            info.duration_s,
        )
        return info

    def _restore_unsynced(self, snapshot: Snapshot) -> None:
        # Chunks it would have synced must be synced by the next one.
        derived = self._builder.derived
        derived.unsynced_chunks = snapshot.chunks_to_sync + derived.unsynced_chunks

    def last_checkpoint(self) -> dict[str, Any] | None:
        """What ``status`` shows: the newest checkpoint on disk, or None."""
        if self.last is None:
            return None
        out = self.last.as_dict()
        out["age_s"] = round(time.time() - self.last.written_ms / 1000, 1)
        return out

    def stats(self) -> dict[str, Any]:
        last = self.last
        return {
            "checkpoints_written": self.written,
            "checkpoint_failures": self.failures,
            "checkpoint_skipped_private_pending": self.skipped_private_pending,
            "checkpoint_last_error": self.last_error,
            "checkpoint_seq": None if last is None else last.built_seq,
            "checkpoint_bytes": None if last is None else last.size_bytes,
            "checkpoint_duration_s": None if last is None else round(last.duration_s, 3),
        }
