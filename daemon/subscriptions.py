"""Live tail: ``subscribe`` pushes frames to clients as they commit.

One task (``SubscriptionHub.run``) follows the log like the builder does:
the writer tells it how far the log is committed, it reads the new records
on a worker thread (at most ``follow_records_max`` per step) and, back on
the loop, pushes each committed frame to every subscription whose filters
it passes.  While nobody subscribes it reads nothing.

It never slows the writers: they do not wait for it, and a subscriber that
does not read its pushes is dropped once its connection holds more than
``subscriber_queued_bytes_max`` unsent bytes, with a last push that says so
(``limit_exceeded``); its connection stays open.

Push messages (PROTOCOL.md, "subscribe") carry the subscribe request's id
and no ``ok`` field, so that they cannot be taken for a response::

    {"id": <subscribe id>, "push": "frame", "frame": Frame}
    {"id": <subscribe id>, "push": "end", "error"?: {"code", "message", "details"}}
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from memoryd.client import errors, protocol
from memoryd.client.errors import MemorydError
from memoryd.daemon import validation
from memoryd.storage import EventLog, LogEntry
from memoryd.storage.events import EventError, Frame, decode_frame_put
from memoryd.storage.record import RecordType

log = logging.getLogger("memoryd.subscriptions")

SUBSCRIBER_QUEUED_BYTES_MAX = 8 * 1024 * 1024  # below outbound_bytes_max (64 MiB)
SUBSCRIPTIONS_PER_CONNECTION_MAX = 16
SUBSCRIPTIONS_MAX = 1024
FOLLOW_RECORDS_MAX = 256  # records read per step
SUBSCRIBE_KINDS_MAX = 32
SUBSCRIBE_TAGS_MAX = 32

_FRAME_PUT = int(RecordType.FRAME_PUT)
_FIELDS = frozenset(("namespace", "kinds", "tags"))


class PushChannel(Protocol):
    """The connection a subscription pushes to."""

    def push(self, message: bytes) -> None: ...

    @property
    def unsent_bytes(self) -> int: ...

    @property
    def closed(self) -> bool: ...


@dataclass(slots=True)
class Subscription:
    """One client's filters, where its pushes start, and where they go."""

    sub_id: int | str
    channel: PushChannel
    after_seq: int
    namespace: str | None
    kinds: frozenset[str] | None
    tags: tuple[str, ...]
    pushed: int = 0

    def wants(self, frame: Frame) -> bool:
        return (
            frame.seq > self.after_seq
            and (self.namespace is None or frame.namespace == self.namespace)
            and (self.kinds is None or frame.kind in self.kinds)
            and all(tag in frame.tags for tag in self.tags)
        )


def _string_list(args: dict[str, Any], name: str, limit_name: str, limit: int) -> list[str]:
    value = args.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise validation.bad_request(f"{name} must be a list of non-empty strings")
    if len(value) > limit:
        raise validation.limit_exceeded(limit_name, limit, len(value), f"number of {name}")
    return value


class SubscriptionHub:
    """Every live subscription, and the task that feeds them."""

    def __init__(
        self,
        event_log: EventLog,
        queued_bytes_max: int = SUBSCRIBER_QUEUED_BYTES_MAX,
        readable: Callable[[Frame], Frame | None] = lambda frame: frame,
    ):
        self._log = event_log
        # A frame as subscribers may see it: private ones opened while the vault is
        # unlocked, and left out (None) while it is locked.
        self._readable = readable
        self._queued_bytes_max = queued_bytes_max
        self._subscriptions: dict[tuple[int, int | str], Subscription] = {}
        self._committed_seq = event_log.last_seq
        self._published_seq = event_log.last_seq  # every record up to here is pushed
        self._wake = asyncio.Event()
        self._stopping = False
        self.frames_pushed = 0
        self.subscribers_dropped = 0

    # -- ops ------------------------------------------------------------------------

    def subscribe(
        self, args: dict[str, Any], channel: PushChannel, request_id: Any
    ) -> dict[str, Any]:
        """Start pushing frames committed after now that pass the filters."""
        unknown = set(args) - _FIELDS
        if unknown:
            raise validation.bad_request(f"unknown field(s): {', '.join(sorted(unknown))}")
        if request_id is None:
            raise validation.bad_request("subscribe needs a request id: pushes carry it")
        namespace = validation.optional_str(
            args, "namespace", "namespace_bytes_max", protocol.NAMESPACE_BYTES_MAX
        )
        kinds = _string_list(args, "kinds", "subscribe_kinds_max", SUBSCRIBE_KINDS_MAX)
        tags = _string_list(args, "tags", "subscribe_tags_max", SUBSCRIBE_TAGS_MAX)
        key = (id(channel), request_id)
        if key in self._subscriptions:
            raise validation.bad_request(f"subscription {request_id!r} is already open")
        self._drop_closed()
        mine = sum(1 for s in self._subscriptions.values() if s.channel is channel)
        if mine >= SUBSCRIPTIONS_PER_CONNECTION_MAX:
            raise validation.limit_exceeded(
                "subscriptions_per_connection_max",
                SUBSCRIPTIONS_PER_CONNECTION_MAX,
                mine + 1,
                "subscriptions on this connection",
            )
        if len(self._subscriptions) >= SUBSCRIPTIONS_MAX:
            raise MemorydError(
                errors.BUSY, f"too many subscriptions (subscriptions_max={SUBSCRIPTIONS_MAX})"
            )
        if not self._subscriptions:
            self._published_seq = self._committed_seq  # nothing was read while nobody listened
        after_seq = self._published_seq
        self._subscriptions[key] = Subscription(
            request_id,
            channel,
            after_seq,
            namespace,
            frozenset(kinds) if kinds else None,
            tuple(tags),
        )
        return {"subscription": request_id, "after_seq": after_seq}

    def unsubscribe(
        self, args: dict[str, Any], channel: PushChannel, request_id: Any
    ) -> dict[str, Any]:
        """End one subscription of this connection (its last push is ``end``)."""
        sub_id = args.get("subscription")
        if not isinstance(sub_id, int | str) or isinstance(sub_id, bool):
            raise validation.bad_request("subscription must be the subscribe request's id")
        subscription = self._subscriptions.pop((id(channel), sub_id), None)
        if subscription is not None:
            channel.push(protocol.encode_message({"id": sub_id, "push": "end"}))
        return {"subscription": sub_id, "unsubscribed": subscription is not None}

    # -- following the log ----------------------------------------------------------

    def notify_committed(self, seq: int) -> None:
        if seq > self._committed_seq:
            self._committed_seq = seq
            self._wake.set()

    async def run(self) -> None:
        """Push committed frames until ``stop``."""
        loop = asyncio.get_running_loop()
        while not self._stopping:
            if self._published_seq >= self._committed_seq or not self._subscriptions:
                if not self._subscriptions:
                    self._published_seq = self._committed_seq
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                entries = await loop.run_in_executor(
                    None, self._read, self._published_seq, self._committed_seq
                )
            except Exception:  # an unreadable log: say so, retry later
                log.exception("reading records after seq %d failed", self._published_seq)
                await asyncio.sleep(1.0)
                continue
            self._publish(entries)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for subscription in self._subscriptions.values():
            with contextlib.suppress(Exception):
                subscription.channel.push(
                    protocol.encode_message({"id": subscription.sub_id, "push": "end"})
                )
        self._subscriptions.clear()

    def _read(self, after_seq: int, up_to_seq: int) -> list[LogEntry]:
        entries = itertools.islice(self._log.read_from(after_seq + 1), FOLLOW_RECORDS_MAX)
        return [entry for entry in entries if entry.record.seq <= up_to_seq]

    def _publish(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        for entry in entries:
            record = entry.record
            if record.record_type != _FRAME_PUT:
                continue
            try:
                frame = decode_frame_put(record.payload, record.seq, record.timestamp_ms)
            except EventError:
                continue
            readable = self._readable(frame)
            if readable is not None:
                self._push(readable)
        self._published_seq = entries[-1].record.seq

    def _push(self, frame: Frame) -> None:
        message: bytes | None = None
        for key, subscription in list(self._subscriptions.items()):
            if subscription.channel.closed:
                del self._subscriptions[key]
                continue
            if not subscription.wants(frame):
                continue
            if message is None:
                message = protocol.encode_message({"push": "frame", "frame": frame.to_dict()})
            # The id goes first: the rest of the message is shared by every subscriber.
            body = _with_id(message, subscription.sub_id)
            unsent = subscription.channel.unsent_bytes
            if unsent + len(body) > self._queued_bytes_max:
                self._drop(key, subscription, unsent + len(body))
                continue
            subscription.channel.push(body)
            subscription.pushed += 1
            self.frames_pushed += 1

    def _drop(self, key: tuple[int, int | str], subscription: Subscription, queued: int) -> None:
        del self._subscriptions[key]
        self.subscribers_dropped += 1
        log.warning(
            "dropped subscription %r: %d unsent bytes exceed subscriber_queued_bytes_max",
            subscription.sub_id,
            queued,
        )
        error = {
            "code": errors.LIMIT_EXCEEDED,
            "message": f"this subscriber fell too far behind: {queued} bytes unsent, over "
            f"subscriber_queued_bytes_max={self._queued_bytes_max}; subscribe again",
            "details": {
                "limit": "subscriber_queued_bytes_max",
                "max": self._queued_bytes_max,
                "got": queued,
            },
        }
        subscription.channel.push(
            protocol.encode_message({"id": subscription.sub_id, "push": "end", "error": error})
        )

    def _drop_closed(self) -> None:
        for key in [k for k, s in self._subscriptions.items() if s.channel.closed]:
            del self._subscriptions[key]

    def stats(self) -> dict[str, int]:
        return {
            "subscriptions": len(self._subscriptions),
            "subscription_frames_pushed": self.frames_pushed,
            "subscribers_dropped": self.subscribers_dropped,
        }


def _with_id(message: bytes, sub_id: int | str) -> bytes:
    """``message`` (a framed push without an id) with ``"id": sub_id`` as its first field."""
    body = message[protocol.HEADER_BYTES :]
    prefix = b'{"id":' + orjson.dumps(sub_id) + b","
    new_body = prefix + body[1:]
    return protocol.HEADER_STRUCT.pack(len(new_body), protocol.PROTOCOL_VERSION) + new_body
