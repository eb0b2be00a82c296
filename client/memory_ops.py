"""Request builders for the agent-memory ops, shared by both clients (no I/O).

Like ``ops``: each function builds a ``Call`` (op, wire arguments with
defaults left out, result decoder, whether a resend after a broken
connection is safe).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import errors
from .memory_models import (
    Block,
    BlockHistory,
    BlockWriteResult,
    ContextResult,
    ForgetResult,
    IntegrateResult,
    NamespaceCount,
    RenderedBlocks,
)
from .ops import Call, put_args


def _block_args(block_type: str, namespace: str | None) -> dict[str, Any]:
    args: dict[str, Any] = {"type": block_type}
    if namespace is not None:
        args["namespace"] = namespace
    return args


def block_get(block_type: str, *, namespace: str | None = None) -> Call[Block]:
    def decode(result: dict[str, Any]) -> Block:
        return Block.from_wire(result.get("block"))

    return Call("block_get", _block_args(block_type, namespace), decode)


def block_set(
    block_type: str,
    content: str,
    *,
    namespace: str | None = None,
    label: str | None = None,
    description: str | None = None,
    chars_limit: int | None = None,
    read_only: bool | None = None,
    force: bool = False,
) -> Call[BlockWriteResult]:
    args = _block_args(block_type, namespace)
    args["content"] = content
    optional = {
        "label": label,
        "description": description,
        "chars_limit": chars_limit,
        "read_only": read_only,
    }
    args.update({name: value for name, value in optional.items() if value is not None})
    if force:
        args["force"] = True
    # Setting the same state again changes nothing a reader sees (one more history entry).
    return Call("block_set", args, BlockWriteResult.from_wire)


def block_append(
    block_type: str, text: str, *, namespace: str | None = None, force: bool = False
) -> Call[BlockWriteResult]:
    args = _block_args(block_type, namespace)
    args["text"] = text
    if force:
        args["force"] = True
    return Call("block_append", args, BlockWriteResult.from_wire, idempotent=False)


def block_replace(
    block_type: str,
    old: str,
    new: str,
    *,
    namespace: str | None = None,
    force: bool = False,
) -> Call[BlockWriteResult]:
    args = _block_args(block_type, namespace)
    args.update(old=old, new=new)
    if force:
        args["force"] = True
    return Call("block_replace", args, BlockWriteResult.from_wire, idempotent=False)


def block_delete(
    block_type: str, *, namespace: str | None = None, force: bool = False
) -> Call[BlockWriteResult]:
    args = _block_args(block_type, namespace)
    if force:
        args["force"] = True
    return Call("block_delete", args, BlockWriteResult.from_wire)


def blocks_render(*, namespace: str | None = None) -> Call[RenderedBlocks]:
    args = {} if namespace is None else {"namespace": namespace}
    return Call("blocks_render", args, RenderedBlocks.from_wire)


def block_history(
    block_type: str,
    *,
    namespace: str | None = None,
    limit: int = 20,
    before_seq: int | None = None,
) -> Call[BlockHistory]:
    args = _block_args(block_type, namespace)
    args["limit"] = limit
    if before_seq is not None:
        args["before_seq"] = before_seq
    return Call("block_history", args, BlockHistory.from_wire)


def context(
    query: str | None = None,
    *,
    budget_tokens: int = 2000,
    namespace: str | None = None,
    k: int = 10,
    recent: int = 10,
    min_seq: int | None = None,
) -> Call[ContextResult]:
    args: dict[str, Any] = {"budget_tokens": budget_tokens, "k": k, "recent": recent}
    optional = {"query": query, "namespace": namespace, "min_seq": min_seq}
    args.update({name: value for name, value in optional.items() if value is not None})
    return Call("context", args, ContextResult.from_wire)


def integrate(text: str, *, k: int = 5, **fields: Any) -> Call[IntegrateResult]:
    """Recall up to ``k`` memories relevant to ``text``, then store it; ``fields`` as put's."""
    args = put_args(text, **fields)
    args["k"] = k
    # The put is content-addressed and the recall a read: a resend stores nothing twice.
    return Call("integrate", args, IntegrateResult.from_wire)


def namespaces() -> Call[list[NamespaceCount]]:
    def decode(result: dict[str, Any]) -> list[NamespaceCount]:
        items = result.get("namespaces")
        if not isinstance(items, list):
            raise errors.ProtocolViolationError(
                errors.PROTOCOL_VIOLATION, "namespaces result must hold a list"
            )
        return [NamespaceCount.from_wire(item) for item in items]

    return Call("namespaces", {}, decode)


def forget(
    *,
    ids: Sequence[str] | None = None,
    namespace: str | None = None,
    kind: str | None = None,
    tags: Sequence[str] | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    dry_run: bool = False,
) -> Call[ForgetResult]:
    if isinstance(ids, str) or isinstance(tags, str):
        raise TypeError("ids and tags must be sequences of strings, not a string")
    args: dict[str, Any] = {}
    optional = {
        "ids": list(ids) if ids is not None else None,
        "namespace": namespace,
        "kind": kind,
        "tags": list(tags) if tags is not None else None,
        "since_ms": since_ms,
        "until_ms": until_ms,
    }
    args.update({name: value for name, value in optional.items() if value is not None})
    if dry_run:
        args["dry_run"] = True
    # By filter, a resend could match frames stored in between: not resent.
    return Call("forget", args, ForgetResult.from_wire, idempotent=dry_run)
