"""The ``forget`` op: delete frames by id, by filter or by namespace, as tombstones.

Arguments: either ``ids`` (at most ``forget_ids_max``), or at least one
filter: ``namespace``, ``kind``, ``tags`` (every one), ``since_ms``
(inclusive), ``until_ms`` (exclusive).  ``dry_run`` only counts.

Each deleted frame gets a FRAME_DELETE record, exactly as ``delete`` writes
it, committed in batches of ``forget_batch_frames_max`` so that puts from
other clients go on between them; one request deletes at most
``forget_frames_max`` frames and says ``more`` when further frames match
(send it again).  Expired frames that compaction has not yet dropped match
too: forgetting them reclaims them sooner.

Filters are answered from the catalog the builder keeps, after waiting
(bounded) until it has built everything committed when the request came:
every frame stored before the request is seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from memoryd.client import errors, protocol
from memoryd.client.errors import MemorydError
from memoryd.daemon import validation
from memoryd.daemon.builder import Builder
from memoryd.daemon.vault import NO_VAULT, Vault
from memoryd.daemon.writer import CommitWriter, Event
from memoryd.storage import AppendedRecord, EventLog
from memoryd.storage.catalog import Filters
from memoryd.storage.events import encode_frame_delete
from memoryd.storage.projection import Projection, frame_at
from memoryd.storage.record import RecordType

FORGET_IDS_MAX = 1000
FORGET_FRAMES_MAX = 10_000
FORGET_BATCH_FRAMES_MAX = 1000
BUILD_WAIT_S = 5.0

_FIELDS = frozenset(("ids", "namespace", "kind", "tags", "since_ms", "until_ms", "dry_run"))
_FILTERS = _FIELDS - {"ids", "dry_run"}

assert FORGET_BATCH_FRAMES_MAX <= FORGET_FRAMES_MAX


class ForgetOp:
    """The ``forget`` handler."""

    def __init__(
        self,
        event_log: EventLog,
        projection: Projection,
        builder: Builder,
        writer: CommitWriter,
        vault: Vault | None = None,
    ) -> None:
        self._log = event_log
        self._projection = projection
        self._builder = builder
        self._writer = writer
        # Private frames are crypto-shredded: their data keys go before the tombstones.
        self._vault = vault

    def __call__(self, args: dict[str, Any]) -> dict[str, Any] | asyncio.Future[Any]:
        unknown = set(args) - _FIELDS
        if unknown:
            raise validation.bad_request(f"unknown field(s): {', '.join(sorted(unknown))}")
        dry_run = args.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise validation.bad_request("dry_run must be true or false")
        given = {name for name in _FILTERS if args.get(name) is not None}
        if args.get("ids") is not None:
            if given:
                raise validation.bad_request("give ids or filters, not both")
            targets = self._ids(args["ids"])
            matched = [fid for fid in targets if fid in self._projection.table]
            if dry_run:
                return _result(len(matched), 0, dry_run=True, more=False, seq=None)
            return asyncio.ensure_future(self._delete(matched, len(matched), more=False))
        if not given:
            raise validation.bad_request(
                "forget needs ids or at least one filter (namespace, kind, tags, since_ms, "
                "until_ms); nothing was deleted"
            )
        return asyncio.ensure_future(self._by_filter(_filters(args), dry_run))

    @staticmethod
    def _ids(value: object) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise validation.bad_request("ids must be a list of non-empty strings")
        if not value:
            raise validation.bad_request("ids must not be empty")
        if len(value) > FORGET_IDS_MAX:
            raise validation.limit_exceeded(
                "forget_ids_max", FORGET_IDS_MAX, len(value), "number of ids"
            )
        for frame_id in value:
            if len(frame_id) > protocol.ID_BYTES_MAX:
                raise validation.bad_request(f"an id is longer than {protocol.ID_BYTES_MAX} bytes")
        return list(dict.fromkeys(value))

    async def _by_filter(self, filters: Filters, dry_run: bool) -> dict[str, Any]:
        committed = self._log.last_seq
        if not await self._builder.wait_built(committed, BUILD_WAIT_S):
            raise MemorydError(
                errors.BUSY,
                f"the builder has not reached seq {committed} within {BUILD_WAIT_S:g} s; "
                "nothing was deleted, retry",
            )
        catalog = self._builder.derived.catalog
        docs = np.flatnonzero(catalog.mask(filters))
        table = self._projection.table
        if dry_run:
            matched = sum(1 for doc in docs.tolist() if catalog.ids[doc] in table)
            return _result(matched, 0, dry_run=True, more=False, seq=None)
        targets: list[str] = []
        for doc in docs.tolist():
            frame_id = catalog.ids[doc]
            if frame_id in table:
                targets.append(frame_id)
                if len(targets) > FORGET_FRAMES_MAX:
                    break
        more = len(targets) > FORGET_FRAMES_MAX
        return await self._delete(targets[:FORGET_FRAMES_MAX], len(targets), more=more)

    async def _shred(self, batch: Sequence[str]) -> None:
        """Destroy the data keys of the private frames of ``batch`` (one fdatasync).

        First, as ``delete`` does: should a tombstone then fail, the frame stays
        listed but unreadable, never deleted yet readable from a backup.
        """
        vault = self._vault
        if vault is None or vault.state == NO_VAULT:
            return  # no vault ever: no frame is sealed, none need reading back
        table = self._projection.table
        slots = [slot for slot in map(table.get, batch) if slot is not None]
        sealed = [f for f in (frame_at(self._log, s) for s in slots) if f.sealed is not None]
        if sealed:
            await asyncio.to_thread(vault.forget_frames, sealed)

    async def _delete(self, targets: Sequence[str], matched: int, *, more: bool) -> dict[str, Any]:
        deleted = 0
        seq: int | None = None
        for start in range(0, len(targets), FORGET_BATCH_FRAMES_MAX):
            batch = targets[start : start + FORGET_BATCH_FRAMES_MAX]
            stamp_ms = time.time_ns() // 1_000_000
            await self._shred(batch)
            events: list[Event] = [
                (int(RecordType.FRAME_DELETE), stamp_ms, encode_frame_delete(frame_id))
                for frame_id in batch
            ]

            def apply(
                appended: Sequence[AppendedRecord], batch: Sequence[str] = batch
            ) -> tuple[int, int]:
                count = 0
                for frame_id, record in zip(batch, appended, strict=True):
                    count += self._projection.apply_delete(record.seq, frame_id)
                return count, appended[-1].seq

            count, seq = cast(tuple[int, int], await self._writer.submit(events, apply))
            deleted += count
        return _result(matched, deleted, dry_run=False, more=more, seq=seq)


def _filters(args: dict[str, Any]) -> Filters:
    since = validation.optional_timestamp(args, "since_ms")
    until = validation.optional_timestamp(args, "until_ms")
    if since is not None and until is not None and since > until:
        raise validation.bad_request(f"since_ms ({since}) is later than until_ms ({until})")
    kind = validation.optional_str(args, "kind", "kind_bytes_max", protocol.KIND_BYTES_MAX)
    tags = args.get("tags")
    if tags is not None:
        if not (isinstance(tags, list) and tags and all(isinstance(t, str) and t for t in tags)):
            raise validation.bad_request("tags must be a non-empty list of non-empty strings")
        if len(tags) > protocol.TAGS_MAX:
            raise validation.limit_exceeded("tags_max", protocol.TAGS_MAX, len(tags), "tags")
    return Filters(
        namespace=validation.optional_str(
            args, "namespace", "namespace_bytes_max", protocol.NAMESPACE_BYTES_MAX
        ),
        kinds=(kind,) if kind is not None else None,
        tags=tuple(tags) if tags is not None else None,
        since_ms=since,
        until_ms=until,
    )


def _result(
    matched: int, deleted: int, *, dry_run: bool, more: bool, seq: int | None
) -> dict[str, Any]:
    return {"matched": matched, "deleted": deleted, "dry_run": dry_run, "more": more, "seq": seq}
