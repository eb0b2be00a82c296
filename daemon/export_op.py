"""The ``export`` op: the log's events, in seq order, one page at a time.

A page is every committed record after ``after_seq``, up to ``limit`` records
and about ``export_page_bytes_max`` bytes of events (always at least one
record), each turned into one JSON object by the codec of its record type
(``EVENT_CODECS``).  The client asks again with ``after_seq`` set to the
page's ``next_after_seq`` until ``done``.  Reading runs on a worker thread,
never on the loop.

Event objects (one line of ``memoryd export``; PROTOCOL.md, "export")::

    {"event": "frame_put", "id", "seq", "timestamp_ms", "namespace", "kind",
     "content", "tags", "importance", "metadata", "private", "source",
     "expires_at_ms", "sealed"?}
    {"event": "frame_delete", "seq", "timestamp_ms", "id"}
    {"event": "block_update", "seq", "timestamp_ms", "namespace", "type", "op",
     "content", "label", "description", "chars_limit", "read_only"}
    {"event": "record", "seq", "timestamp_ms", "record_type", "payload_base64", "error"?}

A record type with no codec (a type added by a later release, or a payload
that does not decode) is exported as a ``record`` event, losslessly; one
whose codec returns None (log-internal records) is left out.  Another record
type gets its own event by adding its codec to the table.

Private frames: ``PrivateFrameExport`` decides what a private frame's event
holds.  As stored, it is sealed: ``sealed`` holds the envelope (base64) and
content, tags, metadata and source are empty; only with ``decrypt: true``
(and the vault unlocked) does the daemon open it (``Vault.export_frame``).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import Callable
from typing import Any

import orjson

from memoryd.client import errors
from memoryd.client.errors import MemorydError
from memoryd.daemon import validation
from memoryd.storage import EventLog
from memoryd.storage.errors import LogCorruptionError
from memoryd.storage.events import (
    BlockChange,
    EventError,
    decode_block_update,
    decode_frame_delete,
    decode_frame_put,
)
from memoryd.storage.record import Record, RecordType

EXPORT_RECORDS_MAX = 1000  # records in one page
# Events of one page, as JSON bytes: well under message_bytes_max (8 MiB), so that a
# page that ends with the largest possible frame still fits one message.
EXPORT_PAGE_BYTES_MAX = 4 * 1024 * 1024
EXPORT_RECORD_BYTES_MAX = 512 * 1024  # the largest event (a put at every limit) is ~300 KiB
assert EXPORT_PAGE_BYTES_MAX + EXPORT_RECORD_BYTES_MAX < 8 * 1024 * 1024

EventCodec = Callable[[Record], dict[str, Any] | None]
# (a private frame's event as stored, decrypt?) -> the event to export
PrivateFrameExport = Callable[[dict[str, Any], bool], dict[str, Any]]


def private_frame_as_logged(event: dict[str, Any], decrypt: bool) -> dict[str, Any]:
    """With no vault: a private frame's event is its record as the log holds it."""
    return event


def raw_record(record: Record, error: str | None = None) -> dict[str, Any]:
    """A record no codec knows, kept whole: its type and payload (base64)."""
    event: dict[str, Any] = {
        "event": "record",
        "seq": record.seq,
        "timestamp_ms": record.timestamp_ms,
        "record_type": record.record_type,
        "payload_base64": base64.b64encode(record.payload).decode("ascii"),
    }
    if error is not None:
        event["error"] = error
    return event


def _frame_put(record: Record) -> dict[str, Any]:
    frame = decode_frame_put(record.payload, record.seq, record.timestamp_ms)
    event = {"event": "frame_put", **frame.to_dict()}
    if frame.sealed is not None:
        event["sealed"] = base64.b64encode(frame.sealed).decode("ascii")
    return event


def _block_update(record: Record) -> dict[str, Any]:
    change: BlockChange = decode_block_update(record.payload)
    event: dict[str, Any] = {
        "event": "block_update",
        "seq": record.seq,
        "timestamp_ms": record.timestamp_ms,
        "namespace": change.namespace,
        "type": change.block_type,
        "op": change.op,
    }
    if change.op != "delete":
        event.update(
            content=change.content,
            label=change.label,
            description=change.description,
            chars_limit=change.chars_limit,
            read_only=change.read_only,
        )
    return event


def _frame_delete(record: Record) -> dict[str, Any]:
    return {
        "event": "frame_delete",
        "seq": record.seq,
        "timestamp_ms": record.timestamp_ms,
        "id": decode_frame_delete(record.payload),
    }


EVENT_CODECS: dict[int, EventCodec] = {
    int(RecordType.FRAME_PUT): _frame_put,
    int(RecordType.FRAME_DELETE): _frame_delete,
    int(RecordType.BLOCK_UPDATE): _block_update,
}
# Record types that are the log's own bookkeeping, never exported.
INTERNAL_RECORD_TYPES: set[int] = {int(RecordType.COMPACTION)}


def export_event(record: Record) -> dict[str, Any] | None:
    """The export event of one record (None for the log's internal records)."""
    if record.record_type in INTERNAL_RECORD_TYPES:
        return None
    codec = EVENT_CODECS.get(record.record_type)
    if codec is None:
        return raw_record(record)
    try:
        return codec(record)
    except EventError as exc:
        return raw_record(record, str(exc))


class ExportOp:
    """The ``export`` handler over one log."""

    def __init__(
        self,
        event_log: EventLog,
        private_export: PrivateFrameExport = private_frame_as_logged,
        page_bytes_max: int = EXPORT_PAGE_BYTES_MAX,
        can_decrypt: Callable[[], None] | None = None,
    ) -> None:
        self._log = event_log
        self._private_export = private_export
        # Raises MemorydError (locked) when private frames cannot be opened now.
        self._can_decrypt = can_decrypt
        self._page_bytes_max = page_bytes_max

    def __call__(self, args: dict[str, Any]) -> asyncio.Future[Any]:
        unknown = set(args) - {"after_seq", "limit", "decrypt"}
        if unknown:
            raise validation.bad_request(f"unknown field(s): {', '.join(sorted(unknown))}")
        after_seq = validation.optional_int(args, "after_seq", minimum=0) or 0
        limit = validation.optional_int(args, "limit", minimum=1)
        if limit is None:
            limit = EXPORT_RECORDS_MAX
        elif limit > EXPORT_RECORDS_MAX:
            raise validation.limit_exceeded(
                "export_records_max", EXPORT_RECORDS_MAX, limit, "limit"
            )
        decrypt = args.get("decrypt", False)
        if not isinstance(decrypt, bool):
            raise validation.bad_request(f"decrypt must be true or false, got {decrypt!r}")
        if decrypt and self._can_decrypt is not None:
            self._can_decrypt()  # answers locked (before any work) when it cannot
        elif decrypt:
            raise MemorydError(
                errors.LOCKED,
                "decrypting private frames needs the vault, which is not set up on this "
                "daemon; export without decrypt to get them as stored",
            )
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, self.page, after_seq, limit, decrypt)

    def page(self, after_seq: int, limit: int, decrypt: bool) -> dict[str, Any]:
        """The events after ``after_seq`` (a worker thread runs this)."""
        last_seq = self._log.last_seq
        events: list[dict[str, Any]] = []
        size = 0
        next_after = after_seq
        try:
            for entry in itertools.islice(self._log.read_from(after_seq + 1), limit):
                record = entry.record
                if record.seq > last_seq:
                    break
                event = export_event(record)
                next_after = record.seq
                if event is not None:
                    if event.get("private") is True:
                        event = self._private_export(event, decrypt)
                    events.append(event)
                    size += len(orjson.dumps(event))
                if size >= self._page_bytes_max:
                    break
        except LogCorruptionError as exc:
            raise MemorydError(
                errors.STORAGE_ERROR, f"the log could not be read at seq {next_after + 1}: {exc}"
            ) from None
        return {
            "events": events,
            "next_after_seq": next_after,
            "last_seq": last_seq,
            "done": next_after >= last_seq,
        }
