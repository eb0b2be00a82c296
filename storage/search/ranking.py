"""Scoring and fusion: how relevance, recency, importance and kind make one score.

Every mode computes a *relevance* per candidate, then multiplies it by three
factors (all weights live in :class:`RankingWeights`):

* ``recency = floor + (1 - floor) * 0.5 ** (age_days / half_life_days)``: halves
  towards the floor every half-life, and the floor keeps an old exact match from
  ever going to zero (future times count as age 0);
* ``importance = 1 + importance_weight * importance`` (importance in 0-1);
* ``kind``: the boost for the frame's kind (1 when not listed).

Relevance per mode:

* ``keyword``: BM25 divided by the best BM25 among the candidates (so 0-1), plus
  ``phrase_weight`` when the query's phrase occurs verbatim in the text;
* ``semantic``: cosine similarity (negative clamped to 0);
* ``hybrid``: reciprocal rank fusion, ``sum(w_list / (rrf_k + rank))`` over the
  keyword and semantic lists (rank from 1; absent lists add nothing), plus
  ``phrase_weight / rrf_k`` for a verbatim phrase (a phrase hit is worth about
  as much as being first in one list).  Scaled by ``rrf_k`` so the top is ~1-2.

:func:`classic_scores` is the scorer memoryd grew from, kept by name: exact phrase
+10, each query word present +2, cosine x 5, then x 1 / (1 + 0.1 x age in days),
x 1.5 for kind "breakthrough"; it ignores the weights above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from memoryd.storage.search.arrays import FloatArray, IntArray

Mode = Literal["keyword", "semantic", "hybrid", "classic"]
Fusion = Literal["blend", "rrf"]
MODES: tuple[Mode, ...] = ("keyword", "semantic", "hybrid", "classic")
day_ms = 86_400_000


@dataclass(frozen=True, slots=True)
class RankingWeights:
    """Every weight of every mode; defaults measured on LoCoMo (benchmarks/quality_offline.py)."""

    fusion: Fusion = "blend"  # hybrid: normalized score blend or reciprocal rank fusion
    semantic_blend: float = 0.2  # blend: weight of the normalized cosine next to BM25's 1
    rrf_k: float = 60.0
    keyword_weight: float = 1.0  # hybrid: weight of the keyword list in RRF
    semantic_weight: float = 1.0  # hybrid: weight of the semantic list in RRF
    phrase_weight: float = 0.5  # verbatim phrase bonus, in units of the top relevance
    context_weight: float = 0.5  # share of the best adjacent frame's relevance added
    context_gap_ms: int = 3_600_000  # frames further apart in time are not each other's context
    recency_half_life_days: float = 60.0
    recency_floor: float = 0.9
    importance_weight: float = 0.3
    kind_boosts: tuple[tuple[str, float], ...] = (("breakthrough", 1.2),)
    depth: int = 100  # candidates taken from each list (and phrase-checked), at least k

    def __post_init__(self) -> None:
        if not (self.rrf_k > 0 and self.recency_half_life_days > 0 and self.depth >= 1):
            raise ValueError(f"bad ranking weights {self}")
        if not 0 <= self.recency_floor <= 1:
            raise ValueError("recency_floor must be within 0-1")

    def kind_boost(self, kind: str) -> float:
        return dict(self.kind_boosts).get(kind, 1.0)


@dataclass(frozen=True, slots=True)
class ScoreParts:
    """Every part of every candidate's score, aligned arrays (what ``explain`` shows)."""

    docs: IntArray
    relevance: FloatArray
    recency: FloatArray
    importance: FloatArray
    kind: FloatArray
    score: FloatArray
    extra: dict[str, FloatArray] = field(default_factory=dict)


def recency_factor(age_ms: IntArray, weights: RankingWeights) -> FloatArray:
    """``floor + (1 - floor) * 0.5 ** (age / half_life)``; future times count as now."""
    age_days = np.maximum(np.asarray(age_ms, dtype=np.float64), 0) / day_ms
    decay = np.exp2(-age_days / weights.recency_half_life_days)
    floor = weights.recency_floor
    return (floor + (1 - floor) * decay).astype(np.float32)


def importance_factor(importance: FloatArray, weights: RankingWeights) -> FloatArray:
    return (1 + weights.importance_weight * np.asarray(importance, dtype=np.float32)).astype(
        np.float32
    )


def kind_factor(kind_codes: IntArray, kinds: list[str], weights: RankingWeights) -> FloatArray:
    table = np.array([weights.kind_boost(k) for k in kinds], dtype=np.float32)
    return table[np.asarray(kind_codes, dtype=np.int64)]


def rank_positions(candidates: IntArray, ranked: IntArray) -> FloatArray:
    """1-based rank of each candidate in ``ranked``, or +inf when absent."""
    pos = {int(d): i + 1 for i, d in enumerate(ranked.tolist())}
    return np.array([pos.get(int(d), np.inf) for d in candidates.tolist()], dtype=np.float64)


def rrf(ranks: list[FloatArray], list_weights: list[float], rrf_k: float) -> FloatArray:
    """Reciprocal rank fusion, scaled by ``rrf_k`` (a doc first in one list scores ~1)."""
    total = np.zeros(ranks[0].shape[0], dtype=np.float64)
    for r, w in zip(ranks, list_weights, strict=True):
        total += w * rrf_k / (rrf_k + r)  # 1 / inf == 0 for docs absent from a list
    return total.astype(np.float32)


def keyword_relevance(bm25: FloatArray, phrase: FloatArray, weights: RankingWeights) -> FloatArray:
    top = float(bm25.max(initial=0.0))
    norm = bm25 / top if top > 0 else np.zeros_like(bm25)
    return (norm + weights.phrase_weight * phrase).astype(np.float32)


def blend(
    bm25: FloatArray, cosine: FloatArray, phrase: FloatArray, w: RankingWeights
) -> FloatArray:
    """``bm25 / max + semantic_blend * cosine / max + phrase_weight * phrase``.

    Both scores are scaled by their best among the candidates, so the blend weight
    means the same whatever the query's length or the corpus' statistics.
    """
    kw = keyword_relevance(bm25, phrase, w)
    cos = np.maximum(cosine, 0)
    top = float(cos.max(initial=0.0))
    sem = cos / top if top > 0 else np.zeros_like(cos)
    return (kw + w.semantic_blend * sem).astype(np.float32)


def with_context(
    docs: IntArray, relevance: FloatArray, times_ms: IntArray, w: RankingWeights
) -> FloatArray:
    """``relevance + context_weight * max(relevance of doc - 1, doc + 1)``.

    Conversation turns answer the turn before them: a frame next to a strong match
    (adjacent doc number, within ``context_gap_ms``) gains a share of its score.
    ``docs`` must be sorted; docs absent from it contribute nothing.
    """
    if w.context_weight <= 0 or docs.shape[0] < 2:
        return relevance
    near = np.abs(np.diff(times_ms)) <= w.context_gap_ms
    adjacent = (np.diff(docs) == 1) & near
    prev_rel = np.zeros_like(relevance)
    next_rel = np.zeros_like(relevance)
    prev_rel[1:] = np.where(adjacent, relevance[:-1], 0)
    next_rel[:-1] = np.where(adjacent, relevance[1:], 0)
    return (relevance + w.context_weight * np.maximum(prev_rel, next_rel)).astype(np.float32)


def classic_scores(
    phrase: FloatArray,
    words_present: FloatArray,
    cosine: FloatArray,
    age_ms: IntArray,
    is_breakthrough: FloatArray,
) -> FloatArray:
    """The classic scorer (see module docstring); inputs aligned per candidate."""
    base = 10.0 * phrase + 2.0 * words_present + 5.0 * np.maximum(cosine, 0)
    age_days = np.maximum(np.asarray(age_ms, dtype=np.float64), 0) / day_ms
    return (base / (1 + 0.1 * age_days) * np.where(is_breakthrough > 0, 1.5, 1.0)).astype(
        np.float32
    )
