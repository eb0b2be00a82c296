"""``sorted_unique`` is ``np.unique`` (distinct values, increasing, same dtype)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from memoryd.storage.search.arrays import sorted_unique

dtypes = st.sampled_from([np.int64, np.uint32, np.int32, np.float32])


@given(st.lists(st.integers(0, 2**31 - 1), max_size=300), dtypes, st.booleans())
def test_sorted_unique_equals_numpy_unique(values: list[int], dtype: type, small: bool) -> None:
    array = np.asarray([v % 7 if small else v for v in values], dtype=dtype)
    got = sorted_unique(array)
    expected = np.unique(array)
    assert got.dtype == expected.dtype
    assert np.array_equal(got, expected)


def test_sorted_unique_leaves_its_input_alone() -> None:
    array = np.asarray([5, 1, 5, 3], dtype=np.int64)
    assert sorted_unique(array).tolist() == [1, 3, 5]
    assert array.tolist() == [5, 1, 5, 3]
    assert sorted_unique(np.empty(0, np.int64)).shape == (0,)
