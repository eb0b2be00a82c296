"""Derived state built from committed records: the catalog, chunks and the search indexes.

``DerivedState.build`` folds a run of log entries, in log order, into:
- immutable chunk files of the frames put (storage/chunks.py);
- the catalog (doc numbers, filterable attributes, liveness);
- the search indexes (keyword and vector), when attached.

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

from memoryd.storage.catalog import Catalog
from memoryd.storage.chunks import ChunkInfo, write_chunk
from memoryd.storage.events import EventError, Frame, decode_frame_delete, decode_frame_put
from memoryd.storage.log import LogEntry, RecordLocation
from memoryd.storage.record import RecordType
from memoryd.storage.search import SearchIndex

UNBUILDABLE_KEPT_MAX = 100  # how many unbuildable records are remembered for stats


class FrameIndex(Protocol):
    """What a search index offers the builder."""

    def add_frames(self, docs: Sequence[int], frames: Sequence[Frame]) -> None: ...

    def remove_doc(self, doc: int) -> None: ...


class SearchFrames:
    """Feeds frames to a SearchIndex: their text, time, importance and kind."""

    def __init__(self, index: SearchIndex) -> None:
        self.index = index

    def add_frames(self, docs: Sequence[int], frames: Sequence[Frame]) -> None:
        self.index.add_batch(
            docs,
            [frame.content for frame in frames],
            [frame.timestamp_ms for frame in frames],
            [frame.importance for frame in frames],
            [frame.kind for frame in frames],
        )

    def remove_doc(self, doc: int) -> None:
        self.index.delete([doc])


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

    def build(self, entries: Sequence[LogEntry]) -> BuildStep:
        """Fold ``entries`` (consecutive, in log order); says what changed."""
        frames: list[Frame] = []
        docs: list[int] = []
        deleted = False
        for entry in entries:
            record = entry.record
            try:
                if record.record_type == RecordType.FRAME_PUT:
                    frame = decode_frame_put(record.payload, record.seq, record.timestamp_ms)
                    if frame.id in self.catalog.doc_of:
                        continue  # a duplicate put that the writer let through: already built
                    docs.append(self._catalog_add(frame))
                    frames.append(frame)
                elif record.record_type == RecordType.FRAME_DELETE:
                    deleted |= self._remove(decode_frame_delete(record.payload))
            except EventError as exc:
                self._note_unbuildable(record.seq, str(exc))
        if frames:
            info = write_chunk(self.chunks_dir, frames)
            self._count_chunk(info)
            for index in self.indexes:
                index.add_frames(docs, frames)
        if entries:
            last = entries[-1]
            self.built_seq = last.record.seq
            self.resume_at = last.location
        return BuildStep(frames, deleted)

    def _catalog_add(self, frame: Frame) -> int:
        self.frames_built += 1
        return self.catalog.add(
            frame.id,
            frame.seq,
            frame.timestamp_ms,
            frame.importance,
            frame.namespace,
            frame.kind,
            frame.tags,
        )

    def _remove(self, frame_id: str) -> bool:
        doc = self.catalog.remove(frame_id)
        if doc is None:
            return False
        for index in self.indexes:
            index.remove_doc(doc)
        return True

    def _count_chunk(self, info: ChunkInfo) -> None:
        self.chunks_written += 1
        self.chunk_bytes_stored += info.stored_bytes
        self.chunk_bytes_raw += info.raw_bytes

    def _note_unbuildable(self, seq: int, reason: str) -> None:
        self.unbuildable_total += 1
        if len(self.unbuildable) < UNBUILDABLE_KEPT_MAX:
            self.unbuildable.append(Unbuildable(seq, reason))

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
        }
