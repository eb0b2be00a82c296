"""``memoryd mcp`` driven by the official MCP SDK's own client over stdio, against a real daemon."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from memoryd.client import Client
from tests.integration.daemon_process import DaemonProcess

TOOLS = {"store", "search", "recent", "get", "forget", "block_get", "block_set", "context"}


def _server(daemon: DaemonProcess) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "memoryd.daemon", "--socket", str(daemon.socket_path), "mcp"],
    )


async def _call(session: ClientSession, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await session.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def test_every_tool_round_trips_through_the_sdk_client(daemon: DaemonProcess) -> None:
    async with (
        stdio_client(_server(daemon)) as (read, write),
        ClientSession(read, write) as session,
    ):
        info = await session.initialize()
        assert info.server_info.name == "memoryd"
        listed = await session.list_tools()
        tools = {tool.name: tool for tool in listed.tools}
        assert set(tools) == TOOLS
        for tool in tools.values():
            assert tool.description
        store_schema = tools["store"].input_schema
        assert store_schema["required"] == ["content"]
        assert store_schema["properties"]["importance"]["maximum"] == 1
        block_type = tools["block_set"].input_schema["properties"]["type"]
        assert block_type["enum"] == ["system", "persona", "human", "facts", "goals", "scratch"]

        stored = await _call(
            session,
            "store",
            {"content": "Ann loves Spanish poetry", "namespace": "ann", "tags": ["lang"]},
        )
        assert stored["is_new"] is True
        frame = await _call(session, "get", {"id": stored["id"]})
        assert frame["content"] == "Ann loves Spanish poetry" and frame["tags"] == ["lang"]
        recent = await _call(session, "recent", {"namespace": "ann"})
        assert [f["id"] for f in recent["frames"]] == [stored["id"]]

        with Client(daemon.socket_path) as direct:  # the same memory, seen from the daemon
            assert direct.get(stored["id"]).content == "Ann loves Spanish poetry"
            direct.search("warm up", min_seq=direct.get(stored["id"]).seq)
        found = await _call(session, "search", {"query": "Spanish poetry", "namespace": "ann"})
        assert found["hits"][0]["id"] == stored["id"] and found["hits"][0]["score"] > 0

        block = await _call(
            session,
            "block_set",
            {"type": "human", "content": "Name: Ann", "namespace": "ann", "label": "user"},
        )
        assert (block["chars_current"], block["chars_limit"]) == (9, 5000)
        got = await _call(session, "block_get", {"type": "human", "namespace": "ann"})
        assert got["content"] == "Name: Ann" and got["label"] == "user"

        context = await _call(
            session, "context", {"query": "poetry", "namespace": "ann", "budget_tokens": 300}
        )
        assert "<core_memory>" in context["text"] and "Spanish poetry" in context["text"]
        assert context["tokens"] <= 300
        assert [i["kind"] for i in context["included"]] == ["block", "frame"]

        counted = await _call(session, "forget", {"namespace": "ann", "dry_run": True})
        assert (counted["matched"], counted["deleted"]) == (1, 0)
        gone = await _call(session, "forget", {"ids": [stored["id"]]})
        assert gone["deleted"] == 1
        missing = await session.call_tool("get", {"id": stored["id"]})
        assert missing.is_error
        assert "not_found" in missing.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("tool", "args", "words"),
    [
        ("block_set", {"type": "diary", "content": "x"}, "type"),
        ("block_set", {"type": "facts", "content": "x" * 5001}, "chars_limit=5000"),
        ("store", {"content": "x", "importance": 2}, "importance"),
        ("context", {"budget_tokens": 0}, "budget_tokens"),
        ("get", {"id": "0" * 32}, "not_found"),
    ],
)
async def test_bad_tool_calls_are_tool_errors_and_the_server_goes_on(
    daemon: DaemonProcess, tool: str, args: dict[str, Any], words: str
) -> None:
    async with (
        stdio_client(_server(daemon)) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool(tool, args)
        assert result.is_error
        text = " ".join(getattr(part, "text", "") for part in result.content)
        assert words in text
        after = await _call(session, "store", {"content": "still serving"})
        assert after["is_new"] is True


async def test_read_only_blocks_cannot_be_overwritten_over_mcp(daemon: DaemonProcess) -> None:
    with Client(daemon.socket_path) as direct:
        direct.block_set("system", "Never share keys", read_only=True)
    async with (
        stdio_client(_server(daemon)) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool("block_set", {"type": "system", "content": "share"})
        assert result.is_error
        assert "read_only" in " ".join(getattr(part, "text", "") for part in result.content)
    with Client(daemon.socket_path) as direct:
        assert direct.block_get("system").content == "Never share keys"
