"""The keyword index: ingest rules, MaxScore against full scoring, memory, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memoryd.storage.search import inverted as inverted_module
from memoryd.storage.search.inverted import Bm25Params, InvertedIndex


def _index(texts: list[str]) -> InvertedIndex:
    index = InvertedIndex()
    index.add_batch(range(len(texts)), texts)
    return index


def test_ranks_by_bm25_and_skips_deleted() -> None:
    index = _index(["red car", "blue car", "red red apples", "nothing"])
    assert index.search(["red"], 10).docs.tolist() == [2, 0]
    assert index.delete([2, 2, 99]) == 1
    index._check()
    assert index.search(["red"], 10).docs.tolist() == [0]
    assert not index.is_live(2)


def test_docs_must_increase() -> None:
    index = _index(["a b"])
    with pytest.raises(ValueError):
        index.add_batch([0], ["again"])
    with pytest.raises(ValueError):
        index.add_batch([3, 2], ["x", "y"])
    with pytest.raises(ValueError):
        index.add_batch([5], ["x", "y"])


def test_unknown_terms_and_empty_queries() -> None:
    index = _index(["red car"])
    assert index.search(["zebra"], 5).docs.size == 0
    assert index.search([], 5).docs.size == 0
    assert index.search(["red", "zebra"], 5, require_all=True).docs.size == 0
    assert index.docs_with_all([]).size == 0


def test_max_score_equals_full_scoring() -> None:
    rng = np.random.default_rng(3)
    common = ["alpha", "beta"]
    rare = [f"rare{i}" for i in range(50)]
    texts = [
        " ".join([*common, *rng.choice(rare, size=3).tolist()]) if i % 10 else "alpha beta"
        for i in range(2000)
    ]
    index = _index(texts)
    for q in (["alpha", "rare3"], ["beta", "rare7", "rare9"], ["alpha", "beta", "rare1"]):
        fast = index.search(q, 10)
        full_docs = np.arange(2000)
        full = index.score_docs(q, full_docs)
        order = np.lexsort((-full_docs, -full))[:10]
        assert fast.docs.tolist() == full_docs[order].tolist()
        assert np.allclose(fast.scores, full[order])


def test_sparse_and_dense_sums_agree_to_the_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(11)
    words = [f"w{i}" for i in range(40)]
    # Several batches, so that a term's postings come from several segments.
    index = InvertedIndex()
    for start in range(0, 3000, 250):
        texts = [" ".join(rng.choice(words, size=6).tolist()) for _ in range(250)]
        index.add_batch(range(start, start + 250), texts)
    queries = [["w1"], ["w2", "w3"], ["w4", "w5", "w6", "w7"], ["w8", "w8", "w9"]]

    def sums(ratio: float) -> list[tuple[list[int], bytes]]:
        monkeypatch.setattr(inverted_module, "sparse_accumulate_ratio", ratio)
        out = []
        for q in queries:
            ids = index.scored_term_ids(q)
            docs, scores = index._accumulate([index._term_scores(t) for t in ids])
            assert docs.dtype == np.int64 and scores.dtype == np.float32
            assert bool(np.all(np.diff(docs) > 0))
            out.append((docs.tolist(), scores.tobytes()))
        return out

    dense, sparse = sums(0), sums(float("inf"))
    assert sparse == dense
    assert all(len(docs) > 0 for docs, _ in dense)


def test_max_score_looks_up_only_docs_that_can_still_win(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(8)
    rare = [f"rare{i}" for i in range(40)]
    texts = []
    for _ in range(3000):
        words = [f"filler{int(w)}" for w in rng.integers(0, 500, size=int(rng.integers(5, 40)))]
        if rng.random() < 0.8:
            words += ["common"] * int(rng.integers(1, 4))
        words += [str(rng.choice(rare))] * int(rng.integers(1, 5))
        rng.shuffle(words)
        texts.append(" ".join(words))
    index = _index(texts)
    looked_up: list[int] = []
    score_docs_by_ids = index.score_docs_by_ids

    def spy(ids: list[int], docs: np.ndarray) -> np.ndarray:
        looked_up.append(len(docs))
        return score_docs_by_ids(ids, docs)

    monkeypatch.setattr(index, "score_docs_by_ids", spy)
    full_docs = np.arange(3000)
    pruned = 0
    for word in rare:
        q = ["common", word]
        looked_up.clear()
        fast = index.search(q, 5)
        full = score_docs_by_ids(index.scored_term_ids(q), full_docs)
        order = np.lexsort((-full_docs, -full))[:5]
        assert fast.docs.tolist() == full_docs[order].tolist()
        assert np.allclose(fast.scores, full[order])
        holding = int(np.count_nonzero(index.score_docs([word], full_docs)))
        pruned += bool(looked_up) and looked_up[0] < holding
    assert pruned > 0  # the bound skipped docs in some queries


def test_term_scores_explain_the_total() -> None:
    index = _index(["red car", "red", "car car"])
    docs = np.array([0, 1, 2])
    parts = index.term_scores(["red", "car"], docs)
    assert np.allclose(parts["red"] + parts["car"], index.score_docs(["red", "car"], docs))


def test_many_batches_seal_and_merge(tmp_path: Path) -> None:
    index = InvertedIndex(Bm25Params(k1=0.9, b=0.4))
    for d in range(100):
        index.add_batch([d], [f"word{d % 7} shared"])
        index._check()
    assert index.stats()["segments_sealed"] >= 1
    assert index.memory_bytes() > 0
    index.save(tmp_path / "ckpt")
    loaded = InvertedIndex.load(tmp_path / "ckpt", mmap=False)
    loaded._check()
    assert loaded.params == index.params
    assert loaded.search(["word3"], 100).docs.tolist() == index.search(["word3"], 100).docs.tolist()
    loaded.add_batch([100], ["word3 after load"])
    loaded._check()


def test_bad_params() -> None:
    with pytest.raises(ValueError):
        Bm25Params(k1=-1)
    with pytest.raises(ValueError):
        Bm25Params(b=2)


def test_hold_all_agrees_with_docs_with_all_across_segments() -> None:
    rng = np.random.default_rng(5)
    words = ["red", "car", "lake", "sun", "tree"]
    index = InvertedIndex()
    doc = 0
    for _ in range(4):  # sealed segments and an unsealed tail
        texts = [" ".join(rng.choice(words, size=int(rng.integers(1, 5)))) for _ in range(300)]
        index.add_batch(range(doc, doc + len(texts)), texts)
        doc += len(texts)
        index.seal_tail()
    index.add_batch(range(doc, doc + 50), ["red car"] * 50)
    doc += 50
    probe = rng.integers(0, doc, size=400)
    for terms in (["red"], ["red", "car"], ["lake", "sun", "tree"], ["nowhere"], []):
        holders = index.docs_with_all(terms)
        expected = np.isin(probe, holders)
        assert index.hold_all(terms, probe).tolist() == expected.tolist(), terms
