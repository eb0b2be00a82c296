"""Checkpoints: derived state saved whole, so that a start replays only the log's tail.

A checkpoint is one array file (storage/arrayfile.py: version byte, CRC, written
atomically) at ``<data_dir>/checkpoint/derived.ckpt`` holding, as of one
sequence number ``built_seq``:

- the catalog (doc numbers, ids, filter columns, significance, fact kinds,
  SimHashes, record locations, tags, and each live frame's expiry time);
- the search index: the keyword index (vocabulary, df, lengths, liveness,
  posting segments), the vectors (int8 rows, scales, folded rows) and the
  ranking columns;
- the location of every BLOCK_UPDATE record up to ``built_seq`` (core blocks are
  few, and their whole history is kept: a start reads those records back);
- the builder's counters and where its next read resumes (``resume_at``), with
  the SHA-256 of the record at ``built_seq`` (the log's hash chain), so that a
  checkpoint that does not belong to this log is never trusted, and the
  (first_seq, size) of the sealed segments before it and the CRC-32 of its
  segment's bytes before it: ``trusted_prefix`` hands that to recovery, which
  then verifies only the log after it.

What a start restores from it (``load_checkpoint``): DerivedState at
``built_seq`` and a Projection whose frame table holds the catalog's live
frames, whose expiry index holds their times to live, and whose blocks are
the listed block records folded again; the caller then replays the log after
``built_seq`` into the projection and lets the builder continue from
``resume_at``.  Any mismatch
(damage, another format or embedder, a log that does not hold the same
record at ``built_seq``) raises CheckpointError: the caller reports it and
rebuilds from the log.

Private frames: ``capture`` takes ``withhold_vectors`` (by default, the
catalog's ``private`` column): those docs' vector rows are written as zeros
and their doc numbers listed, so that no embedding of a private memory is
ever on disk in plaintext form.  ``load_checkpoint`` hands that list to
``restore_vectors`` (when given), which returns the rows to put back (for
example re-embedded after unsealing); without it those docs stay without a
vector (keyword search still finds them) until the next rebuild.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from memoryd.storage.arrayfile import (
    ArrayFileError,
    ArrayFileReading,
    read_array_meta,
    start_reading_array_file,
    write_array_file,
)
from memoryd.storage.catalog import Catalog
from memoryd.storage.derived import DerivedState, SearchFrames, Unbuildable
from memoryd.storage.errors import LogCorruptionError
from memoryd.storage.events import decode_block_update
from memoryd.storage.frame_table import FrameTable
from memoryd.storage.fsio import fsync_dir
from memoryd.storage.layout import LOG_DIR_NAME
from memoryd.storage.log import EventLog, RecordLocation
from memoryd.storage.projection import Projection, UnreadableRecord
from memoryd.storage.record import RecordType
from memoryd.storage.recovery import TrustedPrefix
from memoryd.storage.search import Embedder, SearchIndex
from memoryd.storage.search.columns import DocColumns
from memoryd.storage.search.inverted import InvertedIndex
from memoryd.storage.search.simhash import NearDuplicateIndex
from memoryd.storage.search.vectors import VectorIndex
from memoryd.storage.segment import list_segments, segment_path

CHECKPOINT_DIR_NAME = "checkpoint"
CHECKPOINT_FILE_NAME = "derived.ckpt"
CHECKPOINT_FORMAT = 2  # 2: core block records and frame expiry
_CRC_BLOCK_BYTES = 1 << 20  # read 1 MiB at a time to checksum the log prefix

# Rows to put back for withheld docs, or None to leave them without a vector.
RestoreVectors = Callable[[npt.NDArray[np.int64]], npt.NDArray[np.float32] | None]


class CheckpointError(ValueError):
    """A checkpoint cannot be used (missing, damaged, or not of this log); rebuild instead."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Derived state as of ``built_seq``, captured where it is owned; written on any thread."""

    built_seq: int
    resume_at: RecordLocation | None
    meta: dict[str, Any]
    arrays: dict[str, npt.NDArray[Any]]
    chunks_to_sync: list[Path]


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """A checkpoint written or loaded: its sequence number, size, time and duration."""

    built_seq: int
    path: Path
    size_bytes: int
    written_ms: int
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.built_seq,
            "path": str(self.path),
            "bytes": self.size_bytes,
            "written_ms": self.written_ms,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass(slots=True)
class Restored:
    """What ``load_checkpoint`` gives back."""

    derived: DerivedState
    index: SearchIndex
    projection: Projection
    info: CheckpointInfo


def checkpoint_path(data_dir: Path) -> Path:
    return data_dir / CHECKPOINT_DIR_NAME / CHECKPOINT_FILE_NAME


def capture(
    derived: DerivedState,
    index: SearchIndex,
    withhold_vectors: npt.NDArray[np.bool_] | None = None,
) -> Snapshot:
    """A consistent copy of ``derived`` and ``index``; cheap (mostly views).

    Must run where the builder applies steps (no step may be half applied).
    ``withhold_vectors`` (bool by doc; default the catalog's ``private`` column)
    names the docs whose vectors must not be written.
    """
    catalog_meta, arrays = derived.catalog.to_arrays()
    keyword_meta, keyword = index.inverted.to_arrays()
    vectors_meta, vectors = index.vectors.to_arrays()
    columns_meta, columns = index.columns.to_arrays()
    arrays.update(keyword)
    arrays.update(columns)
    withheld = derived.catalog.private.view() if withhold_vectors is None else withhold_vectors
    withheld_docs = np.flatnonzero(withheld[: index.vectors.doc_end]).astype(np.int64)
    if withheld_docs.shape[0]:
        vectors = {name: array.copy() for name, array in vectors.items()}
        for name in ("vectors.rows", "vectors.scale", "vectors.coarse", "vectors.coarse_scale"):
            vectors[name][withheld_docs] = 0
    arrays.update(vectors)
    arrays["vectors.withheld"] = withheld_docs
    # (seq, segment, offset, length) of each block record: an array, since blocks
    # may change often, and a header holds only names and shapes.
    arrays["blocks.records"] = np.array(
        [(seq, *location) for seq, location in derived.block_records], dtype=np.int64
    ).reshape(-1, 4)
    unbuildable = [
        [u.seq, u.reason, None if u.location is None else list(u.location)]
        for u in derived.unbuildable
    ]
    meta = {
        "format": CHECKPOINT_FORMAT,
        "built_seq": derived.built_seq,
        "resume_at": None if derived.resume_at is None else list(derived.resume_at),
        "model_id": index.embedder.model_id,
        "catalog": catalog_meta,
        "keyword": keyword_meta,
        "vectors": vectors_meta,
        "columns": columns_meta,
        "counters": {
            "chunks_written": derived.chunks_written,
            "chunk_bytes_stored": derived.chunk_bytes_stored,
            "chunk_bytes_raw": derived.chunk_bytes_raw,
            "frames_built": derived.frames_built,
            "unbuildable_total": derived.unbuildable_total,
        },
        "unbuildable": unbuildable,
        "near_docs_max": derived.near.docs_max,
    }
    return Snapshot(
        derived.built_seq, derived.resume_at, meta, arrays, list(derived.unsynced_chunks)
    )


def write_checkpoint(
    data_dir: Path,
    snapshot: Snapshot,
    log: EventLog,
    cancelled: Callable[[], bool] = lambda: False,
) -> CheckpointInfo:
    """Write ``snapshot`` atomically (any thread); fsyncs the chunks it refers to first.

    Raises WriteCancelledError (nothing changed) when ``cancelled`` turns true.
    """
    started = time.monotonic()
    for chunk in snapshot.chunks_to_sync:
        _fsync_file(chunk)
    for folder in {chunk.parent for chunk in snapshot.chunks_to_sync}:
        fsync_dir(folder)
    meta = dict(snapshot.meta)
    meta["built_hash"] = _record_hash(log, snapshot.resume_at)
    meta["log_prefix"] = _log_prefix(data_dir, snapshot.resume_at)
    meta["before_crc32"] = _crc32_before(data_dir, snapshot.resume_at)
    meta["written_ms"] = time.time_ns() // 1_000_000
    path = checkpoint_path(data_dir)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    size = write_array_file(path, meta, snapshot.arrays, cancelled)
    return CheckpointInfo(
        snapshot.built_seq, path, size, meta["written_ms"], time.monotonic() - started
    )


def load_checkpoint(
    data_dir: Path,
    log: EventLog,
    embedder: Embedder,
    chunks_dir: Path,
    restore_vectors: RestoreVectors | None = None,
) -> Restored:
    """Derived state and projection as of the checkpoint; CheckpointError if unusable."""
    started = time.monotonic()
    path = checkpoint_path(data_dir)
    if not path.exists():
        raise CheckpointError("no checkpoint")
    try:
        reading = start_reading_array_file(path)
    except ArrayFileError as exc:
        raise CheckpointError(str(exc)) from None
    try:
        return _restore(reading, data_dir, log, embedder, chunks_dir, restore_vectors, started)
    except CheckpointError:
        raise
    except ArrayFileError as exc:
        raise CheckpointError(str(exc)) from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        # The catalog is made while the file is still read: what broke may be
        # damage that the CRC has yet to report, and that is the news.
        try:
            reading.verified()
        except ArrayFileError as damaged:
            raise CheckpointError(str(damaged)) from None
        raise CheckpointError(f"{path}: inconsistent checkpoint: {exc}") from None
    finally:
        reading.close()


def _restore(
    reading: ArrayFileReading,
    data_dir: Path,
    log: EventLog,
    embedder: Embedder,
    chunks_dir: Path,
    restore_vectors: RestoreVectors | None,
    started: float,
) -> Restored:
    """The checkpoint being read, restored.  The catalog, and what is made from it
    alone (the near-duplicate index, the projection), are built from the front
    of the file while the helper thread reads the indexes behind it (at 1M
    frames that hides most of the read); nothing leaves before the CRC holds."""
    path = checkpoint_path(data_dir)
    meta = reading.meta
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')}, not ours")
    if meta["model_id"] != embedder.model_id:
        raise CheckpointError(
            f"{path}: vectors are from {meta['model_id']}, the embedder is {embedder.model_id}"
        )
    built_seq = int(meta["built_seq"])
    resume_at = None if meta["resume_at"] is None else RecordLocation(*meta["resume_at"])
    if built_seq > log.last_seq or meta["built_hash"] != _record_hash(log, resume_at):
        raise CheckpointError(
            f"{path}: made at seq {built_seq}, which this log does not hold as it was"
        )
    # The catalog holds records' locations: segments rewritten since (by compaction,
    # repair or a restore) move them, even when the checkpoint's own record stays put.
    if meta["log_prefix"] != _log_prefix(data_dir, resume_at):
        raise CheckpointError(f"{path}: the log's segments before seq {built_seq} have changed")
    catalog = Catalog.from_arrays(meta["catalog"], reading.arrays_named("catalog."))
    derived = DerivedState(chunks_dir, catalog=catalog, built_seq=built_seq, resume_at=resume_at)
    counters = meta["counters"]
    derived.chunks_written = int(counters["chunks_written"])
    derived.chunk_bytes_stored = int(counters["chunk_bytes_stored"])
    derived.chunk_bytes_raw = int(counters["chunk_bytes_raw"])
    derived.frames_built = int(counters["frames_built"])
    derived.unbuildable_total = int(counters["unbuildable_total"])
    derived.unbuildable = [
        Unbuildable(int(seq), str(reason), None if where is None else RecordLocation(*where))
        for seq, reason, where in meta["unbuildable"]
    ]
    _restore_near_duplicates(derived)
    projection = _projection_of(derived)
    arrays = reading.verified()
    derived.block_records = [
        (seq, RecordLocation(segment, offset, length))
        for seq, segment, offset, length in arrays["blocks.records"].reshape(-1, 4).tolist()
    ]
    _fold_blocks(projection, derived.block_records, log, path)
    index = SearchIndex(
        embedder,
        inverted=InvertedIndex.from_arrays(meta["keyword"], arrays),
        vectors=VectorIndex.from_arrays(meta["vectors"], arrays),
        columns=DocColumns.from_arrays(meta["columns"], arrays),
    )
    if not len(catalog) == index.inverted.doc_end == index.vectors.doc_end:
        raise CheckpointError(f"{path}: catalog and indexes differ in doc count")
    withheld = np.asarray(arrays["vectors.withheld"], dtype=np.int64)
    if withheld.shape[0] and restore_vectors is not None:
        rows = restore_vectors(withheld)
        if rows is not None:
            _put_back_vectors(index.vectors, withheld, rows)
    derived.indexes.append(SearchFrames(index))
    info = CheckpointInfo(
        built_seq, path, path.stat().st_size, int(meta["written_ms"]), time.monotonic() - started
    )
    return Restored(derived, index, projection, info)


def _put_back_vectors(
    vectors: VectorIndex, docs: npt.NDArray[np.int64], rows: npt.NDArray[np.float32]
) -> None:
    """Replace withheld docs' zero rows by ``rows`` (unit vectors, one per doc)."""
    fresh = VectorIndex(vectors.dim)
    fresh.add_batch(np.arange(docs.shape[0]), rows)
    vectors._rows[docs] = fresh._rows[: docs.shape[0]]
    vectors._scale[docs] = fresh._scale[: docs.shape[0]]
    vectors._coarse[docs] = fresh._coarse[: docs.shape[0]]
    vectors._coarse_scale[docs] = fresh._coarse_scale[: docs.shape[0]]


def _restore_near_duplicates(derived: DerivedState) -> None:
    """Index the SimHashes of the most recent live docs, as the builder had them."""
    catalog = derived.catalog
    live = np.flatnonzero(catalog.alive.view() & (catalog.simhash.view() != 0))
    derived.near = NearDuplicateIndex.from_arrays(
        live, catalog.simhash.view()[live], derived.near.docs_max
    )


def _projection_of(derived: DerivedState) -> Projection:
    """The projection as of ``built_seq``: the catalog's live frames, in bulk."""
    catalog = derived.catalog
    live = np.flatnonzero(catalog.alive.view())
    ids = catalog.ids
    all_live = live.shape[0] == len(ids)
    table = FrameTable.from_columns(
        ids if all_live else [ids[d] for d in live.tolist()],
        catalog.seq.view()[live],
        catalog.timestamp_ms.view()[live],
        catalog.namespace_code.view()[live].astype(np.int64),
        list(catalog.namespaces),
        catalog.kind_code.view()[live].astype(np.int64),
        list(catalog.kind_names),
        (
            catalog.segment.view()[live],
            catalog.offset.view()[live],
            catalog.length.view()[live],
        ),
        catalog.deleted,
        # Every doc live: doc numbers are the rows, and the catalog's dict is the map.
        row_of=catalog.doc_of if all_live else None,
    )
    projection = Projection(table=table, last_seq=derived.built_seq)
    for doc, expires_at_ms in catalog.expires_at_ms.items():
        projection.expiry.add(ids[doc], expires_at_ms)
    projection.unreadable = [
        UnreadableRecord(u.seq, u.location, u.reason)
        for u in derived.unbuildable
        if u.location is not None
    ]
    return projection


def _fold_blocks(
    projection: Projection,
    records: list[tuple[int, RecordLocation]],
    log: EventLog,
    path: Path,
) -> None:
    """Fold the BLOCK_UPDATE records the checkpoint lists into ``projection``'s blocks,
    read back from the log (which the checkpoint has vouched for)."""
    for seq, location in records:
        try:
            record = log.read_at(location)
        except (LogCorruptionError, OSError) as exc:
            raise CheckpointError(f"{path}: block record {seq} cannot be read: {exc}") from None
        if record.seq != seq or record.record_type != RecordType.BLOCK_UPDATE:
            raise CheckpointError(f"{path}: block record {seq} is not where it says")
        projection.apply_block(
            decode_block_update(record.payload), seq, record.timestamp_ms, location
        )


def _log_prefix(data_dir: Path, resume_at: RecordLocation | None) -> list[list[int]]:
    """(first_seq, size) of each segment before the checkpoint's record: all sealed."""
    if resume_at is None:
        return []
    segments, _others = list_segments(data_dir / LOG_DIR_NAME)
    return [[s.first_seq, s.size] for s in segments if s.first_seq < resume_at.segment]


def _crc32_before(data_dir: Path, resume_at: RecordLocation | None) -> int | None:
    """CRC-32 of the bytes before the checkpoint's record in its segment (recovery
    checks them with it instead of record by record); None if unreadable."""
    if resume_at is None:
        return None
    crc = 0
    try:
        with open(segment_path(data_dir / LOG_DIR_NAME, resume_at.segment), "rb") as f:
            left = resume_at.offset
            while left > 0:
                block = f.read(min(left, _CRC_BLOCK_BYTES))
                if not block:
                    return None
                crc = zlib.crc32(block, crc)
                left -= len(block)
    except OSError:
        return None
    return crc


def trusted_prefix(data_dir: Path) -> TrustedPrefix | None:
    """What the checkpoint says of the log, for recovery to skip verifying; None if none.

    Reads only the checkpoint's header (its own CRC checked).  Trusting it is
    safe: recovery compares it with the files and with the record it names,
    and the full checkpoint is verified again before it is used.
    """
    path = checkpoint_path(data_dir)
    if not path.exists():
        return None
    try:
        meta = read_array_meta(path)
        if meta.get("format") != CHECKPOINT_FORMAT or meta.get("resume_at") is None:
            return None
        segment, offset, length = (int(v) for v in meta["resume_at"])
        return TrustedPrefix(
            segments=tuple((int(first), int(size)) for first, size in meta["log_prefix"]),
            seq=int(meta["built_seq"]),
            segment=segment,
            offset=offset,
            length=length,
            hash=bytes.fromhex(meta["built_hash"]),
            before_crc32=_optional_int(meta.get("before_crc32")),
        )
    except (ArrayFileError, KeyError, TypeError, ValueError):
        return None


def remove_checkpoint(data_dir: Path) -> bool:
    """Delete the checkpoint (a rebuild starts from the log alone); whether there was one."""
    path = checkpoint_path(data_dir)
    if not path.exists():
        return False
    path.unlink()
    fsync_dir(path.parent)
    return True


def _record_hash(log: EventLog, location: RecordLocation | None) -> str | None:
    if location is None:
        return None
    try:
        return log.read_at(location).hash().hex()
    except (LogCorruptionError, OSError, ValueError):
        return "unreadable"


def _fsync_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return  # replaced by a newer chunk of the same name: that one is listed too
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected an integer")
    return value
