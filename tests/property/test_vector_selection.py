"""The coarse pass's selection of the best scores equals a full partition's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from memoryd.storage.search import vectors as vectors_module

# Few distinct values, so that ties at the cut are common; -inf marks disallowed rows.
values = st.sampled_from([-np.inf, -2.0, -0.5, 0.0, 0.25, 0.5, 1.0, 3.0])


@given(st.lists(values, min_size=40, max_size=400), st.data())
def test_largest_matches_a_full_partition(scores_list: list[float], data: st.DataObject) -> None:
    scores = np.asarray(scores_list, dtype=np.float32)
    want = data.draw(st.integers(1, scores.shape[0] - 1))
    with pytest.MonkeyPatch.context() as patch:
        # A stride of 2 lets arrays this small take the sampled path (want >= 32).
        patch.setattr(vectors_module, "select_sample_stride", 2)
        picked = vectors_module._largest(scores, want)
    assert np.unique(picked).shape == (want,)
    assert np.array_equal(np.sort(scores[picked]), np.sort(scores)[-want:])
