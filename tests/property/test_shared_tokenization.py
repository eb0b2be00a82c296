"""One tokenization shared by every pass: each batched pass equals its per-text definition."""

from __future__ import annotations

import hashlib
import itertools
import random
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memoryd.storage.search import lexicon as lexicon_module
from memoryd.storage.search.embedding import HashingEmbedder, HashingSettings
from memoryd.storage.search.inverted import InvertedIndex
from memoryd.storage.search.lexicon import Lexicon, Tokens, lexicon_of
from memoryd.storage.search.significance import FACT_KINDS, analyze, analyze_tokens
from memoryd.storage.search.simhash import simhash, simhash_tokens
from memoryd.storage.search.text import DEFAULT_TOKENIZER, Tokenizer

# Pieces that exercise every signal: lexicon words, past tense, imperatives, digits,
# dates, step markers, other scripts, apostrophes, over-long runs, stop words.
PIECES = [
    "love", "because", "friend", "finally", "yesterday", "always", "went", "painted",
    "install", "Run", "how", "to", "the", "a", "2023", "12:30", "3.5", "1/2/24", "1.",
    "- step", "* item", "`code`", "$ ls", "!", "!!", "café", "東京", "Привет", "don't",
    "Caroline's", "o\u2019clock", "x" * 41, "internationalization", "²", "٣",
    "\uff46\uff55\uff4c\uff4c", "Parties", "hiking", "ok", "...", "-", "*",
]  # fmt: skip
texts = st.lists(
    st.one_of(
        st.lists(st.sampled_from(PIECES), max_size=30).flatmap(
            lambda words: st.sampled_from([" ", "\n", ", ", "\n  "]).map(
                lambda sep: sep.join(words)
            )
        ),
        st.text(max_size=60),
    ),
    min_size=1,
    max_size=12,
)


def split(tokens_values: np.ndarray, counts: np.ndarray) -> list[list[int]]:
    ends = np.cumsum(counts).tolist()
    values = tokens_values.tolist()
    return [values[end - c : end] for end, c in zip(ends, counts.tolist(), strict=True)]


@settings(max_examples=150, deadline=None)
@given(texts)
def test_tokens_give_the_tokenizers_words_and_terms(batch: list[str]) -> None:
    tokens = lexicon_of(DEFAULT_TOKENIZER).tokenize(batch)
    vocabulary = tokens.vocabulary
    kept = split(tokens.kept(), tokens.counts)
    term_ids = split(tokens.term_ids(), tokens.counts)
    word_ids = split(tokens.word_ids, tokens.counts)
    for text, ids, keep, terms in zip(batch, word_ids, kept, term_ids, strict=True):
        words = [vocabulary.words[i] for i, k in zip(ids, keep, strict=True) if k]
        assert words == DEFAULT_TOKENIZER.words(text)
        assert [vocabulary.terms[t] for t in terms if t] == DEFAULT_TOKENIZER.terms(text)


@settings(max_examples=150, deadline=None)
@given(texts)
def test_batched_simhash_and_significance_equal_each_texts(batch: list[str]) -> None:
    tokens = lexicon_of(DEFAULT_TOKENIZER).tokenize(batch)
    assert simhash_tokens(tokens).tolist() == [simhash(text) for text in batch]
    analysis = analyze_tokens(batch, tokens)
    for i, text in enumerate(batch):
        one = analyze(text)
        assert tuple(analysis.scores[i].tolist()) == one.significance.as_tuple()
        assert FACT_KINDS[int(analysis.fact_kinds[i])] == one.fact_kind


_MASK = (1 << 64) - 1
_PAIR = 0x9E3779B97F4A7C15


def _mix(h: int) -> int:
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & _MASK
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & _MASK
    return h ^ (h >> 31)


def reference_embedding(embedder: HashingEmbedder, text: str) -> np.ndarray:
    """The module docstring's features, text by text, in plain Python."""
    s = embedder.settings
    terms = embedder.tokenizer.terms(text)
    hashes = [
        int.from_bytes(
            hashlib.blake2b(t.encode(), digest_size=8, person=b"memoryd-w").digest(), "little"
        )
        or 1
        for t in terms
    ]
    pairs = [_mix((a * _PAIR + b) & _MASK) for a, b in itertools.pairwise(hashes)]
    grams = []
    for term in terms:
        padded = f"<{term}>"
        for n in range(s.ngram_min, s.ngram_max + 1):
            for at in range(len(padded) - n + 1):
                h = n
                for c in padded[at : at + n]:
                    h = _mix((h * _PAIR + ord(c)) & _MASK)
                grams.append(h)
    out = np.zeros(embedder.dim, dtype=np.float32)
    families = ((s.word_weight, hashes), (s.pair_weight, pairs), (s.ngram_weight, grams))
    for weight, family in families:
        counts = np.zeros(embedder.dim)
        for h in family:
            counts[(h >> 33) % embedder.dim] += 1 - 2 * (h & 1)
        norm = np.linalg.norm(counts)
        if norm:
            out += np.float32(weight) * (counts / norm).astype(np.float32)
    norm = np.linalg.norm(out)
    return out / norm if norm else out


@settings(max_examples=60, deadline=None)
@given(texts)
def test_batched_embedding_equals_the_per_text_definition(batch: list[str]) -> None:
    embedder = HashingEmbedder(HashingSettings(dim=64, ngram_min=2, ngram_max=4))
    vectors = embedder.embed(batch)
    for text, vector in zip(batch, vectors, strict=True):
        assert np.allclose(vector, reference_embedding(embedder, text), atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(st.lists(texts, min_size=1, max_size=4))
def test_keyword_index_from_tokens_equals_from_terms(batches: list[list[str]]) -> None:
    by_tokens, by_terms = InvertedIndex(), InvertedIndex()
    doc = 0
    for batch in batches:
        docs = list(range(doc, doc + len(batch)))
        doc += len(batch)
        by_tokens.add_tokens(docs, lexicon_of(DEFAULT_TOKENIZER).tokenize(batch))
        by_terms.add_terms(docs, DEFAULT_TOKENIZER.terms_batch(batch))
    by_tokens._check()
    (meta_a, a), (meta_b, b) = by_tokens.to_arrays(), by_terms.to_arrays()
    assert meta_a == meta_b
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), name


def test_tokens_select_some_texts() -> None:
    batch = ["one two", "", "three", "four five six"]
    tokens = lexicon_of(DEFAULT_TOKENIZER).tokenize(batch)
    picked = tokens.select([3, 0, 1])
    again = lexicon_of(DEFAULT_TOKENIZER).tokenize([batch[3], batch[0], batch[1]])
    assert picked.counts.tolist() == again.counts.tolist() == [3, 2, 0]
    assert picked.word_ids.tolist() == again.word_ids.tolist()


def test_a_full_vocabulary_starts_anew_and_old_tokens_stay_valid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lexicon_module, "lexicon_words_max", 8)
    lexicon = Lexicon(Tokenizer())
    first = lexicon.tokenize(["alpha beta gamma delta", "epsilon"])
    second = lexicon.tokenize(["zeta eta theta iota"])  # 5 + 4 words > 8: a new vocabulary
    assert lexicon.vocabularies == 2
    assert first.vocabulary is not second.vocabulary
    expected = ((first, "alpha beta gamma delta epsilon"), (second, "zeta eta theta iota"))
    for tokens, words in expected:
        assert [tokens.vocabulary.words[i] for i in tokens.word_ids.tolist()] == words.split()
        assert simhash_tokens(tokens).shape == (tokens.counts.shape[0],)
    # The keyword index keeps its term ids across the change of vocabulary.
    tokenizer = lexicon.tokenizer
    by_tokens, by_terms = InvertedIndex(tokenizer=tokenizer), InvertedIndex(tokenizer=tokenizer)
    third = lexicon.tokenize(["alpha zeta", "beta"])
    for docs, tokens, texts in (
        ([0, 1], first, ["alpha beta gamma delta", "epsilon"]),
        ([2], second, ["zeta eta theta iota"]),
        ([3, 4], third, ["alpha zeta", "beta"]),
    ):
        by_tokens.add_tokens(docs, tokens)
        by_terms.add_terms(docs, tokenizer.terms_batch(texts))
    assert by_tokens.to_arrays()[0] == by_terms.to_arrays()[0]
    for name, array in by_tokens.to_arrays()[1].items():
        assert np.array_equal(array, by_terms.to_arrays()[1][name]), name


def test_threads_tokenizing_at_once_get_consistent_ids() -> None:
    lexicon = Lexicon(Tokenizer())
    words = [f"w{i}" for i in range(3000)]
    results: list[tuple[list[str], Tokens]] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(40):
            batch = [" ".join(rng.sample(words, 20)) for _ in range(10)]
            results.append((batch, lexicon.tokenize(batch)))

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 160
    for batch, tokens in results:
        got = [tokens.vocabulary.words[i] for i in tokens.word_ids.tolist()]
        assert got == " ".join(batch).split()
    seen = {word for batch, _ in results for text in batch for word in text.split()}
    assert len(lexicon.vocabulary) == len(set(lexicon.vocabulary.words)) == len(seen)


def test_tokens_of_another_tokenizer_are_refused() -> None:
    tokens = lexicon_of(Tokenizer(stemming=False)).tokenize(["some words"])
    with pytest.raises(ValueError, match="another tokenizer"):
        InvertedIndex().add_tokens([0], tokens)
    with pytest.raises(ValueError, match="another tokenizer"):
        HashingEmbedder().embed_tokens(tokens)


def test_simhash_counts_every_bit_of_the_longest_texts() -> None:
    # The same shingle throughout: each of its set bits is counted 254 times in one lane.
    texts = ["same " * 300, "two words " * 150, "one", ""]
    tokens = lexicon_of(DEFAULT_TOKENIZER).tokenize(texts)
    assert simhash_tokens(tokens).tolist() == [simhash(text) for text in texts]


def test_lexicon_stats_count_words_and_new_ones() -> None:
    lexicon = Lexicon(Tokenizer())
    lexicon.tokenize(["red car red", "blue car"])
    stats = lexicon.stats()
    assert stats["lexicon_words"] == 3 and stats["lexicon_terms"] == 3
    assert stats["lexicon_hit_ratio"] == round(1 - 3 / 5, 4)
    assert stats["lexicon_vocabularies"] == 1
    assert stats["lexicon_bytes"] > 0 and stats["lexicon_words_max"] >= 3


def test_a_column_computes_each_word_once() -> None:
    lexicon = Lexicon(Tokenizer())
    asked: list[list[str]] = []

    def lengths(words: list[str]) -> np.ndarray:
        asked.append(words)
        return np.array([len(w) for w in words], dtype=np.int64)

    first = lexicon.tokenize(["alpha beta", "alpha"])
    column = first.vocabulary.word_column("test.len", np.int64, lengths, first.words_known)
    assert column[first.word_ids].tolist() == [5, 4, 5]
    second = lexicon.tokenize(["beta gamma"])
    column = second.vocabulary.word_column("test.len", np.int64, lengths, second.words_known)
    assert column[second.word_ids].tolist() == [4, 5]
    assert asked == [["alpha", "beta"], ["gamma"]]  # only new words, in id order
