"""The keyword index against a brute-force BM25 model, through random adds and deletes."""

from __future__ import annotations

import math
import tempfile
from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from memoryd.storage.search import inverted as inverted_module
from memoryd.storage.search.inverted import InvertedIndex
from memoryd.storage.search.text import DEFAULT_TOKENIZER

WORDS = ["apple", "berry", "cherry", "date", "elder", "fig", "grape", "honey"]

texts_st = st.lists(st.sampled_from(WORDS), min_size=0, max_size=8).map(" ".join)
ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(texts_st, min_size=1, max_size=4)),
        st.tuples(st.just("delete"), st.lists(st.integers(0, 40), max_size=3)),
        st.tuples(st.just("compact"), st.none()),
    ),
    max_size=12,
)


class Model:
    """Docs as term Counters; BM25 computed from scratch (df over live docs)."""

    def __init__(self) -> None:
        self.docs: dict[int, Counter[str]] = {}

    def scores(self, terms: list[str], k1: float, b: float) -> dict[int, float]:
        n = len(self.docs)
        if not n:
            return {}
        avgdl = sum(sum(c.values()) for c in self.docs.values()) / n
        out: dict[int, float] = {}
        for t in dict.fromkeys(terms):
            df = sum(1 for c in self.docs.values() if t in c)
            idf = math.log1p((n - df + 0.5) / (df + 0.5))
            for d, c in self.docs.items():
                if t in c:
                    dl = sum(c.values())
                    tf = c[t]
                    out[d] = out.get(d, 0.0) + idf * tf * (k1 + 1) / (
                        tf + k1 * (1 - b + b * dl / avgdl)
                    )
        return out


@settings(max_examples=60, deadline=None)
@given(ops=ops_st, query=st.lists(st.sampled_from(WORDS), min_size=1, max_size=3))
def test_index_matches_brute_force_bm25(ops: list[tuple[str, object]], query: list[str]) -> None:
    inverted_module.tail_segments_max = 3  # exercise sealing and merging on tiny data
    try:
        _run(ops, query)
    finally:
        inverted_module.tail_segments_max = 32


def _run(ops: list[tuple[str, object]], query: list[str]) -> None:
    index = InvertedIndex()
    model = Model()
    next_doc = 0
    for op, arg in ops:
        if op == "add":
            assert isinstance(arg, list)
            docs = list(range(next_doc, next_doc + len(arg)))
            next_doc += len(arg)
            index.add_batch(docs, arg)
            for d, text in zip(docs, arg, strict=True):
                model.docs[d] = Counter(DEFAULT_TOKENIZER.terms(text))
        elif op == "delete":
            assert isinstance(arg, list)
            index.delete(arg)
            for d in arg:
                model.docs.pop(d, None)
        else:
            index.compact()
        index._check()
    terms = DEFAULT_TOKENIZER.terms(" ".join(query))
    # df may still count deleted docs until a merge drops them: compare after compacting.
    index.compact()
    index._check()
    p = index.params
    expected = model.scores(terms, p.k1, p.b)
    hits = index.search(terms, 1000)
    got = dict(zip(hits.docs.tolist(), hits.scores.tolist(), strict=True))
    assert got.keys() == expected.keys()
    for d, s in expected.items():
        assert math.isclose(got[d], s, rel_tol=1e-4, abs_tol=1e-5)
    # Scores are ranked best first.
    assert bool(np.all(np.diff(hits.scores) <= 1e-6))
    # AND: docs holding every term.
    want_all = sorted(d for d, c in model.docs.items() if all(t in c for t in terms))
    assert index.docs_with_all(terms).tolist() == want_all
    assert sorted(index.search(terms, 1000, require_all=True).docs.tolist()) == want_all
    # Masks restrict results and never add any.
    mask = np.zeros(next_doc, dtype=bool)
    mask[::2] = True
    masked = index.search(terms, 1000, mask=mask).docs.tolist()
    assert sorted(masked) == sorted(d for d in expected if d % 2 == 0)
    # A checkpoint answers the same.
    with tempfile.TemporaryDirectory() as tmp:
        index.save(tmp)
        loaded = InvertedIndex.load(tmp)
        loaded._check()
        again = loaded.search(terms, 1000)
        assert again.docs.tolist() == hits.docs.tolist()
        assert np.allclose(again.scores, hits.scores)
