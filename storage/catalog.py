"""The catalog of built frames: dense doc numbers and the attributes filters need.

The builder gives every frame it builds the next doc number (0, 1, 2, …, in
build order, never reused).  Indexes speak doc numbers; the catalog maps them
back to frame ids and keeps, per doc, the attributes that search filters and
ranking use, in numpy columns so that a filter is a vectorised mask:
timestamp, importance, namespace and kind (as small-int codes), liveness,
and, per tag, the doc numbers that carry it.

Memory: about 26 bytes per doc in columns, plus the id string and two dict
entries, plus 8 bytes per (doc, tag).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]
INITIAL_CAPACITY = 1024


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

    def view(self) -> npt.NDArray[Any]:
        return self._data[: self._size]

    def set(self, index: int, value: float | int | bool) -> None:
        self._data[index] = value

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
        self._tag_docs: dict[str, list[int]] = {}
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
    ) -> int:
        """Give a new frame the next doc number and record its attributes."""
        doc = len(self.ids)
        self.ids.append(frame_id)
        self.doc_of[frame_id] = doc
        self.seq.append(seq)
        self.timestamp_ms.append(timestamp_ms)
        self.importance.append(importance)
        self.namespace_code.append(self.namespaces.setdefault(namespace, len(self.namespaces)))
        kind_code = self.kinds.get(kind)
        if kind_code is None:
            kind_code = self.kinds[kind] = len(self.kind_names)
            self.kind_names.append(kind)
        self.kind_code.append(kind_code)
        self.alive.append(True)
        for tag in tags:
            self._tag_docs.setdefault(tag, []).append(doc)
        return doc

    def remove(self, frame_id: str) -> int | None:
        """Mark a frame's doc dead; returns its doc number, None if not built."""
        doc = self.doc_of.pop(frame_id, None)
        if doc is not None:
            self.alive.set(doc, False)
            self.deleted += 1
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
            carriers[self._tag_docs.get(tag, [])] = True
            mask &= carriers
        return mask

    def _columns(self) -> tuple[_Column, ...]:
        return (
            self.seq,
            self.timestamp_ms,
            self.importance,
            self.namespace_code,
            self.kind_code,
            self.alive,
        )

    def memory_bytes(self) -> int:
        per_id = 49 + 32 + 2 * 100  # str object + hex chars + two dict entries, roughly
        tags = sum(len(docs) for docs in self._tag_docs.values()) * 8
        return sum(c.nbytes() for c in self._columns()) + len(self.ids) * per_id + tags

    def _check(self) -> None:
        size = len(self.ids)
        for column in self._columns():
            assert len(column.view()) == size
        assert int(np.count_nonzero(~self.alive.view())) == self.deleted
        for frame_id, doc in self.doc_of.items():
            assert self.ids[doc] == frame_id and bool(self.alive.view()[doc])
