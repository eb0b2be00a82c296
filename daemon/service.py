"""The request handlers: one method per op.

Every handler follows the same path: validate the arguments, (seal if
private), submit to the commit writer, and answer once committed.  A private
frame gets a keyed id at validation and is sealed on the writer's thread,
where its seq is known (daemon/vault.py); reads open it while the vault is
unlocked.  While locked, ``get`` of a private frame answers ``locked`` and
listings leave private frames out, naming them in ``withheld``.  Handlers
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
from memoryd.daemon.vault import Vault
from memoryd.daemon.writer import CommitWriter, Event
from memoryd.storage import AppendedRecord, EventLog
from memoryd.storage.events import Frame, encode_frame_delete, encode_frame_put, frame_id
from memoryd.storage.frame_table import SEQ_SPACE, CursorError, FrameSlot, SlotPage
from memoryd.storage.projection import Projection, frame_at
from memoryd.storage.record import RecordType

VERSION = "0.1.0"
Result = dict[str, Any] | asyncio.Future[Any]
Handler = Callable[[dict[str, Any]], Result]

_FRAME_PUT = int(RecordType.FRAME_PUT)
_FRAME_DELETE = int(RecordType.FRAME_DELETE)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _put_result(frame_id_: str, seq: int, timestamp_ms: int, is_new: bool) -> dict[str, Any]:
    return {"id": frame_id_, "seq": seq, "timestamp_ms": timestamp_ms, "is_new": is_new}


def _existing(frame_id_: str, slot: FrameSlot) -> dict[str, Any]:
    return _put_result(frame_id_, slot.seq, slot.key // SEQ_SPACE, False)


def _sealing(
    vault: Vault, events: list[Event], frames: list[Frame], sealed_at: list[int], offset: int
) -> Callable[[int], list[bytes]]:
    """The deferred payloads of ``events``: those of ``frames[i]`` for i in ``sealed_at``
    (at ``offset + i`` among the events) sealed by ``vault`` once the seqs are known."""
    private = [frames[i] for i in sealed_at]

    def payloads(first_seq: int) -> list[bytes]:
        out = [payload for _, _, payload in events]
        seqs = [first_seq + offset + i for i in sealed_at]
        for i, payload in zip(sealed_at, vault.seal_puts(private, seqs), strict=True):
            out[offset + i] = payload
        return out

    return payloads


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
        vault: Vault | None = None,
    ) -> None:
        self._config = config
        self._log = event_log
        self._projection = projection
        self._writer = writer
        self._stats_extra = stats_extra
        self.vault = vault
        self._started = time.monotonic()
        # Puts accepted but not yet committed, by id: a second put of the same
        # content waits for the first's commit (and its frames) instead of
        # writing a duplicate.
        self._in_flight: dict[str, tuple[asyncio.Future[Any], dict[str, Frame]]] = {}
        # Near twins of new frames among built ones (daemon/near_duplicates.py), if set.
        self.near_duplicates: Callable[[Sequence[Frame]], list[str | None]] | None = None
        # Frames submitted that want their near twin, and the twins found, by frame object:
        # while a commit group is written (or else when its first put is applied) every
        # waiting frame's twin is looked up in one batch (one SimHash pass), so pipelined
        # puts share the cost and a lone put's lookup overlaps its fsync.
        self._near_waiting: dict[int, Frame] = {}
        self._near_found: dict[int, str | None] = {}
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
        return self._put_inputs([validation.frame_input(args)], single=True, near=True)

    def put_batch(self, args: dict[str, Any]) -> Result:
        # Near twins only when asked: a bulk load would pay a SimHash a frame for them.
        near = args.get("near_duplicates", False)
        if not isinstance(near, bool):
            raise validation.bad_request("near_duplicates must be true or false")
        return self._put_inputs(validation.batch_inputs(args), single=False, near=near)

    def _put_inputs(
        self, inputs: list[validation.FrameInput], *, single: bool, near: bool
    ) -> Result:
        if any(item.private for item in inputs):
            if self.vault is None:
                raise MemorydError(
                    errors.LOCKED,
                    "private memories need the vault, which this daemon does not have; "
                    "nothing was stored",
                )
            self.vault.require("private put refused")
        results: list[dict[str, Any] | None] = [None] * len(inputs)
        new: dict[str, Frame] = {}  # the frames this request writes, by id
        written: list[int] = []  # the index in ``results`` of each frame of ``new``
        repeats: list[tuple[int, Frame]] = []  # puts of a frame that another put writes
        waits: dict[asyncio.Future[Any], None] = {}  # commits of other requests, in order
        self._sort_puts(inputs, results, new, written, repeats, waits)

        def answer(_done: object = None) -> dict[str, Any]:
            # Once every frame is committed: only the put that wrote a frame is told it is new.
            for index, frame in repeats:
                results[index] = _put_result(frame.id, frame.seq, frame.timestamp_ms, False)
            return results[0] if single else {"results": results}  # type: ignore[return-value]

        if new:
            # Usually the writer's future is the answer itself: no future or task on top.
            committed = self._submit_frames(
                new, written, results, None if waits else answer, near=near
            )
            if not waits:
                return committed
            waits[committed] = None
        if not waits:
            return answer()
        futures = list(waits)
        return _then(futures[0] if len(futures) == 1 else asyncio.gather(*futures), answer)

    def _sort_puts(
        self,
        inputs: list[validation.FrameInput],
        results: list[dict[str, Any] | None],
        new: dict[str, Frame],
        written: list[int],
        repeats: list[tuple[int, Frame]],
        waits: dict[asyncio.Future[Any], None],
    ) -> None:
        """Answer the puts of live frames; sort the others into writes and repeats."""
        table_get = self._projection.table.get
        expiry = self._projection.expiry
        in_flight = self._in_flight
        stamp = now_ms()
        for index, item in enumerate(inputs):
            # One unpacking rather than eleven attribute reads of the named tuple.
            (
                content,
                namespace,
                kind,
                tags,
                importance,
                metadata,
                private,
                source,
                when,
                exp,
                sig,
            ) = item
            if private:
                assert self.vault is not None  # checked by _put_inputs
                fid = self.vault.private_id(namespace, kind, content)
            else:
                fid = frame_id(namespace, kind, content)
            slot = table_get(fid)
            # An expired frame counts as gone: putting it again writes it anew.
            if slot is not None and not (expiry and expiry.is_expired(fid, stamp)):
                results[index] = _existing(fid, slot)
            elif fid in new:
                repeats.append((index, new[fid]))
            elif fid in in_flight:
                # Another request writes it: wait for that commit instead of a duplicate.
                committed, frames = in_flight[fid]
                repeats.append((index, frames[fid]))
                waits[committed] = None
            else:
                timestamp_ms = stamp if when is None else when
                new[fid] = Frame(
                    fid,
                    0,
                    timestamp_ms,
                    namespace,
                    kind,
                    content,
                    tags,
                    importance,
                    metadata,
                    private,
                    source,
                    exp,
                    significance=sig,
                )
                written.append(index)

    def _submit_frames(
        self,
        new: dict[str, Frame],
        written: list[int],
        results: list[dict[str, Any] | None],
        answer: Callable[[], dict[str, Any]] | None,
        *,
        near: bool = True,
    ) -> asyncio.Future[Any]:
        """Commit ``new``; once durable, fold it in, fill its results (with near twins
        when ``near``) and return ``answer()``."""
        frames = list(new.values())
        in_flight = self._in_flight
        projection = self._projection
        apply_put = projection.apply_put
        # A private frame's payload is a placeholder until the writer seals it.
        vault = self.vault
        sealing = vault is not None
        events: list[Event] = [
            (
                _FRAME_PUT,
                frame.timestamp_ms,
                b"" if sealing and frame.private else encode_frame_put(frame),
            )
            for frame in frames
        ]
        sealed_at = [i for i, frame in enumerate(frames) if frame.private] if sealing else []
        # Expired frames put again: a tombstone first, so that the put is a new frame.
        table = projection.table
        expired = [fid for fid in new if fid in table] if projection.expiry else []
        if expired:
            stamp = now_ms()
            tombstones: list[Event] = [
                (_FRAME_DELETE, stamp, encode_frame_delete(fid)) for fid in expired
            ]
            events = tombstones + events
        deferred = None
        if sealed_at:
            assert vault is not None
            deferred = _sealing(vault, events, frames, sealed_at, len(expired))

        wants_twins = near and self.near_duplicates is not None

        def forget() -> None:
            for fid in new:
                del in_flight[fid]
            if wants_twins:  # committed or failed: nothing of it may linger
                for frame in frames:
                    self._near_waiting.pop(id(frame), None)
                    self._near_found.pop(id(frame), None)

        def apply(appended: Sequence[AppendedRecord]) -> dict[str, Any] | None:
            twins = self._twins(frames) if wants_twins else []
            forget()
            if expired:
                for fid, record in zip(expired, appended, strict=False):
                    projection.apply_delete(record.seq, fid)
                appended = appended[len(expired) :]
            for frame, record, index in zip(frames, appended, written, strict=True):
                frame.seq = record.seq
                apply_put(frame, record)
                results[index] = _put_result(frame.id, record.seq, frame.timestamp_ms, True)
            for index, twin in zip(written, twins, strict=False):
                if twin is not None:
                    results[index]["near_duplicate_of"] = twin  # type: ignore[index]
            return answer() if answer is not None else None

        committed = self._writer.submit(
            events, apply, forget, deferred, self._find_twins if wants_twins else None
        )
        # Only once accepted (a refused put must leave nothing behind), and before
        # the loop can run anything the writer hands back.
        if wants_twins:
            self._near_waiting.update((id(frame), frame) for frame in frames)
        in_flight.update(dict.fromkeys(new, (committed, new)))
        return committed

    def _find_twins(self) -> None:
        """Find the near twins of every frame waiting for one, in one batch."""
        waiting = list(self._near_waiting.values())
        if waiting:
            assert self.near_duplicates is not None
            self._near_found.update(
                zip(map(id, waiting), self.near_duplicates(waiting), strict=True)
            )
            self._near_waiting.clear()

    def _twins(self, frames: Sequence[Frame]) -> list[str | None]:
        """The near twins of ``frames`` (committed): found while they were written, or
        now with every waiting frame's."""
        found = self._near_found
        if any(id(frame) not in found for frame in frames):
            self._find_twins()
        return [found.pop(id(frame), None) for frame in frames]

    def delete(self, args: dict[str, Any]) -> Result:
        fid = validation.frame_id_arg(args)
        slot = self._projection.table.get(fid)
        if slot is None and fid not in self._in_flight:
            return {"id": fid, "deleted": False, "seq": None}
        event: Event = (int(RecordType.FRAME_DELETE), now_ms(), encode_frame_delete(fid))

        def apply(appended: Sequence[AppendedRecord]) -> dict[str, Any]:
            seq = appended[0].seq
            deleted = self._projection.apply_delete(seq, fid)
            return {"id": fid, "deleted": deleted, "seq": seq}

        vault = self.vault
        sealed = frame_at(self._log, slot) if slot is not None and vault is not None else None
        if vault is not None and sealed is not None and sealed.sealed is not None:

            async def forget_then_delete() -> Any:
                # The data key goes first: should the tombstone then fail, the frame
                # stays listed but unreadable, never deleted yet readable from a backup.
                await asyncio.to_thread(vault.forget, sealed)
                return await self._writer.submit([event], apply)

            return asyncio.ensure_future(forget_then_delete())
        return self._writer.submit([event], apply)

    # -- reads ---------------------------------------------------------------------

    def ping(self, args: dict[str, Any]) -> Result:
        return {"pong": True, "time_ms": now_ms()}

    def get(self, args: dict[str, Any]) -> Result:
        fid = validation.frame_id_arg(args)
        slot = self._projection.table.get(fid)
        if slot is None or self._projection.expiry.is_expired(fid, now_ms()):
            raise MemorydError(errors.NOT_FOUND, f"no live frame has id {fid}")
        frame = frame_at(self._log, slot)
        if frame.sealed is not None:
            frame = self._reveal(frame)
        return {"frame": frame.to_dict()}

    def readable(self, frame: Frame) -> Frame | None:
        """``frame`` as a client may see it: opened if sealed, None if it cannot be
        (locked, no vault, tampered or forgotten)."""
        if frame.sealed is None:
            return frame
        return None if self.vault is None else self.vault.readable(frame)

    def _reveal(self, frame: Frame) -> Frame:
        if self.vault is None:
            raise MemorydError(errors.LOCKED, f"frame {frame.id} is private and there is no vault")
        return self.vault.reveal(frame)

    def recent(self, args: dict[str, Any]) -> Result:
        namespace, kind, cursor = self._filters(args)
        limit = validation.page_limit(args, 20)
        page = self._page(
            lambda: self._projection.table.recent(
                namespace=namespace, kind=kind, limit=limit, cursor=cursor, hidden=self.hidden()
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
                hidden=self.hidden(),
            )
        )
        return self._page_result(page)

    def hidden(self) -> Callable[[str], bool] | None:
        """What listings skip now: expired frames (None when no frame has a time-to-live)."""
        expiry = self._projection.expiry
        if not expiry:
            return None
        stamp = now_ms()
        return lambda fid: expiry.is_expired(fid, stamp)

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
        frames: list[dict[str, Any]] = []
        withheld: list[dict[str, Any]] = []
        for slot in page.slots:
            frame = frame_at(self._log, slot)
            if frame.sealed is not None:
                try:
                    frame = self._reveal(frame)
                except MemorydError as exc:  # locked, tampered or forgotten: named, not shown
                    withheld.append({"id": frame.id, "code": exc.code})
                    continue
            frames.append(frame.to_dict())
        result: dict[str, Any] = {"frames": frames, "next_cursor": page.next_cursor}
        if withheld:
            result["withheld"] = withheld
        return result

    def stats(self, args: dict[str, Any]) -> Result:
        projection = self._projection
        return {
            "version": VERSION,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self._started, 3),
            "frames_live": len(projection.table),
            "frames_deleted": projection.table.frames_deleted,
            "frames_expired": projection.expiry.count_expired(now_ms()),
            "blocks": len(projection.blocks),
            "namespaces": len(projection.table.namespaces()),
            "records_unreadable": len(projection.unreadable),
            "last_seq": self._log.last_seq,
            "commits": self._writer.commits,
            "events_committed": self._writer.events_committed,
            "commit_failures": self._writer.commit_failures,
            "commit_queue_events": self._writer.queued_events,
            "durability": self._config.durability.value,
            "log": self._log.stats(),
            "vault": "no vault" if self.vault is None else self.vault.state,
            **self._stats_extra(),
        }
