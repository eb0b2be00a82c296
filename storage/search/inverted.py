"""The keyword index: BM25 over immutable posting segments, a small tail, tombstones.

Contract:

* Docs are ints the caller assigns in commit order, never reused: every
  ``add_batch`` must bring docs larger than any doc added before, increasing.
* ``add_batch`` tokenizes (the tokenizer's lexicon, lexicon.py; ``add_tokens`` takes
  tokens made already), maps terms to ids and builds one small segment, appended
  to the *tail*.  Term ids are given in order of first occurrence.  When the tail holds
  ``tail_postings_max`` postings or ``tail_segments_max`` segments it is merged into
  one sealed segment; sealed segments then merge like a binary counter (a segment
  merges into the one before it once it is at least as large), so there are
  O(log n) segments and each posting is rewritten O(log n) times.
* ``start_merge`` / ``finish_merge``: a merge of sealed segments down to one or
  two (see ``start_merge``), computed off the owner's thread (``SegmentMerge.run``
  reads only immutable segments and a copy of ``live``) while the index keeps
  taking batches: the binary counter never merges into the segments being
  merged, and the owner swaps the merged one in afterwards.  A daemon does it
  when its builder idles: each query term costs a lookup per segment, and one
  segment answers a 3-word query at 1M docs in half the time eight do.
* ``delete`` sets a tombstone (``live[doc] = False``) and takes the doc out of N and
  the total length at once; its postings, and their share of ``df``, go at the
  next merge that covers it (Lucene does the same: df is exact up to deleted docs
  not yet merged away, and ``compact`` forces it).
* Scores are Okapi BM25 with idf ``ln(1 + (N - df + 0.5) / (df + 0.5))`` (never
  negative), ``k1`` and ``b`` from :class:`Bm25Params`.
* Queries take an optional ``mask``: a numpy bool array over doc numbers; docs past
  its end count as not allowed.  Deleted docs are never returned.
* Phrases are not indexed (no positions): the ranking layer verifies them on the
  top candidates with the caller's ``text_of(doc)``.  Positions would double the
  postings' memory to serve a boost that only reorders the top of a list whose
  members already hold all the phrase's terms.

Memory: 6 bytes a posting (uint32 doc + uint16 tf), 5 bytes a doc (uint32 length,
bool live), 4 bytes + a dict entry a term.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from memoryd.storage.arrayfile import array_to_strings, strings_to_array
from memoryd.storage.search.arrays import (
    BoolArray,
    FloatArray,
    IntArray,
    grown,
    mask_at,
    sorted_unique,
    top_k,
)
from memoryd.storage.search.impacts import ImpactList, ImpactLists, build_impact_list
from memoryd.storage.search.lexicon import Tokens, Vocabulary, lexicon_of
from memoryd.storage.search.postings import (
    Segment,
    build_segment,
    doc_number_max,
    merge_segments,
    term_id_max,
)
from memoryd.storage.search.text import DEFAULT_TOKENIZER, TermBatch, Tokenizer

tail_postings_max = 1 << 18  # ~1.5 MiB of tail postings (~8k frames) before sealing
tail_segments_max = 32  # single-frame batches in a quiet daemon: seal after this many
merge_all_ratio = 4  # start_merge merges every segment once the rest hold 1/4 of the first
query_terms_max = 64  # terms of one query that are scored: the rarest known ones
frequent_df_fraction = 0.05  # terms in more docs than this are looked up, not expanded
sparse_accumulate_ratio = 256  # fewer postings than docs / this: sum over just their docs
# (at 1M docs: 3,000 postings 0.45 ms either way, 300 0.04 ms against 0.35; 30,000 4.4 against 1.5)
checkpoint_format = 1  # bumped when the files of save() change


@dataclass(frozen=True, slots=True)
class Bm25Params:
    """BM25's term-frequency saturation ``k1`` and length normalization ``b``."""

    k1: float = 1.2
    b: float = 0.75

    def __post_init__(self) -> None:
        if not (self.k1 >= 0 and 0 <= self.b <= 1):
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got {self}")


@dataclass(slots=True)
class SegmentMerge:
    """A merge of ``segments`` (consecutive sealed segments) into one, begun by
    ``InvertedIndex.start_merge``.  ``run`` may take any thread: it reads only the
    segments, which never change, and ``live``, a copy of the tombstones then (docs
    deleted later stay in the merged postings, masked, until the next merge)."""

    start: int  # index of the first of them among the sealed segments
    segments: tuple[Segment, ...]
    live: BoolArray
    merged: Segment | None = None

    def run(self) -> None:
        self.merged = merge_segments(self.segments, self.live)


@dataclass(frozen=True, slots=True)
class KeywordHits:
    """Docs best first with their BM25 scores."""

    docs: IntArray  # int64
    scores: FloatArray  # float32


class InvertedIndex:
    """BM25 keyword index over doc numbers; see the module docstring."""

    def __init__(
        self, params: Bm25Params | None = None, tokenizer: Tokenizer | None = None
    ) -> None:
        self.params = params or Bm25Params()
        self.tokenizer = tokenizer or DEFAULT_TOKENIZER
        self._vocab: dict[str, int] = {"": 0}  # id 0 is the dropped word; never posted
        self._df: IntArray = np.zeros(1024, dtype=np.int64)
        self._doc_len: IntArray = np.zeros(0, dtype=np.uint32)
        self._live: BoolArray = np.zeros(0, dtype=bool)
        self._doc_end = 0  # one past the largest doc ever added
        self._n_live = 0
        self._total_len = 0  # sum of doc_len over live docs
        self._sealed: list[Segment] = []
        self._tail: list[Segment] = []
        self._impacts = ImpactLists()
        self._merging: SegmentMerge | None = None  # see start_merge
        # (lexicon vocabulary, our id of each of its term ids): see _known_term_ids.
        self._lexicon_terms: tuple[Vocabulary | None, IntArray] = (None, np.zeros(0, np.int64))

    # ---- ingest -------------------------------------------------------------

    def add_batch(self, docs: Sequence[int] | IntArray, texts: Sequence[str]) -> None:
        """Index ``texts[i]`` as doc ``docs[i]``; docs increasing, above all earlier ones."""
        if len(docs) != len(texts):
            raise ValueError("docs and texts differ in length")
        if len(texts):
            self.add_tokens(docs, lexicon_of(self.tokenizer).tokenize(texts))

    def add_tokens(self, docs: Sequence[int] | IntArray, tokens: Tokens) -> None:
        """Index the texts of ``tokens`` (made by this index's tokenizer's lexicon).

        Terms get their ids in the order they first occur, as ``add_terms`` gives them:
        the vocabulary does not depend on how texts were batched or tokenized.
        """
        if tokens.tokenizer is not self.tokenizer:
            raise ValueError("tokens of another tokenizer")
        doc_arr = np.asarray(docs, dtype=np.int64)
        if doc_arr.shape[0] != tokens.counts.shape[0]:
            raise ValueError("docs and term counts differ in length")
        if doc_arr.shape[0] == 0:
            return
        self._check_new_docs(doc_arr)
        terms = tokens.term_ids()
        known = self._known_term_ids(tokens)
        ids = known[terms]
        new = ids < 0
        if bool(new.any()):
            names = tokens.vocabulary.terms
            for term in dict.fromkeys(terms[new].tolist()):  # in order of first occurrence
                known[term] = self._term_id(names[term])
            ids = known[terms]
        self._add_ids(doc_arr, ids, tokens.counts)

    def _known_term_ids(self, tokens: Tokens) -> IntArray:
        """Our term id of each term id of ``tokens``' vocabulary, -1 where not yet known.

        Kept across batches while the lexicon's vocabulary stays the same: each term
        is then looked up in ``_vocab`` once, not at every occurrence.
        """
        vocabulary, known = self._lexicon_terms
        if vocabulary is not tokens.vocabulary:
            known = np.full(0, -1, dtype=np.int64)
        if known.shape[0] < tokens.terms_known:
            known = grown(known, tokens.terms_known, fill=-1)
            known[0] = 0  # the dropped word
        self._lexicon_terms = (tokens.vocabulary, known)
        return known

    def add_terms(self, docs: Sequence[int] | IntArray, batch: TermBatch) -> None:
        """Index terms already made (``batch``: doc ``docs[i]`` owns ``batch.counts[i]``).

        For terms the tokenizer does not make itself: the blinded tokens of a
        private frame (daemon/vault.py), never its plaintext words.
        """
        doc_arr = np.asarray(docs, dtype=np.int64)
        if doc_arr.shape[0] != batch.counts.shape[0]:
            raise ValueError("docs and term counts differ in length")
        if doc_arr.shape[0] == 0:
            return
        self._check_new_docs(doc_arr)
        ids = np.fromiter(map(self._term_id, batch.terms), dtype=np.int64, count=len(batch.terms))
        self._add_ids(doc_arr, ids, batch.counts)

    def _add_ids(self, doc_arr: IntArray, ids: IntArray, counts: IntArray) -> None:
        """Index term ids (doc ``doc_arr[i]`` owns ``counts[i]`` of them; 0 = none)."""
        n_docs = int(doc_arr.shape[0])
        owner = np.repeat(doc_arr, counts)
        kept = ids != 0
        ids, owner = ids[kept], owner[kept]
        slot = np.repeat(np.arange(n_docs), counts)
        lengths = np.bincount(slot[kept], minlength=n_docs)
        self._grow_docs(int(doc_arr[-1]) + 1)
        self._doc_len[doc_arr] = lengths
        self._live[doc_arr] = True
        self._doc_end = int(doc_arr[-1]) + 1
        self._n_live += int(doc_arr.shape[0])
        self._total_len += int(lengths.sum())
        segment = build_segment(ids, owner, int(doc_arr[0]), int(doc_arr[-1]))
        self._df = grown(self._df, len(self._vocab))
        self._df[segment.terms] += segment.term_counts()  # terms are distinct
        self._tail.append(segment)
        if (
            sum(s.n_postings for s in self._tail) >= tail_postings_max
            or len(self._tail) >= tail_segments_max
        ):
            self.seal_tail()

    def delete(self, docs: Sequence[int] | IntArray) -> int:
        """Tombstone ``docs``; returns how many were live (unknown or dead docs are skipped)."""
        doc_arr = sorted_unique(np.asarray(docs, dtype=np.int64))
        doc_arr = doc_arr[(doc_arr >= 0) & (doc_arr < self._doc_end)]
        doc_arr = doc_arr[self._live[doc_arr]]
        self._live[doc_arr] = False
        self._n_live -= int(doc_arr.shape[0])
        self._total_len -= int(self._doc_len[doc_arr].sum())
        return int(doc_arr.shape[0])

    def seal_tail(self) -> None:
        """Merge the tail into one sealed segment, then merge sealed ones as needed."""
        if not self._tail:
            return
        self._push_sealed(self._merge(self._tail))
        self._tail = []

    def compact(self) -> None:
        """Merge everything into one segment, dropping every tombstoned posting (a
        merge under way is abandoned: ``finish_merge`` then discards it)."""
        self._merging = None
        self.seal_tail()
        if self._sealed:
            self._sealed = [self._merge(self._sealed)]

    @property
    def segment_count(self) -> int:
        """Sealed and tail segments: a query term costs a lookup in each."""
        return len(self._sealed) + len(self._tail)

    def start_merge(self) -> SegmentMerge | None:
        """Seal the tail and begin a merge that leaves at most two segments: every
        sealed segment after the first into one, or all of them once those after
        the first hold a ``1 / merge_all_ratio`` share of the first's postings (so a
        few new frames never rewrite a million docs' postings, and each posting is
        rewritten a bounded number of times).  None when there is nothing to merge
        or a merge is under way.  Run the result's ``run`` (on any thread), then hand
        it to ``finish_merge``."""
        if self._merging is not None:
            return None
        self.seal_tail()
        sealed = self._sealed
        if len(sealed) < 2:
            return None
        rest = sum(s.n_postings for s in sealed[1:])
        start = 0 if rest * merge_all_ratio >= sealed[0].n_postings else 1
        if len(sealed) - start < 2:
            return None
        live = self._live[: self._doc_end].copy()
        self._merging = SegmentMerge(start, tuple(sealed[start:]), live)
        return self._merging

    def finish_merge(self, merge: SegmentMerge) -> bool:
        """Swap ``merge``'s result in for the segments it merged; False (nothing
        changed) if it has no result or is no longer the merge under way."""
        if merge is not self._merging:
            return False
        self._merging = None
        merged = merge.merged
        if merged is None:
            return False
        end = merge.start + len(merge.segments)
        # _push_sealed never merges into the segments under merge: they are in place.
        in_place = self._sealed[merge.start : end]
        assert all(a is b for a, b in zip(in_place, merge.segments, strict=True))
        self._count_out(merge.segments, merged)
        self._sealed[merge.start : end] = [merged]
        return True

    def _push_sealed(self, segment: Segment) -> None:
        self._sealed.append(segment)
        # Segments under merge stay as they are until finish_merge replaces them.
        merging = self._merging
        floor = 0 if merging is None else merging.start + len(merging.segments)
        while (
            len(self._sealed) - floor >= 2
            and self._sealed[-1].n_postings >= self._sealed[-2].n_postings
        ):
            merged = self._merge(self._sealed[-2:])
            self._sealed[-2:] = [merged]

    def _merge(self, segments: Sequence[Segment]) -> Segment:
        merged = merge_segments(segments, self._live[: self._doc_end])
        self._count_out(segments, merged)
        return merged

    def _count_out(self, segments: Sequence[Segment], merged: Segment) -> None:
        """df after ``merged`` replaced ``segments``: the postings of tombstoned docs
        are gone, so they leave df too."""
        before = self._postings_per_term(segments)
        after = self._postings_per_term([merged])
        self._df[: before.shape[0]] -= before
        self._df[: after.shape[0]] += after

    def _postings_per_term(self, segments: Sequence[Segment]) -> IntArray:
        out = np.zeros(len(self._vocab), dtype=np.int64)
        for s in segments:
            out[s.terms] += s.term_counts()
        return out

    def _term_id(self, term: str) -> int:
        i = self._vocab.get(term)
        if i is None:
            i = len(self._vocab)
            if i > term_id_max:
                raise OverflowError("keyword vocabulary is full")
            self._vocab[term] = i
        return i

    def _check_new_docs(self, docs: IntArray) -> None:
        if int(docs[0]) < self._doc_end or int(docs[-1]) > doc_number_max:
            raise ValueError(
                f"docs must be above every doc added before ({self._doc_end - 1}) "
                f"and at most {doc_number_max}"
            )
        if docs.shape[0] > 1 and not bool(np.all(np.diff(docs) > 0)):
            raise ValueError("docs of a batch must increase")

    def _grow_docs(self, needed: int) -> None:
        self._doc_len = grown(self._doc_len, needed)
        self._live = grown(self._live, needed, fill=False)

    # ---- statistics ---------------------------------------------------------

    @property
    def doc_count(self) -> int:
        """Live docs (N)."""
        return self._n_live

    @property
    def doc_end(self) -> int:
        """One past the largest doc ever added: the length a full mask needs."""
        return self._doc_end

    @property
    def avgdl(self) -> float:
        return self._total_len / self._n_live if self._n_live else 0.0

    def is_live(self, doc: int) -> bool:
        return 0 <= doc < self._doc_end and bool(self._live[doc])

    def live_mask(self) -> BoolArray:
        """A read-only view of the live docs, by doc number, ``doc_end`` long."""
        view = self._live[: self._doc_end].view()
        view.flags.writeable = False
        return view

    def term_ids(self, terms: Sequence[str]) -> list[int]:
        """Ids of the known terms among ``terms`` (unknown ones skipped)."""
        return [i for i in (self._vocab.get(t, 0) for t in terms) if i]

    def scored_term_ids(self, terms: Sequence[str]) -> list[int]:
        """The distinct known terms a query is scored on: all of them, or the
        ``query_terms_max`` rarest (highest idf) when there are more."""
        ids = list(dict.fromkeys(self.term_ids(terms)))
        if len(ids) > query_terms_max:
            ids = sorted(ids, key=lambda i: (int(self._df[i]), i))[:query_terms_max]
        return ids

    def df(self, term: str) -> int:
        i = self._vocab.get(term, 0)
        return int(self._df[i]) if i else 0

    def idf(self, df: IntArray | int) -> FloatArray:
        n = self._n_live
        d = np.minimum(np.asarray(df, dtype=np.float64), n)
        return np.log1p((n - d + 0.5) / (d + 0.5))

    # ---- queries ------------------------------------------------------------

    def search(
        self,
        terms: Sequence[str],
        k: int,
        mask: BoolArray | None = None,
        require_all: bool = False,
    ) -> KeywordHits:
        """The ``k`` best docs for ``terms`` by BM25 (OR, or AND with ``require_all``)."""
        if require_all:
            ids = list(dict.fromkeys(self.term_ids(terms)))
            if not ids or len(ids) < len(set(terms)):
                return _no_hits()
            docs = self._intersect([self._term_docs(t) for t in ids])
            scores = self.score_docs_by_ids(ids, docs)
            keep = self._live[docs] & mask_at(mask, docs)
            docs, scores = top_k(docs[keep], scores[keep], k)
            return KeywordHits(docs=docs, scores=scores)
        ids = self.scored_term_ids(terms)
        if not ids:
            return _no_hits()
        hits = self._search_max_score(ids, k, mask)
        if hits is None:
            hits = self._search_impacts(ids, k, mask)
        if hits is not None:
            return hits
        docs, scores = self._accumulate([self._term_scores(t) for t in ids])
        keep = self._live[docs] & mask_at(mask, docs)
        docs, scores = top_k(docs[keep], scores[keep], k)
        return KeywordHits(docs=docs, scores=scores)

    def _search_max_score(
        self, ids: list[int], k: int, mask: BoolArray | None
    ) -> KeywordHits | None:
        """OR search that never expands the postings of frequent terms (MaxScore).

        Terms held by more than ``frequent_df_fraction`` of docs are *non-essential*
        when their best possible total, ``sum(idf * (k1 + 1))``, is below the k-th
        best score of the docs holding a rarer term: then no doc holding only
        frequent terms can enter the top k, and the frequent terms need only be
        looked up (binary search) for the docs already found.  Exact, like Lucene's
        MaxScore.  When that bound is too loose, the frequent terms' impact lists
        may still prove the answer (``_search_rare_with_impacts``); None when
        neither applies (the caller then scores everything).
        """
        n = max(self._n_live, 1)
        df = self._df[ids]
        frequent = df > frequent_df_fraction * n
        if not bool(frequent.any()) or bool(frequent.all()):
            return None
        rare_ids = [t for t, f in zip(ids, frequent.tolist(), strict=True) if not f]
        common_ids = [t for t, f in zip(ids, frequent.tolist(), strict=True) if f]
        per_term = [self._term_scores(t) for t in rare_ids]
        if len(per_term) == 1:
            docs, scores = per_term[0]
        else:
            docs, scores = self._accumulate(per_term)
        keep = self._live[docs] & mask_at(mask, docs)
        docs, scores = docs[keep], scores[keep]
        if k > 0 and docs.shape[0] >= k:
            kth = float(np.partition(scores, scores.shape[0] - k)[scores.shape[0] - k])
            bound = float(self.idf(self._df[common_ids]).sum()) * (self.params.k1 + 1)
            if bound < kth:
                # A doc below kth - bound stays below the k rare docs that reach kth
                # even with every frequent term at its best: look up only the rest
                # (the slack covers float32 rounding of the sums).
                need = scores >= (kth - bound) - 1e-5 * kth
                docs, scores = docs[need], scores[need]
                scores = scores + self.score_docs_by_ids(common_ids, docs)
                docs, scores = top_k(docs, scores, k)
                return KeywordHits(docs=docs, scores=scores)
        return self._search_rare_with_impacts(ids, common_ids, docs, k, mask)

    def _search_rare_with_impacts(
        self,
        ids: list[int],
        common_ids: list[int],
        rare_docs: IntArray,
        k: int,
        mask: BoolArray | None,
    ) -> KeywordHits | None:
        """OR search of rare and frequent terms when MaxScore's bound is too loose.

        The candidates are the docs holding a rare term, the frequent terms'
        impact lists and the unsealed tail's docs of those terms, scored exactly
        on every term.  A doc outside them holds no rare term and, for each
        frequent term, weighs at most that list's floor: when the k-th candidate
        beats ``sum(idf * floor)`` of the frequent terms, the answer is exact
        (see impacts.py).  None otherwise: the caller then scores every posting.
        """
        return self._answer_from_impact_lists(ids, common_ids, rare_docs.astype(np.int64), k, mask)

    def _search_impacts(self, ids: list[int], k: int, mask: BoolArray | None) -> KeywordHits | None:
        """OR search of frequent terms only, from their impact lists (see impacts.py).

        None when some term is not frequent, or when the lists cannot prove the
        answer exact; the caller then scores every posting.
        """
        n = max(self._n_live, 1)
        if not bool((self._df[ids] > frequent_df_fraction * n).all()):
            return None
        return self._answer_from_impact_lists(ids, ids, np.empty(0, np.int64), k, mask)

    def _answer_from_impact_lists(
        self,
        ids: list[int],
        listed: list[int],
        other_docs: IntArray,
        k: int,
        mask: BoolArray | None,
    ) -> KeywordHits | None:
        """The top ``k`` for ``ids`` among ``other_docs``, the impact lists of the
        ``listed`` terms and the unsealed tail's docs of those terms, if provably exact.

        Every doc outside them holds none of ``ids`` but the listed terms, each
        weighing at most its list's floor: when the k-th candidate beats
        ``sum(idf * floor)`` the answer is exact (see impacts.py); else None.
        """
        if k <= 0:
            return None
        avgdl = self.avgdl or 1.0
        lists = [self._impact_list(t, avgdl) for t in listed]
        tail_docs = [s.postings(t)[0] for s in self._tail for t in listed]
        pooled = [other_docs, *(il.docs for il in lists), *tail_docs]
        cand = sorted_unique(np.concatenate(pooled).astype(np.int64))
        cand = cand[self._live[cand] & mask_at(mask, cand)]
        if cand.shape[0] < k:
            self._impacts.fallbacks += 1
            return None
        scores = self.score_docs_by_ids(ids, cand)
        kth = float(np.partition(scores, scores.shape[0] - k)[scores.shape[0] - k])
        idf = self.idf(self._df[listed]).tolist()
        bound = sum(i * il.upper_weight(avgdl) for i, il in zip(idf, lists, strict=True))
        # Strictly above: a doc outside scoring exactly the bound could tie the k-th.
        if not kth > bound * (1 + 1e-6):
            self._impacts.fallbacks += 1
            return None
        self._impacts.answered += 1
        docs, top = top_k(cand, scores, k)
        return KeywordHits(docs=docs, scores=top)

    def _impact_list(self, term: int, avgdl: float) -> ImpactList:
        key = tuple((id(s), s.doc_lo, s.doc_hi, s.n_postings) for s in self._sealed)
        found = self._impacts.get(term, key, avgdl)
        if found is not None:
            return found
        parts = [self._segment_weights(s, term, avgdl) for s in self._sealed]
        docs = np.concatenate([d for d, _ in parts]) if parts else np.empty(0, np.int64)
        weights = np.concatenate([w for _, w in parts]) if parts else np.empty(0, np.float32)
        built = build_impact_list(key, avgdl, docs.astype(np.int64), weights)
        self._impacts.put(term, built)
        return built

    def score_docs(self, terms: Sequence[str], docs: IntArray) -> FloatArray:
        """BM25 of each of ``docs`` for ``terms`` (0 where none of them occurs)."""
        return self.score_docs_by_ids(self.scored_term_ids(terms), docs)

    def term_scores(self, terms: Sequence[str], docs: IntArray) -> dict[str, FloatArray]:
        """Each term's BM25 share for each of ``docs``: what ``explain`` shows."""
        scored = set(self.scored_term_ids(terms))
        out = {}
        for term in dict.fromkeys(terms):
            i = self._vocab.get(term, 0)
            if i in scored:
                out[term] = self.score_docs_by_ids([i], docs)
        return out

    def score_docs_by_ids(self, ids: Sequence[int], docs: IntArray) -> FloatArray:
        docs = np.asarray(docs, dtype=np.int64)
        out = np.zeros(docs.shape[0], dtype=np.float32)
        if docs.shape[0] == 0:
            return out
        order = np.argsort(docs, kind="stable")
        sorted_docs = docs[order]
        avgdl = self.avgdl or 1.0
        idf = {t: np.float32(self.idf(int(self._df[t]))) for t in ids}
        for t, span, tfs, hit in self._lookups(ids, sorted_docs):
            weights = self._weights(tfs, sorted_docs[span][hit], avgdl)
            out[order[span][hit]] += idf[t] * weights
        return out

    def _lookups(
        self, ids: Sequence[int], sorted_docs: IntArray
    ) -> Iterator[tuple[int, slice, IntArray, BoolArray]]:
        """For each term of ``ids`` and each segment holding it whose doc range holds
        some of ``sorted_docs`` (increasing): the term, the slice of ``sorted_docs``
        in that range, the term frequencies of the ones found, and which are found.

        Each doc is looked up (binary search) only in the segment its number falls
        in, and only the hits are returned: a frequent term's postings are far more
        than the docs asked about.
        """
        needles = sorted_docs.astype(np.uint32)  # the postings' type: see _positions
        spans = []
        for segment in self._segments():
            lo = int(sorted_docs.searchsorted(segment.doc_lo, "left"))
            hi = int(sorted_docs.searchsorted(segment.doc_hi, "right"))
            if lo < hi:
                spans.append((segment, slice(lo, hi)))
        for t in dict.fromkeys(ids):
            for segment, span in spans:
                seg_docs, seg_tfs = segment.postings(t)
                if seg_docs.shape[0]:
                    at = _positions(seg_docs, needles[span])
                    hit = seg_docs[at] == sorted_docs[span]
                    yield t, span, seg_tfs[at[hit]], hit

    def docs_with_all(self, terms: Sequence[str], mask: BoolArray | None = None) -> IntArray:
        """Live docs (allowed by ``mask``) holding every one of ``terms``, increasing.

        An empty ``terms`` selects nothing; a term no doc holds makes it empty.
        """
        wanted = list(dict.fromkeys(t for t in terms if t))
        ids = self.term_ids(wanted)
        if not wanted or len(ids) < len(wanted):
            return np.empty(0, dtype=np.int64)
        lists = [self._term_docs(t) for t in ids]
        docs = self._intersect(lists)
        return docs[self._live[docs] & mask_at(mask, docs)]

    def hold_all(self, terms: Sequence[str], docs: IntArray) -> BoolArray:
        """For each of ``docs``, whether it holds every one of ``terms`` (an empty
        ``terms`` holds for none).  Looks the docs up in each term's postings (binary
        search), so its cost follows ``len(docs)``, not the terms' posting counts."""
        docs = np.asarray(docs, dtype=np.int64)
        wanted = list(dict.fromkeys(t for t in terms if t))
        ids = self.term_ids(wanted)
        if not wanted or len(ids) < len(wanted):
            return np.zeros(docs.shape[0], dtype=bool)
        order = np.argsort(docs, kind="stable")
        sorted_docs = docs[order]
        found = {t: np.zeros(docs.shape[0], dtype=bool) for t in ids}  # by sorted doc
        for t, span, _tfs, hit in self._lookups(ids, sorted_docs):
            found[t][span] |= hit
        held = np.logical_and.reduce(list(found.values()))
        out = np.empty(docs.shape[0], dtype=bool)
        out[order] = held
        return out

    def _term_docs(self, term: int) -> IntArray:
        parts = [s.postings(term)[0] for s in self._segments()]
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)

    def _term_postings(self, term: int) -> list[tuple[IntArray, FloatArray]]:
        """Per segment holding ``term``: its docs (increasing) and their BM25 share."""
        idf = np.float32(self.idf(int(self._df[term])))
        avgdl = self.avgdl or 1.0
        out = []
        for s in self._segments():
            docs, weights = self._segment_weights(s, term, avgdl)
            if docs.shape[0]:
                out.append((docs, idf * weights))
        return out

    def _segment_weights(
        self, segment: Segment, term: int, avgdl: float
    ) -> tuple[IntArray, FloatArray]:
        """``term``'s docs in ``segment`` and their BM25 weight without idf."""
        docs, tfs = segment.postings(term)
        return docs, self._weights(tfs, docs, avgdl)

    def _weights(self, tfs: IntArray, docs: IntArray, avgdl: float) -> FloatArray:
        """BM25 weight without idf of term frequencies ``tfs`` in ``docs``."""
        p = self.params
        tf = tfs.astype(np.float32)
        dl = self._doc_len[docs].astype(np.float32)
        norm = np.float32(p.k1 * (1 - p.b)) + np.float32(p.k1 * p.b / avgdl) * dl
        weights: FloatArray = np.float32(p.k1 + 1) * tf / (tf + norm)
        return weights

    def _term_scores(self, term: int) -> tuple[IntArray, FloatArray]:
        parts = self._term_postings(term)
        if not parts:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        return (
            np.concatenate([d for d, _ in parts]).astype(np.int64),
            np.concatenate([s for _, s in parts]),
        )

    def _accumulate(
        self, per_term: list[tuple[IntArray, FloatArray]]
    ) -> tuple[IntArray, FloatArray]:
        """Sum per-doc scores over terms, as (docs ascending, float32 sums).

        Within one term a doc appears once, so ``acc[docs] += scores`` is exact.
        One term's scores are its sums.  Few postings (rare terms) add into an
        array over just the docs they hold; many, into one over every doc (no
        sort).  Both add in the same order, so they give the same sums to the bit.
        """
        if len(per_term) == 1:
            docs, scores = per_term[0]
            order = np.argsort(docs, kind="stable")
            return docs[order].astype(np.int64), scores[order].astype(np.float32)
        postings = sum(docs.shape[0] for docs, _ in per_term)
        if postings * sparse_accumulate_ratio < self._doc_end:
            held = sorted_unique(np.concatenate([docs for docs, _ in per_term]).astype(np.int64))
            sums = np.zeros(held.shape[0], dtype=np.float32)
            for docs, scores in per_term:
                sums[np.searchsorted(held, docs)] += scores
            return held, sums
        acc = np.zeros(self._doc_end, dtype=np.float32)
        touched = np.zeros(self._doc_end, dtype=bool)
        for docs, scores in per_term:
            acc[docs] += scores
            touched[docs] = True
        docs = np.flatnonzero(touched)
        return docs, acc[docs]

    @staticmethod
    def _intersect(lists: list[IntArray]) -> IntArray:
        """Docs in every one of the sorted ``lists``: rarest first, binary search the rest."""
        lists = sorted(lists, key=lambda a: a.shape[0])
        out = lists[0]
        for other in lists[1:]:
            if out.shape[0] == 0 or other.shape[0] == 0:
                return np.empty(0, dtype=np.int64)
            pos = np.minimum(np.searchsorted(other, out), other.shape[0] - 1)
            out = out[other[pos] == out]
        return out.astype(np.int64)

    def _segments(self) -> list[Segment]:
        return self._sealed + self._tail

    # ---- invariants, memory, checkpoints -------------------------------------

    def memory_bytes(self) -> int:
        """Estimated bytes held: postings, per-doc and per-term arrays, the vocabulary."""
        postings = sum(s.memory_bytes() for s in self._segments())
        arrays = self._df.nbytes + self._doc_len.nbytes + self._live.nbytes
        # A str -> int dict entry: ~100 bytes of dict slot, str header and small int.
        vocab = sum(len(t) for t in self._vocab) + 100 * len(self._vocab)
        return int(postings + arrays + vocab + self._impacts.memory_bytes())

    def stats(self) -> dict[str, int | float]:
        return {
            "docs_live": self._n_live,
            "doc_end": self._doc_end,
            "terms": len(self._vocab) - 1,
            "postings": sum(s.n_postings for s in self._segments()),
            "segments_sealed": len(self._sealed),
            "segments_tail": len(self._tail),
            "avgdl": self.avgdl,
            "memory_bytes": self.memory_bytes(),
            **self._impacts.stats(),
        }

    def _check(self) -> None:
        """Verify every invariant; O(postings), for tests and the offline check."""
        n = self._doc_end
        segments = self._segments()
        for s in segments:
            s._check()
        for a, b in itertools.pairwise(segments):
            assert a.doc_hi < b.doc_lo, "segments out of doc order"
        if segments:
            assert segments[-1].doc_hi < n
        counted = self._postings_per_term(segments)
        assert np.array_equal(self._df[: len(self._vocab)], counted), "df != postings"
        assert int(self._live[:n].sum()) == self._n_live
        live_len = int(self._doc_len[:n][self._live[:n]].sum())
        assert live_len == self._total_len, "total length drifted"
        assert not bool(self._live[n:].any())
        assert self._vocab[""] == 0 and len(set(self._vocab.values())) == len(self._vocab)
        assert len(self._tail) < tail_segments_max

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write a checkpoint into ``directory`` (created; must not exist or be empty).

        The caller makes it atomic (write to a temporary name, fsync, rename).  Files:
        ``inverted.json`` (parameters, counts, segment bounds), ``vocab.txt`` (terms by
        id, one a line), ``df.npy``, ``doc_len.npy``, ``live.npy`` and, per segment,
        ``seg-N-{terms,offsets,docs,tfs}.npy``; tail segments are sealed first.
        """
        self.seal_tail()
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        n = self._doc_end
        terms_by_id = sorted(self._vocab, key=self._vocab.__getitem__)
        (path / "vocab.txt").write_text("\n".join(terms_by_id[1:]), encoding="utf-8")
        np.save(path / "df.npy", self._df[: len(self._vocab)])
        np.save(path / "doc_len.npy", self._doc_len[:n])
        np.save(path / "live.npy", self._live[:n])
        bounds = []
        for i, s in enumerate(self._sealed):
            for name in ("terms", "offsets", "docs", "tfs"):
                np.save(path / f"seg-{i}-{name}.npy", getattr(s, name))
            bounds.append([s.doc_lo, s.doc_hi])
        manifest = {
            "format": checkpoint_format,
            "k1": self.params.k1,
            "b": self.params.b,
            "stemming": self.tokenizer.stemming,
            "doc_end": n,
            "n_live": self._n_live,
            "total_len": self._total_len,
            "terms": len(self._vocab) - 1,
            "segments": bounds,
        }
        (path / "inverted.json").write_text(json.dumps(manifest), encoding="utf-8")

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, IntArray]]:
        """A consistent copy as (meta, arrays) for a checkpoint, without sealing the tail.

        Segments are immutable and per-doc rows below ``doc_end`` change only in
        ``live``; so segments and lengths are shared, ``df``, ``live`` and the
        vocabulary are copied.
        """
        n = self._doc_end
        terms_by_id = list(self._vocab)  # ids are assigned in insertion order
        meta = {
            "format": checkpoint_format,
            "k1": self.params.k1,
            "b": self.params.b,
            "stemming": self.tokenizer.stemming,
            "doc_end": n,
            "n_live": self._n_live,
            "total_len": self._total_len,
            "terms": len(terms_by_id) - 1,
            "sealed": [[s.doc_lo, s.doc_hi] for s in self._sealed],
            "tail": [[s.doc_lo, s.doc_hi] for s in self._tail],
        }
        arrays = {
            "keyword.vocab": strings_to_array(terms_by_id[1:]),
            "keyword.df": self._df[: len(terms_by_id)].copy(),
            "keyword.doc_len": self._doc_len[:n],
            "keyword.live": self._live[:n].copy(),
            **_segment_arrays("keyword.sealed", self._sealed),
            **_segment_arrays("keyword.tail", self._tail),
        }
        return meta, arrays

    @classmethod
    def from_arrays(
        cls, meta: dict[str, Any], arrays: dict[str, IntArray], tokenizer: Tokenizer | None = None
    ) -> InvertedIndex:
        """The index ``to_arrays`` described; ValueError if its parts disagree."""
        if meta.get("format") != checkpoint_format:
            raise ValueError(f"unknown keyword checkpoint format {meta.get('format')}")
        index = cls(Bm25Params(meta["k1"], meta["b"]), tokenizer)
        if index.tokenizer.stemming != meta["stemming"]:
            raise ValueError("checkpoint was built with another stemming setting")
        terms = array_to_strings(arrays["keyword.vocab"])
        if len(terms) != meta["terms"]:
            raise ValueError("vocabulary and manifest disagree")
        index._vocab = dict(zip(["", *terms], range(len(terms) + 1), strict=True))
        index._df = np.array(arrays["keyword.df"], dtype=np.int64)
        n = int(meta["doc_end"])
        index._doc_len = np.array(arrays["keyword.doc_len"], dtype=np.uint32)
        index._live = np.array(arrays["keyword.live"], dtype=bool)
        if index._doc_len.shape[0] != n or index._live.shape[0] != n:
            raise ValueError("per-doc arrays and manifest disagree")
        if index._df.shape[0] != len(terms) + 1:
            raise ValueError("document frequencies and vocabulary disagree")
        index._doc_end = n
        index._n_live = int(meta["n_live"])
        index._total_len = int(meta["total_len"])
        index._sealed = _segments_from("keyword.sealed", meta["sealed"], arrays)
        index._tail = _segments_from("keyword.tail", meta["tail"], arrays)
        return index

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        tokenizer: Tokenizer | None = None,
        mmap: bool = True,
    ) -> InvertedIndex:
        """Read a checkpoint written by :meth:`save`; postings are memory-mapped when ``mmap``."""
        path = Path(directory)
        manifest = json.loads((path / "inverted.json").read_text(encoding="utf-8"))
        if manifest.get("format") != checkpoint_format:
            raise ValueError(f"unknown keyword checkpoint format {manifest.get('format')}")
        index = cls(Bm25Params(manifest["k1"], manifest["b"]), tokenizer)
        if index.tokenizer.stemming != manifest["stemming"]:
            raise ValueError("checkpoint was built with another stemming setting")
        text = (path / "vocab.txt").read_text(encoding="utf-8")
        terms = text.split("\n") if manifest["terms"] else []
        if len(terms) != manifest["terms"]:
            raise ValueError("vocabulary and manifest disagree")
        index._vocab = dict(zip(["", *terms], range(len(terms) + 1), strict=True))
        index._df = np.load(path / "df.npy").astype(np.int64)
        n = int(manifest["doc_end"])
        index._doc_len = np.array(np.load(path / "doc_len.npy"), dtype=np.uint32)
        index._live = np.array(np.load(path / "live.npy"), dtype=bool)
        if index._doc_len.shape[0] != n or index._live.shape[0] != n:
            raise ValueError("per-doc arrays and manifest disagree")
        index._doc_end = n
        index._n_live = int(manifest["n_live"])
        index._total_len = int(manifest["total_len"])
        mode: Literal["r"] | None = "r" if mmap else None
        for i, (lo, hi) in enumerate(manifest["segments"]):
            arrays = {
                name: np.load(path / f"seg-{i}-{name}.npy", mmap_mode=mode)
                for name in ("terms", "offsets", "docs", "tfs")
            }
            index._sealed.append(Segment(doc_lo=int(lo), doc_hi=int(hi), **arrays))
        return index


def _segment_arrays(prefix: str, segments: list[Segment]) -> dict[str, IntArray]:
    out: dict[str, IntArray] = {}
    for i, seg in enumerate(segments):
        for name in ("terms", "offsets", "docs", "tfs"):
            out[f"{prefix}.{i}.{name}"] = getattr(seg, name)
    return out


def _segments_from(
    prefix: str, bounds: list[list[int]], arrays: dict[str, IntArray]
) -> list[Segment]:
    return [
        Segment(
            terms=arrays[f"{prefix}.{i}.terms"],
            offsets=arrays[f"{prefix}.{i}.offsets"],
            docs=arrays[f"{prefix}.{i}.docs"],
            tfs=arrays[f"{prefix}.{i}.tfs"],
            doc_lo=int(lo),
            doc_hi=int(hi),
        )
        for i, (lo, hi) in enumerate(bounds)
    ]


def _no_hits() -> KeywordHits:
    return KeywordHits(docs=np.empty(0, np.int64), scores=np.empty(0, np.float32))


assert tail_postings_max > 0 and tail_segments_max >= 2
assert math.isfinite(Bm25Params().k1)


def _positions(postings: IntArray, needles: IntArray) -> IntArray:
    """Where each of ``needles`` is or would go in the sorted ``postings``, clipped to
    the last posting: compare ``postings[at] == doc`` to know whether it is there.

    ``needles`` must have the postings' dtype (uint32): searching with another
    dtype makes numpy convert the postings first, a copy of a frequent term's
    whole list (half a million docs at 1M frames) per lookup.  Docs beyond uint32
    wrap when cast and are then simply not found (no posting equals them).
    """
    at: IntArray = np.minimum(postings.searchsorted(needles), postings.shape[0] - 1)
    return at
