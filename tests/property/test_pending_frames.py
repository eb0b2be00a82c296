"""PendingFrames behaves as a dict of id -> (seq, location) that also answers by seq."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from memoryd.storage.log import RecordLocation
from memoryd.storage.pending import PendingFrames

ALL_IDS = [f"{i:032x}" for i in range(12)]
ids = st.sampled_from(ALL_IDS)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), ids, st.integers(1, 40)),
        st.tuples(st.just("pop"), ids, st.just(0)),
    ),
    max_size=60,
)


@given(ops, st.integers(0, 15))
def test_pending_frames_match_a_dict_model(steps: list[tuple[str, str, int]], count: int) -> None:
    pending = PendingFrames()
    model: dict[str, tuple[int, RecordLocation]] = {}
    for op, frame_id, seq in steps:
        if op == "set":
            if any(s == seq for fid, (s, _) in model.items() if fid != frame_id):
                continue  # a seq names one record: never two pending frames
            entry = (seq, RecordLocation(1, seq * 100, 50))
            pending[frame_id] = entry
            model[frame_id] = entry
        else:
            assert pending.pop(frame_id) == model.pop(frame_id, None)
        assert len(pending) == len(model)
        assert all((fid in pending) == (fid in model) for fid in ALL_IDS)
    assert pending.oldest(len(model)) == sorted(model.values())
    assert pending.oldest(count) == sorted(model.values())[:count]
    assert pending.min_seq() == (min(s for s, _ in model.values()) if model else None)
