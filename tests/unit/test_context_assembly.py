"""Fitting a context into a token budget, and the documented token approximation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memoryd.daemon.context_op import assemble
from memoryd.daemon.tokens import APPROXIMATION, TokenCounter, approximate_tokens

APPROX = TokenCounter(APPROXIMATION, approximate_tokens)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("   \n\t", 0),
        ("the", 1),
        ("memory", 2),
        ("the memory daemon", 5),
        ("2026-05-07", 5),  # 2026 - 05 - 07
        ("café", 2),  # caf + é
        ("東京", 2),
        ("🐍!", 2),
    ],
)
def test_approximation_is_the_documented_rule(text: str, tokens: int) -> None:
    assert approximate_tokens(text) == tokens


def _item(n: int, words: int) -> tuple[str, dict[str, object]]:
    return " ".join(["word"] * words), {"kind": "frame", "section": "recent", "id": str(n)}


def test_items_go_in_order_and_smaller_ones_fill_what_is_left() -> None:
    candidates = [("core_memory", [_item(0, 3)]), ("recent_memories", [_item(1, 50), _item(2, 2)])]
    # Each section's tags cost about 15 tokens here: 16 + 17 fit in 40, the 50 words do not.
    text, tokens, included, omitted = assemble(candidates, 40, APPROX)
    assert [entry["id"] for entry in included] == ["0", "2"]
    assert omitted == 1
    assert tokens == approximate_tokens(text) <= 40
    assert text.startswith("<core_memory>\nword word word\n</core_memory>\n")
    assert "<recent_memories>\nword word\n</recent_memories>" in text


def test_an_empty_section_has_no_tags_and_nothing_fits_in_one_token() -> None:
    text, tokens, included, omitted = assemble([("core_memory", [_item(0, 1)])], 1, APPROX)
    assert (text, tokens, included, omitted) == ("", 0, [], 1)


@given(
    st.lists(st.lists(st.integers(1, 30), max_size=6), min_size=1, max_size=3),
    st.integers(1, 200),
)
def test_never_over_budget_whatever_the_sizes(sizes: list[list[int]], budget: int) -> None:
    candidates = [
        (f"s{i}", [_item(10 * i + j, words) for j, words in enumerate(section)])
        for i, section in enumerate(sizes)
    ]
    text, tokens, included, omitted = assemble(candidates, budget, APPROX)
    assert tokens == approximate_tokens(text) <= budget
    assert len(included) + omitted == sum(len(section) for section in sizes)


def test_a_tokenizer_whose_counts_do_not_add_up_is_trimmed_to_fit() -> None:
    # Counts each part as 1 token, but the whole text by its length: parts "fit", the whole not.
    skewed = TokenCounter("skewed", lambda text: len(text) // 4 if len(text) > 40 else 1)
    candidates = [("recent_memories", [_item(n, 3) for n in range(10)])]
    text, tokens, included, omitted = assemble(candidates, 30, skewed)
    assert tokens <= 30 and tokens == skewed.count(text)
    assert included and omitted == 10 - len(included)
