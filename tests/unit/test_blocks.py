"""Core memory blocks in storage: the BLOCK_UPDATE codec, the fold and the rendering."""

from __future__ import annotations

import pytest

from memoryd.storage.blocks import BlockTable, render_block, render_blocks
from memoryd.storage.events import (
    BLOCK_TYPES,
    BlockChange,
    EventError,
    decode_block_update,
    encode_block_update,
)
from memoryd.storage.log import RecordLocation


def _at(n: int) -> RecordLocation:
    return RecordLocation(1, n * 100, 100)


def test_block_update_round_trips_as_plain_json() -> None:
    change = BlockChange("agent-1", "persona", "set", "I am 🐍 helpful", "me", "who", 500, True)
    assert decode_block_update(encode_block_update(change)) == change
    assert change.to_payload() == {
        "ns": "agent-1",
        "type": "persona",
        "op": "set",
        "content": "I am 🐍 helpful",
        "label": "me",
        "desc": "who",
        "limit": 500,
        "ro": True,
    }
    delete = BlockChange("agent-1", "persona", "delete")
    assert delete.to_payload() == {"ns": "agent-1", "type": "persona", "op": "delete"}
    assert decode_block_update(encode_block_update(delete)) == delete


@pytest.mark.parametrize(
    "payload",
    [
        b"[]",
        b"not json",
        b'{"ns": "a", "op": "set"}',
        b'{"ns": "a", "type": "diary", "op": "set", "limit": 10}',
        b'{"ns": "a", "type": "human", "op": "rename", "limit": 10}',
        b'{"ns": "a", "type": "human", "op": "set", "content": 5, "limit": 10}',
        b'{"ns": "a", "type": "human", "op": "set", "content": "x", "limit": "10"}',
        b'{"ns": "a", "type": "human", "op": "set", "content": "xx", "limit": 1}',
    ],
)
def test_malformed_block_payloads_are_event_errors(payload: bytes) -> None:
    with pytest.raises(EventError):
        decode_block_update(payload)


def test_fold_keeps_state_times_versions_and_full_history() -> None:
    table = BlockTable()
    table.apply(BlockChange("ns", "human", "set", "Ann", "", "", 100), 1, 1000, _at(1))
    table._check()
    appended = BlockChange("ns", "human", "append", "Ann\nlikes tea", "", "", 100)
    table.apply(appended, 2, 2000, _at(2))
    table._check()
    block = table.get("ns", "human")
    assert block is not None
    assert (block.content, block.created_ms, block.modified_ms, block.version, block.seq) == (
        "Ann\nlikes tea",
        1000,
        2000,
        2,
        2,
    )
    assert table.apply(BlockChange("ns", "human", "delete"), 3, 3000, _at(3)) is None
    table._check()
    assert table.get("ns", "human") is None
    assert [seq for seq, _ in table.history("ns", "human")] == [1, 2, 3]
    again = table.apply(BlockChange("ns", "human", "set", "Bob", "", "", 100), 4, 4000, _at(4))
    table._check()
    assert again is not None and again.version == 1 and again.created_ms == 4000
    assert [seq for seq, _ in table.history("ns", "human")] == [1, 2, 3, 4]


def test_blocks_list_in_priority_order_per_namespace() -> None:
    table = BlockTable()
    for seq, block_type in enumerate(reversed(BLOCK_TYPES), start=1):
        table.apply(BlockChange("a", block_type, "set", block_type, "", "", 50), seq, 1, _at(seq))
    table.apply(BlockChange("b", "human", "set", "other", "", "", 50), 99, 1, _at(99))
    table._check()
    assert [b.block_type for b in table.in_namespace("a")] == list(BLOCK_TYPES)
    assert table.namespaces() == {"a": 6, "b": 1}


def test_rendering_shows_how_full_each_block_is() -> None:
    table = BlockTable()
    table.apply(
        BlockChange("a", "persona", "set", "helpful", 'the "me"', "", 2000, True), 1, 1, _at(1)
    )
    table.apply(BlockChange("a", "system", "set", "be brief", "", "rules", 100), 2, 1, _at(2))
    persona = table.get("a", "persona")
    assert persona is not None
    assert render_block(persona) == (
        '<persona label="the &quot;me&quot;" chars_current="7" chars_limit="2000" '
        'read_only="true">\nhelpful\n</persona>'
    )
    text = render_blocks(table.in_namespace("a"))
    assert text.index("<system") < text.index("<persona")
    assert '<system description="rules" chars_current="8" chars_limit="100">' in text
