"""One client connection: framing, handshake, dispatch, backpressure.

Built on ``asyncio.Protocol`` rather than streams so that a pipelined put
costs no task: requests are parsed as bytes arrive, answered at once when the
handler returns a dict, or when its future resolves.  Answers that are ready
together leave together: those of one read, and those resolved by one group
commit while more requests of the client are still in flight, go out in one
write (see ``_flush``) rather than one system call each.

Bounds, so that no client can hurt another:
- ``MessageDecoder`` refuses a length prefix over message_bytes_max before
  buffering the body; a framing error gets one error response, then close.
- At most ``requests_in_flight_per_connection_max`` unanswered requests: past
  that, reading from this client pauses until answers go out.
- When the kernel will not take our answers (the client is not reading), the
  transport tells us (``pause_writing``) and we stop reading its requests; if
  its unread answers still pass ``outbound_bytes_max``, it is disconnected.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from typing import TYPE_CHECKING, Any, cast

from memoryd.client import errors, protocol
from memoryd.client.errors import MemorydError

if TYPE_CHECKING:
    from memoryd.daemon.server import ConnectionRegistry

log = logging.getLogger("memoryd.connection")

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, gid = _PEERCRED.unpack(raw)
    return pid, uid, gid


class Connection(asyncio.Protocol):
    """Serves the requests of one client, in arrival order of parsing; answers as ready."""

    def __init__(self, registry: ConnectionRegistry) -> None:
        self._registry = registry
        self._service = registry.service
        self._metrics = registry.metrics
        self._decoder = protocol.MessageDecoder()
        self._transport: asyncio.Transport | None = None
        self._greeted = False
        self._in_flight = 0
        self._in_flight_max = registry.config.requests_in_flight_per_connection_max
        self._outbound_max = registry.config.outbound_bytes_max
        self._reading_paused = False
        self._writing_paused = False
        self._closing = False
        self._outbox: list[bytes] = []  # answers not yet handed to the transport
        self._outbox_bytes = 0
        self._flush_scheduled = False
        # After a framing error: read nothing more, close once answers are out.
        self._draining = False
        self.peer_uid = -1
        self.requests = 0

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        try:
            _pid, self.peer_uid, _gid = peer_credentials(sock)
        except OSError:
            self.peer_uid = -1
        refusal = self._registry.admit(self)
        if refusal is not None:
            self._fail_and_close(None, refusal)
            return
        # Answers above this many bytes unsent make the transport call pause_writing.
        transport.set_write_buffer_limits(high=1024 * 1024)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._outbox.clear()
        self._registry.release(self)

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._update_reading()

    def data_received(self, data: bytes) -> None:
        if self._closing or self._draining:
            return
        try:
            self._serve(data)
        finally:
            self._flush()  # the answers ready now: one write for the whole read

    def _serve(self, data: bytes) -> None:
        try:
            bodies = self._decoder.feed(data)
        except protocol.FramingError as exc:
            # Serve the whole messages that came before the bad header, so how
            # bytes were split into reads never changes which requests run.
            for body in exc.bodies:
                self._handle(body)
            self._fail_and_close(None, exc)
            return
        for body in bodies:
            if self._closing or self._draining:
                return
            self._handle(body)

    def eof_received(self) -> bool:
        # The client finished sending; keep the connection to deliver pending answers.
        return self._in_flight > 0

    # -- requests -------------------------------------------------------------------

    def _handle(self, body: bytes) -> None:
        self.requests += 1
        started = time.perf_counter()
        request_id: Any = None
        op: str | None = None
        try:
            request = protocol.parse_request(body)
            request_id = request.id
            op = request.op
            result = self._dispatch(request)
        except MemorydError as exc:
            if request_id is None:
                request_id = exc.details.pop("id", None) if exc.details else None
            self._send(protocol.encode_error(request_id, exc.code, exc.message, exc.details))
            self._metrics.observe(op, exc.code, time.perf_counter() - started)
            return
        except Exception as exc:
            log.exception("handler for request %r failed", request_id)
            self._send(protocol.encode_error(request_id, errors.INTERNAL, type(exc).__name__))
            self._metrics.observe(op, errors.INTERNAL, time.perf_counter() - started)
            return
        if isinstance(result, dict):
            self._send_result(request_id, result)
            self._metrics.observe(op, "ok", time.perf_counter() - started)
            return
        self._in_flight += 1
        self._update_reading()
        result.add_done_callback(lambda done: self._finish(request_id, done, op, started))

    def _dispatch(self, request: protocol.Request) -> Any:
        if request.op == "hello":
            return self._hello(request.args)
        if not self._greeted:
            raise MemorydError(errors.HANDSHAKE_REQUIRED, "the first request must be hello")
        handler = self._service.handlers.get(request.op)
        if handler is None:
            raise MemorydError(errors.UNKNOWN_OP, f"unknown op {request.op[:64]!r}")
        if self._registry.stopping:
            raise MemorydError(errors.SHUTTING_DOWN, "memoryd is shutting down")
        stream = self._registry.streams.get(request.op)
        if stream is not None:  # an op that pushes to this connection later (subscribe)
            return stream(request.args, self, request.id)
        return handler(request.args)

    def _hello(self, args: dict[str, Any]) -> dict[str, Any]:
        version = args.get("protocol")
        if not isinstance(version, int) or isinstance(version, bool):
            raise MemorydError(errors.BAD_REQUEST, "hello needs protocol (an integer)")
        if version != protocol.PROTOCOL_VERSION:
            raise MemorydError(
                errors.UNSUPPORTED_VERSION,
                f"client speaks protocol {version}, this server {protocol.PROTOCOL_VERSION}",
            )
        self._greeted = True
        return self._service.hello_result()

    def _finish(
        self, request_id: Any, done: asyncio.Future[Any], op: str | None, started: float
    ) -> None:
        self._in_flight -= 1
        code = "ok"
        if done.cancelled():
            code = errors.SHUTTING_DOWN
            self._send(protocol.encode_error(request_id, errors.SHUTTING_DOWN, "cancelled"))
        elif (exc := done.exception()) is not None:
            if isinstance(exc, MemorydError):
                code = exc.code
                self._send(protocol.encode_error(request_id, exc.code, exc.message, exc.details))
            else:
                code = errors.INTERNAL
                log.error("request %r failed: %r", request_id, exc)
                self._send(protocol.encode_error(request_id, errors.INTERNAL, type(exc).__name__))
        else:
            self._send_result(request_id, done.result())
        self._metrics.observe(op, code, time.perf_counter() - started)
        if self._in_flight == 0:
            self._flush()  # nothing else pending: no reason to wait
        elif not self._flush_scheduled:
            # More may resolve in this same loop turn (a group commit answers many
            # pipelined puts at once): write them all in the next turn.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        self._update_reading()
        self._registry.request_done()
        if self._draining and self._in_flight == 0:
            self.close()

    # -- output and flow control ----------------------------------------------------

    def _send_result(self, request_id: Any, result: dict[str, Any]) -> None:
        try:
            message = protocol.encode_ok(request_id, result)
        except protocol.FramingError as exc:
            message = protocol.encode_error(request_id, exc.code, exc.message)
        self._send(message)

    def _send(self, message: bytes) -> None:
        """Queue an answer for the next ``_flush``."""
        transport = self._transport
        if transport is None or self._closing or transport.is_closing():
            return
        self._outbox.append(message)
        self._outbox_bytes += len(message)
        unsent = self._outbox_bytes + transport.get_write_buffer_size()
        if unsent > self._outbound_max:
            log.warning(
                "disconnecting uid %d: %d unread answer bytes exceed outbound_bytes_max",
                self.peer_uid,
                unsent,
            )
            self._closing = True
            self._outbox.clear()
            transport.abort()

    def _flush(self) -> None:
        """Hand every queued answer to the transport in one write."""
        self._flush_scheduled = False
        outbox = self._outbox
        if not outbox:
            return
        self._outbox = []
        self._outbox_bytes = 0
        transport = self._transport
        if transport is None or self._closing or transport.is_closing():
            return
        transport.write(outbox[0] if len(outbox) == 1 else b"".join(outbox))

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or self._closing or transport.is_closing():
            return
        should_pause = (
            self._draining or self._writing_paused or self._in_flight >= self._in_flight_max
        )
        if should_pause and not self._reading_paused:
            transport.pause_reading()
            self._reading_paused = True
        elif not should_pause and self._reading_paused:
            transport.resume_reading()
            self._reading_paused = False

    def _fail_and_close(self, request_id: Any, exc: MemorydError) -> None:
        """Answer with ``exc``, then close once every earlier request is answered."""
        transport = self._transport
        if transport is None:
            return
        self._send(protocol.encode_error(request_id, exc.code, exc.message))
        self._draining = True
        transport.pause_reading()
        self._reading_paused = True
        if self._in_flight == 0:
            self.close()

    # -- server push (subscriptions) ------------------------------------------------

    def push(self, message: bytes) -> None:
        """Queue a push message; it leaves with the next flush (this loop turn)."""
        self._send(message)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    @property
    def unsent_bytes(self) -> int:
        """Answers and pushes queued or buffered but not yet taken by the kernel."""
        transport = self._transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return self._outbox_bytes + buffered

    @property
    def closed(self) -> bool:
        transport = self._transport
        return self._closing or transport is None or transport.is_closing()

    @property
    def idle(self) -> bool:
        return self._in_flight == 0

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._flush()
            self._closing = True
            self._transport.close()
