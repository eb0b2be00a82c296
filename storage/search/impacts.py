"""Impact lists: the best docs of a frequent term, so a query of frequent words
does not score every posting.

A word held by most frames (the commonest words of a corpus) has hundreds of
thousands of postings at a million frames; scoring them all is what makes such
a query slow.  For each frequent term that queries use, an :class:`ImpactList`
keeps the ``impact_docs_max`` docs of the sealed segments with the highest BM25
term weight ``(k1 + 1) tf / (tf + k1 (1 - b + b len / avgdl))`` (no idf), best
first, and ``floor``, the weight of the last one: no other sealed doc weighs
more.

A query whose scored terms are all frequent then takes as candidates the docs
of its terms' lists and of the unsealed tail, scores them exactly, and answers
from them only when that is provably the exact answer: when the k-th best
candidate beats ``sum(idf * floor * drift)``, the most any other doc could
score (Fagin's threshold algorithm).  ``drift`` covers the average length
having moved since the list was built: a weight grows by at most
``avgdl_now / avgdl_then`` (it only shrinks when avgdl falls).  Otherwise the
caller scores every posting as before.  Exact either way.

A list is rebuilt when the sealed segments change (a merge) or avgdl moved by
more than ``impact_avgdl_drift_max``; deletes need nothing (candidates are
checked against the live docs).  Bounded: ``impact_lists_max`` lists of
``impact_docs_max`` docs (about 8 KiB each) in an LRU.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
from cachetools import LRUCache

from memoryd.storage.search.arrays import FloatArray, IntArray

impact_docs_max = 1024  # docs kept per frequent term
impact_lists_max = 256  # frequent terms kept (LRU): ~2 MiB at most
impact_avgdl_drift_max = 0.05  # rebuild a list once avgdl moved this much (relative)


@dataclass(frozen=True, slots=True)
class ImpactList:
    """The best sealed docs of one term by BM25 weight at ``avgdl``, best first."""

    segments_key: Hashable  # which sealed segments it was built from
    avgdl: float
    docs: IntArray  # int64, best first
    floor: float  # weight of the last doc kept; 0 when the list holds every doc

    def upper_weight(self, avgdl_now: float) -> float:
        """The most a sealed doc outside this list can weigh at ``avgdl_now``."""
        drift = max(1.0, avgdl_now / self.avgdl) if self.avgdl > 0 else float("inf")
        return self.floor * drift

    def fresh(self, segments_key: Hashable, avgdl_now: float) -> bool:
        if segments_key != self.segments_key or self.avgdl <= 0:
            return False
        return abs(avgdl_now / self.avgdl - 1.0) <= impact_avgdl_drift_max


def build_impact_list(
    segments_key: Hashable, avgdl: float, docs: IntArray, weights: FloatArray
) -> ImpactList:
    """The list of ``docs`` (with their ``weights`` at ``avgdl``): the heaviest
    ``impact_docs_max``, best first."""
    if docs.shape[0] <= impact_docs_max:
        order = np.argsort(-weights, kind="stable")
        return ImpactList(segments_key, avgdl, docs[order].astype(np.int64), 0.0)
    part = np.argpartition(-weights, impact_docs_max - 1)[:impact_docs_max]
    order = part[np.argsort(-weights[part], kind="stable")]
    floor = float(weights[order[-1]])
    return ImpactList(segments_key, avgdl, docs[order].astype(np.int64), floor)


class ImpactLists:
    """An LRU of impact lists by term id; counts how often lists answer a query."""

    def __init__(self) -> None:
        self._lists: LRUCache[int, ImpactList] = LRUCache(maxsize=impact_lists_max)
        self.answered = 0  # queries answered from the lists
        self.fallbacks = 0  # queries where the bound did not hold: every posting scored
        self.builds = 0

    def get(self, term: int, segments_key: Hashable, avgdl: float) -> ImpactList | None:
        found = self._lists.get(term)
        if found is None or not found.fresh(segments_key, avgdl):
            return None
        return found

    def put(self, term: int, impact: ImpactList) -> None:
        self.builds += 1
        self._lists[term] = impact

    def clear(self) -> None:
        self._lists.clear()

    def memory_bytes(self) -> int:
        return sum(int(i.docs.nbytes) + 64 for i in self._lists.values())

    def stats(self) -> dict[str, int]:
        return {
            "impact_lists": len(self._lists),
            "impact_answered": self.answered,
            "impact_fallbacks": self.fallbacks,
            "impact_builds": self.builds,
        }


assert impact_docs_max >= 100 and impact_lists_max >= 1 and 0 < impact_avgdl_drift_max < 1
