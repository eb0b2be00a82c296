"""Derived state built from committed records: the catalog, chunks and the search indexes.

``DerivedState.build`` folds a run of log entries, in log order, into:
- immutable chunk files of the frames put (storage/chunks.py);
- the catalog (doc numbers, filterable attributes, liveness);
- the search indexes (keyword and vector), when attached;
- per frame, its six significance scores (the caller's, else the heuristic's),
  its fact kind and its SimHash, and a bounded near-duplicate index over the
  most recent frames' SimHashes.

It never reads anything but the entries it is given, so running it over the
whole log from sequence 1 (``memoryd rebuild``) reproduces it exactly.  A
record it cannot fold (a payload that is not a valid event) is skipped,
counted and remembered in ``unbuildable``; it stays in the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from memoryd.storage.catalog import Catalog
from memoryd.storage.chunks import ChunkInfo, write_chunk
from memoryd.storage.events import EventError, Frame, decode_frame_delete, decode_frame_put
from memoryd.storage.log import LogEntry, RecordLocation
from memoryd.storage.record import RecordType
from memoryd.storage.search import SearchIndex
from memoryd.storage.search.significance import FACT_KINDS, analyze, effective_significance
from memoryd.storage.search.simhash import NearDuplicateIndex, simhash_batch

UNBUILDABLE_KEPT_MAX = 100  # how many unbuildable records are remembered for stats
NEAR_DUPLICATE_DOCS_MAX = 100_000  # near twins are looked for among this many recent frames


class FrameIndex(Protocol):
    """What a search index offers the builder.

    ``prepare`` does the expensive, stateless part (embedding) and may run on
    any thread; ``add_frames`` and ``remove_doc`` change the index and run
    only where searches run.
    """

    def prepare(self, frames: Sequence[Frame]) -> object: ...

    def add_frames(
        self, docs: Sequence[int], frames: Sequence[Frame], prepared: object
    ) -> None: ...

    def remove_doc(self, doc: int) -> None: ...


class SearchFrames:
    """Feeds frames to a SearchIndex: their text, time, importance, kind and embedding."""

    def __init__(self, index: SearchIndex) -> None:
        self.index = index

    def prepare(self, frames: Sequence[Frame]) -> object:
        return self.index.embedder.embed([frame.content for frame in frames])

    def add_frames(self, docs: Sequence[int], frames: Sequence[Frame], prepared: object) -> None:
        assert isinstance(prepared, np.ndarray) and len(prepared) == len(frames)
        self.index.add_batch(
            docs,
            [frame.content for frame in frames],
            [frame.timestamp_ms for frame in frames],
            [frame.importance for frame in frames],
            [frame.kind for frame in frames],
            vectors=prepared,
        )

    def remove_doc(self, doc: int) -> None:
        self.index.delete([doc])


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """One decoded record of a run: a put (frame), a delete (target id), or neither."""

    seq: int
    frame: Frame | None = None
    delete_id: str | None = None
    error: str | None = None
    location: RecordLocation | None = None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A run of records decoded, with each index's expensive work done, ready to apply."""

    entries: Sequence[LogEntry]
    events: list[PreparedEvent]
    frames: list[Frame]  # every put of the run, in order
    per_index: list[object]  # each index's ``prepare`` of ``frames``
    # Aligned with ``frames``: scores, fact kind code, SimHash.
    annotations: list[tuple[tuple[float, ...], int, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BuildStep:
    """What one ``build`` changed: the frames it added, and whether it deleted any."""

    frames: list[Frame]
    deleted: bool

    @property
    def namespaces(self) -> set[str]:
        return {frame.namespace for frame in self.frames}


@dataclass(slots=True)
class Unbuildable:
    seq: int
    reason: str
    location: RecordLocation | None = None


@dataclass(slots=True)
class DerivedState:
    """Everything the builder maintains.  Single writer: the builder."""

    chunks_dir: Path
    catalog: Catalog = field(default_factory=Catalog)
    indexes: list[FrameIndex] = field(default_factory=list)
    built_seq: int = 0
    # Where the next follower read resumes: just past the last record built.
    resume_at: RecordLocation | None = None
    chunks_written: int = 0
    chunk_bytes_stored: int = 0
    chunk_bytes_raw: int = 0
    frames_built: int = 0
    unbuildable_total: int = 0
    unbuildable: list[Unbuildable] = field(default_factory=list)
    near: NearDuplicateIndex = field(
        default_factory=lambda: NearDuplicateIndex(NEAR_DUPLICATE_DOCS_MAX)
    )
    # Chunk files written since the last checkpoint: it fsyncs them before it refers to them.
    unsynced_chunks: list[Path] = field(default_factory=list)

    def build(self, entries: Sequence[LogEntry]) -> BuildStep:
        """Fold ``entries`` (consecutive, in log order) and store their chunk."""
        step = self.apply(self.prepare(entries))
        self.store_chunk(step.frames)
        return step

    def prepare(self, entries: Sequence[LogEntry]) -> Prepared:
        """Decode ``entries`` and do each index's expensive part.

        Reads no mutable state, so it may run on another thread while searches
        run; ``apply`` must then be called where searches run.
        """
        events: list[PreparedEvent] = []
        for entry in entries:
            record = entry.record
            try:
                if record.record_type == RecordType.FRAME_PUT:
                    frame = decode_frame_put(record.payload, record.seq, record.timestamp_ms)
                    events.append(PreparedEvent(record.seq, frame=frame))
                elif record.record_type == RecordType.FRAME_DELETE:
                    target = decode_frame_delete(record.payload)
                    events.append(PreparedEvent(record.seq, delete_id=target))
            except EventError as exc:
                events.append(PreparedEvent(record.seq, error=str(exc), location=entry.location))
        frames = [event.frame for event in events if event.frame is not None]
        per_index = [index.prepare(frames) for index in self.indexes] if frames else []
        return Prepared(entries, events, frames, per_index, annotate(frames))

    def apply(self, prepared: Prepared) -> BuildStep:
        """Fold a prepared run into the catalog and the indexes (in memory only).

        The frames it added still need ``store_chunk``, which does file I/O and
        so may run on another thread, in the order the steps were applied.
        """
        added: list[Frame] = []
        docs: list[int] = []
        positions: list[int] = []  # of each added frame within prepared.frames
        removed: list[int] = []
        put_position = -1
        locations = {entry.record.seq: entry.location for entry in prepared.entries}
        for event in prepared.events:
            if event.frame is not None:
                put_position += 1
                if event.frame.id in self.catalog.doc_of:
                    continue  # a duplicate put that the writer let through: already built
                doc = self._catalog_add(
                    event.frame, locations[event.seq], prepared.annotations[put_position]
                )
                docs.append(doc)
                added.append(event.frame)
                positions.append(put_position)
            elif event.delete_id is not None:
                gone = self.catalog.remove(event.delete_id)
                if gone is not None:
                    removed.append(gone)
                    self.near.remove(gone)
            elif event.error is not None:
                self._note_unbuildable(event.seq, event.error, event.location)
        if added:
            for index, work in zip(self.indexes, prepared.per_index, strict=True):
                index.add_frames(docs, added, _select(work, positions, len(prepared.frames)))
        # After the additions: a frame put and deleted in one run leaves no trace.
        for doc in removed:
            for index in self.indexes:
                index.remove_doc(doc)
        if prepared.entries:
            last = prepared.entries[-1]
            self.built_seq = last.record.seq
            self.resume_at = last.location
        return BuildStep(added, bool(removed))

    def _catalog_add(
        self,
        frame: Frame,
        location: RecordLocation,
        annotation: tuple[tuple[float, ...], int, int],
    ) -> int:
        self.frames_built += 1
        scores, fact_kind, simhash = annotation
        doc = self.catalog.add(
            frame.id,
            frame.seq,
            frame.timestamp_ms,
            frame.importance,
            frame.namespace,
            frame.kind,
            frame.tags,
            location=(location.segment, location.offset, location.length),
            private=frame.private,
            fact_kind=fact_kind,
            significance=scores,
            simhash=simhash,
        )
        if simhash:
            self.near.add(doc, simhash)
        return doc

    def near_duplicate_of(self, simhash: int, namespace: str) -> str | None:
        """The id of a live built frame of ``namespace`` whose SimHash is near ``simhash``."""
        if not simhash:
            return None
        catalog = self.catalog
        code = catalog.namespaces.get(namespace)
        if code is None:
            return None
        namespace_codes = catalog.namespace_code.view()
        alive = catalog.alive.view()
        found = self.near.nearest(
            simhash, accept=lambda doc: bool(alive[doc]) and int(namespace_codes[doc]) == code
        )
        return None if found is None else catalog.ids[found[0]]

    def store_chunk(self, frames: Sequence[Frame]) -> None:
        """Write the immutable chunk of frames one ``apply`` added (nothing if none)."""
        if frames:
            info = write_chunk(self.chunks_dir, frames)
            self.unsynced_chunks.append(info.path)
            self._count_chunk(info)

    def _count_chunk(self, info: ChunkInfo) -> None:
        self.chunks_written += 1
        self.chunk_bytes_stored += info.stored_bytes
        self.chunk_bytes_raw += info.raw_bytes

    def _note_unbuildable(self, seq: int, reason: str, location: RecordLocation | None) -> None:
        self.unbuildable_total += 1
        if len(self.unbuildable) < UNBUILDABLE_KEPT_MAX:
            self.unbuildable.append(Unbuildable(seq, reason, location))

    def stats(self) -> dict[str, int | float]:
        frames = max(self.frames_built, 1)
        return {
            "built_seq": self.built_seq,
            "frames_built": self.frames_built,
            "docs_live": self.catalog.live,
            "chunks_written": self.chunks_written,
            "chunk_bytes_per_frame": round(self.chunk_bytes_stored / frames, 1),
            "chunk_raw_bytes_per_frame": round(self.chunk_bytes_raw / frames, 1),
            "catalog_bytes": self.catalog.memory_bytes(),
            "unbuildable_records": self.unbuildable_total,
            "near_duplicate_docs": len(self.near),
            "near_duplicate_bytes": self.near.memory_bytes(),
        }


def annotate(frames: Sequence[Frame]) -> list[tuple[tuple[float, ...], int, int]]:
    """Per frame: its six significance scores, its fact kind's code and its SimHash.

    Deterministic (a rebuild gives the same), and pure: runs on the builder thread.
    """
    hashes = simhash_batch([frame.content for frame in frames]).tolist() if frames else []
    out = []
    for frame, simhash in zip(frames, hashes, strict=True):
        analysis = analyze(frame.content)
        given = frame.significance
        scores = (
            analysis.significance.as_tuple()
            if given is None
            else effective_significance(frame.content, given)
        )
        # A private frame's SimHash would tell about its text: it is never kept.
        kept = 0 if frame.private else int(simhash)
        out.append((scores, FACT_KINDS.index(analysis.fact_kind), kept))
    return out


def _select(work: object, positions: list[int], total: int) -> object:
    """The rows of an index's prepared work that belong to the frames actually added."""
    if len(positions) == total or not isinstance(work, np.ndarray):
        return work
    return work[positions]
