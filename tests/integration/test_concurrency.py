"""Many clients at once against a real daemon: every put acknowledged once, bounds enforced.

``connections_max`` cannot be lowered from the command line or the
environment (only Config holds it), so its enforcement is tested at its
default, 1024 connections: the process's file limit allows that many.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memoryd.client import AsyncClient, Client, PutResult, UnavailableError, protocol
from tests.integration.daemon_process import DaemonProcess

CLIENTS = 256
PUTS_PER_CLIENT = 40
CONNECTIONS_MAX = 1024  # Config.connections_max's default; PROTOCOL.md section 4


async def test_256_clients_pipelining_puts_get_distinct_seqs(daemon: DaemonProcess) -> None:
    clients = [
        AsyncClient(daemon.socket_path, client_name=f"agent-{n}", timeout=60)
        for n in range(CLIENTS)
    ]
    try:
        await asyncio.gather(*(client.connect() for client in clients))

        async def agent(n: int, client: AsyncClient) -> list[PutResult]:
            return await asyncio.gather(
                *(
                    client.put(f"agent {n} memory {i} 🧠", kind="event", tags=[f"agent-{n}"])
                    for i in range(PUTS_PER_CLIENT)
                )
            )

        per_client = await asyncio.gather(*(agent(n, c) for n, c in enumerate(clients)))
        results = [r for rs in per_client for r in rs]
        total = CLIENTS * PUTS_PER_CLIENT
        assert len(results) == total and all(r.is_new for r in results)
        assert len({r.seq for r in results}) == total
        assert len({r.id for r in results}) == total
        # Each client's puts are numbered in the order the log took them: 1..total.
        assert sorted(r.seq for r in results) == list(range(1, total + 1))

        stats = await clients[0].stats()
        assert stats["frames_live"] == total
        assert stats["last_seq"] == total
        assert stats["connections"] == CLIENTS
        # Group commit: far fewer fsyncs than puts.
        assert stats["commits"] < total

        # Spot-check contents through other connections than the writers'.
        for n in (0, 97, CLIENTS - 1):
            reader = clients[(n + 1) % CLIENTS]
            frames = await asyncio.gather(*(reader.get(r.id) for r in per_client[n]))
            assert [f.content for f in frames] == [
                f"agent {n} memory {i} 🧠" for i in range(PUTS_PER_CLIENT)
            ]
            assert all(f.tags == (f"agent-{n}",) for f in frames)
    finally:
        await asyncio.gather(*(client.close() for client in clients))


def test_deep_pipeline_on_one_connection_is_slowed_never_refused(daemon: DaemonProcess) -> None:
    """3000 requests written at once, over 256 in flight: all answered, in any order."""
    count = 3000
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    try:
        sock.connect(str(daemon.socket_path))
        payload = protocol.encode_request(0, "hello", {"protocol": 1}) + b"".join(
            protocol.encode_request(i, "put", {"content": f"deep {i}"}) for i in range(1, count + 1)
        )
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        decoder = protocol.MessageDecoder()
        responses: dict[int, dict[str, Any]] = {}
        while len(responses) < count + 1:
            data = sock.recv(1 << 20)
            assert data, "daemon closed the connection"
            for body in decoder.feed(data):
                response = protocol.parse_response(body)
                responses[response["id"]] = response
        sender.join(timeout=30)
        assert not sender.is_alive()
    finally:
        sock.close()
    assert all(r["ok"] for r in responses.values()), [r for r in responses.values() if not r["ok"]][
        :3
    ]
    assert len({r["result"]["seq"] for i, r in responses.items() if i}) == count
    with Client(daemon.socket_path) as memory:
        assert memory.stats()["frames_live"] == count


class RawConnection:
    """A blocking socket speaking the wire protocol directly (no client retries)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.decoder = protocol.MessageDecoder()
        self.ready: list[bytes] = []
        # Blocking connect: waits for room in the listen backlog instead of failing EAGAIN.
        self.sock.connect(str(path))
        self.sock.settimeout(10)

    def send(self, request_id: Any, op: str, args: dict[str, Any]) -> None:
        body = json.dumps({"id": request_id, "op": op, "args": args}).encode()
        self.sock.sendall(struct.pack(">IB", len(body), 1) + body)

    def receive(self) -> dict[str, Any]:
        while not self.ready:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the daemon")
            self.ready.extend(self.decoder.feed(data))
        return protocol.parse_response(self.ready.pop(0))

    def closed_by_daemon(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_connections() -> Iterator[list[RawConnection]]:
    opened: list[RawConnection] = []
    yield opened
    for conn in opened:
        conn.close()


def test_connections_max_is_enforced(
    daemon: DaemonProcess, raw_connections: list[RawConnection]
) -> None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < CONNECTIONS_MAX + 64:
        pytest.skip(f"needs {CONNECTIONS_MAX + 64} open files, the limit is {soft}")
    # Fill all but one slot; a hello answered proves the daemon admitted the connection.
    for n in range(CONNECTIONS_MAX - 1):
        conn = RawConnection(daemon.socket_path)
        raw_connections.append(conn)
        conn.send(n, "hello", {"protocol": 1})
        response = conn.receive()
        assert response["id"] == n and response["ok"], response
    with Client(daemon.socket_path) as last:  # connection number 1024 is still admitted
        stats = last.stats()
        assert stats["connections"] == CONNECTIONS_MAX
        assert stats["connections_max"] == CONNECTIONS_MAX

        # Number 1025: one busy error with id null, then the daemon closes it.
        extra = RawConnection(daemon.socket_path)
        raw_connections.append(extra)
        refusal = extra.receive()
        assert refusal["id"] is None and refusal["ok"] is False
        assert refusal["error"]["code"] == "busy"
        assert "connections_max=1024" in refusal["error"]["message"]
        assert extra.closed_by_daemon()

        # The typed client sees the same refusal as UnavailableError.
        with pytest.raises(UnavailableError) as busy, Client(daemon.socket_path, timeout=5):
            pass
        assert busy.value.code == "busy"

        # The admitted connections are unaffected.
        raw_connections[7].send("still-here", "ping", {})
        assert raw_connections[7].receive()["ok"] is True
        assert last.ping() > 0

        # Freeing a slot lets the next client in (once the daemon has seen the close).
        raw_connections[0].close()
        admitted = _connect_when_admitted(daemon.socket_path, deadline_s=5.0)
        assert admitted.server_info is not None
        admitted.close()
        stats = last.stats()
        assert stats["connections_refused"] >= 2
        assert stats["frames_live"] == 0


def _connect_when_admitted(path: Path, *, deadline_s: float) -> Client:
    deadline = time.monotonic() + deadline_s
    while True:
        client = Client(path, timeout=5)
        try:
            client.connect()
            return client
        except UnavailableError:
            client.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
