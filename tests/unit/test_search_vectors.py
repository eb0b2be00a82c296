"""The vector index: exact search against numpy, masks, deletes, coarse-to-fine, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memoryd.storage.search import threads as threads_module
from memoryd.storage.search import vectors as vectors_module
from memoryd.storage.search.vectors import VectorIndex


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_exact_search_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    vecs = _unit(rng, 300, 32)
    index = VectorIndex(32)
    index.add_batch(np.arange(300), vecs)
    index._check()
    q = _unit(rng, 1, 32)[0]
    hits = index.search(q, 5)
    expected = np.argsort(-(vecs @ q))[:5]
    assert hits.docs.tolist() == expected.tolist()
    assert np.allclose(hits.scores, (vecs @ q)[expected], atol=2e-2)


def test_mask_and_delete() -> None:
    rng = np.random.default_rng(2)
    vecs = _unit(rng, 50, 16)
    index = VectorIndex(16)
    index.add_batch(np.arange(50), vecs)
    assert index.delete([0, 0, 77]) == 1
    index._check()
    mask = np.zeros(30, dtype=bool)
    mask[[0, 3, 5]] = True
    hits = index.search(vecs[3], 10, mask=mask)
    assert sorted(hits.docs.tolist()) == [3, 5]
    assert hits.docs[0] == 3
    assert index.score_docs(vecs[3], np.array([0, 3, 99]))[[0, 2]].tolist() == [0.0, 0.0]


def _coarse_index(
    monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator, rows: int, candidates: int
) -> tuple[VectorIndex, np.ndarray]:
    """An index of ``rows`` random 64-d unit vectors that always searches coarse-to-fine."""
    monkeypatch.setattr(vectors_module, "exact_rows_max", 0)
    monkeypatch.setattr(vectors_module, "coarse_candidates", candidates)
    vecs = _unit(rng, rows, 64)
    index = VectorIndex(64)
    index.add_batch(np.arange(rows), vecs)
    return index, vecs


def test_coarse_path_finds_near_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    index, vecs = _coarse_index(monkeypatch, rng, 2000, candidates=50)
    for d in (7, 500, 1999):
        noisy = vecs[d] + 0.05 * _unit(rng, 1, 64)[0]
        assert index.search(noisy, 1).docs.tolist() == [d]


def test_coarse_pass_in_parts_keeps_what_one_pass_keeps(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    index, _ = _coarse_index(monkeypatch, rng, 3000, candidates=64)
    index.delete(np.arange(0, 3000, 7))
    mask = rng.random(3000) < 0.8
    queries = _unit(rng, 20, 64)

    def answers() -> list[tuple[list[int], list[float]]]:
        out = []
        for q in queries:
            for m in (None, mask):
                hits = index.search(q, 10, mask=m)
                out.append((hits.docs.tolist(), hits.scores.tolist()))
        return out

    monkeypatch.setattr(vectors_module, "scan_part_rows_min", 10**9)
    assert vectors_module._scan_parts(3000) == [(0, 3000)]
    one_pass = answers()
    monkeypatch.setattr(vectors_module, "scan_part_rows_min", 256)
    monkeypatch.setattr(threads_module, "usable_cpus", lambda: 4)
    assert vectors_module._scan_parts(3000) == [(0, 750), (750, 1500), (1500, 2250), (2250, 3000)]
    in_parts = answers()
    assert in_parts == one_pass
    deleted = set(range(0, 3000, 7))
    assert all(not deleted & set(docs) and len(docs) == 10 for docs, _ in in_parts)


def test_rescoring_in_int8_keeps_the_exact_top_k(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every row a candidate: the coarse path then differs from exact search only by
    # its int8 rescoring, which must not lose or reorder any of the best k.
    rng = np.random.default_rng(6)
    index, _ = _coarse_index(monkeypatch, rng, 5000, candidates=5000)
    index.delete(np.arange(0, 5000, 11))
    for q in _unit(rng, 20, 64):
        for k in (1, 10, 100):
            coarse, exact = index.search(q, k), index.search(q, k, exact=True)
            assert coarse.docs.tolist() == exact.docs.tolist()
            assert coarse.scores.tolist() == exact.scores.tolist()


def test_started_search_rescoring_in_halves_matches_one_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(8)
    index, _ = _coarse_index(monkeypatch, rng, 4000, candidates=3000)
    queries = _unit(rng, 10, 64)
    monkeypatch.setattr(vectors_module, "rescore_part_rows_min", 10**9)
    whole = [index.search(q, 10).docs.tolist() for q in queries]
    monkeypatch.setattr(vectors_module, "rescore_part_rows_min", 100)
    started = [index.start_search(q, 10) for q in queries]  # several in flight at once
    assert [finish().docs.tolist() for finish in started] == whole
    assert index._rescored(np.empty(0, np.int64), queries[0], 10).docs.size == 0


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    vecs = _unit(rng, 40, 8)
    index = VectorIndex(8)
    index.add_batch(np.arange(40), vecs)
    index.delete([5])
    index.save(tmp_path)
    loaded = VectorIndex.load(tmp_path)
    loaded._check()
    q = vecs[9]
    assert loaded.search(q, 5).docs.tolist() == index.search(q, 5).docs.tolist()
    loaded.add_batch([40], vecs[:1])
    loaded._check()


def test_rejects_bad_input() -> None:
    index = VectorIndex(4)
    with pytest.raises(ValueError):
        index.add_batch([0], np.zeros((1, 5), np.float32))
    index.add_batch([0], np.eye(4, dtype=np.float32)[:1])
    with pytest.raises(ValueError):
        index.add_batch([0], np.eye(4, dtype=np.float32)[:1])
    with pytest.raises(ValueError):
        index.search(np.zeros(3, np.float32), 1)


@pytest.mark.parametrize(
    "layout", ["random", "ties", "mostly_disallowed", "sample_skewed_high", "ascending"]
)
def test_largest_selects_exactly_the_top_scores(layout: str) -> None:
    # The coarse pass keeps the positions _largest picks: whatever the sample says,
    # the values picked must be the ``want`` largest (ties split as argpartition does).
    rng = np.random.default_rng(11)
    n, want = 200_000, 4000
    scores = rng.standard_normal(n).astype(np.float32)
    if layout == "ties":
        scores = np.round(scores * 4).astype(np.float32)  # ~30 distinct values
    elif layout == "mostly_disallowed":
        scores[rng.random(n) < 0.99] = -np.inf
    elif layout == "sample_skewed_high":
        # Every sampled position scores high: the cut estimated from the sample sits
        # above the true one and fewer than want reach it (the fallback path).
        scores[:: vectors_module.select_sample_stride] += 100
    elif layout == "ascending":
        scores = np.arange(n, dtype=np.float32)
    picked = vectors_module._largest(scores, want)
    assert picked.shape == (want,)
    assert np.unique(picked).shape == (want,)
    assert np.array_equal(np.sort(scores[picked]), np.sort(scores)[n - want :])
