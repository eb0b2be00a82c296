"""Typed results of the agent-memory ops: core blocks, context, integrate, namespaces, forget.

Like ``models``, each ``from_wire`` checks every field it reads and raises
ProtocolViolationError naming the field; unknown fields are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .models import (
    PutResult,
    SearchHit,
    _field,
    _number,
    _object,
    _optional,
)


@dataclass(frozen=True, slots=True)
class Block:
    """A core memory block: one per (namespace, type), always in the prompt.

    ``chars_current`` and ``chars_limit`` are Unicode characters; a write that
    would pass the limit is refused, never truncated.
    """

    namespace: str
    type: str
    label: str
    description: str
    content: str
    chars_current: int
    chars_limit: int
    read_only: bool
    created_ms: int
    modified_ms: int
    seq: int
    version: int

    @classmethod
    def from_wire(cls, obj: Any) -> Block:
        w = "block"
        o = _object(obj, w)
        return cls(
            namespace=_field(o, "namespace", str, w),
            type=_field(o, "type", str, w),
            label=_field(o, "label", str, w),
            description=_field(o, "description", str, w),
            content=_field(o, "content", str, w),
            chars_current=_field(o, "chars_current", int, w),
            chars_limit=_field(o, "chars_limit", int, w),
            read_only=_field(o, "read_only", bool, w),
            created_ms=_field(o, "created_ms", int, w),
            modified_ms=_field(o, "modified_ms", int, w),
            seq=_field(o, "seq", int, w),
            version=_field(o, "version", int, w),
        )


@dataclass(frozen=True, slots=True)
class BlockWriteResult:
    """The outcome of a block write: the block after it (None once deleted).

    ``changed`` is false (and ``seq`` None) only for deleting a block that did
    not exist; ``replaced`` is how many occurrences a block_replace replaced.
    """

    block: Block | None
    seq: int | None
    changed: bool
    replaced: int | None = None

    @classmethod
    def from_wire(cls, obj: Any) -> BlockWriteResult:
        w = "block write result"
        o = _object(obj, w)
        block = o.get("block")
        return cls(
            block=None if block is None else Block.from_wire(block),
            seq=_optional(o, "seq", int, w),
            changed=_field(o, "changed", bool, w),
            replaced=_optional(o, "replaced", int, w),
        )


@dataclass(frozen=True, slots=True)
class BlockChangeEntry:
    """One change in a block's history: ``op`` and, unless a delete, the state after it."""

    seq: int
    timestamp_ms: int
    op: str
    content: str | None
    label: str | None
    description: str | None
    chars_limit: int | None
    read_only: bool | None

    @classmethod
    def from_wire(cls, obj: Any) -> BlockChangeEntry:
        w = "block change"
        o = _object(obj, w)
        return cls(
            seq=_field(o, "seq", int, w),
            timestamp_ms=_field(o, "timestamp_ms", int, w),
            op=_field(o, "op", str, w),
            content=_optional(o, "content", str, w),
            label=_optional(o, "label", str, w),
            description=_optional(o, "description", str, w),
            chars_limit=_optional(o, "chars_limit", int, w),
            read_only=_optional(o, "read_only", bool, w),
        )


@dataclass(frozen=True, slots=True)
class BlockHistory:
    """A block's changes, newest first; ``next_before_seq`` continues the listing."""

    namespace: str
    type: str
    changes: tuple[BlockChangeEntry, ...]
    next_before_seq: int | None

    @classmethod
    def from_wire(cls, obj: Any) -> BlockHistory:
        w = "block history"
        o = _object(obj, w)
        return cls(
            namespace=_field(o, "namespace", str, w),
            type=_field(o, "type", str, w),
            changes=tuple(BlockChangeEntry.from_wire(c) for c in _field(o, "changes", list, w)),
            next_before_seq=_optional(o, "next_before_seq", int, w),
        )


@dataclass(frozen=True, slots=True)
class RenderedBlocks:
    """A namespace's blocks in render order, as one tagged text and as Block objects."""

    namespace: str
    text: str
    blocks: tuple[Block, ...]

    @classmethod
    def from_wire(cls, obj: Any) -> RenderedBlocks:
        w = "rendered blocks"
        o = _object(obj, w)
        return cls(
            namespace=_field(o, "namespace", str, w),
            text=_field(o, "text", str, w),
            blocks=tuple(Block.from_wire(b) for b in _field(o, "blocks", list, w)),
        )


@dataclass(frozen=True, slots=True)
class ContextItem:
    """One thing a context includes: a block (``block_type``) or a frame (``id``)."""

    kind: str  # "block" or "frame"
    section: str  # "blocks", "relevant" or "recent"
    tokens: int
    id: str | None = None
    block_type: str | None = None
    timestamp_ms: int | None = None
    score: float | None = None

    @classmethod
    def from_wire(cls, obj: Any) -> ContextItem:
        w = "context item"
        o = _object(obj, w)
        return cls(
            kind=_field(o, "kind", str, w),
            section=_field(o, "section", str, w),
            tokens=_field(o, "tokens", int, w),
            id=_optional(o, "id", str, w),
            block_type=_optional(o, "block_type", str, w),
            timestamp_ms=_optional(o, "timestamp_ms", int, w),
            score=None if o.get("score") is None else _number(o, "score", w),
        )


@dataclass(frozen=True, slots=True)
class ContextResult:
    """A prompt context within ``budget_tokens``: the text and what it includes, in order.

    ``omitted`` counts candidates left out because they did not fit.
    """

    text: str
    tokens: int
    budget_tokens: int
    tokenizer: str
    namespace: str
    included: tuple[ContextItem, ...]
    omitted: int
    built_seq: int

    @classmethod
    def from_wire(cls, obj: Any) -> ContextResult:
        w = "context result"
        o = _object(obj, w)
        return cls(
            text=_field(o, "text", str, w),
            tokens=_field(o, "tokens", int, w),
            budget_tokens=_field(o, "budget_tokens", int, w),
            tokenizer=_field(o, "tokenizer", str, w),
            namespace=_field(o, "namespace", str, w),
            included=tuple(ContextItem.from_wire(i) for i in _field(o, "included", list, w)),
            omitted=_field(o, "omitted", int, w),
            built_seq=_field(o, "built_seq", int, w),
        )


@dataclass(frozen=True, slots=True)
class IntegrateResult:
    """What ``integrate`` stored, and what was relevant to it before it was stored."""

    put: PutResult
    related: tuple[SearchHit, ...]

    @classmethod
    def from_wire(cls, obj: Any) -> IntegrateResult:
        w = "integrate result"
        o = _object(obj, w)
        return cls(
            put=PutResult.from_wire(_field(o, "put", dict, w)),
            related=tuple(SearchHit.from_wire(h) for h in _field(o, "related", list, w)),
        )


@dataclass(frozen=True, slots=True)
class NamespaceCount:
    """A namespace with its live (unexpired) frames and its core memory blocks."""

    namespace: str
    frames: int
    blocks: int

    @classmethod
    def from_wire(cls, obj: Any) -> NamespaceCount:
        w = "namespace"
        o = _object(obj, w)
        return cls(
            namespace=_field(o, "namespace", str, w),
            frames=_field(o, "frames", int, w),
            blocks=_field(o, "blocks", int, w),
        )


@dataclass(frozen=True, slots=True)
class ForgetResult:
    """``matched`` frames were found; ``deleted`` of them tombstoned (0 on a dry run).

    ``more`` is true when the request stopped at ``forget_frames_max`` and
    more frames match: send it again to go on.  ``seq`` is the last tombstone's.
    """

    matched: int
    deleted: int
    dry_run: bool
    more: bool
    seq: int | None

    @classmethod
    def from_wire(cls, obj: Any) -> ForgetResult:
        w = "forget result"
        o = _object(obj, w)
        return cls(
            matched=_field(o, "matched", int, w),
            deleted=_field(o, "deleted", int, w),
            dry_run=_field(o, "dry_run", bool, w),
            more=_field(o, "more", bool, w),
            seq=_optional(o, "seq", int, w),
        )
