"""Reading a mem0-style export: a list of memories.

The document is a JSON list of objects, or an object whose ``results`` (or
``memories``) is that list (what mem0's ``get_all`` returns).  Each object:

| mem0 field   | becomes |
|--------------|---------|
| `memory`     | the content (required) |
| `user_id`    | the namespace (else `agent_id`, `run_id`, else `--namespace`, else `mem0`) |
| `created_at` | the time (ISO-8601, or a number of s/ms/µs); none means the import's time |
| `metadata`   | the metadata (an object), with the other fields under `metadata["mem0"]` |
| `categories` | the tags |

The kind is ``fact``.  An element that cannot be used is reported with its
number (from 1); the others are imported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import orjson

from .import_source import ImportFormatError, ImportItem, LineError, read_document, time_ms

MEM0_DEFAULT_NAMESPACE: Final = "mem0"
MEM0_KIND: Final = "fact"
MEM0_SOURCE: Final = "mem0"
_NAMESPACE_KEYS: Final = ("user_id", "agent_id", "run_id")
_USED: Final = frozenset(("memory", "created_at", "metadata", "categories", *_NAMESPACE_KEYS))


class Mem0Source:
    """A mem0 export file."""

    format_name = "mem0"

    def __init__(self, path: Path, namespace: str | None = None) -> None:
        self.path = path
        self.namespace = namespace
        self.total_bytes = os.path.getsize(path)
        self._done = 0

    @property
    def bytes_read(self) -> int:
        return self._done

    def __iter__(self) -> Iterator[ImportItem | LineError]:
        memories = self._memories()
        for number, memory in enumerate(memories, start=1):
            yield memory_item(number, memory, self.namespace)
            self._done = self.total_bytes * number // len(memories)

    def _memories(self) -> list[Any]:
        try:
            document = orjson.loads(read_document(self.path))
        except orjson.JSONDecodeError as exc:
            raise ImportFormatError(f"{self.path} is not a JSON document: {exc}") from None
        if isinstance(document, dict):
            document = document.get("results", document.get("memories"))
        if not isinstance(document, list):
            raise ImportFormatError(
                f'{self.path} is not a mem0 export: neither a list nor {{"results": [...]}}'
            )
        return document


def memory_item(number: int, memory: object, namespace: str | None) -> ImportItem | LineError:
    """The put for one mem0 memory, or why it cannot be imported."""
    if not isinstance(memory, dict):
        return LineError(number, "memory is not a JSON object")
    content = memory.get("memory")
    if not isinstance(content, str):
        return LineError(number, "no memory text (the 'memory' field)")
    owner = next((memory[k] for k in _NAMESPACE_KEYS if isinstance(memory.get(k), str)), None)
    args: dict[str, Any] = {
        "content": content,
        "namespace": owner or namespace or MEM0_DEFAULT_NAMESPACE,
        "kind": MEM0_KIND,
        "source": MEM0_SOURCE,
    }
    if memory.get("created_at") is not None:
        try:
            args["timestamp_ms"] = time_ms(memory["created_at"])
        except ValueError as exc:
            return LineError(number, f"created_at: {exc}")
    metadata = memory.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return LineError(number, "metadata is not a JSON object")
    metadata = dict(metadata or {})
    categories = memory.get("categories")
    if categories is not None:
        if not isinstance(categories, list) or not all(
            isinstance(c, str) and c for c in categories
        ):
            return LineError(number, "categories must be a list of non-empty strings")
        args["tags"] = categories
    rest = {key: value for key, value in memory.items() if key not in _USED}
    if rest:
        metadata["mem0"] = rest
    if metadata:
        args["metadata"] = metadata
    return ImportItem(number, "put", args)
