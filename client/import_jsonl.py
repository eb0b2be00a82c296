"""Reading ``memoryd export`` files (JSON Lines) back as import items.

One event per line (PROTOCOL.md, "export").  The file is read twice: the
first pass notes, for every id that some ``frame_delete`` names, whether
its last event is a delete; the second yields only what the file's end
state needs, in file order:

* a ``frame_put`` is applied unless a delete of that id comes later;
* a ``frame_delete`` is applied only when it is that id's last event (a
  frame deleted and put again is simply put, with the later put's fields).

Blank lines are skipped.

So an import of a file that puts then deletes a frame writes nothing for
it, and importing the same file twice writes nothing the second time
(puts are content-addressed; a delete of a frame that is not live writes
nothing).  Memory grows with the number of deleted ids only.  (A frame put again
after a delete keeps, in a daemon that already holds it, its old time.)

``block_update`` events are replayed in file order, each dated as exported
(the importer skips those a block already holds: see ``Importer``), so a
block's content, times and history come back.  A private frame exported
sealed (``sealed``: its envelope, only its vault can open it) is reported,
not imported: export with ``--decrypt`` to carry private frames to another
daemon, where they are sealed anew (under new keyed ids).

``record`` events (record types this client has no import for) and events
of an unknown kind are skipped and reported; a line that is not a JSON
object is reported with its number and the rest is imported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import orjson

from .import_source import ImportItem, LineError

LINE_BYTES_MAX: Final = 1024 * 1024  # the largest export line is ~300 KiB (a put at every limit)
PUT_FIELDS: Final = (
    "content",
    "namespace",
    "kind",
    "tags",
    "importance",
    "metadata",
    "private",
    "source",
    "timestamp_ms",
    "expires_at_ms",
)
BLOCK_FIELDS: Final = (
    "namespace",
    "type",
    "op",
    "content",
    "label",
    "description",
    "chars_limit",
    "read_only",
    "timestamp_ms",
)


class JsonlSource:
    """An export file (JSON Lines) as import items."""

    format_name = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.total_bytes = os.path.getsize(path)
        self._bytes_read = 0
        self.skipped = 0  # events read but not needed (a later delete, a record event)

    @property
    def bytes_read(self) -> int:
        return self._bytes_read

    def __iter__(self) -> Iterator[ImportItem | LineError]:
        last_delete, put_after = self._final_deletes()
        for number, line in self._lines():
            parsed = _parse(number, line)
            if parsed is None:
                continue
            if isinstance(parsed, LineError):
                yield parsed
                continue
            event = parsed
            kind = event.get("event")
            if kind == "frame_put":
                yield from self._put(number, event, last_delete)
            elif kind == "frame_delete":
                target = event.get("id")
                if not isinstance(target, str) or not target:
                    yield LineError(number, "frame_delete without a string id")
                elif last_delete.get(target) == number and target not in put_after:
                    yield ImportItem(number, "delete", {"id": target})
                else:
                    self.skipped += 1
            elif kind == "block_update":
                yield self._block(number, event)
            elif kind == "record":
                self.skipped += 1  # a record type this client cannot import
            else:
                yield LineError(number, f"unknown event {str(kind)[:40]!r}")

    def _put(
        self, number: int, event: dict[str, Any], last_delete: dict[str, int]
    ) -> Iterator[ImportItem | LineError]:
        frame_id = event.get("id")
        if frame_id is not None and not isinstance(frame_id, str):
            yield LineError(number, "frame_put id is not a string")
            return
        if frame_id is not None and number < last_delete.get(frame_id, 0):
            self.skipped += 1  # deleted later in the file
            return
        if event.get("sealed") is not None:
            yield LineError(
                number,
                "a sealed private frame: only the vault that sealed it can open it; "
                "export with --decrypt to import it into another daemon",
            )
            return
        content = event.get("content")
        if not isinstance(content, str):
            yield LineError(number, "frame_put without string content")
            return
        args = {name: event[name] for name in PUT_FIELDS if event.get(name) is not None}
        # A private frame's id is keyed by its vault: the target gives it its own.
        expect_id = None if event.get("private") is True else frame_id
        yield ImportItem(number, "put", args, expect_id)

    @staticmethod
    def _block(number: int, event: dict[str, Any]) -> ImportItem | LineError:
        args = {name: event[name] for name in BLOCK_FIELDS if event.get(name) is not None}
        ok = (
            isinstance(args.get("type"), str)
            and isinstance(args.get("timestamp_ms"), int)
            and (args.get("op") == "delete" or isinstance(args.get("content"), str))
        )
        if not ok:
            return LineError(number, "block_update without type, timestamp_ms or content")
        return ImportItem(number, "block", args)

    def _final_deletes(self) -> tuple[dict[str, int], set[str]]:
        """For each id some delete names, the line of its last delete; and the ids put
        again after their last delete."""
        last_delete: dict[str, int] = {}
        put_after: set[str] = set()
        for number, line in self._lines():
            event = _parse(number, line)
            if not isinstance(event, dict):
                continue
            target = event.get("id")
            if not isinstance(target, str):
                continue
            if event.get("event") == "frame_delete":
                last_delete[target] = number
                put_after.discard(target)
            elif event.get("event") == "frame_put" and target in last_delete:
                put_after.add(target)
        self._bytes_read = 0
        return last_delete, put_after

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        """Numbered lines; one longer than LINE_BYTES_MAX is read in bounded pieces and
        yielded as its first LINE_BYTES_MAX + 1 bytes (reported, never buffered whole)."""
        with open(self.path, "rb") as handle:
            number = 0
            while line := handle.readline(LINE_BYTES_MAX + 1):
                number += 1
                self._bytes_read += len(line)
                if len(line) > LINE_BYTES_MAX and not line.endswith(b"\n"):
                    while rest := handle.readline(LINE_BYTES_MAX):
                        self._bytes_read += len(rest)
                        if rest.endswith(b"\n"):
                            break
                yield number, line


def _parse(number: int, line: bytes) -> dict[str, Any] | LineError | None:
    """The event on a line; None for a blank line (skipped)."""
    if len(line) > LINE_BYTES_MAX:
        return LineError(number, f"line of {len(line)} bytes, over line_bytes_max={LINE_BYTES_MAX}")
    if not line.strip():
        return None
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return LineError(number, f"not valid JSON ({exc})")
    if not isinstance(event, dict):
        return LineError(number, "not a JSON object")
    return event
