"""Impact lists answer frequent-word queries exactly as scoring every posting does."""

from __future__ import annotations

import numpy as np
import pytest

from memoryd.storage.search import impacts
from memoryd.storage.search.arrays import mask_at, top_k
from memoryd.storage.search.inverted import InvertedIndex

COMMON = ["alpha", "bravo", "charlie"]  # in most docs: frequent terms
RARE = [f"word{i}" for i in range(5000)]  # each in well under 5% of docs


def corpus(rng: np.random.Generator, count: int) -> list[str]:
    texts = []
    for _ in range(count):
        words = [str(w) for w in rng.choice(RARE, size=int(rng.integers(5, 60)))]
        for term in COMMON:
            if rng.random() < 0.7:
                words += [term] * int(rng.integers(1, 6))
        rng.shuffle(words)
        texts.append(" ".join(words))
    return texts


def full_scan(index: InvertedIndex, terms: list[str], k: int, mask: np.ndarray | None):
    ids = index.scored_term_ids(terms)
    docs, scores = index._accumulate([index._term_scores(t) for t in ids])
    keep = index._live[docs] & mask_at(mask, docs)
    return top_k(docs[keep], scores[keep], k)


@pytest.fixture(autouse=True)
def short_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    # Lists much shorter than the postings, so they are truncated and the bound matters.
    monkeypatch.setattr(impacts, "impact_docs_max", 150)


@pytest.mark.parametrize("seed", [1, 2])
def test_impact_answers_equal_a_full_scan_through_adds_merges_and_deletes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    index = InvertedIndex()
    next_doc = 0
    queries = [["alpha"], ["bravo"], ["alpha", "charlie"], ["alpha", "bravo", "charlie"]]
    for round_ in range(6):
        texts = corpus(rng, 700)
        index.add_batch(range(next_doc, next_doc + len(texts)), texts)
        next_doc += len(texts)
        if round_ % 2 == 0:
            index.seal_tail()  # new sealed segments: lists must be rebuilt
        index.delete(rng.integers(0, next_doc, size=60))
        namespace_mask = rng.random(next_doc) < 0.3
        for terms in queries:
            for k in (1, 10, 100):
                for mask in (None, namespace_mask):
                    got = index.search(terms, k, mask)
                    want_docs, want_scores = full_scan(index, terms, k, mask)
                    assert got.docs.tolist() == want_docs.tolist(), (terms, k, round_)
                    np.testing.assert_allclose(got.scores, want_scores, rtol=1e-5)
        index._check()
    stats = index.stats()
    # The lists did answer (most) queries, and fell back when they could not prove it.
    assert stats["impact_answered"] > stats["impact_fallbacks"] > 0
    assert 0 < stats["impact_lists"] <= len(COMMON)


@pytest.mark.parametrize("seed", [3, 4])
def test_rare_and_frequent_terms_together_equal_a_full_scan(seed: int) -> None:
    rng = np.random.default_rng(seed)
    index = InvertedIndex()
    texts = corpus(rng, 3000)
    index.add_batch(range(len(texts)), texts)
    index.seal_tail()
    index.add_batch(range(len(texts), len(texts) + 300), corpus(rng, 300))  # an unsealed tail
    index.delete(rng.integers(0, len(texts), size=80))
    mask = rng.random(len(texts) + 300) < 0.4
    queries = [["alpha", "word3"], ["bravo", "charlie", "word17"], ["alpha", "word5", "word9"]]
    for terms in queries:
        for k in (1, 10, 50):
            for m in (None, mask):
                got = index.search(terms, k, m)
                want_docs, want_scores = full_scan(index, terms, k, m)
                assert got.docs.tolist() == want_docs.tolist(), (terms, k)
                np.testing.assert_allclose(got.scores, want_scores, rtol=1e-5)
    # The lists answered some of these without scoring every posting of the frequent words.
    assert index.stats()["impact_answered"] > 0


def test_lists_are_bounded_in_number() -> None:
    lists = impacts.ImpactLists()
    for term in range(impacts.impact_lists_max + 10):
        lists.put(term, impacts.build_impact_list((), 1.0, np.arange(3), np.ones(3, np.float32)))
    assert lists.stats()["impact_lists"] == impacts.impact_lists_max
