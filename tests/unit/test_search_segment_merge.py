"""Idle merges of keyword segments: computed aside, swapped in, answers unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from memoryd.storage.search import inverted as inverted_module
from memoryd.storage.search.inverted import InvertedIndex

WORDS = [f"w{i}" for i in range(40)]
QUERIES = [["w1"], ["w2", "w7"], ["w3", "w11", "w30"], ["w0", "w39"], ["w5", "absent"]]


def _texts(rng: np.random.Generator, count: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))) for _ in range(count)]


def _fill(indexes: list[InvertedIndex], rng: np.random.Generator, start: int, batches: int) -> int:
    """The same batches of 5 docs into each of ``indexes``; returns the next doc."""
    doc = start
    for _ in range(batches):
        texts = _texts(rng, 5)
        for index in indexes:
            index.add_batch(range(doc, doc + 5), texts)
        doc += 5
    return doc


def _fill_until_split(
    indexes: list[InvertedIndex], rng: np.random.Generator, start: int, segments: int = 3
) -> int:
    """Batches into each of ``indexes`` until the first has ``segments`` segments."""
    doc = start
    while indexes[0].segment_count < segments:
        doc = _fill(indexes, rng, doc, 1)
        assert doc < start + 1000
    return doc


def _answers(index: InvertedIndex) -> list[tuple[list[int], list[float]]]:
    out = []
    for terms in QUERIES:
        hits = index.search(terms, 25)
        out.append((hits.docs.tolist(), hits.scores.tolist()))
    return out


@pytest.fixture(autouse=True)
def _small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    # Seal every few batches, so that a few hundred docs make several segments.
    monkeypatch.setattr(inverted_module, "tail_postings_max", 40)


def test_merge_runs_beside_new_batches_and_changes_no_answer() -> None:
    rng = np.random.default_rng(1)
    merged, plain = InvertedIndex(), InvertedIndex()
    doc = _fill_until_split([merged, plain], rng, _fill([merged, plain], rng, 0, 60))
    merge = merged.start_merge()
    assert merge is not None
    # Batches keep coming while the merge runs: new segments seal and merge among
    # themselves, never into the ones under merge; deletes land meanwhile too.
    doc = _fill([merged, plain], rng, doc, 40)
    for index in (merged, plain):
        index.delete([3, 17, doc - 2])
    merge.run()
    before = merged.segment_count
    assert merged.finish_merge(merge)
    assert merged.segment_count == before - len(merge.segments) + 1
    merged._check()
    # No doc was deleted before the merge began, so df is untouched: answers are
    # the same to the bit as those of the index that never merged.
    assert _answers(merged) == _answers(plain)
    assert all(d not in (3, 17, doc - 2) for docs, _ in _answers(merged) for d in docs)


def test_merge_drops_postings_of_docs_deleted_before_it() -> None:
    rng = np.random.default_rng(2)
    merged, compacted = InvertedIndex(), InvertedIndex()
    _fill([merged, compacted], rng, 0, 60)
    for index in (merged, compacted):
        index.delete(list(range(0, 300, 4)))
    merge = merged.start_merge()
    assert merge is not None and merge.start == 0  # the later segments are large: all
    merge.run()
    assert merged.finish_merge(merge)
    assert merged.segment_count == 1
    compacted.compact()
    merged._check()  # df counts exactly the postings left
    assert np.array_equal(merged._df, compacted._df)
    assert _answers(merged) == _answers(compacted)


def test_a_few_new_docs_do_not_rewrite_the_large_segment() -> None:
    rng = np.random.default_rng(3)
    index = InvertedIndex()
    doc = _fill([index], rng, 0, 80)
    index.compact()
    large = index._sealed[0]
    doc = _fill_until_split([index], rng, doc)
    merge = index.start_merge()
    assert merge is not None and merge.start == 1
    merge.run()
    assert index.finish_merge(merge)
    assert index.segment_count == 2 and index._sealed[0] is large
    index._check()


def test_abandoned_or_failed_merges_change_nothing() -> None:
    rng = np.random.default_rng(4)
    index = InvertedIndex()
    _fill([index], rng, 0, 60)
    merge = index.start_merge()
    assert merge is not None
    assert index.start_merge() is None  # one at a time
    segments = list(index._sealed)
    assert not index.finish_merge(merge)  # never run: no result
    assert index._sealed == segments
    again = index.start_merge()
    assert again is not None  # released
    index.compact()  # abandons it
    again.run()
    assert not index.finish_merge(again)
    assert index.segment_count == 1
    index._check()


def test_nothing_to_merge() -> None:
    index = InvertedIndex()
    index.add_batch([0], ["one doc"])
    assert index.start_merge() is None  # the tail is sealed into the one segment
    assert index.segment_count == 1
