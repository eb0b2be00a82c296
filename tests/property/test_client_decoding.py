"""The client's fast decoding of well-formed frames and hits agrees with its checked path.

``Frame.from_wire`` and ``SearchHit.from_wire`` take an exact-type fast path
for plain dicts and fall back to field-by-field checks otherwise; a dict
subclass always takes the checked path.  For any object near a well-formed
one (fields dropped, or replaced by values of other JSON types), both paths
must give the same model or both refuse it.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memoryd.client import errors
from memoryd.client.models import Frame, SearchHit
from tests.unit.test_client_models import WIRE_FRAME as WELL_FORMED


class _Checked(dict[str, Any]):
    """A dict the fast paths do not take (they test ``type(obj) is dict``)."""


# One value of each JSON type (and the edge cases of the type tests: bools are not
# numbers, an int is a number but not a string ...).
REPRESENTATIVES: list[Any] = [None, True, False, 0, 7, 1.5, "", "s", [], ["a"], [1], {}, {"a": 1}]
json_values = st.sampled_from(REPRESENTATIVES)


@st.composite
def near_frames(draw: st.DrawFn) -> dict[str, Any]:
    obj = dict(WELL_FORMED)
    for name in draw(st.lists(st.sampled_from(sorted(WELL_FORMED)), max_size=3, unique=True)):
        if draw(st.booleans()):
            del obj[name]
        else:
            obj[name] = draw(json_values)
    return obj


def _decoded(decode: Any, obj: Any) -> Any:
    try:
        return decode(obj)
    except errors.ProtocolViolationError:
        return "refused"


def test_every_field_with_a_value_of_every_type_decodes_alike_on_both_paths() -> None:
    refused = 0
    for name in WELL_FORMED:
        for value in [*REPRESENTATIVES, "missing"]:
            obj = dict(WELL_FORMED)
            if value == "missing":
                del obj[name]
            else:
                obj[name] = value
            fast = _decoded(Frame.from_wire, obj)
            assert fast == _decoded(Frame.from_wire, _Checked(obj)), (name, value)
            refused += fast == "refused"
    assert refused > len(WELL_FORMED) * 5  # most wrong types are refused


# A loaded machine must not fail these on generation time: each example takes microseconds.
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@RELAXED
@given(near_frames())
def test_frame_fast_path_agrees_with_the_checked_path(obj: dict[str, Any]) -> None:
    fast = _decoded(Frame.from_wire, obj)
    checked = _decoded(Frame.from_wire, _Checked(obj))
    assert fast == checked
    if fast != "refused":
        assert type(fast.importance) is float and type(fast.tags) is tuple


@RELAXED
@given(near_frames(), json_values, json_values, st.booleans())
def test_hit_fast_path_agrees_with_the_checked_path(
    frame: dict[str, Any], score: Any, fact_kind: Any, annotated: bool
) -> None:
    hit: dict[str, Any] = {"frame": frame, "score": score}
    if annotated:
        hit.update(significance={"novelty": 0.5}, fact_kind=fact_kind)
    fast = _decoded(SearchHit.from_wire, hit)
    checked = _decoded(SearchHit.from_wire, _Checked(hit))
    assert fast == checked
    if fast != "refused":
        assert type(fast.score) is float
