"""Per-doc attributes the ranking needs: time, importance and kind, as numpy columns.

Contract: ``set_batch`` writes the attributes of new docs (same doc rule as the
indexes: increasing, above every doc before); docs never set read as time 0,
importance 0, kind ''.  Kinds are interned to small codes (at most
``kinds_max``), so that a kind boost is one array lookup per candidate.  Filters
stay with the caller (it builds the mask); these columns only feed scores.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memoryd.storage.search.arrays import FloatArray, IntArray, grown

kinds_max = 255  # kind codes are uint8; code 0 is the empty kind


class DocColumns:
    """time_ms (int64), importance (float32, 0-1) and kind code (uint8) by doc number."""

    def __init__(self) -> None:
        self.time_ms: IntArray = np.zeros(0, dtype=np.int64)
        self.importance: FloatArray = np.zeros(0, dtype=np.float32)
        self.kind: IntArray = np.zeros(0, dtype=np.uint8)
        self.kinds: list[str] = [""]
        self._codes: dict[str, int] = {"": 0}
        self._doc_end = 0

    @property
    def doc_end(self) -> int:
        return self._doc_end

    def kind_code(self, kind: str) -> int:
        """The code of ``kind``, interned on first sight."""
        code = self._codes.get(kind)
        if code is None:
            if len(self.kinds) > kinds_max:
                raise OverflowError(f"more than {kinds_max} distinct kinds")
            code = len(self.kinds)
            self.kinds.append(kind)
            self._codes[kind] = code
        return code

    def set_batch(
        self,
        docs: Sequence[int] | IntArray,
        times_ms: Sequence[int] | IntArray,
        importance: Sequence[float] | FloatArray | None = None,
        kinds: Sequence[str] | None = None,
    ) -> None:
        doc_arr = np.asarray(docs, dtype=np.int64)
        if doc_arr.shape[0] == 0:
            return
        if int(doc_arr[0]) < self._doc_end or not bool(np.all(np.diff(doc_arr) > 0)):
            raise ValueError("docs must increase and be above every doc set before")
        end = int(doc_arr[-1]) + 1
        self.time_ms = grown(self.time_ms, end)
        self.importance = grown(self.importance, end)
        self.kind = grown(self.kind, end)
        self.time_ms[doc_arr] = np.asarray(times_ms, dtype=np.int64)
        if importance is not None:
            imp = np.asarray(importance, dtype=np.float32)
            if not bool(np.all((imp >= 0) & (imp <= 1))):
                raise ValueError("importance must be within 0-1")
            self.importance[doc_arr] = imp
        if kinds is not None:
            self.kind[doc_arr] = [self.kind_code(k) for k in kinds]
        self._doc_end = end

    def memory_bytes(self) -> int:
        return int(self.time_ms.nbytes + self.importance.nbytes + self.kind.nbytes)

    def _check(self) -> None:
        n = self._doc_end
        assert min(self.time_ms.shape[0], self.importance.shape[0], self.kind.shape[0]) >= n
        assert int(self.kind[:n].max(initial=0)) < len(self.kinds)
        assert self._codes == {k: i for i, k in enumerate(self.kinds)}

    def save(self, directory: str | os.PathLike[str]) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        n = self._doc_end
        np.save(path / "time_ms.npy", self.time_ms[:n])
        np.save(path / "importance.npy", self.importance[:n])
        np.save(path / "kind.npy", self.kind[:n])
        (path / "kinds.json").write_text(json.dumps(self.kinds), encoding="utf-8")

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, IntArray]]:
        """(meta, arrays) for a checkpoint; rows below ``doc_end`` never change."""
        n = self._doc_end
        arrays = {
            "columns.time_ms": self.time_ms[:n],
            "columns.importance": self.importance[:n],
            "columns.kind": self.kind[:n],
        }
        return {"kinds": list(self.kinds)}, arrays

    @classmethod
    def from_arrays(cls, meta: dict[str, Any], arrays: dict[str, IntArray]) -> DocColumns:
        cols = cls()
        cols.time_ms = np.asarray(arrays["columns.time_ms"], dtype=np.int64)
        cols.importance = np.asarray(arrays["columns.importance"], dtype=np.float32)
        cols.kind = np.asarray(arrays["columns.kind"], dtype=np.uint8)
        cols.kinds = [str(k) for k in meta["kinds"]]
        cols._codes = {k: i for i, k in enumerate(cols.kinds)}
        cols._doc_end = int(cols.time_ms.shape[0])
        if not cols.importance.shape[0] == cols.kind.shape[0] == cols._doc_end:
            raise ValueError("doc columns differ in length")
        return cols

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> DocColumns:
        path = Path(directory)
        cols = cls()
        cols.time_ms = np.array(np.load(path / "time_ms.npy"), dtype=np.int64)
        cols.importance = np.array(np.load(path / "importance.npy"), dtype=np.float32)
        cols.kind = np.array(np.load(path / "kind.npy"), dtype=np.uint8)
        cols.kinds = list(json.loads((path / "kinds.json").read_text(encoding="utf-8")))
        cols._codes = {k: i for i, k in enumerate(cols.kinds)}
        cols._doc_end = int(cols.time_ms.shape[0])
        return cols
