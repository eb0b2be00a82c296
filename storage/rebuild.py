"""Rebuild: every piece of derived state made again from the log alone, offline.

``rebuild_data_dir`` takes the data directory's lock (the daemon must be
stopped), removes the checkpoint and every chunk file, folds the whole log
into fresh derived state as the daemon's builder folds a backlog (steps of
``step_chunks_max`` chunks, chunk files of at most ``chunk_frames_max`` frames,
the same doc numbers), and writes a new checkpoint, so that the next start
serves from it without replaying anything.
"""

from __future__ import annotations

import itertools
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memoryd.storage.checkpoint import (
    CheckpointInfo,
    capture,
    remove_checkpoint,
    write_checkpoint,
)
from memoryd.storage.derived import DerivedState, SearchFrames
from memoryd.storage.layout import LOG_DIR_NAME
from memoryd.storage.lock import DataDirLock
from memoryd.storage.log import FileLog
from memoryd.storage.search import Embedder, SearchIndex

CHUNKS_DIR_NAME = "chunks"


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What a rebuild read and made."""

    records: int
    frames_built: int
    docs_live: int
    unbuildable_records: int
    removed_checkpoint: bool
    checkpoint: CheckpointInfo | None
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "frames_built": self.frames_built,
            "docs_live": self.docs_live,
            "unbuildable_records": self.unbuildable_records,
            "removed_checkpoint": self.removed_checkpoint,
            "checkpoint": None if self.checkpoint is None else self.checkpoint.as_dict(),
            "duration_s": round(self.duration_s, 3),
        }

    def summary(self) -> str:
        written = (
            f"checkpoint at seq {self.checkpoint.built_seq} ({self.checkpoint.size_bytes} bytes)"
            if self.checkpoint is not None
            else "no checkpoint (the log is empty)"
        )
        return (
            f"rebuilt derived state from {self.records} records: {self.frames_built} frames "
            f"built, {self.docs_live} live, {self.unbuildable_records} unbuildable; "
            f"{written}; {self.duration_s:.1f}s"
        )


def rebuild_data_dir(
    data_dir: Path, embedder: Embedder, chunk_frames_max: int, step_chunks_max: int = 1
) -> RebuildReport:
    """Rebuild all derived state of ``data_dir`` from its log; see the module docstring.

    Raises DataDirLockedError if a daemon (or another command) holds the lock.
    """
    started = time.monotonic()
    with DataDirLock(data_dir):
        removed = remove_checkpoint(data_dir)
        chunks_dir = data_dir / CHUNKS_DIR_NAME
        if chunks_dir.exists():
            shutil.rmtree(chunks_dir)
        chunks_dir.mkdir(mode=0o700)
        event_log, _report = FileLog.open(data_dir / LOG_DIR_NAME)
        try:
            index = SearchIndex(embedder)
            derived = DerivedState(chunks_dir)
            derived.indexes.append(SearchFrames(index))
            entries = event_log.read_from(1)
            records = 0
            step_records = chunk_frames_max * step_chunks_max
            while batch := list(itertools.islice(entries, step_records)):
                records += len(batch)
                derived.build(batch, chunk_frames_max)
            info = None
            if derived.built_seq:
                info = write_checkpoint(data_dir, capture(derived, index), event_log)
        finally:
            event_log.close()
    return RebuildReport(
        records,
        derived.frames_built,
        derived.catalog.live,
        derived.unbuildable_total,
        removed,
        info,
        time.monotonic() - started,
    )
