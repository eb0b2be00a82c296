"""OrderKeys against a plain sorted list: any adds and removes, any ranges, both directions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memoryd.storage import order_keys
from memoryd.storage.order_keys import OrderKeys


@pytest.fixture(autouse=True)
def small_sublists(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Sublists of at most 8 keys: splits and merges happen within a few dozen operations.
    monkeypatch.setattr(order_keys, "SUBLIST_KEYS_MAX", 8)
    monkeypatch.setattr(order_keys, "SUBLIST_KEYS_MERGE", 4)
    yield


operations = st.lists(
    st.tuples(
        st.sampled_from(["append", "add", "add", "remove"]),  # append: after every key
        st.integers(0, 60),
    ),
    max_size=150,
)
bound = st.none() | st.integers(-5, 130)


@settings(max_examples=300, deadline=None)
@given(operations, bound, bound)
def test_order_keys_match_a_sorted_list(
    ops: list[tuple[str, int]], low: int | None, high: int | None
) -> None:
    keys = OrderKeys()
    model: set[int] = set()
    for op, value in ops:
        if op == "append":
            value = max(model, default=0) + 1 + value % 3
        if op == "remove":
            if value in model:
                keys.remove(value)
                model.discard(value)
            else:
                with pytest.raises(KeyError):
                    keys.remove(value)
        elif value not in model:
            keys.add(value)
            model.add(value)
        keys._check()
        assert len(keys) == len(model)
    for value in range(-1, 200):
        assert (value in keys) == (value in model)
    expected = [
        k for k in sorted(model) if (low is None or k >= low) and (high is None or k <= high)
    ]
    assert list(keys.irange(low, high, reverse=False)) == expected
    assert list(keys.irange(low, high, reverse=True)) == expected[::-1]


def test_in_order_adds_fill_sublists_then_start_new_ones() -> None:
    keys = OrderKeys()
    for value in range(20):
        keys.add(value)
    keys._check()
    assert [len(sub) for sub in keys._lists] == [8, 8, 4]
    keys.add(-1)  # before everything: into the first, full sublist, which splits
    keys._check()
    assert [len(sub) for sub in keys._lists] == [4, 5, 8, 4]
    assert list(keys.irange(None, None, reverse=False)) == list(range(-1, 20))


def test_a_short_sublist_merges_with_a_neighbour_that_has_room() -> None:
    keys = OrderKeys()
    for value in range(16):
        keys.add(value)
    for value in (8, 9, 10, 11, 12):  # the second sublist falls to 3 keys: below 4
        keys.remove(value)
        keys._check()
    assert [len(sub) for sub in keys._lists] == [8, 3]  # 8 + 3 do not fit in one
    for value in (0, 1, 2):
        keys.remove(value)
        keys._check()
    assert [len(sub) for sub in keys._lists] == [5, 3]  # 5 is not short
    keys.remove(13)  # now 2: below 4, and 5 + 2 fit in one
    keys._check()
    assert [len(sub) for sub in keys._lists] == [7]
    assert list(keys.irange(None, None, reverse=True)) == [15, 14, 7, 6, 5, 4, 3]
