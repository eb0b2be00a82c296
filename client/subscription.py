"""Live tail on the client: ``subscribe`` and its pushed frames (PROTOCOL.md, "subscribe").

A subscription has a connection of its own, so that pushes never mix with
another call's responses: it connects, says hello, subscribes, and then
reads push messages.  ``Subscription`` (blocking) and ``AsyncSubscription``
(asyncio) are iterators of ``Frame``; both end when the server ends the
subscription (``unsubscribe``, or the daemon stopping) and raise the error
it names when it drops a subscriber that fell behind
(``limit_exceeded``: ``subscriber_queued_bytes_max``).  The no-I/O part
(arguments, reading a push) is written once here.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import orjson

from . import errors, ops, protocol
from .models import Frame

SUBSCRIBE_REQUEST_ID: Final = 1  # hello is 0 on a subscription's own connection
RECV_BYTES: Final = 256 * 1024


def subscribe_args(
    namespace: str | None, kinds: Sequence[str] | None, tags: Sequence[str] | None
) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if namespace is not None:
        args["namespace"] = namespace
    if kinds:
        args["kinds"] = list(kinds)
    if tags:
        args["tags"] = list(tags)
    return args


def read_push(body: bytes) -> Frame | None:
    """The frame a push carries; None when the subscription ended; raises the error it
    was ended with, and ProtocolViolationError for anything else."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.ProtocolViolationError(
            errors.PROTOCOL_VIOLATION, f"push is not JSON: {exc}"
        ) from None
    if not isinstance(message, dict):
        raise errors.ProtocolViolationError(errors.PROTOCOL_VIOLATION, "push is not an object")
    kind = message.get("push")
    if kind == "frame":
        return Frame.from_wire(message.get("frame"))
    if kind == "end":
        if message.get("error") is not None:
            raise ops.error_of({"ok": False, "error": message["error"]})
        return None
    if message.get("ok") is False:  # a connection-level error (id null), e.g. shutting down
        raise ops.error_of(message)
    raise errors.ProtocolViolationError(
        errors.PROTOCOL_VIOLATION, f"unexpected message on a subscription: {str(message)[:80]}"
    )


def _handshake_result(body: bytes, expect_id: int) -> dict[str, Any]:
    response = protocol.parse_response(body)
    if response.get("id") != expect_id:
        raise (
            ops.error_of(response)
            if response.get("ok") is False
            else ops.unexpected_response(response)
        )
    return ops.result_of(response)


class Subscription:
    """A blocking subscription: iterate for frames as they commit.

    ``after_seq``: frames with a greater seq are pushed (those committed after
    the subscription began).  ``next(timeout)`` waits at most ``timeout``
    seconds (None: forever) and returns None if nothing came.
    """

    def __init__(self, sock: socket.socket, after_seq: int) -> None:
        self._sock = sock
        self._decoder = protocol.MessageDecoder()
        self._ready: deque[bytes] = deque()
        self.after_seq = after_seq
        self.ended = False

    @classmethod
    def open(
        cls, socket_path: Path, args: dict[str, Any], timeout: float, client_name: str
    ) -> Subscription:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(socket_path))
        except OSError as exc:
            sock.close()
            raise ops.connect_error(socket_path, exc) from None
        subscription = cls(sock, 0)
        try:
            hello = ops.hello(client_name)
            sock.sendall(ops.encode(0, hello.op, hello.args))
            hello.decode(_handshake_result(subscription._next_body(), 0))
            sock.sendall(ops.encode(SUBSCRIBE_REQUEST_ID, "subscribe", args))
            result = _handshake_result(subscription._next_body(), SUBSCRIBE_REQUEST_ID)
        except TimeoutError:
            sock.close()
            raise ops.timed_out("subscribe", timeout) from None
        except BaseException:
            sock.close()
            raise
        subscription.after_seq = int(result.get("after_seq", 0))
        return subscription

    def next(self, timeout: float | None = None) -> Frame | None:
        """The next frame; None on ``timeout`` or once the subscription has ended."""
        if self.ended:
            return None
        self._sock.settimeout(timeout)
        try:
            body = self._next_body()
        except TimeoutError:
            return None
        try:
            frame = read_push(body)
        except errors.MemorydError:
            self.close()
            raise
        if frame is None:
            self.close()
        return frame

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.next()) is not None:
            yield frame

    def close(self) -> None:
        self.ended = True
        self._sock.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _next_body(self) -> bytes:
        while not self._ready:
            try:
                data = self._sock.recv(RECV_BYTES)
            except TimeoutError:
                raise  # not broken: the caller's wait ended
            except OSError as exc:
                self.ended = True
                raise errors.DaemonConnectionError(
                    errors.CONNECTION_FAILED, f"the subscription's connection broke: {exc}"
                ) from None
            if not data:
                self.ended = True
                raise errors.DaemonConnectionError(
                    errors.CONNECTION_FAILED, "memoryd closed the subscription's connection"
                )
            try:
                self._ready.extend(self._decoder.feed(data))
            except protocol.FramingError as exc:
                raise ops.bad_stream(exc) from None
        return self._ready.popleft()


class AsyncSubscription:
    """An asyncio subscription: ``async for frame in subscription``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.after_seq = 0
        self.ended = False

    @classmethod
    async def open(
        cls, socket_path: Path, args: dict[str, Any], timeout: float, client_name: str
    ) -> AsyncSubscription:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(str(socket_path))
        except OSError as exc:
            raise ops.connect_error(socket_path, exc) from None
        except TimeoutError:
            raise ops.timed_out("subscribe", timeout) from None
        subscription = cls(reader, writer)
        try:
            async with asyncio.timeout(timeout):
                hello = ops.hello(client_name)
                writer.write(ops.encode(0, hello.op, hello.args))
                hello.decode(_handshake_result(await subscription._next_body(), 0))
                writer.write(ops.encode(SUBSCRIBE_REQUEST_ID, "subscribe", args))
                body = await subscription._next_body()
                result = _handshake_result(body, SUBSCRIBE_REQUEST_ID)
        except TimeoutError:
            await subscription.aclose()
            raise ops.timed_out("subscribe", timeout) from None
        except BaseException:
            await subscription.aclose()
            raise
        subscription.after_seq = int(result.get("after_seq", 0))
        return subscription

    def __aiter__(self) -> AsyncIterator[Frame]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[Frame]:
        while not self.ended:
            try:
                frame = read_push(await self._next_body())
            except errors.MemorydError:
                await self.aclose()
                raise
            if frame is None:
                await self.aclose()
                return
            yield frame

    async def aclose(self) -> None:
        self.ended = True
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _next_body(self) -> bytes:
        try:
            header = await self._reader.readexactly(protocol.HEADER_BYTES)
            length, version = protocol.HEADER_STRUCT.unpack(header)
            if version != protocol.PROTOCOL_VERSION or length > protocol.MESSAGE_BYTES_MAX:
                raise errors.ProtocolViolationError(
                    errors.PROTOCOL_VIOLATION, f"bad message header {header.hex()}"
                )
            return await self._reader.readexactly(length)
        except (asyncio.IncompleteReadError, OSError) as exc:
            self.ended = True
            raise errors.DaemonConnectionError(
                errors.CONNECTION_FAILED, f"the subscription's connection broke: {exc}"
            ) from None
