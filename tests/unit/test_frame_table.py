"""FrameTable: ids, locations and chronological order, with invariants checked after each change."""

from __future__ import annotations

import numpy as np
import pytest

from memoryd.storage.frame_table import CursorError, FrameTable


def put(
    table: FrameTable, frame_id: str, seq: int, ts: int, ns: str = "a", kind: str = "note"
) -> bool:
    applied = table.apply_put(frame_id, seq, ts, ns, kind, 1, seq * 100, 100)
    table._check()
    return applied


def ids(table: FrameTable, slots: list) -> list[str]:  # type: ignore[type-arg]
    return [table.id_at_key(slot.key) for slot in slots]


def test_put_get_delete() -> None:
    table = FrameTable()
    assert put(table, "x", 1, 1000)
    assert not put(table, "x", 2, 2000)  # a live duplicate changes nothing
    slot = table.get("x")
    assert slot is not None and slot.seq == 1 and slot.offset == 100
    assert table.apply_delete("x")
    table._check()
    assert table.get("x") is None and "x" not in table and len(table) == 0
    assert not table.apply_delete("x")
    assert table.frames_deleted == 1


def test_recent_is_newest_first_with_same_millisecond_in_log_order() -> None:
    table = FrameTable()
    for seq, ts in enumerate([5, 1, 5, 3], start=1):
        put(table, f"f{seq}", seq, ts)
    page = table.recent(namespace=None, kind=None, limit=10, cursor=None)
    assert ids(table, page.slots) == ["f3", "f1", "f4", "f2"]
    assert page.next_cursor is None


def test_recent_pages_with_cursor_cover_everything_once() -> None:
    table = FrameTable()
    for seq in range(1, 26):
        put(table, f"f{seq}", seq, 1000 + seq)
    seen: list[str] = []
    cursor = None
    while True:
        page = table.recent(namespace=None, kind=None, limit=7, cursor=cursor)
        seen += ids(table, page.slots)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"f{seq}" for seq in range(25, 0, -1)]


def test_filters_by_namespace_and_kind() -> None:
    table = FrameTable()
    put(table, "a1", 1, 10, "a", "fact")
    put(table, "b1", 2, 20, "b", "fact")
    put(table, "a2", 3, 30, "a", "note")
    put(table, "b2", 4, 40, "b", "note")

    def recent(ns: str | None, kind: str | None) -> list[str]:
        return ids(table, table.recent(namespace=ns, kind=kind, limit=10, cursor=None).slots)

    assert recent("a", None) == ["a2", "a1"]
    assert recent(None, "fact") == ["b1", "a1"]
    assert recent("b", "note") == ["b2"]
    assert recent("zzz", None) == []
    assert table.namespaces() == {"a": 2, "b": 2}


def test_range_is_oldest_first_since_inclusive_until_exclusive() -> None:
    table = FrameTable()
    for seq, ts in enumerate([100, 200, 300, 400], start=1):
        put(table, f"f{ts}", seq, ts)
    page = table.range(since_ms=200, until_ms=400, namespace=None, kind=None, limit=10, cursor=None)
    assert ids(table, page.slots) == ["f200", "f300"]
    first = table.range(
        since_ms=None, until_ms=None, namespace=None, kind=None, limit=2, cursor=None
    )
    assert ids(table, first.slots) == ["f100", "f200"] and first.next_cursor is not None
    rest = table.range(
        since_ms=None, until_ms=None, namespace=None, kind=None, limit=2, cursor=first.next_cursor
    )
    assert ids(table, rest.slots) == ["f300", "f400"] and rest.next_cursor is None


@pytest.mark.parametrize("cursor", ["", "abc", "-1", "1" * 40, "١٢٣"])
def test_invalid_cursor_is_rejected(cursor: str) -> None:
    table = FrameTable()
    put(table, "x", 1, 1)
    with pytest.raises(CursorError):
        table.recent(namespace=None, kind=None, limit=5, cursor=cursor)


def test_from_columns_in_any_order_equals_applying_each_put() -> None:
    rng = np.random.default_rng(4)
    n = 300
    namespaces, kinds = ["a", "b", "c"], ["fact", "note"]
    seqs = np.arange(1, n + 1, dtype=np.int64) * 3
    times = rng.integers(0, 50, size=n).astype(np.int64)  # many frames share a millisecond
    ns_codes = rng.integers(0, 3, size=n).astype(np.int64)
    kind_codes = rng.integers(0, 2, size=n).astype(np.int64)
    ids_ = [f"id{i}" for i in range(n)]
    applied = FrameTable()
    for i in range(n):
        applied.apply_put(
            ids_[i],
            int(seqs[i]),
            int(times[i]),
            namespaces[ns_codes[i]],
            kinds[kind_codes[i]],
            1,
            i * 10,
            10,
        )
    shuffled = rng.permutation(n)  # a catalog's docs need not follow seq order
    segments, offsets, lengths = np.ones(n, np.int64), np.arange(n) * 10, np.full(n, 10)
    restored = FrameTable.from_columns(
        [ids_[i] for i in shuffled],
        seqs[shuffled],
        times[shuffled],
        ns_codes[shuffled],
        namespaces,
        kind_codes[shuffled],
        kinds,
        (segments[shuffled], offsets[shuffled], lengths[shuffled]),
        frames_deleted=0,
    )
    restored._check()
    for frame_id in ids_:
        assert restored.get(frame_id) == applied.get(frame_id)
    for ns in (None, *namespaces):
        for kind in (None, *kinds):
            mine = restored.recent(namespace=ns, kind=kind, limit=n, cursor=None).slots
            theirs = applied.recent(namespace=ns, kind=kind, limit=n, cursor=None).slots
            assert mine == theirs
    assert restored.apply_delete("id7")
    assert restored.apply_put("id7", 10_000, 5, "a", "note", 2, 0, 9)
    restored._check()
    with pytest.raises(ValueError):
        restored.apply_put("late", 9_999, 5, "a", "note", 2, 0, 9)  # seqs only increase
    with pytest.raises(ValueError):
        FrameTable.from_columns(
            ["x", "y"],
            np.array([4, 4]),
            np.array([1, 2]),
            np.array([0, 0]),
            ["a"],
            np.array([0, 0]),
            ["note"],
            (np.ones(2, np.int64), np.ones(2, np.int64), np.ones(2, np.int64)),
            0,
        )


def test_deleting_most_restored_frames_trims_the_restored_order() -> None:
    n = 1000
    names = [f"id{i}" for i in range(n)]
    table = FrameTable.from_columns(
        names,
        np.arange(1, n + 1, dtype=np.int64),
        np.arange(n, dtype=np.int64) * 10,
        np.zeros(n, dtype=np.int64),
        ["a"],
        np.zeros(n, dtype=np.int64),
        ["note"],
        (np.ones(n, np.int64), np.zeros(n, np.int64), np.ones(n, np.int64)),
        0,
    )
    for i in range(0, 900):  # like a large forget: every frame but the newest hundred
        assert table.apply_delete(f"id{i}")
    table._check()
    # Reads no longer walk the deleted rows: the restored order dropped them.
    assert table._all.base_rows.shape[0] < 600
    page = table.recent(namespace="a", kind="note", limit=5, cursor=None)
    assert [slot.seq for slot in page.slots] == [1000, 999, 998, 997, 996]
    oldest = table.range(
        since_ms=None, until_ms=None, namespace=None, kind=None, limit=2, cursor=None
    )
    assert [slot.seq for slot in oldest.slots] == [901, 902]
    assert table.namespaces() == {"a": 100}


def test_from_columns_takes_a_given_id_to_row_map_only_when_it_fits() -> None:
    n = 50
    names = [f"id{i}" for i in range(n)]

    def restored(ids: list[str], row_of: dict[str, int] | None) -> FrameTable:
        seqs = np.array([int(i[2:]) + 1 for i in ids], dtype=np.int64)
        table = FrameTable.from_columns(
            ids,
            seqs,
            seqs * 7,
            np.zeros(n, dtype=np.int64),
            ["a"],
            np.zeros(n, dtype=np.int64),
            ["note"],
            (np.ones(n, np.int64), np.zeros(n, np.int64), np.ones(n, np.int64)),
            0,
            row_of=row_of,
        )
        table._check()
        return table

    expected = restored(names, None).slots()
    given = {name: i for i, name in enumerate(names)}
    table = restored(names, given)
    assert table.slots() == expected
    assert table._row_of is not given  # a copy: the table changes its own
    assert table.apply_delete("id3") and "id3" in given
    # In another order, or not matching, the map is not used.
    assert restored(names[::-1], given).slots() == expected
    wrong = dict(given, id0=1, id1=0)
    assert restored(names, wrong).slots() == expected


def test_stored_id_is_the_tables_own_string_for_a_live_frame() -> None:
    table = FrameTable()
    held = "".join(["ab"] * 16)
    put(table, held, 1, 1000)
    asked = "".join(["a", "b"] * 16)  # equal, another object
    assert asked == held and asked is not held
    assert table.stored_id(asked) is held
    table.apply_delete(held)
    assert table.stored_id(asked) is asked  # not live: the caller's own


@pytest.mark.parametrize("code_max", [3, 300, 70_000])
def test_groups_give_each_codes_positions_in_order(code_max: int) -> None:
    from memoryd.storage.frame_table import _groups

    rng = np.random.default_rng(code_max)
    codes = rng.integers(0, code_max, 5000).astype(np.int64)
    codes[:3] = code_max - 1  # the largest code is present
    got = {code: at.tolist() for code, at in _groups(codes)}
    expected = {int(c): np.flatnonzero(codes == c).tolist() for c in np.unique(codes)}
    assert got == expected
    assert list(_groups(np.zeros(0, dtype=np.int64))) == []
