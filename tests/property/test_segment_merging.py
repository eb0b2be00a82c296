"""Merging posting segments equals concatenating each term's live postings in order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from memoryd.storage.search import postings as postings_module
from memoryd.storage.search.postings import Segment, build_segment, merge_segments

# A segment: (term, doc offset within its range, repeats) postings; docs get
# disjoint increasing ranges of 8 in segment order.
segment_st = st.lists(
    st.tuples(st.integers(0, 12), st.integers(0, 7), st.integers(1, 3)), max_size=25
)


def _segments(specs: list[list[tuple[int, int, int]]]) -> list[Segment]:
    out = []
    for i, spec in enumerate(specs):
        terms = [t for t, _, n in spec for _ in range(n)]
        docs = [8 * i + d for _, d, n in spec for _ in range(n)]
        out.append(
            build_segment(np.array(terms, np.int64), np.array(docs, np.int64), 8 * i, 8 * i + 7)
        )
    return out


@given(st.lists(segment_st, min_size=1, max_size=6), st.integers(0, 2**32 - 1), st.booleans())
def test_merge_is_each_terms_live_postings_in_segment_order(
    specs: list[list[tuple[int, int, int]]], seed: int, small_slices: bool
) -> None:
    segments = _segments(specs)
    live = np.random.default_rng(seed).random(8 * len(specs)) < 0.7
    expected: dict[int, list[tuple[int, int]]] = {}
    for segment in segments:
        for i, term in enumerate(segment.terms.tolist()):
            lo, hi = int(segment.offsets[i]), int(segment.offsets[i + 1])
            for doc, tf in zip(
                segment.docs[lo:hi].tolist(), segment.tfs[lo:hi].tolist(), strict=True
            ):
                if live[doc]:
                    expected.setdefault(term, []).append((doc, tf))
    with pytest.MonkeyPatch.context() as patch:
        if small_slices:  # many slices per segment, cut between terms
            patch.setattr(postings_module, "scatter_postings", 3)
        merged = merge_segments(segments, live)
    merged._check()
    assert merged.terms.dtype == np.uint32 and merged.docs.dtype == np.uint32
    assert merged.tfs.dtype == np.uint16 and merged.offsets.dtype == np.int64
    got: dict[int, list[tuple[int, int]]] = {}
    for i, term in enumerate(merged.terms.tolist()):
        lo, hi = int(merged.offsets[i]), int(merged.offsets[i + 1])
        got[term] = list(zip(merged.docs[lo:hi].tolist(), merged.tfs[lo:hi].tolist(), strict=True))
    assert got == dict(sorted(expected.items()))
    assert (merged.doc_lo, merged.doc_hi) == (0, 8 * len(specs) - 1)
