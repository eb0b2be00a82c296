"""Catalog: doc numbers, attribute masks and deletes, invariants checked after each change."""

from __future__ import annotations

import numpy as np
import pytest

from memoryd.storage.catalog import Catalog, Filters, NewDocs
from memoryd.storage.search.significance import FACT_KINDS


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


def test_add_batch_equals_adding_one_by_one() -> None:
    rows = [
        (f"id{i:04d}", i + 1, 1000 + i, (i % 10) / 10, f"ns{i % 3}", f"kind{i % 4}",
         [f"t{i % 5}"] * (i % 2), (7, 100 * i, 60 + i), i % 7 == 0, i % 3,
         tuple((i * j % 11) / 11 for j in range(6)), (i * 0x9E3779B97F4A7C15) % 2**64)
        for i in range(1500)
    ]  # fmt: skip
    one_by_one = Catalog()
    for fid, seq, ts, imp, ns, kind, tags, loc, private, fk, sig, sh in rows:
        one_by_one.add(
            fid, seq, ts, imp, ns, kind, tags, location=loc, private=private,
            fact_kind=fk, significance=sig, simhash=sh,
        )  # fmt: skip
    batched = Catalog()
    for lo, hi in ((0, 1), (1, 700), (700, 700), (700, 1500)):
        part = rows[lo:hi]
        docs = batched.add_batch(NewDocs(*([row[j] for row in part] for j in range(12))))
        assert list(docs) == list(range(lo, hi))
        batched._check()
    (meta_a, a), (meta_b, b) = one_by_one.to_arrays(), batched.to_arrays()
    assert meta_a == meta_b and a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name
    assert batched.doc_of == one_by_one.doc_of


def test_restored_ids_round_trip_and_damage_is_refused() -> None:
    catalog = Catalog()
    ids = [f"{i:032x}" for i in (7, 2**100, 3, 2**127 + 5)]
    for seq, fid in enumerate(ids, start=1):
        catalog.add(fid, seq, 100 * seq, 0.5, "ns", "fact", [], expires_at_ms=10_000 + seq)
    every_doc_live = Catalog.from_arrays(*catalog.to_arrays())
    assert every_doc_live.doc_of == {fid: doc for doc, fid in enumerate(ids)}
    catalog.remove(ids[1])
    assert catalog.expires_at_ms == {0: 10_001, 2: 10_003, 3: 10_004}  # dead docs drop out
    meta, arrays = catalog.to_arrays()
    restored = Catalog.from_arrays(meta, arrays)
    restored._check()
    assert restored.ids == ids
    assert restored.doc_of == {ids[0]: 0, ids[2]: 2, ids[3]: 3}
    assert restored.expires_at_ms == catalog.expires_at_ms
    assert Catalog.from_arrays(*Catalog().to_arrays()).ids == []

    broken = arrays["catalog.ids"].copy()
    broken.view(np.uint8)[40] = ord("\n")
    with pytest.raises(ValueError, match="line break"):
        Catalog.from_arrays(meta, {**arrays, "catalog.ids": broken})
    short = arrays["catalog.ids"].view(np.uint8)[:-1].copy()
    with pytest.raises(ValueError, match="disagree"):
        Catalog.from_arrays(meta, {**arrays, "catalog.ids": short})


def test_annotations_of_many_docs_equal_each_doc_read_from_its_columns() -> None:
    catalog = Catalog()
    for i in range(40):
        catalog.add(
            f"id{i}", i + 1, 1000 + i, 0.5, "ns", "note", [],
            fact_kind=i % 4, significance=tuple((i * j % 13) / 13 for j in range(6)),
        )  # fmt: skip
    docs = [37, 0, 5, 5, 12]
    expected = [
        (
            {name: float(column.view()[d]) for name, column in catalog.significance.items()},
            FACT_KINDS[int(catalog.fact_kind.view()[d])],
        )
        for d in docs
    ]
    assert catalog.annotations(docs) == expected
    assert len({kind for _, kind in expected}) > 1 and expected[0][0] != expected[1][0]
    assert catalog.annotations([]) == []


def test_tag_filters_answer_alike_after_a_round_trip_and_more_adds() -> None:
    catalog = build()
    restored = Catalog.from_arrays(*catalog.to_arrays())
    for tags in (("x",), ("y",), ("x", "y"), ("absent",)):
        assert docs(restored, Filters(tags=tags)) == docs(catalog, Filters(tags=tags)), tags
    for target in (catalog, restored):  # restored tag lists keep growing
        target.add("e", 5, 500, 0.1, "home", "note", ["x", "z"])
        target._check()
    assert docs(restored, Filters(tags=("x",))) == ["a", "b", "e"]
    assert docs(restored, Filters(tags=("z",))) == ["e"]
    assert restored.to_arrays()[1]["catalog.tag_docs"].tolist() == (
        catalog.to_arrays()[1]["catalog.tag_docs"].tolist()
    )
