"""Array aliases and the one growth rule shared by every per-doc array in search.

The aliases name intent (ints, floats, a mask) for readers; numpy's dtype-generic
typing would add noise without catching the errors that matter here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[Any]
FloatArray = npt.NDArray[Any]
BoolArray = npt.NDArray[Any]

capacity_min = 1024  # first allocation of a per-doc array, in elements


def grown(array: npt.NDArray[Any], needed: int, fill: Any = 0) -> npt.NDArray[Any]:
    """``array`` if it holds ``needed`` rows, else a copy with capacity doubled (or more).

    New rows are set to ``fill``.  Doubling keeps appends amortized O(1).  With a
    zero ``fill`` the new rows are fresh zero pages from the system, resident only
    once written: the spare capacity costs address space, not memory (at a million
    frames, filling it would make the vector rows alone 384 MiB larger).
    """
    if array.shape[0] >= needed:
        return array
    capacity = max(capacity_min, array.shape[0] * 2, needed)
    shape = (capacity, *array.shape[1:])
    if fill == 0:
        out = np.zeros(shape, dtype=array.dtype)
    else:
        out = np.empty(shape, dtype=array.dtype)
        out[array.shape[0] :] = fill
    out[: array.shape[0]] = array
    return out


def sorted_unique(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``np.unique(array)`` (its distinct values, increasing), by a sort, for the
    integer arrays search uses (NaNs would stay apart, where np.unique joins them).

    numpy 2's ``np.unique`` hashes: with many distinct values it is 5-40x slower
    than sorting (20,000 random doc numbers: 3 ms against 0.1; measured with
    numpy 2.4).  Search unions candidate lists and merges unions term lists on
    every call, so they take this.
    """
    out = np.sort(array.ravel())
    if out.shape[0] < 2:
        return out
    keep = np.empty(out.shape[0], dtype=bool)
    keep[0] = True
    np.not_equal(out[1:], out[:-1], out=keep[1:])
    return out[keep]


def mask_at(mask: BoolArray | None, docs: IntArray) -> BoolArray:
    """``mask[docs]``, where docs beyond the mask's end are not allowed; None allows all."""
    if mask is None:
        return np.ones(docs.shape[0], dtype=bool)
    inside = docs < mask.shape[0]
    if bool(inside.all()):
        return np.asarray(mask[docs], dtype=bool)
    out = np.zeros(docs.shape[0], dtype=bool)
    out[inside] = mask[docs[inside]]
    return out


def top_k(docs: IntArray, scores: FloatArray, k: int) -> tuple[IntArray, FloatArray]:
    """The ``k`` best (doc, score) pairs, best first; ties go to the newer (larger) doc."""
    if k <= 0 or docs.shape[0] == 0:
        return docs[:0].astype(np.int64), scores[:0].astype(np.float32)
    if docs.shape[0] > k:
        part = np.argpartition(-scores, k - 1)[:k]
        # argpartition splits ties at the k-th score arbitrarily: take all tied ones.
        cut = scores[part].min()
        part = np.flatnonzero(scores >= cut)
        docs, scores = docs[part], scores[part]
    order = np.lexsort((-docs.astype(np.int64), -scores))[:k]
    return docs[order].astype(np.int64), scores[order].astype(np.float32)


_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_MIX_SHIFTS = (np.uint64(30), np.uint64(27), np.uint64(31))


def mix64(h: IntArray) -> IntArray:
    """splitmix64's finalizer: spreads every input bit over the output (uint64, wraps).

    The hashed embedder and SimHash both use it, so their hashes agree by construction.
    """
    return mix64_in_place(np.array(h, dtype=np.uint64))


def mix64_in_place(h: IntArray) -> IntArray:
    """``mix64`` of a uint64 array written into it, with one scratch array: where a
    few dozen values are mixed (a lone put's SimHash), numpy's per-call cost and
    allocations are most of the time."""
    scratch = h >> _MIX_SHIFTS[0]
    h ^= scratch
    h *= _MIX_1
    np.right_shift(h, _MIX_SHIFTS[1], out=scratch)
    h ^= scratch
    h *= _MIX_2
    np.right_shift(h, _MIX_SHIFTS[2], out=scratch)
    h ^= scratch
    return h


def text_sums(counts: IntArray, values: IntArray) -> IntArray:
    """Per text, the sum of its values: text i owns ``counts[i]`` consecutive rows of
    ``values`` (1-D, or 2-D for a sum per column).  int64; an empty text sums to 0."""
    acc = np.zeros((values.shape[0] + 1, *values.shape[1:]), dtype=np.int64)
    np.cumsum(values, axis=0, out=acc[1:])
    ends = np.cumsum(counts)
    out: IntArray = acc[ends] - acc[ends - counts]
    return out
