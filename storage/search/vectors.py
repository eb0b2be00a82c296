"""The vector index: cosine similarity over doc numbers, exact or approximate.

Contract:

* Rows are L2-normalized float32 vectors (as every ``Embedder`` gives), stored as
  float16 (half the memory; cosine error ~1e-3, far below ranking noise).  Docs
  follow the keyword index's rule: each batch above every doc before, increasing.
* ``search(query, k, mask)`` returns the ``k`` live docs allowed by ``mask`` (bool by
  doc, docs past its end not allowed) with the highest cosine, best first.
* Exact search is a float32 matrix-vector product over the allowed rows, in
  chunks of ``exact_chunk_rows`` so that the float16 -> float32 copy stays small.
* With ``ann=True`` (needs the ``usearch`` package) an HNSW graph also holds every
  row; a search with more than ``exact_rows_max`` allowed rows asks the graph for
  ``k * ann_oversample`` neighbours, keeps the allowed ones, re-scores them exactly
  from the float16 rows, and widens the request (up to ``ann_candidates_max``)
  when the mask filtered too many away; if still short, it falls back to exact.
  So a mask never loses results, it only costs time.
* ``delete`` tombstones a doc (and removes it from the graph).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memoryd.storage.search.arrays import BoolArray, FloatArray, IntArray, grown, mask_at, top_k

exact_chunk_rows = 1 << 16  # rows converted to float32 at a time: 64k x 384 x 4 B = 96 MiB max
exact_rows_max = 200_000  # above this many allowed rows, use the graph when there is one
ann_oversample = 4  # graph neighbours asked per wanted result, before masking
ann_candidates_max = 4096  # widest graph request before falling back to exact
ann_connectivity = 16  # HNSW M: edges per node; 16 is the usual recall/memory balance
ann_expansion_add = 64  # HNSW efConstruction
ann_expansion_search = 96  # HNSW ef at query time; measured against exact (see benchmarks)
checkpoint_format = 1


@dataclass(frozen=True, slots=True)
class VectorHits:
    """Docs best first with their cosine similarity to the query."""

    docs: IntArray  # int64
    scores: FloatArray  # float32


class VectorIndexUnavailableError(RuntimeError):
    """ANN was asked for but the usearch package is not installed."""


class VectorIndex:
    """Cosine search over doc numbers; see the module docstring."""

    def __init__(self, dim: int, ann: bool = False) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        self.dim = dim
        self._rows: FloatArray = np.zeros((0, dim), dtype=np.float16)
        self._live: BoolArray = np.zeros(0, dtype=bool)
        self._doc_end = 0
        self._n_live = 0
        self._graph: Any = _new_graph(dim) if ann else None

    @property
    def doc_end(self) -> int:
        return self._doc_end

    @property
    def doc_count(self) -> int:
        return self._n_live

    @property
    def ann(self) -> bool:
        return self._graph is not None

    def add_batch(self, docs: Sequence[int] | IntArray, vectors: FloatArray) -> None:
        """Store ``vectors[i]`` as doc ``docs[i]``; docs increasing, above all earlier ones."""
        doc_arr = np.asarray(docs, dtype=np.int64)
        vecs = np.asarray(vectors, dtype=np.float32)
        if vecs.shape != (doc_arr.shape[0], self.dim):
            raise ValueError(f"expected ({doc_arr.shape[0]}, {self.dim}) vectors, got {vecs.shape}")
        if doc_arr.shape[0] == 0:
            return
        if int(doc_arr[0]) < self._doc_end or not bool(np.all(np.diff(doc_arr) > 0)):
            raise ValueError("docs must increase and be above every doc added before")
        end = int(doc_arr[-1]) + 1
        self._rows = grown(self._rows, end)
        self._live = grown(self._live, end, fill=False)
        self._rows[doc_arr] = vecs
        self._live[doc_arr] = True
        self._doc_end = end
        self._n_live += int(doc_arr.shape[0])
        if self._graph is not None:
            self._graph.add(doc_arr.astype(np.uint64), vecs, threads=1)

    def delete(self, docs: Sequence[int] | IntArray) -> int:
        """Tombstone ``docs``; returns how many were live."""
        doc_arr = np.unique(np.asarray(docs, dtype=np.int64))
        doc_arr = doc_arr[(doc_arr >= 0) & (doc_arr < self._doc_end)]
        doc_arr = doc_arr[self._live[doc_arr]]
        self._live[doc_arr] = False
        self._n_live -= int(doc_arr.shape[0])
        if self._graph is not None and doc_arr.shape[0]:
            self._graph.remove(doc_arr.astype(np.uint64))
        return int(doc_arr.shape[0])

    def vector(self, doc: int) -> FloatArray:
        return self._rows[doc].astype(np.float32)

    def score_docs(self, query: FloatArray, docs: IntArray) -> FloatArray:
        """Cosine of ``query`` with each of ``docs`` (0 for unknown or deleted docs)."""
        docs = np.asarray(docs, dtype=np.int64)
        ok = (docs >= 0) & (docs < self._doc_end)
        ok[ok] = self._live[docs[ok]]
        out = np.zeros(docs.shape[0], dtype=np.float32)
        if bool(ok.any()):
            out[ok] = self._rows[docs[ok]].astype(np.float32) @ _as_query(query, self.dim)
        return out

    def search(
        self, query: FloatArray, k: int, mask: BoolArray | None = None, exact: bool = False
    ) -> VectorHits:
        """The ``k`` allowed live docs most similar to ``query``; see module docstring."""
        q = _as_query(query, self.dim)
        if k <= 0 or self._n_live == 0:
            return VectorHits(np.empty(0, np.int64), np.empty(0, np.float32))
        if self._graph is not None and not exact:
            hits = self._search_graph(q, k, mask)
            if hits is not None:
                return hits
        return self._search_exact(q, k, mask)

    def _allowed(self, mask: BoolArray | None) -> BoolArray:
        allowed = self._live[: self._doc_end].copy()
        if mask is not None:
            m = mask[: self._doc_end]
            allowed[: m.shape[0]] &= m
            allowed[m.shape[0] :] = False
        return allowed

    def _search_exact(self, q: FloatArray, k: int, mask: BoolArray | None) -> VectorHits:
        allowed = self._allowed(mask) if mask is not None else None
        best_docs, best_scores = [], []
        for lo in range(0, self._doc_end, exact_chunk_rows):
            hi = min(lo + exact_chunk_rows, self._doc_end)
            if allowed is None:
                docs = np.flatnonzero(self._live[lo:hi]) + lo
                if docs.shape[0] == hi - lo:
                    scores = self._rows[lo:hi].astype(np.float32) @ q
                else:
                    scores = self._rows[docs].astype(np.float32) @ q
            else:
                docs = np.flatnonzero(allowed[lo:hi]) + lo
                scores = self._rows[docs].astype(np.float32) @ q
            d, s = top_k(docs, scores, k)
            best_docs.append(d)
            best_scores.append(s)
        docs, scores = top_k(np.concatenate(best_docs), np.concatenate(best_scores), k)
        return VectorHits(docs, scores)

    def _search_graph(self, q: FloatArray, k: int, mask: BoolArray | None) -> VectorHits | None:
        """Graph candidates re-scored exactly; None when the exact path is the better one."""
        if mask is not None and int(np.count_nonzero(mask[: self._doc_end])) <= exact_rows_max:
            return None
        want = min(k * ann_oversample, self._n_live)
        while True:
            found = self._graph.search(q, count=want, threads=1)
            docs = np.asarray(found.keys, dtype=np.int64)
            docs = docs[(docs < self._doc_end)]
            docs = docs[self._live[docs] & mask_at(mask, docs)]
            if docs.shape[0] >= k or want >= min(ann_candidates_max, self._n_live):
                break
            want = min(want * 4, ann_candidates_max, self._n_live)
        if docs.shape[0] < k and want < self._n_live:
            return None
        scores = self._rows[docs].astype(np.float32) @ q
        d, s = top_k(docs, scores, k)
        return VectorHits(d, s)

    def memory_bytes(self) -> int:
        graph = int(self._graph.memory_usage) if self._graph is not None else 0
        return int(self._rows.nbytes + self._live.nbytes + graph)

    def stats(self) -> dict[str, int | bool]:
        return {
            "docs_live": self._n_live,
            "doc_end": self._doc_end,
            "dim": self.dim,
            "ann": self.ann,
            "memory_bytes": self.memory_bytes(),
        }

    def _check(self) -> None:
        n = self._doc_end
        assert self._rows.shape[1] == self.dim and self._rows.dtype == np.float16
        assert self._rows.shape[0] >= n and self._live.shape[0] >= n
        assert int(self._live[:n].sum()) == self._n_live
        assert not bool(self._live[n:].any())
        live_rows = self._rows[:n][self._live[:n]].astype(np.float32)
        if live_rows.shape[0]:
            norms = np.linalg.norm(live_rows, axis=1)
            assert bool(np.all((np.abs(norms - 1) < 1e-2) | (norms < 1e-6))), "row not unit"
        if self._graph is not None:
            assert int(self._graph.size) == self._n_live, "graph and rows disagree"

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``vectors.json``, ``rows.npy``, ``live.npy`` (and ``graph.usearch``)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        n = self._doc_end
        np.save(path / "rows.npy", self._rows[:n])
        np.save(path / "live.npy", self._live[:n])
        if self._graph is not None:
            self._graph.save(str(path / "graph.usearch"))
        manifest = {
            "format": checkpoint_format,
            "dim": self.dim,
            "doc_end": n,
            "n_live": self._n_live,
            "ann": self.ann,
        }
        (path / "vectors.json").write_text(json.dumps(manifest), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> VectorIndex:
        """Read a checkpoint of :meth:`save` (rows are copied: the index appends to them)."""
        path = Path(directory)
        manifest = json.loads((path / "vectors.json").read_text(encoding="utf-8"))
        if manifest.get("format") != checkpoint_format:
            raise ValueError(f"unknown vector checkpoint format {manifest.get('format')}")
        index = cls(int(manifest["dim"]), ann=False)
        index._rows = np.array(np.load(path / "rows.npy"), dtype=np.float16)
        index._live = np.array(np.load(path / "live.npy"), dtype=bool)
        index._doc_end = int(manifest["doc_end"])
        index._n_live = int(manifest["n_live"])
        if index._rows.shape != (index._doc_end, index.dim):
            raise ValueError("rows and manifest disagree")
        if manifest["ann"]:
            index._graph = _new_graph(index.dim)
            index._graph.load(str(path / "graph.usearch"))
        return index


def _as_query(query: FloatArray, dim: int) -> FloatArray:
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    if q.shape[0] != dim:
        raise ValueError(f"query has {q.shape[0]} dims, index has {dim}")
    return q


def _new_graph(dim: int) -> Any:
    try:
        from usearch.index import Index
    except ImportError as e:
        raise VectorIndexUnavailableError(
            "approximate vector search needs the package usearch (pip install usearch)"
        ) from e
    return Index(
        ndim=dim,
        metric="ip",
        dtype="f16",
        connectivity=ann_connectivity,
        expansion_add=ann_expansion_add,
        expansion_search=ann_expansion_search,
    )
