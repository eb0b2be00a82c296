"""The request handlers: one method per op.

Every handler follows the same path: validate the arguments, (seal if
private), submit to the commit writer, and answer once committed.  Handlers
that only read answer at once from the projection and the log.

A handler returns either a result dict (answered at once) or an
``asyncio.Future`` that resolves to one (answered when it does).  Raising
MemorydError answers with that error; the connection stays open.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from memoryd.client import errors, protocol
from memoryd.client.errors import MemorydError
from memoryd.daemon import validation
from memoryd.daemon.config import Config
from memoryd.daemon.writer import CommitWriter
from memoryd.storage import AppendedRecord, EventLog
from memoryd.storage.events import Frame, encode_frame_delete, encode_frame_put, frame_id
from memoryd.storage.frame_table import SEQ_SPACE, CursorError, FrameSlot, SlotPage
from memoryd.storage.projection import Projection, frame_at
from memoryd.storage.record import RecordType

VERSION = "0.1.0"
Result = dict[str, Any] | asyncio.Future[Any]
Handler = Callable[[dict[str, Any]], Result]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _put_result(frame_id_: str, seq: int, timestamp_ms: int, is_new: bool) -> dict[str, Any]:
    return {"id": frame_id_, "seq": seq, "timestamp_ms": timestamp_ms, "is_new": is_new}


def _existing(frame_id_: str, slot: FrameSlot) -> dict[str, Any]:
    return _put_result(frame_id_, slot.seq, slot.key // SEQ_SPACE, False)


def _then(
    source: asyncio.Future[Any], fn: Callable[[asyncio.Future[Any]], Any]
) -> asyncio.Future[Any]:
    """A future of ``fn(source)`` once ``source`` is done, without a task per request."""
    out: asyncio.Future[Any] = source.get_loop().create_future()

    def relay(done: asyncio.Future[Any]) -> None:
        if out.cancelled():
            return
        if done.cancelled():
            out.cancel()
        elif (exc := done.exception()) is not None:
            out.set_exception(exc)
        else:
            try:
                out.set_result(fn(done))
            except Exception as error:  # answered as an error, never lost
                out.set_exception(error)

    source.add_done_callback(relay)
    return out


class Service:
    """The daemon's operations over one log, projection and writer."""

    def __init__(
        self,
        config: Config,
        event_log: EventLog,
        projection: Projection,
        writer: CommitWriter,
        stats_extra: Callable[[], dict[str, Any]],
    ) -> None:
        self._config = config
        self._log = event_log
        self._projection = projection
        self._writer = writer
        self._stats_extra = stats_extra
        self._started = time.monotonic()
        # Puts accepted but not yet committed, by id: a second put of the same
        # content waits for the first instead of writing a duplicate.
        self._in_flight: dict[str, asyncio.Future[Any]] = {}
        self.handlers: dict[str, Handler] = {
            "ping": self.ping,
            "put": self.put,
            "put_batch": self.put_batch,
            "get": self.get,
            "recent": self.recent,
            "range": self.range,
            "delete": self.delete,
            "stats": self.stats,
        }

    @property
    def ops(self) -> list[str]:
        return ["hello", *self.handlers]

    def hello_result(self) -> dict[str, Any]:
        return {
            "protocol": protocol.PROTOCOL_VERSION,
            "server": "memoryd",
            "version": VERSION,
            "limits": protocol.LIMITS,
            "ops": self.ops,
        }

    # -- writes --------------------------------------------------------------------

    def put(self, args: dict[str, Any]) -> Result:
        return self._put_inputs([validation.frame_input(args)], single=True)

    def put_batch(self, args: dict[str, Any]) -> Result:
        return self._put_inputs(validation.batch_inputs(args), single=False)

    def _put_inputs(self, inputs: list[validation.FrameInput], *, single: bool) -> Result:
        if any(item.private for item in inputs):
            raise MemorydError(
                errors.LOCKED,
                "private memories need the vault, which is not set up on this daemon; "
                "nothing was stored",
            )
        table = self._projection.table
        results: list[dict[str, Any] | None] = [None] * len(inputs)
        pending: list[tuple[int, str, bool]] = []  # (index, id, is this the put that writes it)
        to_write: dict[str, Frame] = {}
        stamp = now_ms()
        for index, item in enumerate(inputs):
            fid = frame_id(item.namespace, item.kind, item.content)
            slot = table.get(fid)
            if slot is not None:
                results[index] = _existing(fid, slot)
                continue
            writes = fid not in self._in_flight and fid not in to_write
            pending.append((index, fid, writes))
            if writes:
                to_write[fid] = Frame(
                    id=fid,
                    seq=0,
                    timestamp_ms=item.timestamp_ms if item.timestamp_ms is not None else stamp,
                    namespace=item.namespace,
                    kind=item.kind,
                    content=item.content,
                    tags=item.tags,
                    importance=item.importance,
                    metadata=item.metadata,
                    private=item.private,
                    source=item.source,
                )
        if to_write:
            committed = self._submit_frames(list(to_write.values()))
            for fid in to_write:
                self._in_flight[fid] = committed
            committed.add_done_callback(lambda _f: self._forget_in_flight(to_write))
        if not pending:
            return results[0] if single else {"results": results}  # type: ignore[return-value]
        waits = {fid: self._in_flight[fid] for _, fid, _ in pending}
        unique = list(dict.fromkeys(waits.values()))
        gathered = unique[0] if len(unique) == 1 else asyncio.gather(*unique)

        def answer(done: asyncio.Future[Any]) -> dict[str, Any]:
            committed_by_id: dict[str, dict[str, Any]] = {}
            for future in unique:
                committed_by_id.update(future.result())
            for index, fid, writes in pending:
                result = committed_by_id[fid]
                # Only the put that wrote a frame is told it is new.
                results[index] = result if writes else {**result, "is_new": False}
            return results[0] if single else {"results": results}  # type: ignore[return-value]

        return _then(gathered, answer)

    def _forget_in_flight(self, written: dict[str, Frame]) -> None:
        for fid in written:
            self._in_flight.pop(fid, None)

    def _submit_frames(self, frames: list[Frame]) -> asyncio.Future[Any]:
        events = [
            (int(RecordType.FRAME_PUT), frame.timestamp_ms, encode_frame_put(frame))
            for frame in frames
        ]

        def apply(appended: Sequence[AppendedRecord]) -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            for frame, record in zip(frames, appended, strict=True):
                frame.seq = record.seq
                self._projection.apply_put(frame, record.location)
                out[frame.id] = _put_result(frame.id, record.seq, frame.timestamp_ms, True)
            return out

        return self._writer.submit(events, apply)

    def delete(self, args: dict[str, Any]) -> Result:
        fid = validation.frame_id_arg(args)
        if fid not in self._projection.table and fid not in self._in_flight:
            return {"id": fid, "deleted": False, "seq": None}
        event = (int(RecordType.FRAME_DELETE), now_ms(), encode_frame_delete(fid))

        def apply(appended: Sequence[AppendedRecord]) -> dict[str, Any]:
            seq = appended[0].seq
            deleted = self._projection.apply_delete(seq, fid)
            return {"id": fid, "deleted": deleted, "seq": seq}

        return self._writer.submit([event], apply)

    # -- reads ---------------------------------------------------------------------

    def ping(self, args: dict[str, Any]) -> Result:
        return {"pong": True, "time_ms": now_ms()}

    def get(self, args: dict[str, Any]) -> Result:
        fid = validation.frame_id_arg(args)
        slot = self._projection.table.get(fid)
        if slot is None:
            raise MemorydError(errors.NOT_FOUND, f"no live frame has id {fid}")
        return {"frame": frame_at(self._log, slot).to_dict()}

    def recent(self, args: dict[str, Any]) -> Result:
        namespace, kind, cursor = self._filters(args)
        limit = validation.page_limit(args, 20)
        page = self._page(
            lambda: self._projection.table.recent(
                namespace=namespace, kind=kind, limit=limit, cursor=cursor
            )
        )
        return self._page_result(page)

    def range(self, args: dict[str, Any]) -> Result:
        namespace, kind, cursor = self._filters(args)
        limit = validation.page_limit(args, 100)
        since = validation.optional_timestamp(args, "since_ms")
        until = validation.optional_timestamp(args, "until_ms")
        if since is not None and until is not None and since > until:
            raise validation.bad_request(f"since_ms ({since}) is later than until_ms ({until})")
        page = self._page(
            lambda: self._projection.table.range(
                since_ms=since,
                until_ms=until,
                namespace=namespace,
                kind=kind,
                limit=limit,
                cursor=cursor,
            )
        )
        return self._page_result(page)

    @staticmethod
    def _filters(args: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
        namespace = validation.optional_str(
            args, "namespace", "namespace_bytes_max", protocol.NAMESPACE_BYTES_MAX
        )
        kind = validation.optional_str(args, "kind", "kind_bytes_max", protocol.KIND_BYTES_MAX)
        cursor = validation.optional_str(
            args, "cursor", "cursor_bytes_max", protocol.CURSOR_BYTES_MAX
        )
        return namespace, kind, cursor

    @staticmethod
    def _page(query: Callable[[], SlotPage]) -> SlotPage:
        try:
            return query()
        except CursorError as exc:
            raise validation.bad_request(str(exc)) from None

    def _page_result(self, page: SlotPage) -> dict[str, Any]:
        frames = [frame_at(self._log, slot).to_dict() for slot in page.slots]
        return {"frames": frames, "next_cursor": page.next_cursor}

    def stats(self, args: dict[str, Any]) -> Result:
        projection = self._projection
        return {
            "version": VERSION,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self._started, 3),
            "frames_live": len(projection.table),
            "frames_deleted": projection.table.frames_deleted,
            "namespaces": len(projection.table.namespaces()),
            "records_unreadable": len(projection.unreadable),
            "last_seq": self._log.last_seq,
            "commits": self._writer.commits,
            "events_committed": self._writer.events_committed,
            "commit_failures": self._writer.commit_failures,
            "commit_queue_events": self._writer.queued_events,
            "durability": self._config.durability.value,
            "log": self._log.stats(),
            **self._stats_extra(),
        }
