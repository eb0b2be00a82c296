"""Core memory blocks: the fold of BLOCK_UPDATE records, and how blocks are rendered.

A block is a short piece of text that always sits in an agent's prompt, one
per (namespace, type), of the types in ``BLOCK_TYPES`` (rendered in that
order).  Blocks are derived state like frames: every change is a
BLOCK_UPDATE record in the log, folded here in log order, at start and as
each change commits.  The table keeps each block's current state and, per
block, where every change of its history is in the log (a deleted block's
history stays, and a block set again later continues it).

Memory: per block, its content and attributes; per change, one location.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memoryd.storage.events import BLOCK_TYPES, BlockChange
from memoryd.storage.log import RecordLocation

BlockKey = tuple[str, str]  # (namespace, block type)
_TYPE_RANK = {block_type: rank for rank, block_type in enumerate(BLOCK_TYPES)}


@dataclass(slots=True)
class Block:
    """A block's current state.  ``seq`` is its last change's, ``version`` counts changes."""

    namespace: str
    block_type: str
    content: str
    label: str
    description: str
    chars_limit: int
    read_only: bool
    created_ms: int
    modified_ms: int
    seq: int
    version: int

    def to_dict(self) -> dict[str, Any]:
        """The wire protocol's block object."""
        return {
            "namespace": self.namespace,
            "type": self.block_type,
            "label": self.label,
            "description": self.description,
            "content": self.content,
            "chars_current": len(self.content),
            "chars_limit": self.chars_limit,
            "read_only": self.read_only,
            "created_ms": self.created_ms,
            "modified_ms": self.modified_ms,
            "seq": self.seq,
            "version": self.version,
        }


@dataclass(slots=True)
class BlockTable:
    """Live blocks by (namespace, type), and every change's location.  Single writer."""

    _blocks: dict[BlockKey, Block] = field(default_factory=dict)
    _history: dict[BlockKey, list[tuple[int, RecordLocation]]] = field(default_factory=dict)
    changes_applied: int = 0

    def apply(
        self, change: BlockChange, seq: int, timestamp_ms: int, location: RecordLocation
    ) -> Block | None:
        """Fold one committed change; returns the block after it (None once deleted)."""
        key = (change.namespace, change.block_type)
        self._history.setdefault(key, []).append((seq, location))
        self.changes_applied += 1
        if change.op == "delete":
            self._blocks.pop(key, None)
            return None
        before = self._blocks.get(key)
        block = Block(
            namespace=change.namespace,
            block_type=change.block_type,
            content=change.content,
            label=change.label,
            description=change.description,
            chars_limit=change.chars_limit,
            read_only=change.read_only,
            created_ms=timestamp_ms if before is None else before.created_ms,
            modified_ms=timestamp_ms,
            seq=seq,
            version=1 if before is None else before.version + 1,
        )
        self._blocks[key] = block
        return block

    def get(self, namespace: str, block_type: str) -> Block | None:
        return self._blocks.get((namespace, block_type))

    def in_namespace(self, namespace: str) -> list[Block]:
        """The namespace's blocks in render order."""
        found = [block for (ns, _), block in self._blocks.items() if ns == namespace]
        return sorted(found, key=lambda block: _TYPE_RANK[block.block_type])

    def namespaces(self) -> dict[str, int]:
        """Live block count per namespace."""
        counts: dict[str, int] = {}
        for namespace, _type in self._blocks:
            counts[namespace] = counts.get(namespace, 0) + 1
        return counts

    def history(self, namespace: str, block_type: str) -> list[tuple[int, RecordLocation]]:
        """(seq, location) of every change of that block, oldest first."""
        return self._history.get((namespace, block_type), [])

    def __len__(self) -> int:
        return len(self._blocks)

    def _check(self) -> None:
        """Verify every invariant; cheap enough for tests to call after each change."""
        for key, block in self._blocks.items():
            assert key == (block.namespace, block.block_type)
            assert block.block_type in _TYPE_RANK
            assert len(block.content) <= block.chars_limit
            assert self._history[key][-1][0] == block.seq
            assert block.version >= 1
        assert sum(len(changes) for changes in self._history.values()) == self.changes_applied


def _attribute(value: str) -> str:
    """A value quoted for a tag attribute: only the characters that would end it are escaped."""
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("\n", " ")


def render_block(block: Block) -> str:
    """One block as a tagged section showing how full it is::

        <persona label="..." description="..." chars_current="12" chars_limit="5000">
        content
        </persona>

    ``label`` and ``description`` appear only when set, ``read_only="true"`` only
    when it is.  The content is exactly as stored.
    """
    attributes = []
    if block.label:
        attributes.append(f'label="{_attribute(block.label)}"')
    if block.description:
        attributes.append(f'description="{_attribute(block.description)}"')
    attributes.append(f'chars_current="{len(block.content)}"')
    attributes.append(f'chars_limit="{block.chars_limit}"')
    if block.read_only:
        attributes.append('read_only="true"')
    opening = f"<{block.block_type} {' '.join(attributes)}>"
    return f"{opening}\n{block.content}\n</{block.block_type}>"


def render_blocks(blocks: list[Block]) -> str:
    """Blocks in the order given (render order from ``in_namespace``), a blank line apart."""
    return "\n\n".join(render_block(block) for block in blocks)
