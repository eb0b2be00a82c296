"""Derived state built from committed records: the catalog, chunks and the search indexes.

``DerivedState.build`` folds a run of log entries, in log order, into:
- immutable chunk files of the frames put (storage/chunks.py);
- the catalog (doc numbers, filterable attributes, liveness);
- the search indexes (keyword and vector), when attached;
- per frame, its six significance scores (the caller's, else the heuristic's),
  its fact kind and its SimHash, and a bounded near-duplicate index over the
  most recent frames' SimHashes.

It never reads anything but the entries it is given, so running it over the
whole log from sequence 1 (``memoryd rebuild``) reproduces it exactly.

Private frames (sealed in the log) never take the plain path: ``apply`` puts
them in their chunk sealed and sets them aside as *pending*.  While the vault
is unlocked, ``prepare_private`` opens pending ones (via ``PrivateAccess``, on
the builder's thread), and ``apply_private`` indexes them: the inverted index
gets only blinded tokens of their terms, the catalog only blinded tags, and
their vectors stay in memory only.  On lock or a change of index key,
``unindex_private`` takes them all out again (pending once more), so nothing
derived from a private frame's plaintext outlives the key.

What a checkpoint of this state must leave out or treat specially
(``private_doc_numbers``): the vector rows of those docs (embeddings of
plaintext); and since their blinded terms are valid only under one index key,
a checkpoint should store private docs as pending (``private_pending`` and
``private_indexed``: frame id -> record location), to be indexed again after
unlock, rather than their postings.  A
record it cannot fold (a payload that is not a valid event) is skipped,
counted and remembered in ``unbuildable``; it stays in the log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import orjson

from memoryd.storage.catalog import Catalog, NewDocs
from memoryd.storage.chunks import ChunkInfo, write_chunk
from memoryd.storage.events import EventError, Frame, decode_frame_delete, decode_frame_put
from memoryd.storage.log import LogEntry, RecordLocation
from memoryd.storage.pending import PendingFrames
from memoryd.storage.record import RecordType
from memoryd.storage.search import HashingEmbedder, SearchIndex
from memoryd.storage.search.lexicon import Tokens, lexicon_of
from memoryd.storage.search.significance import (
    SIGNIFICANCE_DIMENSIONS,
    analyze_tokens,
    effective_significance,
)
from memoryd.storage.search.simhash import NearDuplicateIndex, simhash_tokens
from memoryd.storage.search.text import DEFAULT_TOKENIZER, TermBatch

UNBUILDABLE_KEPT_MAX = 100  # how many unbuildable records are remembered for stats
NEAR_DUPLICATE_DOCS_MAX = 100_000  # near twins are looked for among this many recent frames


class PrivateAccess(Protocol):
    """What the builder needs of the vault (daemon/vault.py); callable from any thread."""

    @property
    def index_key_id(self) -> int | None:
        """The index key in use, None while locked."""

    def open_for_index(self, frame: Frame) -> Frame | None:
        """Sealed ``frame`` opened, None while locked; EventError (naming it) if it fails."""

    def blind_terms(self, terms: list[str], key_id: int) -> list[str] | None:
        """Blinded tokens of ``terms`` ('' stays ''), None unless under ``key_id``."""


class FrameIndex(Protocol):
    """What a search index offers the builder.

    ``prepare`` does the expensive, stateless part (tokenizing, embedding) and
    may run on any thread; it is given the frames' texts tokenized by the default
    tokenizer's lexicon, to share.  ``prepare_private`` does it for opened private
    frames, whose terms must go through ``blind``; ``add_frames`` and
    ``remove_doc`` change the index and run only where searches run.
    """

    def prepare(self, frames: Sequence[Frame], tokens: Tokens) -> object: ...

    def prepare_private(
        self, frames: Sequence[Frame], blind: Callable[[list[str]], list[str] | None]
    ) -> object | None: ...

    def add_frames(
        self, docs: Sequence[int], frames: Sequence[Frame], prepared: object
    ) -> None: ...

    def remove_doc(self, doc: int) -> None: ...


class SearchFrames:
    """Feeds frames to a SearchIndex: their text, time, importance, kind and embedding."""

    def __init__(self, index: SearchIndex) -> None:
        self.index = index

    def prepare(self, frames: Sequence[Frame], tokens: Tokens) -> object:
        """The frames' embeddings and their tokens for the keyword index."""
        tokenizer = self.index.inverted.tokenizer
        if tokens.tokenizer is not tokenizer:
            tokens = lexicon_of(tokenizer).tokenize([frame.content for frame in frames])
        embedder = self.index.embedder
        if isinstance(embedder, HashingEmbedder) and embedder.tokenizer is tokenizer:
            vectors = embedder.embed_tokens(tokens)
        else:
            vectors = embedder.embed([frame.content for frame in frames])
        return PreparedText(vectors, tokens)

    def prepare_private(
        self, frames: Sequence[Frame], blind: Callable[[list[str]], list[str] | None]
    ) -> object | None:
        """Embeddings and blinded terms of opened private frames; None if ``blind`` refuses."""
        batch = self.index.inverted.tokenizer.terms_batch([frame.content for frame in frames])
        blinded = blind(batch.terms)
        if blinded is None:
            return None
        vectors = self.index.embedder.embed([frame.content for frame in frames])
        return BlindedText(vectors, TermBatch(blinded, batch.counts))

    def add_frames(self, docs: Sequence[int], frames: Sequence[Frame], prepared: object) -> None:
        assert isinstance(prepared, PreparedText | BlindedText)
        assert len(prepared.vectors) == len(frames)
        self.index.add_batch(
            docs,
            [],
            [frame.timestamp_ms for frame in frames],
            [frame.importance for frame in frames],
            [frame.kind for frame in frames],
            vectors=prepared.vectors,
            terms=prepared.terms if isinstance(prepared, BlindedText) else None,
            tokens=prepared.tokens if isinstance(prepared, PreparedText) else None,
        )

    def remove_doc(self, doc: int) -> None:
        self.index.delete([doc])


@dataclass(frozen=True, slots=True)
class PreparedText:
    """Frames' prepared work: embeddings and tokens (of the keyword index's tokenizer)."""

    vectors: np.ndarray
    tokens: Tokens


@dataclass(frozen=True, slots=True)
class BlindedText:
    """Private frames' prepared work: embeddings (memory only) and blinded terms."""

    vectors: np.ndarray
    terms: TermBatch


@dataclass(frozen=True, slots=True)
class Annotations:
    """Per frame of a run: its six significance scores, its fact kind's code and its
    SimHash (0 for a private frame: never kept), as columns."""

    scores: np.ndarray  # float64, (frames, 6), SIGNIFICANCE_DIMENSIONS order
    fact_kinds: np.ndarray  # int64
    simhashes: np.ndarray  # uint64

    def select(self, rows: Sequence[int]) -> Annotations:
        return Annotations(self.scores[rows], self.fact_kinds[rows], self.simhashes[rows])


NO_ANNOTATIONS = Annotations(
    np.zeros((0, len(SIGNIFICANCE_DIMENSIONS))), np.zeros(0, np.int64), np.zeros(0, np.uint64)
)


class PreparedEvent(NamedTuple):
    """One decoded record of a run: a put (frame), a delete (target id), or neither.

    A named tuple: one per record, made twice as fast as a frozen dataclass."""

    seq: int
    frame: Frame | None = None
    delete_id: str | None = None
    error: str | None = None
    location: RecordLocation | None = None


@dataclass(frozen=True, slots=True)
class PreparedPrivate:
    """Pending private frames opened, with each index's work, under one index key."""

    key_id: int
    frames: list[Frame]  # opened: for the indexes only, never stored
    locations: list[RecordLocation]
    per_index: list[object]
    failed: list[tuple[str, int, str]]  # (frame id, seq, reason): never indexable
    annotations: Annotations = NO_ANNOTATIONS  # aligned with ``frames``


@dataclass(frozen=True, slots=True)
class Prepared:
    """A run of records decoded, with each index's expensive work done, ready to apply."""

    entries: Sequence[LogEntry]
    events: list[PreparedEvent]
    frames: list[Frame]  # every put of the run, in order
    per_index: list[object]  # each index's ``prepare`` of ``frames``
    annotations: Annotations = NO_ANNOTATIONS  # aligned with ``frames``
    block_records: list[tuple[int, RecordLocation]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BuildStep:
    """What one ``build`` changed: the frames it added, and whether it deleted any."""

    frames: list[Frame]
    deleted: bool
    # Every new put of the run as stored (private ones sealed): the chunk's frames.
    chunk_frames: list[Frame] = field(default_factory=list)

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
    private: PrivateAccess | None = None
    # Private frames by id -> (seq, record location): built (in their chunk) but not
    # indexed (locked, or taken out on lock), and those indexed under the current key.
    private_pending: PendingFrames = field(default_factory=PendingFrames)
    private_indexed: dict[str, tuple[int, RecordLocation]] = field(default_factory=dict)
    near: NearDuplicateIndex = field(
        default_factory=lambda: NearDuplicateIndex(NEAR_DUPLICATE_DOCS_MAX)
    )
    # Chunk files written since the last checkpoint: it fsyncs them before it refers to them.
    unsynced_chunks: list[Path] = field(default_factory=list)
    # (seq, location) of every BLOCK_UPDATE built: a checkpoint lists them, and a start
    # from it folds those records again (blocks are few; their history is needed whole).
    block_records: list[tuple[int, RecordLocation]] = field(default_factory=list)
    # The string a holder of frame ids (the daemon's frame table) already keeps for an
    # id, else the id itself: the catalog stores that one, so each id is held once.
    # Ids decoded from the log are new strings: at a million frames a second copy of
    # every id costs 77 MiB (a 32-character str is 81 bytes).
    shared_id: Callable[[str], str] | None = None

    def build(self, entries: Sequence[LogEntry], chunk_frames_max: int | None = None) -> BuildStep:
        """Fold ``entries`` (consecutive, in log order) and store their frames in chunks
        of at most ``chunk_frames_max`` (one chunk when None)."""
        step = self.apply(self.prepare(entries))
        self.store_chunk(step.chunk_frames, chunk_frames_max)
        return step

    def prepare(self, entries: Sequence[LogEntry]) -> Prepared:
        """Decode ``entries`` and do each index's expensive part.

        Reads no mutable state, so it may run on another thread while searches
        run; ``apply`` must then be called where searches run.
        """
        events: list[PreparedEvent] = []
        blocks: list[tuple[int, RecordLocation]] = []
        for entry in entries:
            record = entry.record
            try:
                if record.record_type == RecordType.FRAME_PUT:
                    frame = decode_frame_put(record.payload, record.seq, record.timestamp_ms)
                    events.append(PreparedEvent(record.seq, frame=frame, location=entry.location))
                elif record.record_type == RecordType.FRAME_DELETE:
                    target = decode_frame_delete(record.payload)
                    events.append(PreparedEvent(record.seq, delete_id=target))
                elif record.record_type == RecordType.BLOCK_UPDATE:
                    blocks.append((record.seq, entry.location))
            except EventError as exc:
                events.append(PreparedEvent(record.seq, error=str(exc), location=entry.location))
        frames = [e.frame for e in events if e.frame is not None and e.frame.sealed is None]
        if not frames:
            return Prepared(entries, events, frames, [], block_records=blocks)
        # One tokenization of the run, shared by the indexes and the annotations.
        tokens = lexicon_of(DEFAULT_TOKENIZER).tokenize([frame.content for frame in frames])
        per_index = [index.prepare(frames, tokens) for index in self.indexes]
        annotations = annotate(frames, tokens)
        return Prepared(entries, events, frames, per_index, annotations, blocks)

    def apply(self, prepared: Prepared) -> BuildStep:
        """Fold a prepared run into the catalog and the indexes (in memory only).

        The frames it added still need ``store_chunk``, which does file I/O and
        so may run on another thread, in the order the steps were applied.
        """
        added: list[Frame] = []
        stored: list[Frame] = []
        docs: list[int] = []
        positions: list[int] = []  # of each added frame within prepared.frames
        removed: list[int] = []
        put_position = -1
        # Puts go into the catalog together, in order; a delete first lets those before it in.
        waiting: list[tuple[Frame, RecordLocation, int]] = []  # (put, location, position)
        waiting_ids: set[str] = set()
        for event in prepared.events:
            frame = event.frame
            if frame is not None and frame.sealed is not None:
                if self._set_aside(frame, event.location):
                    stored.append(frame)
            elif frame is not None:
                put_position += 1
                if frame.id in self.catalog.doc_of or frame.id in waiting_ids:
                    continue  # a duplicate put that the writer let through: already built
                assert event.location is not None
                waiting.append((frame, event.location, put_position))
                waiting_ids.add(frame.id)
                added.append(frame)
                stored.append(frame)
                positions.append(put_position)
            elif event.delete_id is not None:
                if waiting:
                    docs.extend(self._catalog_add_batch(waiting, prepared.annotations))
                    waiting, waiting_ids = [], set()
                self.private_pending.pop(event.delete_id, None)
                self.private_indexed.pop(event.delete_id, None)
                gone = self.catalog.remove(event.delete_id)
                if gone is not None:
                    removed.append(gone)
                    self.near.remove(gone)
            elif event.error is not None:
                self._note_unbuildable(event.seq, event.error, event.location)
        if waiting:
            docs.extend(self._catalog_add_batch(waiting, prepared.annotations))
        if added:
            for index, work in zip(self.indexes, prepared.per_index, strict=True):
                index.add_frames(docs, added, _select(work, positions, len(prepared.frames)))
        # After the additions: a frame put and deleted in one run leaves no trace.
        for doc in removed:
            for index in self.indexes:
                index.remove_doc(doc)
        self.block_records.extend(prepared.block_records)
        if prepared.entries:
            last = prepared.entries[-1]
            self.built_seq = last.record.seq
            self.resume_at = last.location
        return BuildStep(added, bool(removed), stored)

    # -- private frames ---------------------------------------------------------------

    def _set_aside(self, frame: Frame, location: RecordLocation | None) -> bool:
        """A sealed frame of the log: pending until indexed.  False for a duplicate."""
        if frame.id in self.private_pending or frame.id in self.private_indexed:
            return False
        assert location is not None
        self.private_pending[frame.id] = (frame.seq, location)
        return True

    def pending_batch(self, frames_max: int) -> list[tuple[int, RecordLocation]]:
        """Up to ``frames_max`` pending private frames (seq, location), oldest first."""
        return self.private_pending.oldest(frames_max)

    def prepare_private(self, entries: Sequence[LogEntry]) -> PreparedPrivate | None:
        """Open pending private frames and do each index's work; None while locked.

        Runs on the builder's thread, like ``prepare``.
        """
        access = self.private
        key_id = None if access is None else access.index_key_id
        if access is None or key_id is None:
            return None
        frames: list[Frame] = []
        locations: list[RecordLocation] = []
        failed: list[tuple[str, int, str]] = []
        for entry in entries:
            record = entry.record
            try:
                sealed = decode_frame_put(record.payload, record.seq, record.timestamp_ms)
                opened = access.open_for_index(sealed)
            except EventError as exc:
                failed.append((_frame_id_of(record.payload), record.seq, str(exc)))
                continue
            if opened is None:
                return None  # locked meanwhile
            frames.append(opened)
            locations.append(entry.location)
        work: list[object] = []
        for index in self.indexes:
            prepared = index.prepare_private(frames, lambda ts: access.blind_terms(ts, key_id))
            if prepared is None:
                return None  # the index key changed meanwhile
            work.append(prepared)
        return PreparedPrivate(key_id, frames, locations, work, failed, annotate(frames))

    def apply_private(self, prepared: PreparedPrivate) -> BuildStep:
        """Index opened private frames, if still pending and under the same key."""
        access = self.private
        for frame_id, seq, reason in prepared.failed:
            pending = self.private_pending.pop(frame_id, None)
            if pending is not None:
                self._note_unbuildable(seq, reason, pending[1])
        if access is None or access.index_key_id != prepared.key_id:
            return BuildStep([], False)
        keep = [i for i, f in enumerate(prepared.frames) if f.id in self.private_pending]
        frames = [prepared.frames[i] for i in keep]
        if not frames:
            return BuildStep([], False)
        docs: list[int] = []
        annotations = prepared.annotations
        for i, frame in zip(keep, frames, strict=True):
            entry = self.private_pending.pop(frame.id)
            assert entry is not None  # kept: pending
            self.private_indexed[frame.id] = entry
            tags = [blinded_tag_name(tag) for tag in frame.tags]
            blinded_tags = access.blind_terms(tags, prepared.key_id) if tags else []
            docs.append(
                self._catalog_add(
                    frame,
                    prepared.locations[i],
                    (
                        tuple(annotations.scores[i].tolist()),
                        int(annotations.fact_kinds[i]),
                        int(annotations.simhashes[i]),
                    ),
                    tags=blinded_tags or [],
                )
            )
        for index, work in zip(self.indexes, prepared.per_index, strict=True):
            index.add_frames(docs, frames, _select(work, keep, len(prepared.frames)))
        return BuildStep(frames, False)

    def unindex_private(self) -> int:
        """Take every indexed private frame out of the catalog and indexes (pending again).

        On lock and on a change of index key; returns how many.
        """
        count = 0
        for frame_id, entry in self.private_indexed.items():
            doc = self.catalog.remove(frame_id)
            if doc is not None:
                for index in self.indexes:
                    index.remove_doc(doc)
                count += 1
            self.private_pending[frame_id] = entry
        self.private_indexed = {}
        return count

    def private_doc_numbers(self) -> list[int]:
        """The docs of indexed private frames: a checkpoint must not store their vectors."""
        doc_of = self.catalog.doc_of
        return sorted(doc_of[i] for i in self.private_indexed if i in doc_of)

    def searchable_seq(self, unlocked: bool) -> int:
        """Every record up to this seq is searchable (as far as the vault state allows)."""
        oldest = self.private_pending.min_seq() if unlocked else None
        return self.built_seq if oldest is None else min(self.built_seq, oldest - 1)

    def pend_restored_private(self) -> int:
        """Take the private frames a checkpoint restored out of the catalog and the
        indexes, pending again: they are indexed anew (opened from the log) once the
        vault is unlocked, under its current index key.  Returns how many."""
        catalog = self.catalog
        private = catalog.private.view()
        alive = catalog.alive.view()
        count = 0
        for doc in np.flatnonzero(private & alive).tolist():
            frame_id = catalog.ids[doc]
            location = RecordLocation(
                int(catalog.segment.view()[doc]),
                int(catalog.offset.view()[doc]),
                int(catalog.length.view()[doc]),
            )
            seq = int(catalog.seq.view()[doc])
            catalog.remove(frame_id)
            self.near.remove(doc)
            for index in self.indexes:
                index.remove_doc(doc)
            self.private_pending[frame_id] = (seq, location)
            count += 1
        return count

    def _held_id(self, frame_id: str) -> str:
        return frame_id if self.shared_id is None else self.shared_id(frame_id)

    def _catalog_add(
        self,
        frame: Frame,
        location: RecordLocation,
        annotation: tuple[tuple[float, ...], int, int],
        tags: list[str] | None = None,
    ) -> int:
        self.frames_built += 1
        scores, fact_kind, simhash = annotation
        doc = self.catalog.add(
            self._held_id(frame.id),
            frame.seq,
            frame.timestamp_ms,
            frame.importance,
            frame.namespace,
            frame.kind,
            frame.tags if tags is None else tags,
            location=(location.segment, location.offset, location.length),
            private=frame.private,
            fact_kind=fact_kind,
            significance=scores,
            simhash=simhash,
            expires_at_ms=frame.expires_at_ms,
        )
        if simhash:
            self.near.add(doc, simhash)
        return doc

    def _catalog_add_batch(
        self, puts: list[tuple[Frame, RecordLocation, int]], annotations: Annotations
    ) -> range:
        """``_catalog_add`` of each (frame, location, row of ``annotations``), in order,
        with a few numpy calls per column."""
        frames = [frame for frame, _, _ in puts]
        rows = annotations.select([row for _, _, row in puts])
        docs = self.catalog.add_batch(
            NewDocs(
                ids=[self._held_id(frame.id) for frame in frames],
                seq=[frame.seq for frame in frames],
                timestamp_ms=[frame.timestamp_ms for frame in frames],
                importance=[frame.importance for frame in frames],
                namespace=[frame.namespace for frame in frames],
                kind=[frame.kind for frame in frames],
                tags=[frame.tags for frame in frames],
                location=[location for _, location, _ in puts],
                private=[frame.private for frame in frames],
                fact_kind=rows.fact_kinds,
                significance=rows.scores,
                simhash=rows.simhashes,
                expires_at_ms=[frame.expires_at_ms for frame in frames],
            )
        )
        self.frames_built += len(puts)
        hashed = np.flatnonzero(rows.simhashes)
        self.near.add_batch((hashed + docs.start).tolist(), rows.simhashes[hashed].tolist())
        return docs

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

    def store_chunk(self, frames: Sequence[Frame], frames_max: int | None = None) -> None:
        """Write the frames one ``apply`` added as immutable chunks of at most
        ``frames_max`` frames each, in order (all in one when None; nothing if none)."""
        if not frames:
            return
        size = len(frames) if frames_max is None else frames_max
        for start in range(0, len(frames), size):
            info = write_chunk(self.chunks_dir, frames[start : start + size])
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
            "private_indexed": len(self.private_indexed),
            "private_pending": len(self.private_pending),
            "near_duplicate_docs": len(self.near),
            "near_duplicate_bytes": self.near.memory_bytes(),
            **lexicon_of(DEFAULT_TOKENIZER).stats(),
        }


def annotate(frames: Sequence[Frame], tokens: Tokens | None = None) -> Annotations:
    """Per frame: its six significance scores, its fact kind's code and its SimHash.

    ``tokens``: the frames' texts tokenized by the default tokenizer's lexicon
    (tokenized here if None).  Deterministic (a rebuild gives the same), and
    pure: runs on the builder thread.
    """
    if not frames:
        return NO_ANNOTATIONS
    texts = [frame.content for frame in frames]
    if tokens is None or tokens.tokenizer is not DEFAULT_TOKENIZER:
        tokens = lexicon_of(DEFAULT_TOKENIZER).tokenize(texts)
    analysis = analyze_tokens(texts, tokens)
    scores = analysis.scores
    simhashes = simhash_tokens(tokens)
    for i, frame in enumerate(frames):
        if frame.significance is not None:
            scores[i] = effective_significance(frame.content, frame.significance)
        if frame.private:
            simhashes[i] = 0  # a private frame's SimHash would tell about its text
    return Annotations(scores, analysis.fact_kinds, simhashes)


def _select(work: object, positions: list[int], total: int) -> object:
    """The rows of an index's prepared work that belong to the frames actually added."""
    if len(positions) == total:
        return work
    if isinstance(work, PreparedText):
        return PreparedText(work.vectors[positions], work.tokens.select(positions))
    if isinstance(work, BlindedText):
        counts = work.terms.counts
        starts = np.concatenate([[0], np.cumsum(counts)])
        terms = [t for i in positions for t in work.terms.terms[starts[i] : starts[i + 1]]]
        return BlindedText(work.vectors[positions], TermBatch(terms, counts[positions]))
    if not isinstance(work, np.ndarray):
        return work
    return work[positions]


_TAG_DOMAIN = "\x1ftag\x1f"  # a private frame's tags are blinded apart from its terms


def blinded_tag_name(tag: str) -> str:
    """What ``blind_terms`` is given for a tag (search filters blind theirs the same way)."""
    return _TAG_DOMAIN + tag


def _frame_id_of(payload: bytes) -> str:
    try:
        value = orjson.loads(payload).get("id")
    except (orjson.JSONDecodeError, AttributeError):
        return "?"
    return value if isinstance(value, str) else "?"
