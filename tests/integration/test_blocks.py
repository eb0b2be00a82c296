"""Core memory blocks through a real daemon: every op, every refusal, restart and kill -9."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoryd.client import AsyncClient, Client, NotFoundError, RequestError
from tests.integration.daemon_process import DaemonProcess
from tests.integration.test_cli import memoryd


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[Client]:
    with Client(daemon.socket_path) as c:
        yield c


def test_set_get_append_replace_delete(client: Client) -> None:
    first = client.block_set("human", "Name: Ann", label="user", description="who we talk to")
    assert first.changed and first.block is not None and first.seq is not None
    assert (first.block.chars_current, first.block.chars_limit, first.block.version) == (
        9,
        5000,
        1,
    )
    appended = client.block_append("human", "Likes: tea")
    assert appended.block is not None and appended.block.content == "Name: Ann\nLikes: tea"
    replaced = client.block_replace("human", "tea", "green tea")
    assert replaced.replaced == 1
    block = client.block_get("human")
    assert block.content == "Name: Ann\nLikes: green tea"
    assert (block.label, block.description, block.version) == ("user", "who we talk to", 3)
    assert block.created_ms <= block.modified_ms
    assert block.namespace == "default"
    deleted = client.block_delete("human")
    assert deleted.changed and deleted.block is None
    with pytest.raises(NotFoundError):
        client.block_get("human")
    again = client.block_delete("human")
    assert not again.changed and again.seq is None


def test_blocks_are_per_namespace_and_render_in_priority_order(client: Client) -> None:
    client.block_set("scratch", "todo: call Bob", namespace="agent-a")
    client.block_set("persona", "A careful assistant", namespace="agent-a", chars_limit=300)
    client.block_set("system", "Answer briefly", namespace="agent-a", read_only=True)
    client.block_set("persona", "Another agent", namespace="agent-b")
    rendered = client.blocks_render(namespace="agent-a")
    assert [b.type for b in rendered.blocks] == ["system", "persona", "scratch"]
    assert rendered.text.startswith(
        '<system chars_current="14" chars_limit="5000" read_only="true">\nAnswer briefly\n</system>'
    )
    assert '<persona chars_current="19" chars_limit="300">' in rendered.text
    assert "Another agent" not in rendered.text
    assert client.blocks_render(namespace="nobody").blocks == ()


def test_oversized_content_is_refused_naming_the_limit_and_changes_nothing(client: Client) -> None:
    client.block_set("facts", "x" * 10, chars_limit=20)
    with pytest.raises(RequestError) as info:
        client.block_set("facts", "y" * 21)
    assert info.value.code == "limit_exceeded"
    assert "chars_limit=20" in info.value.message
    assert info.value.details == {"limit": "chars_limit", "max": 20, "got": 21}
    with pytest.raises(RequestError) as info:
        client.block_append("facts", "z" * 10)  # 10 + newline + 10 = 21
    assert info.value.details["got"] == 21
    with pytest.raises(RequestError) as info:
        client.block_replace("facts", "x", "xxx")
    assert info.value.code == "limit_exceeded"
    with pytest.raises(RequestError) as info:
        client.block_set("facts", "short", chars_limit=100_001)
    assert info.value.details["limit"] == "block_chars_max"
    with pytest.raises(RequestError) as info:
        client.block_set("goals", "g" * 5001)  # over the configured default
    assert "chars_limit=5000" in info.value.message
    block = client.block_get("facts")
    assert (block.content, block.version) == ("x" * 10, 1)
    assert len(client.block_history("facts").changes) == 1


def test_shrinking_the_limit_below_the_content_is_refused(client: Client) -> None:
    client.block_set("goals", "ship it", chars_limit=100)
    with pytest.raises(RequestError) as info:
        client.block_set("goals", "ship it now", chars_limit=5)
    assert info.value.code == "limit_exceeded"
    assert client.block_get("goals").chars_limit == 100


@pytest.mark.parametrize(
    ("op", "args", "code", "words"),
    [
        ("block_set", {"type": "diary", "content": "x"}, "bad_request", "unknown block type"),
        ("block_get", {"type": None}, "bad_request", "system, persona, human"),
        ("block_set", {"type": "human"}, "bad_request", "content is required"),
        ("block_set", {"type": "human", "content": 3}, "bad_request", "must be a string"),
        ("block_set", {"type": "human", "content": "x", "oops": 1}, "bad_request", "oops"),
        ("block_set", {"type": "human", "content": "x", "chars_limit": 0}, "bad_request", "least"),
        ("block_set", {"type": "human", "content": "x", "label": "l" * 129}, "limit_exceeded", ""),
        ("block_append", {"type": "human", "text": ""}, "bad_request", "must not be empty"),
        ("block_replace", {"type": "human", "old": "a", "new": "b"}, "not_found", "no human"),
        ("block_history", {"type": "human", "limit": 0}, "bad_request", "limit"),
    ],
)
def test_bad_input_gets_a_clear_error(
    client: Client, op: str, args: dict[str, object], code: str, words: str
) -> None:
    with pytest.raises(RequestError if code != "not_found" else NotFoundError) as info:
        client.call(op, args)
    assert info.value.code == code
    assert words in info.value.message


def test_replace_of_absent_text_is_not_found_and_does_not_echo_it(client: Client) -> None:
    client.block_set("persona", "calm and kind")
    with pytest.raises(NotFoundError) as info:
        client.block_replace("persona", "secret words", "x")
    assert "secret words" not in info.value.message
    assert client.block_get("persona").content == "calm and kind"


def test_read_only_blocks_refuse_writes_unless_forced(client: Client) -> None:
    client.block_set("system", "Never reveal keys", read_only=True)
    for call in (
        lambda: client.block_set("system", "anything"),
        lambda: client.block_append("system", "more"),
        lambda: client.block_replace("system", "Never", "Always"),
        lambda: client.block_delete("system"),
    ):
        with pytest.raises(RequestError) as info:
            call()
        assert info.value.code == "read_only"
    assert client.block_get("system").content == "Never reveal keys"
    forced = client.block_append("system", "Be kind", force=True)
    assert forced.block is not None and forced.block.read_only
    client.block_set("system", "Be kind", read_only=False, force=True)
    assert client.block_append("system", "ok").changed


def test_history_lists_every_change_newest_first_with_paging(client: Client) -> None:
    client.block_set("scratch", "one")
    client.block_append("scratch", "two")
    client.block_replace("scratch", "one", "1")
    client.block_delete("scratch")
    client.block_set("scratch", "fresh", label="again")
    history = client.block_history("scratch")
    assert [c.op for c in history.changes] == ["set", "delete", "replace", "append", "set"]
    assert [c.content for c in history.changes] == ["fresh", None, "1\ntwo", "one\ntwo", "one"]
    seqs = [c.seq for c in history.changes]
    assert seqs == sorted(seqs, reverse=True)
    page = client.block_history("scratch", limit=2)
    assert [c.op for c in page.changes] == ["set", "delete"]
    assert page.next_before_seq == seqs[1]
    rest = client.block_history("scratch", limit=10, before_seq=page.next_before_seq)
    assert [c.op for c in rest.changes] == ["replace", "append", "set"]
    assert rest.next_before_seq is None


async def test_concurrent_appends_all_land_in_order_and_never_pass_the_limit(
    daemon: DaemonProcess,
) -> None:
    async with AsyncClient(daemon.socket_path) as memory:
        await memory.block_set("scratch", "", chars_limit=60)
        results = await asyncio.gather(
            *(memory.block_append("scratch", f"line {n}") for n in range(12)),
            return_exceptions=True,
        )
        stored = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, BaseException)]
        # "line N" is 6 characters, 7 with its newline: 60 characters hold 8 of them.
        assert len(stored) == 8
        assert all(getattr(e, "code", None) == "limit_exceeded" for e in refused)
        block = await memory.block_get("scratch")
        assert block.chars_current <= 60
        lines = block.content.split("\n")
        assert len(lines) == len(set(lines)) == 8
        assert set(lines) <= {f"line {n}" for n in range(12)}
        assert block.version == 9


@pytest.mark.parametrize("frames", [0, 3])
def test_blocks_survive_a_restart_and_a_kill(tmp_path: Path, socket_dir: Path, frames: int) -> None:
    # The clean stop writes a checkpoint and the next start restores it: blocks
    # must come back from it, beside frames or without any.
    sock = socket_dir / "memoryd.sock"
    first = DaemonProcess(tmp_path / "data", sock).start()
    try:
        with Client(sock) as memory:
            for n in range(frames):
                memory.put(f"frame {n} beside the blocks")
            memory.block_set("persona", "steady", label="p", chars_limit=50, read_only=True)
            memory.block_set("human", "Ann")
            memory.block_append("human", "likes tea")
            memory.block_delete("human")
            memory.block_set("goals", "finish issue 6", namespace="work")
            before = memory.block_get("persona")
    finally:
        assert first.terminate() == 0
    second = DaemonProcess(tmp_path / "data", sock).start()
    try:
        with Client(sock) as memory:
            assert memory.stats()["start_replayed_records"] == 0  # from the checkpoint
            assert memory.block_get("persona") == before
            with pytest.raises(NotFoundError):
                memory.block_get("human")
            assert len(memory.block_history("human").changes) == 3
            memory.block_append("goals", "then rest", namespace="work")
    finally:
        second.kill()
    third = DaemonProcess(tmp_path / "data", sock).start()
    try:
        with Client(sock) as memory:
            goals = memory.block_get("goals", namespace="work")
            assert goals.content == "finish issue 6\nthen rest"
            assert goals.version == 2
    finally:
        assert third.terminate() == 0


def test_block_commands(daemon: DaemonProcess) -> None:
    sock = daemon.socket_path
    assert memoryd("block", "set", "human", "Name: Ann", "--label", "user", socket=sock).code == 0
    assert memoryd("block", "append", "human", "Likes tea", socket=sock).code == 0
    run = memoryd("block", "replace", "human", "tea", "coffee", socket=sock)
    assert run.code == 0 and "replaced 1" in run.out
    got = memoryd("block", "get", "human", "--json", socket=sock).json()
    assert got["block"]["content"] == "Name: Ann\nLikes coffee"
    stdin = memoryd("block", "set", "persona", "--limit", "40", socket=sock, stdin=b"calm\n")
    assert stdin.code == 0, stdin.err
    rendered = memoryd("blocks", socket=sock)
    assert rendered.out.index("<persona") < rendered.out.index("<human")
    assert 'chars_current="4" chars_limit="40"' in rendered.out
    history = memoryd("block", "history", "human", "--json", socket=sock).json()
    assert [c["op"] for c in history["changes"]] == ["replace", "append", "set"]
    too_long = memoryd("block", "set", "persona", "x" * 41, socket=sock)
    assert too_long.code == 1
    assert "chars_limit=40" in too_long.one_error_line("limit_exceeded")
    bad_type = memoryd("block", "get", "diary", socket=sock)
    assert bad_type.code == 2 and "invalid choice" in bad_type.err
    missing = memoryd("block", "get", "goals", socket=sock)
    assert missing.code == 4
    assert memoryd("block", "delete", "human", socket=sock).code == 0
