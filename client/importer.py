"""Applying an import source to a daemon: batches of puts, deletes in order, a summary.

Puts go in ``put_batch`` requests of at most ``import_batch_frames_max``
frames and about ``import_batch_bytes_max`` bytes.  A frame the daemon
refuses (``details.index`` names it) is reported with its line and the rest
of its batch is sent again; a batch refused as a whole for another reason
(say, a private frame on a daemon without a vault) is sent frame by frame,
so that every failure is reported against its own line.  A delete first
sends the puts before it, so that the file's order is kept.  ``busy`` is
retried with a back-off; a daemon that cannot be reached ends the import.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from . import errors
from .import_source import ImportItem, ImportSource, LineError
from .models import PutResult
from .sync_client import Client

IMPORT_BATCH_FRAMES_MAX: Final = 500
IMPORT_BATCH_BYTES_MAX: Final = 4 * 1024 * 1024  # well under message_bytes_max (8 MiB)
BUSY_RETRIES_MAX: Final = 8
BUSY_DELAY_S_MAX: Final = 2.0
_BATCH_PREFIX: Final = re.compile(r"^frames\[\d+\]: ")


@dataclass(slots=True)
class ImportSummary:
    """What an import did.  ``errors`` lists every part of the input not imported."""

    format_name: str
    stored: int = 0  # new frames
    existing: int = 0  # frames that were already stored (an import run again)
    deleted: int = 0  # live frames deleted
    delete_noops: int = 0  # deletes of frames that were not live
    block_changes: int = 0  # block changes applied (those a block already held are skipped)
    skipped: int = 0  # events the end state does not need, and record events
    errors: list[LineError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format_name,
            "stored": self.stored,
            "existing": self.existing,
            "deleted": self.deleted,
            "delete_noops": self.delete_noops,
            "block_changes": self.block_changes,
            "skipped": self.skipped,
            "failed": len(self.errors),
            "errors": [{"line": e.line, "message": e.message} for e in self.errors],
        }

    def describe(self) -> str:
        return (
            f"imported {self.format_name}: {self.stored} new, {self.existing} already stored, "
            f"{self.deleted} deleted, "
            + (f"{self.block_changes} block changes, " if self.block_changes else "")
            + f"{self.skipped} skipped, {len(self.errors)} failed"
        )


class Importer:
    """Applies one source through one blocking client."""

    def __init__(
        self,
        client: Client,
        source: ImportSource,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self._client = client
        self._source = source
        self._on_progress = on_progress
        self.summary = ImportSummary(source.format_name)
        self._batch: list[ImportItem] = []
        self._batch_bytes = 0
        # Per block (namespace, type): the time of the newest change it held before
        # this import (changes up to it are already there).
        self._block_floor: dict[tuple[str, str], int | None] = {}

    def run(self) -> ImportSummary:
        for item in self._source:
            if isinstance(item, LineError):
                self.summary.errors.append(item)
            elif item.action == "put":
                self._add_put(item)
            elif item.action == "block":
                self._flush()
                self._block(item)
            else:
                self._flush()
                self._delete(item)
            self._progress()
        self._flush()
        self.summary.skipped += int(getattr(self._source, "skipped", 0))
        self.summary.errors.sort(key=lambda e: e.line)
        self._progress()
        return self.summary

    def _progress(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self._source.bytes_read, self._source.total_bytes)

    def _add_put(self, item: ImportItem) -> None:
        size = len(orjson.dumps(item.args))
        if self._batch and (
            len(self._batch) >= IMPORT_BATCH_FRAMES_MAX
            or self._batch_bytes + size > IMPORT_BATCH_BYTES_MAX
        ):
            self._flush()
        self._batch.append(item)
        self._batch_bytes += size

    def _flush(self) -> None:
        pending, self._batch, self._batch_bytes = self._batch, [], 0
        while pending:
            try:
                results = self._put_batch(pending)
            except errors.RequestError as exc:
                index = exc.details.get("index")
                if isinstance(index, int) and 0 <= index < len(pending):
                    self._fail(pending.pop(index), exc)
                    continue
                self._one_by_one(pending)
                return
            except errors.UnavailableError as exc:
                if exc.code == errors.BUSY:
                    raise
                self._one_by_one(pending)
                return
            for item, result in zip(pending, results, strict=True):
                self._count_put(item, result.id, result.is_new)
            return

    def _one_by_one(self, items: list[ImportItem]) -> None:
        for item in items:
            try:
                results = self._put_batch([item])
            except (errors.RequestError, errors.UnavailableError) as exc:
                if exc.code == errors.BUSY:
                    raise
                self._fail(item, exc)
                continue
            self._count_put(item, results[0].id, results[0].is_new)

    def _put_batch(self, items: list[ImportItem]) -> list[PutResult]:
        batch = [item.args for item in items]
        results: list[PutResult] = self._retry_busy(lambda: self._client.put_batch(batch))
        return results

    def _count_put(self, item: ImportItem, frame_id: str, is_new: bool) -> None:
        if item.expect_id is not None and frame_id != item.expect_id:
            self.summary.errors.append(
                LineError(
                    item.line,
                    f"stored as {frame_id}, not {item.expect_id}: the line's id does not "
                    "match its namespace, kind and content",
                )
            )
        if is_new:
            self.summary.stored += 1
        else:
            self.summary.existing += 1

    def _delete(self, item: ImportItem) -> None:
        try:
            result = self._retry_busy(lambda: self._client.delete(item.args["id"]))
        except (errors.RequestError, errors.UnavailableError) as exc:
            if exc.code == errors.BUSY:
                raise
            self._fail(item, exc)
            return
        if result.deleted:
            self.summary.deleted += 1
        else:
            self.summary.delete_noops += 1

    def _block(self, item: ImportItem) -> None:
        """Replay one block change, dated as exported, unless the block held a change
        as new or newer before this import (an import run again changes nothing)."""
        args = dict(item.args)
        key = (str(args.get("namespace", "default")), str(args["type"]))
        if key not in self._block_floor:
            history = self._retry_busy(
                lambda: self._client.block_history(key[1], namespace=key[0], limit=1)
            )
            self._block_floor[key] = history.changes[0].timestamp_ms if history.changes else None
        floor = self._block_floor[key]
        if floor is not None and int(args["timestamp_ms"]) <= floor:
            self.summary.skipped += 1
            return
        op = args.pop("op")
        args["force"] = True  # a read-only block's later changes are part of its history
        if op == "delete":
            args = {name: args[name] for name in ("namespace", "type", "force", "timestamp_ms")}
        try:
            self._retry_busy(
                lambda: self._client.call("block_delete" if op == "delete" else "block_set", args)
            )
        except (errors.RequestError, errors.UnavailableError) as exc:
            if exc.code == errors.BUSY:
                raise
            self._fail(item, exc)
            return
        self.summary.block_changes += 1

    def _fail(self, item: ImportItem, exc: errors.MemorydError) -> None:
        message = _BATCH_PREFIX.sub("", exc.message, count=1)
        self.summary.errors.append(LineError(item.line, f"{exc.code}: {message}"))

    @staticmethod
    def _retry_busy(call: Callable[[], Any]) -> Any:
        delay_s = 0.05
        for _attempt in range(BUSY_RETRIES_MAX):
            try:
                return call()
            except errors.UnavailableError as exc:
                if exc.code != errors.BUSY:
                    raise
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, BUSY_DELAY_S_MAX)
        return call()
