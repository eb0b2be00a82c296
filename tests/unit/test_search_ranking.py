"""Ranking: factors, fusion, the classic scorer, and the engine's modes and explain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memoryd.storage.search import RankingWeights, SearchIndex, engine
from memoryd.storage.search.ranking import classic_scores, day_ms, recency_factor, rrf

NOW = 1_700_000_000_000
TEXTS = [
    "I painted a red sunrise over the lake",
    "We went camping in the mountains",
    "the red car broke down again",
    "My breakthrough: the cache bug was a race",
    "Lunch was pasta",
]


def _engine() -> SearchIndex:
    e = SearchIndex()
    e.add_batch(
        range(len(TEXTS)),
        TEXTS,
        [NOW - 400 * day_ms, NOW - 10 * day_ms, NOW - day_ms, NOW, NOW],
        importance=[0.1, 0.5, 0.9, 1.0, 0.0],
        kinds=["note", "episode", "note", "breakthrough", "note"],
    )
    return e


def test_recency_has_a_floor_and_halves() -> None:
    w = RankingWeights(recency_half_life_days=10, recency_floor=0.5)
    f = recency_factor(np.array([0, 10 * day_ms, 10_000 * day_ms, -day_ms]), w)
    assert np.allclose(f, [1.0, 0.75, 0.5, 1.0], atol=1e-6)


def test_rrf_ignores_absent_lists() -> None:
    r = rrf([np.array([1.0, np.inf]), np.array([np.inf, np.inf])], [1.0, 1.0], 60.0)
    assert np.allclose(r, [60 / 61, 0])


def test_classic_scorer_numbers() -> None:
    s = classic_scores(
        np.array([1.0, 0.0]),
        np.array([2.0, 1.0]),
        np.array([0.5, -0.2]),
        np.array([0, 10 * day_ms]),
        np.array([1.0, 0.0]),
    )
    assert np.allclose(s, [(10 + 4 + 2.5) * 1.5, 2 / 2])


def test_weights_are_validated() -> None:
    with pytest.raises(ValueError):
        RankingWeights(recency_floor=1.5)
    with pytest.raises(ValueError):
        RankingWeights(rrf_k=0)


@pytest.mark.parametrize("mode", ["keyword", "semantic", "hybrid", "classic"])
def test_every_mode_finds_the_obvious_match(mode: str) -> None:
    e = _engine()
    e._check()
    res = e.search(
        "red sunrise painting",
        3,
        mode=mode,
        now_ms=NOW,
        text_of=TEXTS.__getitem__,  # type: ignore[arg-type]
    )
    # classic divides by 1 + 0.1 x age in days: the 400-day-old match loses to a fresh "red".
    assert res.docs[0] == (2 if mode == "classic" else 0)


def test_explain_parts_multiply_to_the_score() -> None:
    e = _engine()
    w = RankingWeights(context_weight=0.0)
    res = e.search("red", 5, mode="keyword", now_ms=NOW, explain=True, weights=w)
    rows = res.explain()
    assert [r["doc"] for r in rows] == res.docs.tolist()
    for r in rows:
        product = r["relevance"] * r["recency"] * r["importance"] * r["kind"]
        assert r["score"] == pytest.approx(product, rel=1e-5)
        assert "bm25" in r and "phrase" in r


def test_phrase_bonus_needs_text_and_reorders() -> None:
    e = SearchIndex()
    texts = ["car red paint and more red red", "the red car is here"]
    e.add_batch([0, 1], texts, [NOW, NOW])
    w = RankingWeights(context_weight=0.0, phrase_weight=1.0)
    with_text = e.search(
        '"red car"',
        2,
        mode="keyword",
        now_ms=NOW,
        weights=w,
        text_of=texts.__getitem__,
        explain=True,
    )
    assert with_text.docs.tolist()[0] == 1
    assert with_text.explain()[0]["phrase"] == 1.0


def test_phrases_are_verified_in_the_best_candidates_only() -> None:
    e = SearchIndex()
    # 300 docs hold both words; a few hold them as the phrase, one of them the best match.
    texts = [f"car {i} is red" for i in range(300)]
    texts[7] = "red car red car red car"
    texts[250] = "a red car"
    e.add_batch(range(len(texts)), texts, [NOW] * len(texts))
    reads: list[int] = []

    def text_of(doc: int) -> str:
        reads.append(doc)
        return texts[doc]

    w = RankingWeights(context_weight=0.0, phrase_weight=1.0)
    for mode in ("keyword", "hybrid"):
        reads.clear()
        found = e.search("red car", 5, mode=mode, now_ms=NOW, weights=w, text_of=text_of)
        assert found.docs.tolist()[0] == 7  # best on its words, and verified verbatim
        assert 0 < len(reads) <= 2 * engine.phrase_checks_max  # not all 300 read back


def test_mask_and_delete_apply_to_every_mode() -> None:
    e = _engine()
    mask = np.array([False, True, True, True, True])
    assert 0 not in e.search("red sunrise", 5, mask=mask, now_ms=NOW).docs.tolist()
    e.delete([2])
    e._check()
    assert 2 not in e.search("red car", 5, now_ms=NOW).docs.tolist()
    assert e.docs_with_all("red").tolist() == [0]


def test_kind_and_importance_boost() -> None:
    e = SearchIndex()
    e.add_batch(
        [0, 1],
        ["cache bug fixed", "cache bug fixed"],
        [NOW, NOW],
        importance=[0.0, 0.0],
        kinds=["note", "breakthrough"],
    )
    assert e.search("cache bug", 2, now_ms=NOW).docs.tolist() == [1, 0]


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    e = _engine()
    e.delete([4])
    e.save(tmp_path / "ckpt")
    loaded = SearchIndex.load(tmp_path / "ckpt")
    loaded._check()
    a = e.search("red camping", 5, now_ms=NOW)
    b = loaded.search("red camping", 5, now_ms=NOW)
    assert a.docs.tolist() == b.docs.tolist()
    assert np.allclose(a.scores, b.scores)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError):
        _engine().search("x", mode="fuzzy")  # type: ignore[arg-type]
