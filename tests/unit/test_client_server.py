"""A small real protocol server on a Unix socket, for the client and CLI tests.

It frames and parses through ``memoryd.client.protocol`` (the same code the
daemon uses), keeps frames in a dict, and has knobs to misbehave the way a
real connection can: drop the connection after applying a request, answer
late and out of order, send an error with id null, send bytes that are not
a frame.  It is not the daemon: the daemon's integration tests cover that.
The tests at the bottom pin the server's own protocol behaviour.
"""

from __future__ import annotations

import hashlib
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import orjson
import pytest

from memoryd.client import errors, protocol

FRAME_DEFAULTS: dict[str, Any] = {
    "kind": "note",
    "namespace": "default",
    "tags": [],
    "importance": 0.5,
    "metadata": {},
    "private": False,
    "source": "",
    "expires_at_ms": None,
}
TEST_OPS = ("sleep", "null_error", "garbage", "echo")


class ProtocolServer:
    """Serves the memoryd protocol from threads: one per connection, one per ``sleep``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.frames: dict[str, dict[str, Any]] = {}
        self.deleted: set[str] = set()
        self.seq = 0
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.connections_accepted = 0
        # op -> how many of its next requests to apply and then drop the connection unanswered
        self.drop_after: dict[str, int] = {}
        self.hello_protocol = protocol.PROTOCOL_VERSION
        self.sleeping = 0
        self.sleeping_max = 0
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    # --- life ---------------------------------------------------------------

    def start(self) -> ProtocolServer:
        self._listener.bind(str(self.path))
        self._listener.listen(64)
        self._listener.settimeout(0.02)
        self._spawn(self._accept_loop)
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._listener.close()
        for conn in conns:
            conn.close()

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections_accepted += 1
                self._conns.append(conn)
            self._spawn(self._serve, conn)

    # --- one connection -----------------------------------------------------

    def _serve(self, conn: socket.socket) -> None:
        decoder = protocol.MessageDecoder()
        write_lock = threading.Lock()
        greeted = [False]

        def send(data: bytes) -> None:
            with write_lock, suppress(OSError):
                conn.sendall(data)

        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            try:
                bodies = decoder.feed(data)
            except protocol.FramingError as exc:
                for body in exc.bodies:
                    self._handle(body, greeted, send, conn)
                send(protocol.encode_error(None, exc.code, exc.message))
                conn.shutdown(socket.SHUT_RDWR)
                return
            for body in bodies:
                if not self._handle(body, greeted, send, conn):
                    return

    def _handle(self, body: bytes, greeted: list[bool], send: Any, conn: socket.socket) -> bool:
        """Answer one request; False when the connection was closed."""
        try:
            request = protocol.parse_request(body)
        except errors.MemorydError as exc:
            send(protocol.encode_error(exc.details.get("id"), exc.code, exc.message))
            return True
        with self._lock:
            self.requests.append((request.op, request.args))
        if not greeted[0] and request.op != "hello":
            send(protocol.encode_error(request.id, errors.HANDSHAKE_REQUIRED, "hello first"))
            return True
        if request.op == "garbage":
            send(b"\x00\x00\x00\x02\x09{}")
            return True
        if request.op == "null_error":
            send(protocol.encode_error(None, errors.BAD_FRAME, "bad length prefix"))
            conn.shutdown(socket.SHUT_RDWR)
            return False
        if request.op == "sleep":
            self._spawn(self._sleep_then_answer, request, send)
            return True
        try:
            result = self._dispatch(request.op, request.args)
            if request.op == "hello":
                greeted[0] = True
        except errors.MemorydError as exc:
            send(protocol.encode_error(request.id, exc.code, exc.message, exc.details))
            return True
        with self._lock:
            drops = self.drop_after.get(request.op, 0)
            if drops:
                self.drop_after[request.op] = drops - 1
        if drops:
            conn.shutdown(socket.SHUT_RDWR)
            return False
        send(protocol.encode_ok(request.id, result))
        return True

    def _sleep_then_answer(self, request: protocol.Request, send: Any) -> None:
        with self._lock:
            self.sleeping += 1
            self.sleeping_max = max(self.sleeping_max, self.sleeping)
        self._stopping.wait(request.args.get("ms", 0) / 1000)  # cut short by stop()
        with self._lock:
            self.sleeping -= 1
        if not self._stopping.is_set():
            send(protocol.encode_ok(request.id, {"slept_ms": request.args.get("ms", 0)}))

    # --- ops ----------------------------------------------------------------

    def _dispatch(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            raise errors.MemorydError(errors.UNKNOWN_OP, f"unknown op {op!r}")
        with self._lock:
            result: dict[str, Any] = handler(args)
            return result

    def _op_hello(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("protocol") != self.hello_protocol:
            raise errors.MemorydError(
                errors.UNSUPPORTED_VERSION, f"this server speaks {self.hello_protocol}"
            )
        ops = ["hello", "ping", "put", "put_batch", "get", "recent", "range", "delete", "stats"]
        return {
            "protocol": 1,
            "server": "memoryd",
            "version": "0.0-test",
            "limits": dict(protocol.LIMITS),
            "ops": ops + list(TEST_OPS),
        }

    def _op_ping(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "time_ms": int(time.time() * 1000)}

    def _op_echo(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"args": args}

    def _validate(self, args: dict[str, Any]) -> dict[str, Any]:
        content = args.get("content")
        if not isinstance(content, str) or not content.strip():
            raise errors.MemorydError(errors.BAD_REQUEST, "content must not be empty")
        if args.get("private"):
            raise errors.MemorydError(errors.LOCKED, "private memories are locked")
        return {**FRAME_DEFAULTS, **args}

    def _store(self, fields: dict[str, Any]) -> dict[str, Any]:
        key = "\0".join((fields["namespace"], fields["kind"], fields["content"]))
        frame_id = hashlib.sha256(key.encode()).hexdigest()[:32]
        existing = self.frames.get(frame_id)
        if existing is not None:
            is_new = False
            frame = existing
        else:
            self.seq += 1
            is_new = True
            self.deleted.discard(frame_id)
            timestamp_ms = fields.pop("timestamp_ms", None) or int(time.time() * 1000)
            frame = {"id": frame_id, "seq": self.seq, "timestamp_ms": timestamp_ms, **fields}
            self.frames[frame_id] = frame
        return {
            "id": frame_id,
            "seq": frame["seq"],
            "timestamp_ms": frame["timestamp_ms"],
            "is_new": is_new,
        }

    def _op_put(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._store(self._validate(args))

    def _op_put_batch(self, args: dict[str, Any]) -> dict[str, Any]:
        validated = []
        for index, frame in enumerate(args["frames"]):
            try:
                validated.append(self._validate(frame))
            except errors.MemorydError as exc:
                raise errors.MemorydError(exc.code, exc.message, {"index": index}) from None
        return {"results": [self._store(fields) for fields in validated]}

    def _op_get(self, args: dict[str, Any]) -> dict[str, Any]:
        frame = self.frames.get(args["id"])
        if frame is None:
            raise errors.MemorydError(errors.NOT_FOUND, f"no frame {args['id']}")
        return {"frame": frame}

    def _select(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            f
            for f in self.frames.values()
            if args.get("namespace") in (None, f["namespace"])
            and args.get("kind") in (None, f["kind"])
        ]

    @staticmethod
    def _page(frames: list[dict[str, Any]], args: dict[str, Any], limit: int) -> dict[str, Any]:
        start = int(args.get("cursor") or 0)
        limit = args.get("limit", limit)
        chunk = frames[start : start + limit]
        more = start + limit < len(frames)
        return {"frames": chunk, "next_cursor": str(start + limit) if more else None}

    def _op_recent(self, args: dict[str, Any]) -> dict[str, Any]:
        frames = sorted(self._select(args), key=lambda f: -f["seq"])
        return self._page(frames, args, 20)

    def _op_range(self, args: dict[str, Any]) -> dict[str, Any]:
        since = args.get("since_ms", 0)
        until = args.get("until_ms", 2**62)
        if since > until:
            raise errors.MemorydError(errors.BAD_REQUEST, "since_ms is after until_ms")
        frames = sorted(
            (f for f in self._select(args) if since <= f["timestamp_ms"] < until),
            key=lambda f: (f["timestamp_ms"], f["seq"]),
        )
        return self._page(frames, args, 100)

    def _op_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        frame = self.frames.pop(args["id"], None)
        if frame is None:
            return {"id": args["id"], "deleted": False, "seq": None}
        self.seq += 1
        self.deleted.add(args["id"])
        return {"id": args["id"], "deleted": True, "seq": self.seq}

    def _op_stats(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "frames_live": len(self.frames),
            "frames_deleted": len(self.deleted),
            "last_seq": self.seq,
            "server": "test",
        }

    # --- for assertions -----------------------------------------------------

    def ops_received(self) -> list[str]:
        with self._lock:
            return [op for op, _ in self.requests]


@contextmanager
def short_tmpdir() -> Iterator[Path]:
    """A short directory: AF_UNIX paths must stay under 108 bytes."""
    with tempfile.TemporaryDirectory(prefix="mdt-", dir="/tmp") as name:
        yield Path(name)


@contextmanager
def running_server() -> Iterator[ProtocolServer]:
    with short_tmpdir() as tmp:
        server = ProtocolServer(tmp / "memoryd.sock").start()
        try:
            yield server
        finally:
            server.stop()


# --- the server's own behaviour, which the client tests rely on ----------------


@pytest.fixture
def server() -> Iterator[ProtocolServer]:
    with running_server() as srv:
        yield srv


def _raw_exchange(path: Path, data: bytes) -> list[dict[str, Any]]:
    """Send raw bytes, read until the server closes or goes quiet; the parsed responses."""
    decoder = protocol.MessageDecoder()
    out: list[dict[str, Any]] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        sock.connect(str(path))
        sock.sendall(data)
        try:
            while chunk := sock.recv(65536):
                out.extend(orjson.loads(body) for body in decoder.feed(chunk))
        except TimeoutError:
            pass
    return out


def test_server_requires_hello_first(server: ProtocolServer) -> None:
    responses = _raw_exchange(server.path, protocol.encode_request(1, "ping", {}))
    assert responses == [
        {
            "id": 1,
            "ok": False,
            "error": {"code": "handshake_required", "message": "hello first"},
        }
    ]


def test_server_answers_framing_error_with_null_id_after_earlier_requests(
    server: ProtocolServer,
) -> None:
    hello = protocol.encode_request(1, "hello", {"protocol": 1})
    bad = b"\x00\x00\x00\x02\x07{}"
    responses = _raw_exchange(server.path, hello + bad)
    assert [r["id"] for r in responses] == [1, None]
    assert responses[0]["ok"] is True
    assert responses[1]["error"]["code"] == "unsupported_version"
