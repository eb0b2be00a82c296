"""The tokenizer: normalization, word runs in any script, stop words, stemming, queries."""

from __future__ import annotations

import numpy as np
import pytest

from memoryd.storage.search.text import (
    DEFAULT_TOKENIZER,
    Tokenizer,
    contains_phrase,
    normalize,
    stem,
    token_chars_max,
)


def test_normalize_casefolds_and_applies_nfkc() -> None:
    assert normalize("Straße \uff21\uff22\uff23") == "strasse abc"
    assert normalize("ﬁle") == "file"


def test_words_keep_order_and_fold_apostrophes() -> None:
    assert DEFAULT_TOKENIZER.words("Don't STOP, Caroline's car!") == [
        "dont",
        "stop",
        "carolines",
        "car",
    ]
    assert DEFAULT_TOKENIZER.words("o\u2019clock") == ["oclock"]


def test_words_of_other_scripts() -> None:
    assert DEFAULT_TOKENIZER.words("Привет, мир") == ["привет", "мир"]
    assert DEFAULT_TOKENIZER.words("東京に") == ["東", "京", "に"]
    assert DEFAULT_TOKENIZER.words("café 42") == ["café", "42"]


def test_terms_drop_stop_words_and_stem() -> None:
    assert DEFAULT_TOKENIZER.terms("The painters were painting the parties") == [
        "painter",
        "paint",
        "parti",
    ]


def test_ascii_and_unicode_paths_agree() -> None:
    text = "Caroline's friends don't like running in 2023"
    assert DEFAULT_TOKENIZER.terms(text + " é") == [*DEFAULT_TOKENIZER.terms(text), "é"]


def test_over_long_runs_are_dropped() -> None:
    blob = "x" * (token_chars_max + 1)
    assert DEFAULT_TOKENIZER.terms(f"keep {blob} words") == ["keep", "word"]
    assert DEFAULT_TOKENIZER.words(blob) == []


def test_terms_batch_matches_terms() -> None:
    texts = ["The red car", "", "Привет мир", "a an the", "Running dogs ran"]
    batch = DEFAULT_TOKENIZER.terms_batch(texts)
    assert batch.counts.sum() == len(batch.terms)
    ends = np.cumsum(batch.counts)
    for text, end, count in zip(texts, ends, batch.counts, strict=True):
        assert [t for t in batch.terms[end - count : end] if t] == DEFAULT_TOKENIZER.terms(text)


@pytest.mark.parametrize(
    ("forms", "same"),
    [
        (["paint", "paints", "painted", "painting"], True),
        (["party", "parties"], True),
        (["hike", "hiking", "hiked"], True),
        (["run", "running"], True),
        (["painter", "paint"], False),
        (["fall", "falling"], True),
    ],
)
def test_stemmer_conflates_inflections(forms: list[str], same: bool) -> None:
    assert (len({stem(f) for f in forms}) == 1) is same


def test_stemmer_leaves_short_numeric_and_non_ascii_words() -> None:
    assert stem("gas") == "gas"
    assert stem("2023") == "2023"
    assert stem("niños") == "niños"


def test_without_stemming_or_stop_words() -> None:
    tok = Tokenizer(stop_words=(), stemming=False)
    assert tok.terms("The parties") == ["the", "parties"]


def test_parse_query_terms_and_phrases() -> None:
    q = DEFAULT_TOKENIZER.parse_query("Where is the red car?")
    assert q.terms == ("red", "car")
    assert q.phrases == (("where", "is", "the", "red", "car"),)
    q = DEFAULT_TOKENIZER.parse_query('find "red car" now')
    assert q.phrases == (("red", "car"),)
    assert DEFAULT_TOKENIZER.parse_query("car").phrases == ()


def test_contains_phrase() -> None:
    words = ["a", "red", "car", "here"]
    assert contains_phrase(words, ("red", "car"))
    assert not contains_phrase(words, ("car", "red"))
    assert contains_phrase(words, ())
