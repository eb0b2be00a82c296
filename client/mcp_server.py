"""``memoryd mcp``: an MCP server over stdio, backed by the daemon through the client library.

An MCP host (Claude Desktop, an IDE, any MCP client) starts ``memoryd mcp`` as
a subprocess and calls its tools; each tool is one request to the running
daemon over its Unix socket (``AsyncClient``), so many hosts and agents share
one memory.  The tools are few and plain on purpose: store, search, recent,
get, forget, block_get, block_set and context.  Writing a read-only block is
refused (there is no ``force`` here: the host's model may not override what
its owner fixed).  A daemon error becomes a tool error carrying its code and
message; the server keeps serving.

Needs the ``mcp`` package (the official SDK): ``pip install 'memoryd[mcp]'``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from . import errors
from .async_client import AsyncClient
from .memory_models import Block
from .models import Frame

BlockType = Literal["system", "persona", "human", "facts", "goals", "scratch"]
Namespace = Annotated[
    str, Field(description="whose memory: a user, agent or project name", min_length=1)
]
INSTRUCTIONS = """\
memoryd is a durable memory shared by agents. Store facts, decisions and events
worth keeping with `store`; recall with `search` (by meaning and keywords) or
`recent`. Core memory blocks (`block_get`, `block_set`) hold what must always be
in mind: persona, the human, facts, goals, scratch notes; each has a size limit.
`context` assembles blocks, relevant and recent memories within a token budget."""


def _frame(frame: Frame) -> dict[str, Any]:
    """A frame as tools show it: what a model needs, with a readable UTC time."""
    return {
        "id": frame.id,
        "time": datetime.fromtimestamp(frame.timestamp_ms / 1000, tz=UTC).isoformat(),
        "namespace": frame.namespace,
        "kind": frame.kind,
        "content": frame.content,
        "tags": list(frame.tags),
        "importance": frame.importance,
    }


def _block(block: Block) -> dict[str, Any]:
    return {
        "type": block.type,
        "namespace": block.namespace,
        "label": block.label,
        "description": block.description,
        "content": block.content,
        "chars_current": block.chars_current,
        "chars_limit": block.chars_limit,
        "read_only": block.read_only,
    }


def build_server(socket_path: Path | None, *, timeout: float = 30.0) -> MCPServer[AsyncClient]:
    """The MCP server and its tools, talking to the daemon at ``socket_path``."""
    memory = AsyncClient(socket_path, timeout=timeout, client_name="memoryd-mcp")

    @contextlib.asynccontextmanager
    async def lifespan(_server: MCPServer[AsyncClient]) -> AsyncIterator[AsyncClient]:
        try:
            yield memory
        finally:
            await memory.close()

    server: MCPServer[AsyncClient] = MCPServer(
        "memoryd", instructions=INSTRUCTIONS, lifespan=lifespan
    )

    @contextlib.contextmanager
    def daemon_errors() -> Any:
        try:
            yield
        except errors.MemorydError as exc:
            raise ToolError(f"{exc.code}: {exc.message}") from None

    @server.tool()
    async def store(
        content: Annotated[str, Field(description="the memory, as text", min_length=1)],
        namespace: Namespace = "default",
        kind: Annotated[
            str, Field(description="fact, note, event, task, conversation, breakthrough, ...")
        ] = "note",
        tags: Annotated[list[str], Field(description="labels to filter by later")] = [],  # noqa: B006
        importance: Annotated[float, Field(ge=0, le=1, description="0 to 1")] = 0.5,
        ttl_s: Annotated[
            int | None, Field(ge=1, description="forget it after this many seconds")
        ] = None,
    ) -> dict[str, Any]:
        """Store a memory durably. Storing the same text again changes nothing."""
        with daemon_errors():
            result = await memory.put(
                content,
                namespace=namespace,
                kind=kind,
                tags=tags,
                importance=importance,
                ttl_s=ttl_s,
            )
        return {"id": result.id, "is_new": result.is_new}

    @server.tool()
    async def search(
        query: Annotated[str, Field(description="what to look for", min_length=1)],
        namespace: Annotated[str | None, Field(description="only this namespace")] = None,
        k: Annotated[int, Field(ge=1, le=100, description="how many results")] = 5,
        tags: Annotated[list[str] | None, Field(description="only with all these tags")] = None,
    ) -> dict[str, Any]:
        """Find the memories most relevant to a query, best first (meaning and keywords)."""
        with daemon_errors():
            result = await memory.search(query, k=k, namespace=namespace, tags=tags)
        return {"hits": [{**_frame(hit.frame), "score": hit.score} for hit in result.hits]}

    @server.tool()
    async def recent(
        namespace: Annotated[str | None, Field(description="only this namespace")] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="how many")] = 10,
    ) -> dict[str, Any]:
        """The most recent memories, newest first."""
        with daemon_errors():
            page = await memory.recent(namespace=namespace, limit=limit)
        return {"frames": [_frame(frame) for frame in page.frames]}

    @server.tool()
    async def get(
        id: Annotated[str, Field(description="a memory id from store, search or recent")],
    ) -> dict[str, Any]:
        """One memory in full, by id."""
        with daemon_errors():
            frame = await memory.get(id)
        return _frame(frame)

    @server.tool()
    async def forget(
        ids: Annotated[list[str] | None, Field(description="forget these memories")] = None,
        namespace: Annotated[str | None, Field(description="... or all of a namespace")] = None,
        kind: Annotated[str | None, Field(description="... of this kind")] = None,
        tags: Annotated[list[str] | None, Field(description="... with all these tags")] = None,
        dry_run: Annotated[bool, Field(description="only count, delete nothing")] = False,
    ) -> dict[str, Any]:
        """Delete memories by id, or every memory matching the filters. Try dry_run first."""
        with daemon_errors():
            result = await memory.forget(
                ids=ids, namespace=namespace, kind=kind, tags=tags, dry_run=dry_run
            )
        return {"matched": result.matched, "deleted": result.deleted, "more": result.more}

    @server.tool()
    async def block_get(
        type: Annotated[BlockType, Field(description="which core memory block")],
        namespace: Namespace = "default",
    ) -> dict[str, Any]:
        """Read a core memory block: its content and how full it is."""
        with daemon_errors():
            block = await memory.block_get(type, namespace=namespace)
        return _block(block)

    @server.tool()
    async def block_set(
        type: Annotated[BlockType, Field(description="which core memory block")],
        content: Annotated[str, Field(description="the block's whole new content")],
        namespace: Namespace = "default",
        label: Annotated[str | None, Field(description="a short label")] = None,
        description: Annotated[str | None, Field(description="what the block is for")] = None,
    ) -> dict[str, Any]:
        """Replace a core memory block's content (created if missing). Over its chars_limit,
        or read-only, it is refused and nothing changes."""
        with daemon_errors():
            result = await memory.block_set(
                type, content, namespace=namespace, label=label, description=description
            )
        assert result.block is not None
        return _block(result.block)

    @server.tool()
    async def context(
        query: Annotated[
            str | None, Field(description="what the context is for (omit: blocks and recent)")
        ] = None,
        budget_tokens: Annotated[int, Field(ge=1, description="the most tokens to use")] = 2000,
        namespace: Namespace = "default",
        k: Annotated[int, Field(ge=0, le=100, description="relevant memories to consider")] = 10,
    ) -> dict[str, Any]:
        """Core memory blocks, then the memories relevant to the query, then recent ones,
        within a token budget, as one text ready for a prompt."""
        with daemon_errors():
            result = await memory.context(
                query, budget_tokens=budget_tokens, namespace=namespace, k=k
            )
        return {
            "text": result.text,
            "tokens": result.tokens,
            "included": [
                {"kind": item.kind, "section": item.section, "id": item.id, "type": item.block_type}
                for item in result.included
            ],
        }

    return server


def serve(socket_path: Path | None, *, timeout: float = 30.0) -> int:
    """Serve MCP on stdin/stdout until the host closes stdin; returns the exit code."""
    build_server(socket_path, timeout=timeout).run("stdio")
    return 0
