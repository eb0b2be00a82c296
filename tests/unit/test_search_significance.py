"""Significance scores, fact kinds, SimHash and the near-duplicate index."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from memoryd.storage.search.significance import classify_fact_kind, significance
from memoryd.storage.search.simhash import (
    NearDuplicateIndex,
    hamming,
    near_bits_max,
    simhash,
    simhash_batch,
)


def test_scores_are_in_range_and_deterministic() -> None:
    texts = ["", "!!!", "I finally solved it!! So happy with my team.", "x " * 500]
    for t in texts:
        s = significance(t).as_dict()
        assert len(s) == 6
        assert all(0.0 <= v <= 1.0 for v in s.values())
        assert s == significance(t).as_dict()


def test_scores_follow_their_signals() -> None:
    assert significance("I love this, so happy!").emotional_resonance > 0.5
    assert significance("Finally realized why: breakthrough").breakthrough_factor > 0.5
    assert significance("Meeting on 2024-05-01 at 10:30 tomorrow").temporal_relevance > 0.5
    assert significance("my sister and my mom").relationship_depth > 0.5
    assert significance("I always do this every day").pattern_strength > 0.5
    assert significance("Paris is in France").emotional_resonance == 0.0


def test_fact_kinds() -> None:
    assert classify_fact_kind("To deploy: 1. run make\n2. then install the wheel") == "procedural"
    assert classify_fact_kind("Yesterday I went to the beach with my sister") == "episodic"
    assert classify_fact_kind("Paris is the capital of France") == "declarative"
    assert classify_fact_kind("") == "declarative"


def test_simhash_near_and_far() -> None:
    base = "the quick brown fox jumps over the lazy dog near the river bank today"
    assert simhash(base) == simhash(base.upper())
    assert hamming(simhash(base), simhash(base.replace("today", "tonight"))) <= near_bits_max
    assert hamming(simhash(base), simhash("quarterly tax forms are due in april")) > 10
    assert simhash("") == 0


@settings(max_examples=30, deadline=None)
@given(
    hashes=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=40),
    flips=st.lists(st.integers(0, 63), max_size=near_bits_max),
    seed=st.integers(0, 1000),
)
def test_near_duplicate_index_matches_brute_force(
    hashes: list[int], flips: list[int], seed: int
) -> None:
    index = NearDuplicateIndex()
    for doc, h in enumerate(hashes):
        index.add(doc, h)
    rng = random.Random(seed)
    removed = set(rng.sample(range(len(hashes)), k=len(hashes) // 3))
    for doc in removed:
        assert index.remove(doc)
    index._check()
    probe = hashes[rng.randrange(len(hashes))]
    for bit in flips:
        probe ^= 1 << bit
    live = [(hamming(probe, h), d) for d, h in enumerate(hashes) if d not in removed]
    within = [x for x in live if x[0] <= near_bits_max]
    expected = None if not within else (min(within)[1], min(within)[0])
    assert index.nearest(probe) == expected
    docs, hs = index.to_arrays()
    assert NearDuplicateIndex.from_arrays(docs, hs).nearest(probe) == expected


def test_simhash_batch_matches_one_by_one_and_bounds_long_texts() -> None:
    from memoryd.storage.search.simhash import simhash_batch, simhash_words_max

    texts = ["", "one", "one two", "one two three", "a b c d e f g", "x " * 10]
    assert simhash_batch(texts).tolist() == [simhash(t) for t in texts]
    head = " ".join(f"w{i}" for i in range(simhash_words_max))
    assert simhash(head + " tail words") == simhash(head + " other ending")


def test_a_lone_texts_simhash_equals_its_hash_within_a_batch() -> None:
    rng = random.Random(11)
    words = ["harbour", "light", "keeper", "ferry", "dawn", "rope", "gull", "tide", "é", "🌈"]
    texts = ["", "one", "two words", "exactly three words"] + [
        " ".join(rng.choice(words) for _ in range(rng.randint(1, 300))) for _ in range(200)
    ]
    together = simhash_batch(texts).tolist()
    alone = [int(simhash_batch([text])[0]) for text in texts]
    assert alone == together


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(st.lists(st.integers(0, 2**64 - 1), max_size=12), min_size=1, max_size=8),
    removals=st.lists(st.integers(0, 100), max_size=10),
    docs_max=st.one_of(st.none(), st.integers(1, 30)),
)
def test_near_duplicate_add_batch_equals_adding_one_by_one(
    batches: list[list[int]], removals: list[int], docs_max: int | None
) -> None:
    one_by_one, batched = NearDuplicateIndex(docs_max), NearDuplicateIndex(docs_max)
    one_by_one.settle_docs_min = batched.settle_docs_min = 8  # settles happen in the test
    doc = 0
    for i, hashes in enumerate(batches):
        docs = list(range(doc, doc + len(hashes)))
        doc += len(hashes)
        for d, h in zip(docs, hashes, strict=True):
            one_by_one.add(d, h)
        batched.add_batch(docs, hashes)
        if i < len(removals) and removals[i] < doc:
            assert one_by_one.remove(removals[i]) == batched.remove(removals[i])
        batched._check()
    assert sorted(zip(*one_by_one.to_arrays(), strict=True)) == sorted(
        zip(*batched.to_arrays(), strict=True)
    )
    for hashes in batches:
        for h in hashes:
            assert batched.nearest(h ^ 1) == one_by_one.nearest(h ^ 1)
