"""The catalog of built frames: dense doc numbers and the attributes filters need.

The builder gives every frame it builds the next doc number (0, 1, 2, …, in
build order, never reused).  Indexes speak doc numbers; the catalog maps them
back to frame ids and keeps, per doc, the attributes that search filters and
ranking use, in numpy columns so that a filter is a vectorised mask:
timestamp, importance, namespace and kind (as small-int codes), liveness,
the six significance scores, the fact kind, whether the frame is private,
its SimHash, where its record is in the log (so that a checkpoint can restore
the frame table without reading the log), and, per tag, the doc numbers that
carry it.

Memory: about 77 bytes per doc in columns, plus the id string and two dict
entries, plus 8 bytes per (doc, tag).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from memoryd.storage.search.significance import FACT_KINDS, SIGNIFICANCE_DIMENSIONS

BoolArray = npt.NDArray[np.bool_]
INITIAL_CAPACITY = 1024
NO_LOCATION = (0, 0, 0)


class _Column:
    """A numpy array that grows by doubling; ``view()`` is its filled prefix."""

    __slots__ = ("_data", "_size")

    def __init__(self, dtype: npt.DTypeLike) -> None:
        self._data = np.zeros(INITIAL_CAPACITY, dtype=dtype)
        self._size = 0

    def append(self, value: float | int | bool) -> None:
        if self._size == len(self._data):
            grown = np.zeros(len(self._data) * 2, dtype=self._data.dtype)
            grown[: self._size] = self._data
            self._data = grown
        self._data[self._size] = value
        self._size += 1

    def extend(self, values: npt.ArrayLike) -> None:
        """Append many values at once (converted to the column's dtype)."""
        array = np.asarray(values, dtype=self._data.dtype)
        end = self._size + len(array)
        if end > len(self._data):
            grown = np.zeros(max(len(self._data) * 2, end), dtype=self._data.dtype)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : end] = array
        self._size = end

    def view(self) -> npt.NDArray[Any]:
        return self._data[: self._size]

    def set(self, index: int, value: float | int | bool) -> None:
        self._data[index] = value

    def restore(self, values: npt.NDArray[Any]) -> None:
        """Replace the contents with ``values`` (a checkpoint's column)."""
        self._data = np.array(values, dtype=self._data.dtype)
        self._size = len(values)
        if len(self._data) == 0:
            self._data = np.zeros(INITIAL_CAPACITY, dtype=self._data.dtype)

    def nbytes(self) -> int:
        return int(self._data.nbytes)


@dataclass(frozen=True, slots=True)
class Filters:
    """Search filters; None means no constraint."""

    namespace: str | None = None
    kinds: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None  # a doc must carry every one
    since_ms: int | None = None  # inclusive
    until_ms: int | None = None  # exclusive
    min_importance: float | None = None
    # (dimension, minimum) pairs: a doc must score at least each minimum.
    min_significance: tuple[tuple[str, float], ...] | None = None
    fact_kinds: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class NewDocs:
    """Frames to add at once (``Catalog.add_batch``): one entry each, as ``add`` takes them."""

    ids: list[str]
    seq: list[int]
    timestamp_ms: list[int]
    importance: list[float]
    namespace: list[str]
    kind: list[str]
    tags: list[list[str]]
    location: list[tuple[int, int, int]]
    private: list[bool]
    fact_kind: npt.ArrayLike  # ints
    significance: npt.ArrayLike  # six floats each, SIGNIFICANCE_DIMENSIONS order
    simhash: npt.ArrayLike  # uint64
    # When each frame expires (None: never); empty when none of them does.
    expires_at_ms: Sequence[int | None] = ()


_NO_DOCS = array("q")


class Catalog:
    """Doc numbers <-> frame ids, with filterable attributes.  Single writer."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.doc_of: dict[str, int] = {}
        self.seq = _Column(np.int64)
        self.timestamp_ms = _Column(np.int64)
        self.importance = _Column(np.float32)
        self.namespace_code = _Column(np.int32)
        self.kind_code = _Column(np.int32)
        self.alive = _Column(np.bool_)
        self.namespaces: dict[str, int] = {}
        self.kinds: dict[str, int] = {}
        self.kind_names: list[str] = []
        # Docs by tag, as machine ints: a million tagged frames hold 8 MB, not the 36
        # of a list of Python ints, and a tag filter indexes a mask with them directly.
        self._tag_docs: dict[str, array[int]] = {}
        self.segment = _Column(np.int64)
        self.offset = _Column(np.int64)
        self.length = _Column(np.int64)
        self.private = _Column(np.bool_)
        self.fact_kind = _Column(np.uint8)
        self.simhash = _Column(np.uint64)
        self.significance = {name: _Column(np.float32) for name in SIGNIFICANCE_DIMENSIONS}
        # Expiry time by live doc, for the few frames put with a time-to-live.
        self.expires_at_ms: dict[int, int] = {}
        self.deleted = 0

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def live(self) -> int:
        return len(self.ids) - self.deleted

    def add(
        self,
        frame_id: str,
        seq: int,
        timestamp_ms: int,
        importance: float,
        namespace: str,
        kind: str,
        tags: Iterable[str],
        *,
        location: tuple[int, int, int] = NO_LOCATION,
        private: bool = False,
        fact_kind: int = 0,
        significance: Sequence[float] | None = None,
        simhash: int = 0,
        expires_at_ms: int | None = None,
    ) -> int:
        """Give a new frame the next doc number and record its attributes.

        ``location`` is its record's (segment, offset, length); ``fact_kind`` an
        index into FACT_KINDS; ``significance`` the six scores in
        SIGNIFICANCE_DIMENSIONS order (zeros when None).
        """
        doc = len(self.ids)
        self.ids.append(frame_id)
        self.doc_of[frame_id] = doc
        self.seq.append(seq)
        self.timestamp_ms.append(timestamp_ms)
        self.importance.append(importance)
        self.namespace_code.append(self.namespaces.setdefault(namespace, len(self.namespaces)))
        self.kind_code.append(self._kind_code(kind))
        self.alive.append(True)
        for tag in tags:
            self._tag_docs.setdefault(tag, array("q")).append(doc)
        segment, offset, length = location
        self.segment.append(segment)
        self.offset.append(offset)
        self.length.append(length)
        self.private.append(private)
        self.fact_kind.append(fact_kind)
        self.simhash.append(simhash)
        scores = significance if significance is not None else (0.0,) * len(self.significance)
        for column, score in zip(self.significance.values(), scores, strict=True):
            column.append(score)
        if expires_at_ms is not None:
            self.expires_at_ms[doc] = expires_at_ms
        return doc

    def add_batch(self, docs: NewDocs) -> range:
        """``add`` of many frames at once (same doc numbers, same columns); their docs."""
        first = len(self.ids)
        count = len(docs.ids)
        numbers = range(first, first + count)
        self.ids.extend(docs.ids)
        self.doc_of.update(zip(docs.ids, numbers, strict=True))
        self.seq.extend(docs.seq)
        self.timestamp_ms.extend(docs.timestamp_ms)
        self.importance.extend(docs.importance)
        namespaces = self.namespaces
        self.namespace_code.extend(
            [namespaces.setdefault(ns, len(namespaces)) for ns in docs.namespace]
        )
        self.kind_code.extend([self._kind_code(kind) for kind in docs.kind])
        self.alive.extend(np.ones(count, dtype=np.bool_))
        for doc, tags in zip(numbers, docs.tags, strict=True):
            for tag in tags:
                self._tag_docs.setdefault(tag, array("q")).append(doc)
        locations = np.asarray(docs.location, dtype=np.int64).reshape(count, 3)
        self.segment.extend(locations[:, 0])
        self.offset.extend(locations[:, 1])
        self.length.extend(locations[:, 2])
        self.private.extend(docs.private)
        self.fact_kind.extend(docs.fact_kind)
        self.simhash.extend(np.asarray(docs.simhash, dtype=np.uint64))
        scores = np.asarray(docs.significance, dtype=np.float64).reshape(
            count, len(self.significance)
        )
        for i, column in enumerate(self.significance.values()):
            column.extend(scores[:, i])
        if docs.expires_at_ms:  # empty when none expires
            for doc, expires in zip(numbers, docs.expires_at_ms, strict=True):
                if expires is not None:
                    self.expires_at_ms[doc] = expires
        return numbers

    def _kind_code(self, kind: str) -> int:
        code = self.kinds.get(kind)
        if code is None:
            code = self.kinds[kind] = len(self.kind_names)
            self.kind_names.append(kind)
        return code

    def remove(self, frame_id: str) -> int | None:
        """Mark a frame's doc dead; returns its doc number, None if not built."""
        doc = self.doc_of.pop(frame_id, None)
        if doc is not None:
            self.alive.set(doc, False)
            self.deleted += 1
            self.expires_at_ms.pop(doc, None)
        return doc

    def mask(self, filters: Filters) -> BoolArray:
        """Live docs that pass ``filters``."""
        mask: BoolArray = self.alive.view().copy()
        if filters.namespace is not None:
            code = self.namespaces.get(filters.namespace)
            if code is None:
                return np.zeros_like(mask)
            mask &= self.namespace_code.view() == code
        if filters.kinds is not None:
            codes = [self.kinds[k] for k in filters.kinds if k in self.kinds]
            mask &= np.isin(self.kind_code.view(), codes)
        if filters.since_ms is not None:
            mask &= self.timestamp_ms.view() >= filters.since_ms
        if filters.until_ms is not None:
            mask &= self.timestamp_ms.view() < filters.until_ms
        if filters.min_importance is not None:
            mask &= self.importance.view() >= filters.min_importance
        for tag in filters.tags or ():
            carriers = np.zeros_like(mask)
            carriers[np.frombuffer(self._tag_docs.get(tag, _NO_DOCS), dtype=np.int64)] = True
            mask &= carriers
        for name, minimum in filters.min_significance or ():
            mask &= self.significance[name].view() >= minimum
        if filters.fact_kinds is not None:
            codes = [FACT_KINDS.index(k) for k in filters.fact_kinds if k in FACT_KINDS]
            mask &= np.isin(self.fact_kind.view(), codes)
        return mask

    def annotations(self, docs: Sequence[int]) -> list[tuple[dict[str, float], str]]:
        """For each of ``docs``: its six significance scores by dimension name, and its
        fact kind; one gather per column for all of them."""
        at = np.asarray(docs, dtype=np.int64)
        scores = [column.view()[at].tolist() for column in self.significance.values()]
        names = list(self.significance)
        kinds = self.fact_kind.view()[at].tolist()
        return [
            (dict(zip(names, doc_scores, strict=True)), FACT_KINDS[kind])
            for doc_scores, kind in zip(zip(*scores, strict=True), kinds, strict=True)
        ]

    # -- checkpoints ------------------------------------------------------------

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        """A consistent copy of the catalog as (meta, arrays), for a checkpoint.

        Columns below ``len(self)`` never change except ``alive``, so the others
        are views (cheap); ``alive``, the ids and the tags are copied.
        """
        width = len(self.ids[0]) if self.ids else 0
        joined = "".join(self.ids)
        if len(joined) != width * len(self.ids) or not joined.isascii():
            raise ValueError("frame ids differ in length or are not ASCII: no checkpoint")
        ids = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
        tags = list(self._tag_docs)
        tag_counts = np.array([len(self._tag_docs[t]) for t in tags], dtype=np.int64)
        tag_docs = (
            np.concatenate([np.frombuffer(self._tag_docs[t], dtype=np.int64) for t in tags])
            if tags
            else np.zeros(0, dtype=np.int64)
        )
        arrays = {f"catalog.{name}": column.view() for name, column in self._named_columns()}
        arrays["catalog.alive"] = self.alive.view().copy()
        arrays["catalog.ids"] = ids
        arrays["catalog.tag_counts"] = tag_counts
        arrays["catalog.tag_docs"] = tag_docs
        expiring = sorted(self.expires_at_ms)
        arrays["catalog.expiring_docs"] = np.array(expiring, dtype=np.int64)
        arrays["catalog.expiring_at_ms"] = np.array(
            [self.expires_at_ms[doc] for doc in expiring], dtype=np.int64
        )
        meta = {
            "docs": len(self.ids),
            "id_chars": width,
            "namespaces": list(self.namespaces),
            "kinds": list(self.kind_names),
            "tags": tags,
            "deleted": self.deleted,
        }
        return meta, arrays

    @classmethod
    def from_arrays(cls, meta: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> Catalog:
        """The catalog ``to_arrays`` described; ValueError if the parts disagree."""
        catalog = cls()
        n, width = int(meta["docs"]), int(meta["id_chars"])
        catalog.ids = _split_ids(arrays["catalog.ids"], n, width)
        for name, column in [*catalog._named_columns(), ("alive", catalog.alive)]:
            values = arrays[f"catalog.{name}"]
            if len(values) != n:
                raise ValueError(f"catalog column {name} has {len(values)} rows, not {n}")
            column.restore(values)
        catalog.namespaces = {ns: i for i, ns in enumerate(meta["namespaces"])}
        catalog.kind_names = list(meta["kinds"])
        catalog.kinds = {kind: i for i, kind in enumerate(catalog.kind_names)}
        alive = catalog.alive.view()
        live = np.flatnonzero(alive)
        # zip in C rather than a comprehension: a quarter less at a million ids.
        if live.shape[0] == n:
            catalog.doc_of = dict(zip(catalog.ids, range(n), strict=True))
        else:
            docs_live = live.tolist()
            ids_live = map(catalog.ids.__getitem__, docs_live)
            catalog.doc_of = dict(zip(ids_live, docs_live, strict=True))
        expiring = arrays["catalog.expiring_docs"].tolist()
        if not all(0 <= doc < n and alive[doc] for doc in expiring):
            raise ValueError("catalog expiry names docs it does not hold live")
        catalog.expires_at_ms = dict(
            zip(expiring, arrays["catalog.expiring_at_ms"].tolist(), strict=True)
        )
        counts = arrays["catalog.tag_counts"]
        ends = np.cumsum(counts).tolist()
        docs = np.asarray(arrays["catalog.tag_docs"], dtype=np.int64)
        catalog._tag_docs = {
            tag: array("q", docs[end - count : end].tobytes())
            for tag, end, count in zip(meta["tags"], ends, counts.tolist(), strict=True)
        }
        catalog.deleted = int(meta["deleted"])
        if catalog.deleted != n - len(catalog.doc_of):
            raise ValueError("catalog deleted count and liveness disagree")
        return catalog

    def _named_columns(self) -> list[tuple[str, _Column]]:
        """Every column but ``alive``, by checkpoint name."""
        return [
            ("seq", self.seq),
            ("timestamp_ms", self.timestamp_ms),
            ("importance", self.importance),
            ("namespace_code", self.namespace_code),
            ("kind_code", self.kind_code),
            ("segment", self.segment),
            ("offset", self.offset),
            ("length", self.length),
            ("private", self.private),
            ("fact_kind", self.fact_kind),
            ("simhash", self.simhash),
            *((f"significance.{name}", c) for name, c in self.significance.items()),
        ]

    def _columns(self) -> tuple[_Column, ...]:
        return (*(column for _, column in self._named_columns()), self.alive)

    def memory_bytes(self) -> int:
        per_id = 49 + 32 + 2 * 100  # str object + hex chars + two dict entries, roughly
        tags = sum(len(docs) for docs in self._tag_docs.values()) * 8
        expiry = len(self.expires_at_ms) * 100  # a dict entry of two ints
        return sum(c.nbytes() for c in self._columns()) + len(self.ids) * per_id + tags + expiry

    def _check(self) -> None:
        size = len(self.ids)
        for column in self._columns():
            assert len(column.view()) == size
        assert int(np.count_nonzero(~self.alive.view())) == self.deleted
        for frame_id, doc in self.doc_of.items():
            assert self.ids[doc] == frame_id and bool(self.alive.view()[doc])
        assert all(0 <= doc < size and self.alive.view()[doc] for doc in self.expires_at_ms)


def _split_ids(packed: npt.NDArray[Any], n: int, width: int) -> list[str]:
    """``n`` ids of ``width`` ASCII characters each, packed end to end, as strings.

    A newline after each and one ``str.split`` make the million strings of a large
    catalog in C: 0.17 s at 1M against 0.28 s for slicing them one by one.  Ids
    never hold a newline (they are hex digests), so a count other than ``n``
    means damage.
    """
    raw = np.frombuffer(packed.tobytes(), dtype=np.uint8)
    if raw.shape[0] != n * width:
        raise ValueError("catalog ids and doc count disagree")
    if n == 0:
        return []
    lines = np.empty((n, width + 1), dtype=np.uint8)
    lines[:, :width] = raw.reshape(n, width)
    lines[:, width] = ord("\n")
    ids = lines.tobytes()[:-1].decode("ascii").split("\n")
    if len(ids) != n:
        raise ValueError("catalog ids hold a line break")
    return ids
