"""One search index over frames: keyword + vectors + per-doc columns, and the query path.

This is what the daemon's builder feeds and what its search handler asks:

* ``add_batch(docs, texts, times_ms, importance, kinds)``: docs in commit order;
* ``delete(docs)``;
* ``search(query, k, mask, mode, now_ms, explain, text_of)``: ``mask`` is a numpy
  bool array over doc numbers (None = all) that the caller builds from its filters;
  ``text_of(doc)`` returns a frame's text, used only to verify phrases on the top
  ``phrase_checks_max`` keyword and semantic candidates (without it, no phrase
  bonus);
* ``save(directory)`` / ``SearchIndex.load(directory, embedder)`` for checkpoints.

Not thread-safe: one owner (the builder) mutates; queries must not overlap a
mutation (the daemon serializes them on its one builder task or a lock).  A
vector search may use worker threads of its own (storage/search/threads.py); a
hybrid search starts its vector half on them, runs its keyword half meanwhile,
and returns only once they are done with the index.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memoryd.storage.caches import MeteredCache
from memoryd.storage.search import ranking
from memoryd.storage.search.arrays import BoolArray, FloatArray, IntArray, mask_at, sorted_unique
from memoryd.storage.search.columns import DocColumns
from memoryd.storage.search.embedding import Embedder, HashingEmbedder
from memoryd.storage.search.inverted import InvertedIndex
from memoryd.storage.search.lexicon import Tokens
from memoryd.storage.search.ranking import Mode, RankingWeights, ScoreParts
from memoryd.storage.search.text import ParsedQuery, TermBatch, contains_phrase
from memoryd.storage.search.vectors import VectorIndex

k_max = 1000  # results of one search
# Phrases are verified (their text read back and split) only in the best this many
# keyword candidates and the best this many semantic ones: reading a frame costs
# ~25 us, and a doc holding the query verbatim ranks near the top on its words alone.
phrase_checks_max = 32
checkpoint_format = 1


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Docs best first, their final scores, and every part of them when explained."""

    docs: IntArray
    scores: FloatArray
    parts: ScoreParts | None = None

    def explain(self) -> list[dict[str, Any]]:
        """One dict per result: each part of its score, as plain floats."""
        if self.parts is None:
            return []
        p = self.parts
        index = {int(d): i for i, d in enumerate(p.docs.tolist())}
        out = []
        for d in self.docs.tolist():
            i = index[int(d)]
            row: dict[str, Any] = {
                "doc": int(d),
                "score": float(p.score[i]),
                "relevance": float(p.relevance[i]),
                "recency": float(p.recency[i]),
                "importance": float(p.importance[i]),
                "kind": float(p.kind[i]),
            }
            row.update({name: float(v[i]) for name, v in p.extra.items()})
            out.append(row)
        return out


class SearchIndex:
    """Keyword, vector and column indexes over the same doc numbers; see module docstring."""

    def __init__(
        self,
        embedder: Embedder | None = None,
        inverted: InvertedIndex | None = None,
        vectors: VectorIndex | None = None,
        columns: DocColumns | None = None,
    ) -> None:
        self.embedder: Embedder = embedder or HashingEmbedder()
        self.inverted = inverted or InvertedIndex()
        self.vectors = vectors or VectorIndex(self.embedder.dim)
        self.columns = columns or DocColumns()
        # Query embeddings, by query text (ingest batches are never cached).
        self.query_cache: MeteredCache[str, FloatArray] | None = None
        if self.vectors.dim != self.embedder.dim:
            raise ValueError("vector index and embedder differ in dim")

    # ---- ingest -------------------------------------------------------------

    def add_batch(
        self,
        docs: Sequence[int] | IntArray,
        texts: Sequence[str],
        times_ms: Sequence[int] | IntArray,
        importance: Sequence[float] | FloatArray | None = None,
        kinds: Sequence[str] | None = None,
        vectors: FloatArray | None = None,
        terms: TermBatch | None = None,
        tokens: Tokens | None = None,
    ) -> None:
        """Index a batch; ``vectors`` may bring precomputed embeddings (else embedded here),
        ``terms`` the keyword terms, or ``tokens`` the texts tokenized by the keyword
        index's tokenizer (else the tokenizer's terms of ``texts``)."""
        if terms is not None:
            self.inverted.add_terms(docs, terms)
        elif tokens is not None:
            self.inverted.add_tokens(docs, tokens)
        else:
            self.inverted.add_batch(docs, texts)
        self.vectors.add_batch(docs, self.embedder.embed(texts) if vectors is None else vectors)
        self.columns.set_batch(docs, times_ms, importance, kinds)

    def delete(self, docs: Sequence[int] | IntArray) -> int:
        self.vectors.delete(docs)
        return self.inverted.delete(docs)

    # ---- queries ------------------------------------------------------------

    def _embed_query(self, query: str) -> FloatArray:
        cache = self.query_cache
        vector: FloatArray | None = None if cache is None else cache.get(query)
        if vector is None:
            vector = np.asarray(self.embedder.embed([query])[0], dtype=np.float32)
            if cache is not None:
                cache.put(query, vector)
        return vector

    def search(
        self,
        query: str,
        k: int = 10,
        mask: BoolArray | None = None,
        mode: Mode = "hybrid",
        now_ms: int | None = None,
        explain: bool = False,
        text_of: Callable[[int], str] | None = None,
        weights: RankingWeights | None = None,
        blind: Callable[[list[str]], list[str]] | None = None,
        doc_factor: tuple[str, FloatArray] | None = None,
    ) -> SearchResult:
        """The ``k`` best docs for ``query``; see ``ranking.py`` for how modes score.

        ``blind`` maps terms to the tokens private docs are indexed under: with
        it, the query's terms are looked up both ways (a doc holds one kind only).
        ``doc_factor`` is (name, factor by doc): every score is multiplied by its
        doc's factor, shown in ``explain`` under that name (e.g. significance).
        """
        if mode not in ranking.MODES:
            raise ValueError(f"unknown mode {mode!r}")
        w = weights or RankingWeights()
        k = max(0, min(k, k_max))
        parsed = self.inverted.tokenizer.parse_query(query)
        if blind is not None and parsed.terms:
            blinded = tuple(blind(list(parsed.terms)))
            parsed = dataclasses.replace(parsed, terms=parsed.terms + blinded)
        depth = max(w.depth, k)
        now = int(now_ms) if now_ms is not None else int(self.columns.time_ms.max(initial=0))
        kw_docs = np.empty(0, np.int64)
        sem_docs = np.empty(0, np.int64)
        qvec = None
        semantic_hits = None
        if mode != "keyword":
            qvec = self._embed_query(query)
            semantic_hits = self.vectors.start_search(qvec, depth, mask)
        try:
            if mode != "semantic":
                kw_docs = self.inverted.search(parsed.terms, depth, mask).docs
        finally:  # the vector pass's workers read the index until it is collected
            if semantic_hits is not None:
                sem_docs = semantic_hits().docs
        cand = sorted_unique(np.concatenate([kw_docs, sem_docs]))
        if w.context_weight > 0 and mode in ("keyword", "hybrid"):
            cand = self._with_neighbours(cand, mask)
        if cand.shape[0] == 0:
            return SearchResult(cand, np.empty(0, np.float32), None)
        extra: dict[str, FloatArray] = {}
        checked = np.concatenate([kw_docs[:phrase_checks_max], sem_docs[:phrase_checks_max]])
        phrase = self._phrase_hits(parsed, cand, checked, text_of, blind)
        if mode == "classic":
            relevance = self._classic(parsed, cand, phrase, qvec, now, extra)
            parts = self._parts(cand, relevance, now, w, extra, classic=True)
        else:
            relevance = self._relevance(
                mode, parsed, cand, kw_docs, sem_docs, qvec, phrase, w, extra
            )
            if w.context_weight > 0 and mode in ("keyword", "hybrid"):
                extra["own_relevance"] = relevance
                relevance = ranking.with_context(cand, relevance, self.columns.time_ms[cand], w)
            parts = self._parts(cand, relevance, now, w, extra)
        if doc_factor is not None:
            name, factor = doc_factor
            extra[name] = np.asarray(factor[cand], dtype=np.float32)
            parts = ScoreParts(
                parts.docs,
                parts.relevance,
                parts.recency,
                parts.importance,
                parts.kind,
                (parts.score * extra[name]).astype(np.float32),
                extra,
            )
        order = np.lexsort((-cand, -parts.score))[:k]
        return SearchResult(cand[order], parts.score[order], parts if explain else None)

    def _with_neighbours(self, cand: IntArray, mask: BoolArray | None) -> IntArray:
        """``cand`` and the live, allowed docs just before and after each, sorted."""
        near = np.concatenate([cand, cand - 1, cand + 1])
        near = sorted_unique(near[(near >= 0) & (near < self.inverted.doc_end)])
        live = self.inverted.live_mask()
        out: IntArray = near[live[near] & mask_at(mask, near)]
        return out

    def docs_with_all(self, terms_text: str, mask: BoolArray | None = None) -> IntArray:
        """Live docs holding every keyword term of ``terms_text`` (for "important first")."""
        return self.inverted.docs_with_all(self.inverted.tokenizer.terms(terms_text), mask)

    def _relevance(
        self,
        mode: Mode,
        parsed: ParsedQuery,
        cand: IntArray,
        kw_docs: IntArray,
        sem_docs: IntArray,
        qvec: FloatArray | None,
        phrase: FloatArray,
        w: RankingWeights,
        extra: dict[str, FloatArray],
    ) -> FloatArray:
        extra["phrase"] = phrase
        if mode != "semantic":
            extra["bm25"] = self.inverted.score_docs(parsed.terms, cand)
        if qvec is not None:
            extra["cosine"] = self.vectors.score_docs(qvec, cand)
        if mode == "keyword":
            return ranking.keyword_relevance(extra["bm25"], phrase, w)
        if mode == "semantic":
            return np.maximum(extra["cosine"], 0).astype(np.float32)
        if w.fusion == "blend":
            return ranking.blend(extra["bm25"], extra["cosine"], phrase, w)
        kw_rank = ranking.rank_positions(cand, kw_docs)
        sem_rank = ranking.rank_positions(cand, sem_docs)
        extra["keyword_rank"] = kw_rank.astype(np.float32)
        extra["semantic_rank"] = sem_rank.astype(np.float32)
        fused = ranking.rrf([kw_rank, sem_rank], [w.keyword_weight, w.semantic_weight], w.rrf_k)
        return (fused + w.phrase_weight * phrase).astype(np.float32)

    def _classic(
        self,
        parsed: ParsedQuery,
        cand: IntArray,
        phrase: FloatArray,
        qvec: FloatArray | None,
        now: int,
        extra: dict[str, FloatArray],
    ) -> FloatArray:
        per_term = self.inverted.term_scores(list(parsed.terms), cand)
        present = np.zeros(cand.shape[0], dtype=np.float32)
        for scores in per_term.values():
            present += scores > 0
        cosine = self.vectors.score_docs(qvec, cand) if qvec is not None else present * 0
        age = now - self.columns.time_ms[cand]
        code = self.columns._codes.get("breakthrough", -1)
        brk = (self.columns.kind[cand] == code).astype(np.float32)
        extra.update(phrase=phrase, words_present=present, cosine=cosine)
        return ranking.classic_scores(phrase, present, cosine, age, brk)

    def _parts(
        self,
        cand: IntArray,
        relevance: FloatArray,
        now: int,
        w: RankingWeights,
        extra: dict[str, FloatArray],
        classic: bool = False,
    ) -> ScoreParts:
        ones = np.ones(cand.shape[0], dtype=np.float32)
        if classic:  # classic folds its own age and kind factors into relevance
            return ScoreParts(cand, relevance, ones, ones, ones, relevance, extra)
        recency = ranking.recency_factor(now - self.columns.time_ms[cand], w)
        importance = ranking.importance_factor(self.columns.importance[cand], w)
        kind = ranking.kind_factor(self.columns.kind[cand], self.columns.kinds, w)
        score = (relevance * recency * importance * kind).astype(np.float32)
        return ScoreParts(cand, relevance, recency, importance, kind, score, extra)

    def _phrase_hits(
        self,
        parsed: ParsedQuery,
        cand: IntArray,
        checked: IntArray,
        text_of: Callable[[int], str] | None,
        blind: Callable[[list[str]], list[str]] | None = None,
    ) -> FloatArray:
        """1 for candidates among ``checked`` whose text holds one of the query's
        phrases verbatim (0 for the others)."""
        out = np.zeros(cand.shape[0], dtype=np.float32)
        if text_of is None or not parsed.phrases:
            return out
        # A doc can hold a phrase only if it holds every term of it: the postings say
        # which candidates do, so only those are read back and checked word by word.
        tokenizer = self.inverted.tokenizer
        at = np.flatnonzero(np.isin(cand, checked))
        docs = cand[at]
        maybe = np.zeros(at.shape[0], dtype=bool)
        for phrase in parsed.phrases:
            terms = [t for t in map(tokenizer.term_of_word, phrase) if t]
            maybe |= self.inverted.hold_all(terms, docs) if terms else True
            if blind is not None and terms:
                maybe |= self.inverted.hold_all(blind(terms), docs)
        for i in at[maybe].tolist():
            words = tokenizer.words(text_of(int(cand[i])))
            if any(contains_phrase(words, p) for p in parsed.phrases):
                out[i] = 1.0
        return out

    # ---- invariants, memory, checkpoints -------------------------------------

    def memory_bytes(self) -> int:
        return (
            self.inverted.memory_bytes() + self.vectors.memory_bytes() + self.columns.memory_bytes()
        )

    def _check(self) -> None:
        self.inverted._check()
        self.vectors._check()
        self.columns._check()
        assert self.inverted.doc_end == self.vectors.doc_end == self.columns.doc_end
        assert np.array_equal(self.inverted.live_mask(), self.vectors._live[: self.vectors.doc_end])

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write a checkpoint: ``keyword/``, ``vectors/``, ``columns/`` and ``search.json``."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.inverted.save(path / "keyword")
        self.vectors.save(path / "vectors")
        self.columns.save(path / "columns")
        manifest = {
            "format": checkpoint_format,
            "model_id": self.embedder.model_id,
            "doc_end": self.inverted.doc_end,
        }
        (path / "search.json").write_text(json.dumps(manifest), encoding="utf-8")

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], embedder: Embedder | None = None, mmap: bool = True
    ) -> SearchIndex:
        """Read a checkpoint; refuses one whose vectors came from another model."""
        path = Path(directory)
        manifest = json.loads((path / "search.json").read_text(encoding="utf-8"))
        if manifest.get("format") != checkpoint_format:
            raise ValueError(f"unknown search checkpoint format {manifest.get('format')}")
        embedder = embedder or HashingEmbedder()
        if manifest["model_id"] != embedder.model_id:
            raise ValueError(
                f"checkpoint vectors are from {manifest['model_id']}, not {embedder.model_id}"
            )
        return cls(
            embedder=embedder,
            inverted=InvertedIndex.load(path / "keyword", mmap=mmap),
            vectors=VectorIndex.load(path / "vectors"),
            columns=DocColumns.load(path / "columns"),
        )
