"""Catalog: doc numbers, attribute masks and deletes, invariants checked after each change."""

from __future__ import annotations

import numpy as np

from memoryd.storage.catalog import Catalog, Filters


def build() -> Catalog:
    catalog = Catalog()
    rows = [
        ("a", 100, 0.9, "work", "fact", ["x", "y"]),
        ("b", 200, 0.2, "work", "note", ["x"]),
        ("c", 300, 0.5, "home", "fact", []),
        ("d", 400, 0.8, "home", "breakthrough", ["y"]),
    ]
    for seq, (fid, ts, imp, ns, kind, tags) in enumerate(rows, start=1):
        assert catalog.add(fid, seq, ts, imp, ns, kind, tags) == seq - 1
        catalog._check()
    return catalog


def docs(catalog: Catalog, filters: Filters) -> list[str]:
    return [catalog.ids[d] for d in np.flatnonzero(catalog.mask(filters))]


def test_masks_for_each_filter() -> None:
    catalog = build()
    assert docs(catalog, Filters()) == ["a", "b", "c", "d"]
    assert docs(catalog, Filters(namespace="home")) == ["c", "d"]
    assert docs(catalog, Filters(namespace="nowhere")) == []
    assert docs(catalog, Filters(kinds=("fact", "breakthrough"))) == ["a", "c", "d"]
    assert docs(catalog, Filters(kinds=("unknown",))) == []
    assert docs(catalog, Filters(tags=("x",))) == ["a", "b"]
    assert docs(catalog, Filters(tags=("x", "y"))) == ["a"]
    assert docs(catalog, Filters(since_ms=200, until_ms=400)) == ["b", "c"]
    assert docs(catalog, Filters(min_importance=0.6)) == ["a", "d"]


def test_deleted_docs_never_pass_a_mask() -> None:
    catalog = build()
    assert catalog.remove("b") == 1
    catalog._check()
    assert catalog.remove("b") is None
    assert docs(catalog, Filters()) == ["a", "c", "d"]
    assert docs(catalog, Filters(tags=("x",))) == ["a"]
    assert catalog.live == 3 and len(catalog) == 4


def test_columns_grow_past_initial_capacity() -> None:
    catalog = Catalog()
    for i in range(5000):
        catalog.add(f"id{i}", i + 1, i, 0.5, "ns", "note", [])
    catalog._check()
    assert docs(catalog, Filters(since_ms=4998)) == ["id4998", "id4999"]
    assert catalog.memory_bytes() > 0
