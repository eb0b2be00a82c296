"""FrameTable against a plain-dict model: any sequence of puts and deletes agrees,
from empty or from a restored table."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from memoryd.storage.frame_table import FrameTable

operations = st.lists(
    st.tuples(
        st.sampled_from(["put", "delete"]),
        st.integers(0, 15),  # which id
        st.integers(0, 50),  # timestamp
        st.sampled_from(["a", "b"]),
        st.sampled_from(["fact", "note"]),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(operations, st.integers(1, 6))
def test_table_matches_model(ops: list[tuple[str, int, int, str, str]], page: int) -> None:
    table = FrameTable()
    model: dict[str, tuple[int, int, str, str]] = {}  # id -> (ts, seq, ns, kind)
    _apply_each(table, model, ops, first_seq=1)
    _assert_orders_match(table, model, page)


@settings(max_examples=150, deadline=None)
@given(operations, operations, st.integers(1, 6))
def test_a_restored_table_then_changed_matches_model(
    before: list[tuple[str, int, int, str, str]],
    after: list[tuple[str, int, int, str, str]],
    page: int,
) -> None:
    # State as a checkpoint restores it (from_columns), then more puts and deletes:
    # restored frames are read from numpy columns, later ones from sorted lists.
    model: dict[str, tuple[int, int, str, str]] = {}
    for seq, (op, which, ts, ns, kind) in enumerate(before, start=1):
        if op == "put":
            model.setdefault(f"id{which}", (ts, seq, ns, kind))
        else:
            model.pop(f"id{which}", None)
    names, kinds = ["a", "b"], ["fact", "note"]
    ids = sorted(model, key=lambda k: -model[k][1])  # any order: from_columns sorts by seq
    table = FrameTable.from_columns(
        ids,
        np.array([model[k][1] for k in ids], dtype=np.int64),
        np.array([model[k][0] for k in ids], dtype=np.int64),
        np.array([names.index(model[k][2]) for k in ids], dtype=np.int64),
        names,
        np.array([kinds.index(model[k][3]) for k in ids], dtype=np.int64),
        kinds,
        (np.ones(len(ids), np.int64), np.zeros(len(ids), np.int64), np.ones(len(ids), np.int64)),
        0,
    )
    table._check()
    _apply_each(table, model, after, first_seq=len(before) + 1)
    _assert_orders_match(table, model, page)


def _apply_each(
    table: FrameTable,
    model: dict[str, tuple[int, int, str, str]],
    ops: list[tuple[str, int, int, str, str]],
    first_seq: int,
) -> None:
    """Apply ``ops`` to the table and the model alike, checking the table after each."""
    for seq, (op, which, ts, ns, kind) in enumerate(ops, start=first_seq):
        frame_id = f"id{which}"
        if op == "put":
            applied = table.apply_put(frame_id, seq, ts, ns, kind, 1, 0, 10)
            assert applied == (frame_id not in model)
            model.setdefault(frame_id, (ts, seq, ns, kind))
        else:
            assert table.apply_delete(frame_id) == (frame_id in model)
            model.pop(frame_id, None)
        table._check()


def _assert_orders_match(
    table: FrameTable, model: dict[str, tuple[int, int, str, str]], page: int
) -> None:
    """Every namespace and kind filter pages through the model's frames in (time, seq) order."""
    for ns in (None, "a", "b"):
        for kind in (None, "fact", "note"):
            expected = sorted(
                (v[0], v[1], k)
                for k, v in model.items()
                if (ns is None or v[2] == ns) and (kind is None or v[3] == kind)
            )
            got: list[str] = []
            cursor = None
            while True:
                result = table.range(
                    since_ms=None, until_ms=None, namespace=ns, kind=kind, limit=page, cursor=cursor
                )
                got += [table.id_at_key(s.key) for s in result.slots]
                if result.next_cursor is None:
                    break
                cursor = result.next_cursor
            assert got == [k for _, _, k in expected]
            newest = table.recent(namespace=ns, kind=kind, limit=1000, cursor=None)
            assert [table.id_at_key(s.key) for s in newest.slots] == got[::-1]
