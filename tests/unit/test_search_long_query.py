"""A query over the scored-term budget keeps its most informative terms, wherever they are."""

from __future__ import annotations

from memoryd.storage.search import InvertedIndex
from memoryd.storage.search.inverted import query_terms_max


def test_rare_terms_at_the_end_of_a_long_query_still_count() -> None:
    index = InvertedIndex()
    common = " ".join(f"common{i}" for i in range(query_terms_max + 10))
    index.add_batch([0, 1, 2], [common, common + " zebra quokka", common])
    terms = index.tokenizer.parse_query(
        " ".join(f"unknown{i}" for i in range(500)) + " " + common + " zebra quokka"
    ).terms
    assert len(terms) > query_terms_max
    scored = index.scored_term_ids(terms)
    assert len(scored) == query_terms_max
    assert set(index.term_ids(index.tokenizer.terms("zebra quokka"))) <= set(scored)
    hits = index.search(terms, k=3)
    assert int(hits.docs[0]) == 1
    index._check()
