"""Frame expiry in storage: the FRAME_PUT ``exp`` field, the expiry index and its fold."""

from __future__ import annotations

import pytest

from memoryd.storage.events import EventError, Frame, decode_frame_put, encode_frame_put
from memoryd.storage.expiry import ExpiryIndex
from memoryd.storage.log import RecordLocation
from memoryd.storage.projection import Projection


def _frame(fid: str, seq: int, expires_at_ms: int | None) -> Frame:
    return Frame(fid, seq, 1000 + seq, "ns", "note", f"content {fid}", expires_at_ms=expires_at_ms)


def test_exp_is_written_only_when_set_and_round_trips() -> None:
    lasting = _frame("a", 1, None)
    assert b'"exp"' not in encode_frame_put(lasting)
    assert decode_frame_put(encode_frame_put(lasting), 1, 1001) == lasting
    fleeting = _frame("b", 2, 5000)
    assert decode_frame_put(encode_frame_put(fleeting), 2, 1002) == fleeting
    assert fleeting.to_dict()["expires_at_ms"] == 5000
    with pytest.raises(EventError):
        decode_frame_put(encode_frame_put(fleeting).replace(b"5000", b'"5"'), 2, 1002)


def test_index_lists_and_counts_what_has_expired() -> None:
    index = ExpiryIndex()
    index.add("c", 300)
    index.add("a", 100)
    index.add("b", 200)
    index.add("a", 999)  # a live frame's expiry never changes
    index._check()
    assert index.expired(99) == [] and index.count_expired(99) == 0
    assert index.expired(200) == ["a", "b"] and index.count_expired(200) == 2
    assert index.expired(10_000, limit=1) == ["a"]
    assert index.is_expired("a", 100) and not index.is_expired("c", 299)
    assert not index.is_expired("unknown", 10**15)
    index.remove("b")
    index.remove("unknown")
    index._check()
    assert index.expired(10_000) == ["a", "c"] and len(index) == 2


def test_projection_folds_expiry_with_puts_and_deletes() -> None:
    projection = Projection()
    where = RecordLocation(1, 0, 10)
    projection.apply_put(_frame("a", 1, 500), where)
    projection.apply_put(_frame("b", 2, None), where)
    projection.apply_put(_frame("a", 3, 900), where)  # a live duplicate: nothing changes
    assert projection.expiry.expires_at("a") == 500
    assert projection.expiry.expired(1000) == ["a"]
    assert projection.apply_delete(4, "a")
    projection.expiry._check()
    assert len(projection.expiry) == 0
    projection.apply_put(_frame("a", 5, 2000), where)  # put anew after its tombstone
    assert projection.expiry.expires_at("a") == 2000
