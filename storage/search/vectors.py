"""The vector index: cosine similarity over doc numbers, exact or coarse-to-fine.

Contract:

* Rows are L2-normalized float32 vectors (as every ``Embedder`` gives), stored as
  int8 with one float32 scale per row (a quarter of float32's memory; cosine error
  ~1e-3, far below ranking noise; int8 converts to float32 ten times faster than
  float16 does in numpy, which is what exact search spends its time on).  Docs
  follow the keyword index's rule: each batch above every doc before, increasing.
* ``search(query, k, mask)`` returns the ``k`` live docs allowed by ``mask`` (bool by
  doc, docs past its end not allowed) with the highest cosine, best first.
* Up to ``exact_rows_max`` allowed rows, search is exact: a float32 product over
  them, in chunks of ``exact_chunk_rows``.  Above, it is coarse-to-fine: every row
  also has a ``coarse_dim`` *folded* copy (dimension i added into i mod coarse_dim
  with a fixed random sign: feature hashing again, so folded inner products
  estimate the full ones without bias), itself int8 with a scale per row; the
  best ``coarse_candidates`` rows by folded score are re-scored with their full
  int8 rows, and the best ``rescore_keep_factor * k`` of those get exact float32
  cosines, which order them.
* Exact chunks are small enough for their float32 copy to stay in the CPU cache
  (``exact_chunk_rows`` x 384 floats: 1.5 MiB): measured here, a 50k-row exact pass
  takes 6 ms in 1k-row chunks against 26 ms in 32k-row ones.
* The coarse pass multiplies int8 by int8: the folded query is quantized to int8
  too (one scale for the whole query, so it ranks rows exactly as its float32 self
  would, up to rounding) and simsimd's SIMD kernels take the dot products of int8
  rows straight from memory, where numpy had to convert every row to float32
  first: a million rows in 6-12 ms on one core against 24 ms.  Its recall@10
  against exact is measured in benchmarks/search_latency.py.  ``exact=True``
  forces the exact path.
* A coarse pass over more than ``2 * scan_part_rows_min`` rows is cut into one part
  per CPU (at most ``scan_threads_max``), scanned side by side: simsimd and numpy
  release the interpreter lock while they multiply and partition, so a million
  rows take about half the time on two cores.  Each part keeps its best
  ``coarse_candidates``, and the best of their union are the rows one pass would
  keep (up to ties).
* HNSW (usearch) was measured and rejected: recall@10 0.19 at ef 96 for short
  queries against hashed-n-gram rows (their similarities are flat, ~0.2, which
  graph search handles badly) and 2-3k inserts/s on one core, against the
  builder's 30k frames/s.
* ``delete`` tombstones a doc.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import simsimd

from memoryd.storage.search import threads
from memoryd.storage.search.arrays import (
    BoolArray,
    FloatArray,
    IntArray,
    grown,
    sorted_unique,
    top_k,
)

exact_chunk_rows = 1 << 10  # rows converted to float32 at a time: 1k x 384 x 4 B = 1.5 MiB
exact_rows_max = 50_000  # above this many allowed rows, search coarse-to-fine
coarse_dim = 96  # folded dims of the first stage: 96 B + a 4 B scale a row
coarse_candidates = 8000  # rows of the first stage rescored with their full rows
rescore_keep_factor = 2  # of the candidates rescored in int8, k x this many get float32 cosines
rescore_keep_min = 64  # ... and at least this many (int8 rounding never reorders far)
rescore_part_rows_min = 2048  # int8 rescoring is split in two from twice this many rows
coarse_seed = 0x5EED  # fixed: folded vectors must agree across processes and restarts
scan_threads_max = 4  # worker threads of one coarse pass (at most the CPUs)
scan_part_rows_min = 1 << 17  # a coarse pass is split only into parts at least this long
select_sample_stride = 32  # _largest estimates its cut from every 32nd score
checkpoint_format = 3


@dataclass(frozen=True, slots=True)
class VectorHits:
    """Docs best first with their cosine similarity to the query."""

    docs: IntArray  # int64
    scores: FloatArray  # float32


class VectorIndex:
    """Cosine search over doc numbers; see the module docstring."""

    def __init__(self, dim: int) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        self.dim = dim
        self._rows: IntArray = np.zeros((0, dim), dtype=np.int8)
        self._scale: FloatArray = np.zeros(0, dtype=np.float32)
        self._coarse: IntArray = np.zeros((0, coarse_dim), dtype=np.int8)
        self._coarse_scale: FloatArray = np.zeros(0, dtype=np.float32)
        self._live: BoolArray = np.zeros(0, dtype=bool)
        self._doc_end = 0
        self._n_live = 0
        rng = np.random.default_rng(coarse_seed)
        self._fold_sign = (1 - 2 * rng.integers(0, 2, size=dim)).astype(np.float32)

    @property
    def doc_end(self) -> int:
        return self._doc_end

    @property
    def doc_count(self) -> int:
        return self._n_live

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
        self._scale = grown(self._scale, end)
        self._coarse = grown(self._coarse, end)
        self._coarse_scale = grown(self._coarse_scale, end)
        self._live = grown(self._live, end, fill=False)
        self._rows[doc_arr], self._scale[doc_arr] = _quantized(vecs)
        self._coarse[doc_arr], self._coarse_scale[doc_arr] = _quantized(self._fold(vecs))
        self._live[doc_arr] = True
        self._doc_end = end
        self._n_live += int(doc_arr.shape[0])

    def delete(self, docs: Sequence[int] | IntArray) -> int:
        """Tombstone ``docs``; returns how many were live."""
        doc_arr = sorted_unique(np.asarray(docs, dtype=np.int64))
        doc_arr = doc_arr[(doc_arr >= 0) & (doc_arr < self._doc_end)]
        doc_arr = doc_arr[self._live[doc_arr]]
        self._live[doc_arr] = False
        self._n_live -= int(doc_arr.shape[0])
        return int(doc_arr.shape[0])

    def vector(self, doc: int) -> FloatArray:
        """The stored (dequantized) vector of ``doc``."""
        out: FloatArray = self._rows[doc].astype(np.float32) * self._scale[doc]
        return out

    def score_docs(self, query: FloatArray, docs: IntArray) -> FloatArray:
        """Cosine of ``query`` with each of ``docs`` (0 for unknown or deleted docs)."""
        docs = np.asarray(docs, dtype=np.int64)
        ok = (docs >= 0) & (docs < self._doc_end)
        ok[ok] = self._live[docs[ok]]
        out = np.zeros(docs.shape[0], dtype=np.float32)
        if bool(ok.any()):
            out[ok] = self._exact(docs[ok], _as_query(query, self.dim))
        return out

    def search(
        self, query: FloatArray, k: int, mask: BoolArray | None = None, exact: bool = False
    ) -> VectorHits:
        """The ``k`` allowed live docs most similar to ``query``; see module docstring."""
        return self.start_search(query, k, mask, exact)()

    def start_search(
        self, query: FloatArray, k: int, mask: BoolArray | None = None, exact: bool = False
    ) -> Callable[[], VectorHits]:
        """``search``, begun: a coarse pass starts on worker threads and the caller may
        do other work (a hybrid search's keyword half) before it calls the returned
        function for the hits.  The caller must call it, even on error, before the
        index changes: the workers read the index until it returns."""
        q = _as_query(query, self.dim)
        if k <= 0 or self._n_live == 0:
            empty = VectorHits(np.empty(0, np.int64), np.empty(0, np.float32))
            return lambda: empty
        allowed = self._allowed(mask)
        n_allowed = int(np.count_nonzero(allowed))
        if exact or n_allowed <= exact_rows_max:
            return lambda: self._search_exact(q, k, allowed)
        # With every row allowed, the scan need not mark the disallowed ones.
        return self._start_coarse(q, k, None if n_allowed == self._doc_end else allowed)

    def _fold(self, vecs: FloatArray) -> FloatArray:
        signed = vecs * self._fold_sign
        pad = (-self.dim) % coarse_dim
        if pad:
            signed = np.pad(signed, ((0, 0), (0, pad)))
        out: FloatArray = signed.reshape(vecs.shape[0], -1, coarse_dim).sum(axis=1)
        return out.astype(np.float32)

    def _exact(self, docs: IntArray, q: FloatArray) -> FloatArray:
        out = np.empty(docs.shape[0], dtype=np.float32)
        for lo in range(0, docs.shape[0], exact_chunk_rows):
            part = docs[lo : lo + exact_chunk_rows]
            np.matmul(self._rows[part].astype(np.float32), q, out=out[lo : lo + part.shape[0]])
        out *= self._scale[docs]
        return out

    def _allowed(self, mask: BoolArray | None) -> BoolArray:
        allowed = self._live[: self._doc_end].copy()
        if mask is not None:
            m = np.asarray(mask[: self._doc_end], dtype=bool)
            allowed[: m.shape[0]] &= m
            allowed[m.shape[0] :] = False
        return allowed

    def _search_exact(self, q: FloatArray, k: int, allowed: BoolArray) -> VectorHits:
        docs = np.flatnonzero(allowed).astype(np.int64)
        top, scores = top_k(docs, self._exact(docs, q), k)
        return VectorHits(top, scores)

    def _start_coarse(
        self, q: FloatArray, k: int, allowed: BoolArray | None
    ) -> Callable[[], VectorHits]:
        """The coarse pass begun on the pool; ``allowed`` None allows every row."""
        qf = _quantized(self._fold(q[None, :]))[0]
        want = min(max(coarse_candidates, k), self._doc_end)
        # Every part on the pool: simsimd and numpy drop the interpreter lock while
        # they multiply and partition, so the caller's Python runs beside them.
        pool = threads.pool("vector-scan", scan_threads_max)
        futures = [
            pool.submit(self._coarse_part, qf, lo, hi, allowed, want)
            for lo, hi in _scan_parts(self._doc_end)
        ]

        def finish() -> VectorHits:
            wait(futures)  # never return, even raising, while a worker reads the index
            results = [future.result() for future in futures]
            cand = np.concatenate([docs for docs, _ in results])
            rough = np.concatenate([scores for _, scores in results])
            if cand.shape[0] > want:
                cand = cand[_largest(rough, want)]
            return self._rescored(cand if allowed is None else cand[allowed[cand]], q, k)

        return finish

    def _rescored(self, cand: IntArray, q: FloatArray, k: int) -> VectorHits:
        """The ``k`` best of ``cand`` by cosine with ``q``.  Full int8 rows against the
        query quantized to int8 (simsimd) pick the best ``rescore_keep_factor * k``;
        those are ordered by their float32 cosine, the one ``score_docs`` gives."""
        q8 = _quantized(q[None, :])[0]
        # Gathering the rows is most of the cost: in halves on two threads.
        halves = [cand] if cand.shape[0] < 2 * rescore_part_rows_min else np.array_split(cand, 2)
        pool = threads.pool("vector-scan", scan_threads_max)
        futures = [pool.submit(self._products, q8, half) for half in halves[1:]]
        try:
            first = self._products(q8, halves[0])
        finally:
            wait(futures)
        approx = np.concatenate([first, *(future.result() for future in futures)])
        keep = max(k * rescore_keep_factor, rescore_keep_min)
        if cand.shape[0] > keep:
            cand = cand[np.argpartition(approx, cand.shape[0] - keep)[cand.shape[0] - keep :]]
        docs, scores = top_k(cand, self._exact(cand, q), k)
        return VectorHits(docs, scores)

    def _products(self, q8: IntArray, docs: IntArray) -> FloatArray:
        """Inner products of the int8 query ``q8`` (1 x dim) with the rows of ``docs``."""
        if docs.shape[0] == 0:  # simsimd refuses an empty set of rows
            return np.empty(0, dtype=np.float32)
        products = simsimd.cdist(q8, self._rows[docs], metric="dot", out_dtype="float32")
        out: FloatArray = np.asarray(products).reshape(-1)
        out *= self._scale[docs]
        return out

    def _coarse_part(
        self, qf: IntArray, lo: int, hi: int, allowed: BoolArray | None, want: int
    ) -> tuple[IntArray, FloatArray]:
        """The best ``want`` rows of ``lo:hi`` by folded score (or all of them, if
        fewer), as (doc numbers, folded scores); disallowed rows score -inf
        (``allowed`` None allows all).  ``qf`` is the folded query as int8 (a
        1 x coarse_dim matrix)."""
        products = simsimd.cdist(qf, self._coarse[lo:hi], metric="dot", out_dtype="float32")
        rough: FloatArray = np.asarray(products).reshape(-1)
        rough *= self._coarse_scale[lo:hi]
        if allowed is not None:
            rough[~allowed[lo:hi]] = -np.inf
        if rough.shape[0] <= want:
            return np.arange(lo, hi, dtype=np.int64), rough
        top = _largest(rough, want)
        return top.astype(np.int64) + lo, rough[top]

    def memory_bytes(self) -> int:
        arrays = (self._rows, self._scale, self._coarse, self._coarse_scale, self._live)
        return sum(int(a.nbytes) for a in arrays)

    def stats(self) -> dict[str, int]:
        return {
            "docs_live": self._n_live,
            "doc_end": self._doc_end,
            "dim": self.dim,
            "memory_bytes": self.memory_bytes(),
        }

    def _check(self) -> None:
        n = self._doc_end
        assert self._rows.shape[1] == self.dim and self._rows.dtype == np.int8
        sizes = (self._rows, self._scale, self._coarse, self._coarse_scale)
        assert min(a.shape[0] for a in sizes) >= n
        assert self._live.shape[0] >= n
        assert int(self._live[:n].sum()) == self._n_live
        assert not bool(self._live[n:].any())
        live = np.flatnonzero(self._live[:n])
        if live.shape[0]:
            rows = self._rows[live].astype(np.float32) * self._scale[live, None]
            norms = np.linalg.norm(rows, axis=1)
            assert bool(np.all((np.abs(norms - 1) < 2e-2) | (norms < 1e-6))), "row not unit"
            folded = self._fold(rows)
            coarse = self._coarse[live].astype(np.float32) * self._coarse_scale[live, None]
            assert bool(np.allclose(folded, coarse, atol=5e-2)), "coarse drifted"

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``vectors.json`` and the arrays as ``.npy``: rows, scale, coarse,
        coarse_scale, live."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        n = self._doc_end
        np.save(path / "rows.npy", self._rows[:n])
        np.save(path / "scale.npy", self._scale[:n])
        np.save(path / "coarse.npy", self._coarse[:n])
        np.save(path / "coarse_scale.npy", self._coarse_scale[:n])
        np.save(path / "live.npy", self._live[:n])
        manifest = {
            "format": checkpoint_format,
            "dim": self.dim,
            "doc_end": n,
            "n_live": self._n_live,
            "coarse_dim": coarse_dim,
            "coarse_seed": coarse_seed,
        }
        (path / "vectors.json").write_text(json.dumps(manifest), encoding="utf-8")

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, IntArray]]:
        """A consistent copy as (meta, arrays) for a checkpoint.

        Rows below ``doc_end`` never change (only ``live`` does), so they are
        shared; ``live`` is copied.
        """
        n = self._doc_end
        meta = {
            "format": checkpoint_format,
            "dim": self.dim,
            "doc_end": n,
            "n_live": self._n_live,
            "coarse_dim": coarse_dim,
            "coarse_seed": coarse_seed,
        }
        arrays = {
            "vectors.rows": self._rows[:n],
            "vectors.scale": self._scale[:n],
            "vectors.coarse": self._coarse[:n],
            "vectors.coarse_scale": self._coarse_scale[:n],
            "vectors.live": self._live[:n].copy(),
        }
        return meta, arrays

    @classmethod
    def from_arrays(cls, meta: dict[str, Any], arrays: dict[str, IntArray]) -> VectorIndex:
        """The index ``to_arrays`` described (arrays are adopted, not copied)."""
        if meta.get("format") != checkpoint_format:
            raise ValueError(f"unknown vector checkpoint format {meta.get('format')}")
        if (meta["coarse_dim"], meta["coarse_seed"]) != (coarse_dim, coarse_seed):
            raise ValueError("checkpoint was folded differently; rebuild it")
        index = cls(int(meta["dim"]))
        n = int(meta["doc_end"])
        index._rows = np.asarray(arrays["vectors.rows"], dtype=np.int8)
        index._scale = np.asarray(arrays["vectors.scale"], dtype=np.float32)
        index._coarse = np.asarray(arrays["vectors.coarse"], dtype=np.int8)
        index._coarse_scale = np.asarray(arrays["vectors.coarse_scale"], dtype=np.float32)
        index._live = np.asarray(arrays["vectors.live"], dtype=bool)
        index._doc_end = n
        index._n_live = int(meta["n_live"])
        shapes = (
            index._rows.shape,
            index._scale.shape,
            index._coarse.shape,
            index._coarse_scale.shape,
            index._live.shape,
        )
        if shapes != ((n, index.dim), (n,), (n, coarse_dim), (n,), (n,)):
            raise ValueError("vector arrays and manifest disagree")
        if int(index._live.sum()) != index._n_live:
            raise ValueError("vector liveness and manifest disagree")
        return index

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> VectorIndex:
        """Read a checkpoint of :meth:`save` (arrays are copied: the index appends to them)."""
        path = Path(directory)
        manifest = json.loads((path / "vectors.json").read_text(encoding="utf-8"))
        if manifest.get("format") != checkpoint_format:
            raise ValueError(f"unknown vector checkpoint format {manifest.get('format')}")
        if (manifest["coarse_dim"], manifest["coarse_seed"]) != (coarse_dim, coarse_seed):
            raise ValueError("checkpoint was folded differently; rebuild it")
        index = cls(int(manifest["dim"]))
        index._rows = np.array(np.load(path / "rows.npy"), dtype=np.int8)
        index._scale = np.array(np.load(path / "scale.npy"), dtype=np.float32)
        index._coarse = np.array(np.load(path / "coarse.npy"), dtype=np.int8)
        index._coarse_scale = np.array(np.load(path / "coarse_scale.npy"), dtype=np.float32)
        index._live = np.array(np.load(path / "live.npy"), dtype=bool)
        index._doc_end = int(manifest["doc_end"])
        index._n_live = int(manifest["n_live"])
        if index._rows.shape != (index._doc_end, index.dim):
            raise ValueError("rows and manifest disagree")
        return index


def _scan_parts(n: int) -> list[tuple[int, int]]:
    """``0:n`` cut into one part per usable CPU (at most ``scan_threads_max``), each
    at least ``scan_part_rows_min`` rows."""
    parts = max(1, min(threads.usable_cpus(), scan_threads_max, n // scan_part_rows_min))
    step = -(-n // parts)
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


def _largest(scores: FloatArray, want: int) -> IntArray:
    """Positions of the ``want`` largest of ``scores`` (fewer than it holds), in no
    order; ties at the cut are split arbitrarily, as ``argpartition`` splits them.

    A partition of every score costs ~2 ms for half a million: a cut is estimated
    first from every ``select_sample_stride``-th score, a little below where the
    ``want``-th would fall, and only the scores at or above it are partitioned.
    When fewer than ``want`` reach it (a skewed sample), it partitions them all:
    the answer never depends on the estimate, only the time does.
    """
    n = scores.shape[0]
    sample = scores[::select_sample_stride]
    expected = want // select_sample_stride
    # ~4 standard deviations of the sample's count above the true cut, so the
    # estimate falls below it all but never.
    keep = expected + 4 * int(expected**0.5) + 8
    if want >= select_sample_stride * 16 and keep < sample.shape[0]:
        cut = np.partition(sample, sample.shape[0] - keep)[sample.shape[0] - keep]
        above = np.flatnonzero(scores >= cut)
        if above.shape[0] >= want:
            # The want largest are all >= the want-th largest >= cut: all in above.
            sub = scores[above]
            return above[np.argpartition(sub, sub.shape[0] - want)[sub.shape[0] - want :]]
    # The top end of an ascending partition: negating first would copy the
    # scores and partition them four times slower.
    top: IntArray = np.argpartition(scores, n - want)[n - want :]
    return top


def _quantized(vecs: FloatArray) -> tuple[IntArray, FloatArray]:
    """Rows as int8 with one scale each: ``row ~= int8_row * scale``."""
    peak = np.abs(vecs).max(axis=1)
    scale = np.where(peak > 0, peak / 127, 1).astype(np.float32)
    return np.rint(vecs / scale[:, None]).astype(np.int8), scale


def _as_query(query: FloatArray, dim: int) -> FloatArray:
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    if q.shape[0] != dim:
        raise ValueError(f"query has {q.shape[0]} dims, index has {dim}")
    return q
