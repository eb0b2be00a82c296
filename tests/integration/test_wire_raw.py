"""The wire protocol spoken over a raw socket with only socket, struct and json.

This is what a client in another language does, following PROTOCOL.md; no
memoryd module is used on the client side.  It also feeds the daemon every
kind of bad input and checks that it answers clearly and keeps serving.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon_process import DaemonProcess


class RawConnection:
    def __init__(self, path: Path, *, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buffer = b""

    def send_body(self, body: bytes, version: int = 1) -> None:
        self.sock.sendall(struct.pack(">IB", len(body), version) + body)

    def send(self, request: dict[str, Any]) -> None:
        self.send_body(json.dumps(request).encode())

    def _read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by server")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def receive(self) -> dict[str, Any]:
        length, version = struct.unpack(">IB", self._read_exact(5))
        assert version == 1
        return json.loads(self._read_exact(length))  # type: ignore[no-any-return]

    def call(self, request_id: int, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        self.send({"id": request_id, "op": op, "args": args or {}})
        response = self.receive()
        assert response["id"] == request_id
        return response

    def hello(self) -> dict[str, Any]:
        response = self.call(0, "hello", {"protocol": 1, "client": "raw-test"})
        assert response["ok"], response
        return response["result"]  # type: ignore[no-any-return]

    def is_closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


_open_connections: list[RawConnection] = []


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    yield
    while _open_connections:
        _open_connections.pop().close()


def connect(daemon: DaemonProcess) -> RawConnection:
    conn = RawConnection(daemon.socket_path)
    _open_connections.append(conn)
    return conn


def error_of(response: dict[str, Any]) -> str:
    assert response["ok"] is False, response
    assert isinstance(response["error"]["message"], str) and response["error"]["message"]
    return str(response["error"]["code"])


def assert_still_serving(daemon: DaemonProcess) -> None:
    conn = connect(daemon)
    conn.hello()
    assert conn.call(99, "ping")["result"]["pong"] is True
    conn.close()


def test_hello_reports_protocol_limits_and_ops(daemon: DaemonProcess) -> None:
    conn = connect(daemon)
    info = conn.hello()
    assert info["protocol"] == 1
    assert info["limits"]["content_bytes_max"] == 256 * 1024
    assert {"put", "put_batch", "get", "recent", "range", "delete", "stats"} <= set(info["ops"])


def test_round_trip_over_raw_socket(daemon: DaemonProcess) -> None:
    conn = connect(daemon)
    conn.hello()
    content = "Caroline went to the LGBTQ support group 🌈 on 7 May"
    put = conn.call(
        1,
        "put",
        {
            "content": content,
            "kind": "fact",
            "tags": ["caroline"],
            "importance": 0.9,
            "metadata": {"session": 1},
        },
    )
    assert put["ok"] and put["result"]["is_new"] is True
    got = conn.call(2, "get", {"id": put["result"]["id"]})["result"]["frame"]
    assert got["content"] == content
    assert got["kind"] == "fact" and got["tags"] == ["caroline"] and got["importance"] == 0.9
    assert got["metadata"] == {"session": 1} and got["seq"] == put["result"]["seq"]
    again = conn.call(3, "put", {"content": content, "kind": "fact"})["result"]
    assert again["id"] == put["result"]["id"] and again["is_new"] is False


def test_pipelined_requests_are_matched_by_id(daemon: DaemonProcess) -> None:
    conn = connect(daemon)
    conn.hello()
    count = 200
    payload = b"".join(
        struct.pack(">IB", len(body), 1) + body
        for body in (
            json.dumps({"id": f"r{i}", "op": "put", "args": {"content": f"pipelined {i}"}}).encode()
            for i in range(count)
        )
    )
    conn.sock.sendall(payload)
    responses = {r["id"]: r for r in (conn.receive() for _ in range(count))}
    assert set(responses) == {f"r{i}" for i in range(count)}
    assert all(r["ok"] and r["result"]["is_new"] for r in responses.values())
    seqs = sorted(r["result"]["seq"] for r in responses.values())
    assert len(set(seqs)) == count


def test_first_request_must_be_hello(daemon: DaemonProcess) -> None:
    conn = connect(daemon)
    assert error_of(conn.call(1, "ping")) == "handshake_required"
    conn.hello()
    assert conn.call(2, "ping")["ok"] is True


def test_wrong_protocol_version_in_hello(daemon: DaemonProcess) -> None:
    conn = connect(daemon)
    assert error_of(conn.call(1, "hello", {"protocol": 99})) == "unsupported_version"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ({}, "bad_request"),  # missing content
        ({"content": 42}, "bad_request"),
        ({"content": ""}, "bad_request"),
        ({"content": "x", "importance": "high"}, "bad_request"),
        ({"content": "x", "importance": 1.5}, "bad_request"),
        ({"content": "x", "tags": "not-a-list"}, "bad_request"),
        ({"content": "x", "metadata": [1, 2]}, "bad_request"),
        ({"content": "x", "private": "yes"}, "bad_request"),
        ({"content": "x", "timestamp_ms": -5}, "bad_request"),
        ({"content": "x", "colour": "red"}, "bad_request"),
        ({"content": "x", "tags": [f"t{i}" for i in range(10_000)]}, "limit_exceeded"),
        ({"content": "x", "metadata": {"blob": "y" * 20_000}}, "limit_exceeded"),
        ({"content": "x", "namespace": "n" * 200}, "limit_exceeded"),
    ],
)
def test_invalid_put_arguments_get_clear_errors(
    daemon: DaemonProcess, args: dict[str, Any], code: str
) -> None:
    conn = connect(daemon)
    conn.hello()
    assert error_of(conn.call(1, "put", args)) == code
    assert conn.call(2, "ping")["ok"] is True  # the connection stays usable


def test_oversized_content_is_refused_never_truncated(daemon: DaemonProcess) -> None:
    conn = connect(daemon)
    conn.hello()
    response = conn.call(1, "put", {"content": "é" * (128 * 1024 + 1)})  # 2 bytes each
    assert error_of(response) == "limit_exceeded"
    assert "content_bytes_max" in response["error"]["message"]
    assert conn.call(2, "stats")["result"]["frames_live"] == 0


def test_ten_thousand_tags_names_the_limit(daemon: DaemonProcess) -> None:
    conn = connect(daemon)
    conn.hello()
    response = conn.call(1, "put", {"content": "x", "tags": [f"tag{i}" for i in range(10_000)]})
    assert error_of(response) == "limit_exceeded"
    assert response["error"]["details"] == {"limit": "tags_max", "max": 64, "got": 10_000}


def test_unknown_op(daemon: DaemonProcess) -> None:
    conn = connect(daemon)
    conn.hello()
    assert error_of(conn.call(1, "format_disk")) == "unknown_op"


def test_invalid_json_keeps_connection_open(daemon: DaemonProcess) -> None:
    conn = connect(daemon)
    conn.hello()
    conn.send_body(b'{"id": 1, "op": "ping"')
    assert error_of(conn.receive()) == "bad_json"
    conn.send_body(b"[1, 2, 3]")
    assert error_of(conn.receive()) == "bad_json"
    assert conn.call(2, "ping")["ok"] is True


def test_invalid_utf8_and_lone_surrogates(daemon: DaemonProcess) -> None:
    conn = connect(daemon)
    conn.hello()
    conn.send_body(b'{"id": 1, "op": "put", "args": {"content": "caf\xe9"}}')
    assert error_of(conn.receive()) == "bad_json"
    conn.send_body(b'{"id": 2, "op": "put", "args": {"content": "\\ud800"}}')
    assert error_of(conn.receive()) in ("bad_json", "bad_request")
    assert conn.call(3, "stats")["result"]["frames_live"] == 0


def test_wrong_envelope_types(daemon: DaemonProcess) -> None:
    conn = connect(daemon)
    conn.hello()
    conn.send({"id": 1, "op": 7})
    assert error_of(conn.receive()) == "bad_request"
    conn.send({"id": 2, "op": "put", "args": ["content"]})
    response = conn.receive()
    assert error_of(response) == "bad_request" and response["id"] == 2
    conn.send({"id": {"nested": True}, "op": "ping"})
    assert error_of(conn.receive()) == "bad_request"


def test_length_prefix_over_limit_closes_connection(daemon: DaemonProcess) -> None:
    conn = connect(daemon)
    conn.hello()
    conn.sock.sendall(struct.pack(">IB", 2**31, 1))
    response = conn.receive()
    assert error_of(response) == "message_too_large" and response["id"] is None
    assert conn.is_closed_by_server()
    assert_still_serving(daemon)


def test_garbage_bytes_close_connection(daemon: DaemonProcess) -> None:
    conn = connect(daemon)
    conn.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert error_of(conn.receive()) in ("message_too_large", "unsupported_version", "bad_frame")
    assert conn.is_closed_by_server()
    assert_still_serving(daemon)


def test_wrong_version_byte_closes_connection(daemon: DaemonProcess) -> None:
    conn = connect(daemon)
    conn.send_body(b'{"id": 1, "op": "hello", "args": {"protocol": 1}}', version=7)
    assert error_of(conn.receive()) == "unsupported_version"
    assert conn.is_closed_by_server()


def test_disconnect_mid_message_leaves_daemon_serving(daemon: DaemonProcess) -> None:
    for cut in (1, 3, 5, 20):
        conn = connect(daemon)
        conn.hello()
        body = json.dumps({"id": 1, "op": "put", "args": {"content": "half"}}).encode()
        conn.sock.sendall((struct.pack(">IB", len(body), 1) + body)[:cut])
        conn.close()
    assert_still_serving(daemon)
    conn = connect(daemon)
    conn.hello()
    assert conn.call(1, "stats")["result"]["frames_live"] == 0


def test_client_that_never_reads_does_not_stall_others(daemon: DaemonProcess) -> None:
    big = "z" * 200_000
    setup = connect(daemon)
    setup.hello()
    frame_id = setup.call(1, "put", {"content": big})["result"]["id"]
    hog = connect(daemon)
    hog.hello()
    hog.sock.setblocking(False)
    request = json.dumps({"id": 5, "op": "get", "args": {"id": frame_id}}).encode()
    message = struct.pack(">IB", len(request), 1) + request
    sent = 0
    dropped = False
    deadline = time.monotonic() + 3.0
    # Push until the daemon stops reading us (the socket fills: BlockingIOError)
    # or drops us because our unread answers passed outbound_bytes_max.
    while time.monotonic() < deadline and not dropped:
        try:
            hog.sock.send(message * 50)
            sent += 50
        except BlockingIOError:
            time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            dropped = True
    assert sent > 0
    other = connect(daemon)  # its socket timeout fails the test if the daemon stalls
    other.hello()
    for i in range(50):
        assert other.call(10 + i, "put", {"content": f"still served {i}"})["ok"]
    hog.close()
    assert_still_serving(daemon)


def test_delete_is_a_tombstone_and_idempotent(daemon: DaemonProcess) -> None:
    conn = connect(daemon)
    conn.hello()
    frame_id = conn.call(1, "put", {"content": "forget me"})["result"]["id"]
    first = conn.call(2, "delete", {"id": frame_id})["result"]
    assert first["deleted"] is True and first["seq"] > 0
    assert error_of(conn.call(3, "get", {"id": frame_id})) == "not_found"
    assert conn.call(4, "delete", {"id": frame_id})["result"]["deleted"] is False
    assert conn.call(5, "recent", {})["result"]["frames"] == []


def test_range_rejects_since_after_until(daemon: DaemonProcess) -> None:
    conn = connect(daemon)
    conn.hello()
    assert error_of(conn.call(1, "range", {"since_ms": 10, "until_ms": 5})) == "bad_request"
    assert error_of(conn.call(2, "recent", {"limit": 0})) == "bad_request"
    assert error_of(conn.call(3, "recent", {"limit": 10**9})) == "limit_exceeded"
    assert error_of(conn.call(4, "recent", {"cursor": "not-a-cursor"})) == "bad_request"


def test_private_put_without_vault_stores_nothing(daemon: DaemonProcess) -> None:
    conn = connect(daemon)
    conn.hello()
    response = conn.call(1, "put", {"content": "secret canary", "private": True})
    assert error_of(response) == "locked"
    assert "secret canary" not in json.dumps(response)
    assert conn.call(2, "stats")["result"]["frames_live"] == 0
