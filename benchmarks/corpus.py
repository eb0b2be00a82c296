"""A synthetic frame corpus for search benchmarks: fixed seed, Zipf words, a year of times.

Words are pronounceable made-up strings over a vocabulary of ``vocab_words``
(default 40,000) drawn with Zipf's law (exponent ~1.07, as English text), each
frame 20-80 words, plus a few English function words so the stop-word path is
exercised.  Timestamps are spread over one year; namespaces, kinds, tags and
importance are drawn from small fixed sets.  Same seed, same corpus, on any
machine (numpy's PCG64).

    python benchmarks/corpus.py 5      # print five frames
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

vocab_words = 40_000
zipf_exponent = 1.07
frame_words_min = 20
frame_words_max = 80
year_ms = 365 * 24 * 3600 * 1000
start_ms = 1_700_000_000_000
corpus_seed = 20_240_601

NAMESPACES = ("default", "work", "home", "agent-a", "agent-b")
KINDS = ("note", "fact", "episode", "breakthrough", "procedure")
TAGS = ("python", "travel", "health", "family", "music", "finance", "garden", "books")
_FUNCTION_WORDS = ("the", "and", "of", "to", "a", "in", "is", "that", "it", "was")
_SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["an", "er", "in", "or"]


@dataclass(frozen=True, slots=True)
class FrameBatch:
    """Columns of a run of synthetic frames; doc numbers are ``first_doc + i``."""

    first_doc: int
    texts: list[str]
    times_ms: np.ndarray
    namespaces: np.ndarray  # index into NAMESPACES
    kinds: np.ndarray  # index into KINDS
    importance: np.ndarray  # float32 in [0, 1]
    tags: list[tuple[str, ...]]

    def rows(self) -> Iterator[FrameRow]:
        """One row per frame, with the namespace and kind by name."""
        for text, ns, kind, imp, tags, ts in zip(
            self.texts,
            self.namespaces,
            self.kinds,
            self.importance,
            self.tags,
            self.times_ms,
            strict=True,
        ):
            yield FrameRow(text, NAMESPACES[int(ns)], KINDS[int(kind)], float(imp), tags, int(ts))


@dataclass(frozen=True, slots=True)
class FrameRow:
    """One synthetic frame."""

    text: str
    namespace: str
    kind: str
    importance: float
    tags: tuple[str, ...]
    timestamp_ms: int


def vocabulary(rng: np.random.Generator) -> list[str]:
    """``vocab_words`` distinct made-up words, short ones more frequent (as in English)."""
    words: dict[str, None] = {}
    while len(words) < vocab_words:
        n = 1 + min(int(rng.geometric(0.45)), 5)
        syll = rng.integers(0, len(_SYLLABLES), size=n)
        words["".join(_SYLLABLES[s] for s in syll)] = None
    # Shorter words first, so the most frequent ranks get the short ones.
    return sorted(words, key=len)


def word_probabilities() -> np.ndarray:
    ranks = np.arange(1, vocab_words + 1, dtype=np.float64)
    p = ranks**-zipf_exponent
    return p / p.sum()


def frames(n: int, batch: int = 10_000, seed: int = corpus_seed) -> Iterator[FrameBatch]:
    """``n`` frames in batches of ``batch``, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    vocab = np.array(vocabulary(rng), dtype=object)
    p = word_probabilities()
    cdf = np.cumsum(p)
    func = np.array(_FUNCTION_WORDS, dtype=object)
    times = np.sort(rng.integers(start_ms, start_ms + year_ms, size=n))
    for first in range(0, n, batch):
        m = min(batch, n - first)
        lengths = rng.integers(frame_words_min, frame_words_max + 1, size=m)
        total = int(lengths.sum())
        ids = np.minimum(np.searchsorted(cdf, rng.random(total)), vocab_words - 1)
        words = vocab[ids]
        is_func = rng.random(total) < 0.25
        words[is_func] = func[rng.integers(0, len(func), size=int(is_func.sum()))]
        ends = np.cumsum(lengths)
        texts = [" ".join(words[e - ln : e]) for e, ln in zip(ends, lengths, strict=True)]
        tag_pick = rng.integers(0, len(TAGS), size=(m, 2))
        tag_count = rng.integers(0, 3, size=m)
        yield FrameBatch(
            first_doc=first,
            texts=texts,
            times_ms=times[first : first + m],
            namespaces=rng.integers(0, len(NAMESPACES), size=m),
            kinds=rng.choice(len(KINDS), size=m, p=[0.4, 0.3, 0.2, 0.05, 0.05]),
            importance=rng.random(m).astype(np.float32),
            tags=[
                tuple(TAGS[t] for t in row[:c]) for row, c in zip(tag_pick, tag_count, strict=True)
            ],
        )


@functools.cache
def _corpus_vocabulary() -> list[str]:
    return vocabulary(np.random.default_rng(corpus_seed))


def query_words(rng: np.random.Generator, n_words: int, frequent: bool = False) -> list[str]:
    """Query words as users pick them: ranks 50-20,000, or one of the 5 commonest first."""
    vocab = _corpus_vocabulary()
    if frequent:
        return [vocab[int(rng.integers(0, 5))]] + [
            vocab[int(rng.integers(50, 5000))] for _ in range(n_words - 1)
        ]
    return [vocab[int(rng.integers(50, 20_000))] for _ in range(n_words)]


if __name__ == "__main__":
    for b in frames(int(sys.argv[1]) if len(sys.argv) > 1 else 5, batch=5):
        for text in b.texts:
            print(text)
