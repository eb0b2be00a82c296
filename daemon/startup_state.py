"""Start-up: the projection and derived state a start begins from, fastest first.

With a usable checkpoint (storage/checkpoint.py), derived state and the frame
table come from it, and only the log after its sequence number is replayed
into the projection (the builder then builds that tail).  Chunk files the
checkpoint covers are kept; those written after it (by a run that then
crashed) are removed, since the builder writes them again.

Without one (none yet, damaged, of another embedder or another log) the
reason is logged, the projection replays the whole log, and derived state
starts empty with an empty chunk folder: the builder rebuilds it all.
"""

from __future__ import annotations

import gc
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from memoryd.storage import EventLog
from memoryd.storage.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    RestoreVectors,
    load_checkpoint,
)
from memoryd.storage.chunks import remove_chunks_after
from memoryd.storage.derived import DerivedState, SearchFrames
from memoryd.storage.projection import Projection
from memoryd.storage.search import Embedder, SearchIndex

log = logging.getLogger("memoryd.startup")

CHUNKS_DIR_NAME = "chunks"


@dataclass(slots=True)
class StartState:
    """What serving starts from, and how it was obtained."""

    projection: Projection
    derived: DerivedState
    index: SearchIndex
    checkpoint: CheckpointInfo | None
    checkpoint_problem: str | None
    replayed_records: int
    duration_s: float


def start_state(
    data_dir: Path,
    event_log: EventLog,
    embedder: Embedder,
    projection: Projection,
    restore_vectors: RestoreVectors | None = None,
    on_projection: Callable[[Projection], None] | None = None,
) -> StartState:
    """Restore from the checkpoint if it is usable, else rebuild; see the module docstring.

    ``projection`` is folded into when there is no checkpoint (its progress can
    be reported meanwhile); ``on_projection`` is told which projection is used
    before the tail replay starts.  Runs on a thread (file I/O, CPU).

    The cyclic garbage collector is paused meanwhile: start-up allocates
    millions of long-lived objects (slots, ids, keys) and nothing cyclic, and
    each young collection would walk them again (at 1M frames it tripled the
    time to restore the frame table).
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _start_state(
            data_dir, event_log, embedder, projection, restore_vectors, on_projection
        )
    finally:
        if collecting:
            gc.enable()


def _start_state(
    data_dir: Path,
    event_log: EventLog,
    embedder: Embedder,
    projection: Projection,
    restore_vectors: RestoreVectors | None,
    on_projection: Callable[[Projection], None] | None,
) -> StartState:
    started = time.monotonic()
    chunks_dir = data_dir / CHUNKS_DIR_NAME
    try:
        restored = load_checkpoint(data_dir, event_log, embedder, chunks_dir, restore_vectors)
    except CheckpointError as exc:
        problem = str(exc)
        if problem != "no checkpoint":
            log.warning("checkpoint not used, rebuilding derived state from the log: %s", problem)
        if on_projection is not None:
            on_projection(projection)
        replayed = projection.replay(event_log.read_from(1))
        index = SearchIndex(embedder)
        derived = fresh_derived_state(chunks_dir)
        derived.indexes.append(SearchFrames(index))
        return StartState(
            projection, derived, index, None, problem, replayed, time.monotonic() - started
        )
    derived = restored.derived
    if on_projection is not None:
        on_projection(restored.projection)
    replayed = restored.projection.replay(
        event_log.read_from(derived.built_seq + 1, derived.resume_at)
    )
    removed = remove_chunks_after(chunks_dir, derived.built_seq)
    log.info(
        "restored derived state at seq %d from the checkpoint in %.2fs; replayed %d records "
        "after it; removed %d chunk files written after it",
        derived.built_seq,
        restored.info.duration_s,
        replayed,
        removed,
    )
    return StartState(
        restored.projection,
        derived,
        restored.index,
        restored.info,
        None,
        replayed,
        time.monotonic() - started,
    )


def fresh_derived_state(chunks_dir: Path) -> DerivedState:
    """Empty derived state: chunk files of an earlier run are removed (all are rebuilt)."""
    if chunks_dir.exists():
        shutil.rmtree(chunks_dir)
    chunks_dir.mkdir(mode=0o700)
    return DerivedState(chunks_dir)
