"""Live tail: ``subscribe`` through a real daemon, the blocking and asyncio clients, raw
sockets and ``memoryd tail -f``."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from typing import Any

import orjson
import pytest

from memoryd.client import AsyncClient, Client, errors, protocol
from tests.integration.daemon_process import DaemonProcess
from tests.integration.test_cli import MEMORYD, memoryd


def test_a_subscriber_gets_each_new_frame_that_passes_its_filters(daemon: DaemonProcess) -> None:
    with Client(daemon.socket_path) as client:
        before = client.put("before the subscription", namespace="a")
        with client.subscribe(namespace="a") as subscription:
            assert subscription.after_seq == before.seq
            client.put("other namespace", namespace="b")
            stored = client.put_batch(
                [
                    {"content": "one", "namespace": "a", "tags": ["t"], "importance": 0.7},
                    {"content": "two", "namespace": "a", "kind": "fact"},
                ]
            )
            client.put("before the subscription", namespace="a")  # not new: not pushed
            first = subscription.next(timeout=5)
            second = subscription.next(timeout=5)
            assert first is not None and second is not None
            assert (first.content, first.id, first.seq) == ("one", stored[0].id, stored[0].seq)
            assert first.tags == ("t",) and first.importance == 0.7 and first.namespace == "a"
            assert (second.content, second.kind) == ("two", "fact")
            assert subscription.next(timeout=0.3) is None


def test_kinds_and_tags_filters_and_unsubscribe(daemon: DaemonProcess) -> None:
    with Client(daemon.socket_path) as client:
        subscription = client.subscribe(kinds=["fact", "event"], tags=["x", "y"])
        client.put("fact with both tags", kind="fact", tags=["y", "x", "z"])
        client.put("fact with one tag", kind="fact", tags=["x"])
        client.put("note with both tags", tags=["x", "y"])
        client.put("event with both tags", kind="event", tags=["x", "y"])
        got = [subscription.next(timeout=5), subscription.next(timeout=5)]
        assert [f.content for f in got if f] == ["fact with both tags", "event with both tags"]
        subscription.close()


def test_unsubscribe_ends_the_stream_over_a_raw_connection(daemon: DaemonProcess) -> None:
    sock = raw_connection(daemon)
    sock.sendall(protocol.encode_request("tail-1", "subscribe", {}))
    decoder = protocol.MessageDecoder()
    assert next_message(sock, decoder)["result"]["subscription"] == "tail-1"
    with Client(daemon.socket_path) as client:
        client.put("pushed")
    push = next_message(sock, decoder)
    assert (push["id"], push["push"], push["frame"]["content"]) == ("tail-1", "frame", "pushed")
    assert "ok" not in push
    sock.sendall(protocol.encode_request(2, "unsubscribe", {"subscription": "tail-1"}))
    assert next_message(sock, decoder) == {"id": "tail-1", "push": "end"}
    assert next_message(sock, decoder)["result"] == {"subscription": "tail-1", "unsubscribed": True}
    sock.sendall(protocol.encode_request(3, "subscribe", {"kinds": "fact"}))
    error = next_message(sock, decoder)["error"]
    assert error["code"] == errors.BAD_REQUEST and "kinds" in error["message"]
    sock.close()


def test_a_subscriber_that_does_not_read_is_dropped_and_writers_go_on(
    daemon: DaemonProcess,
) -> None:
    sock = raw_connection(daemon)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(protocol.encode_request(1, "subscribe", {}))
    decoder = protocol.MessageDecoder()
    assert next_message(sock, decoder)["ok"]
    big = "y" * (200 * 1024)
    started = time.monotonic()
    with Client(daemon.socket_path) as client:
        for n in range(80):  # 16 MB of pushes: twice subscriber_queued_bytes_max
            client.put(f"{n} {big}")
        assert time.monotonic() - started < 30  # the writers never waited for the subscriber
        deadline = time.monotonic() + 10
        while client.stats()["subscribers_dropped"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.stats()["subscribers_dropped"] == 1
    messages = []
    while (message := next_message(sock, decoder)).get("push") == "frame":
        messages.append(message)
    assert 0 < len(messages) < 80
    assert message["push"] == "end"
    assert message["error"]["code"] == errors.LIMIT_EXCEEDED
    assert message["error"]["details"]["limit"] == "subscriber_queued_bytes_max"
    sock.sendall(protocol.encode_request(9, "ping", {}))
    assert next_message(sock, decoder)["result"]["pong"] is True  # the connection stays open
    sock.close()


def test_the_blocking_client_raises_the_drop(daemon: DaemonProcess) -> None:
    with Client(daemon.socket_path) as client:
        subscription = client.subscribe()
        subscription._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        big = "z" * (200 * 1024)
        for n in range(80):
            client.put(f"{n} {big}")
        with pytest.raises(errors.RequestError) as caught:
            for _frame in subscription:
                pass
        assert caught.value.code == errors.LIMIT_EXCEEDED
        assert "subscriber_queued_bytes_max" in caught.value.message
        assert subscription.ended


async def test_the_async_client_iterates_pushed_frames(daemon: DaemonProcess) -> None:
    async with AsyncClient(daemon.socket_path) as client:
        subscription = await client.subscribe(namespace="live")
        async with subscription:
            await client.put("skipped", namespace="elsewhere")
            frames = [{"content": f"live {n}", "namespace": "live"} for n in range(3)]
            await client.put_batch(frames)
            contents = []
            async for frame in subscription:
                contents.append(frame.content)
                if len(contents) == 3:
                    break
        assert contents == ["live 0", "live 1", "live 2"]


def test_stopping_the_daemon_ends_subscriptions_cleanly(daemon: DaemonProcess) -> None:
    with Client(daemon.socket_path) as client:
        subscription = client.subscribe()
    assert daemon.terminate() == 0
    assert list(subscription) == []
    assert subscription.ended


def test_memoryd_tail_shows_the_latest_then_follows(daemon: DaemonProcess) -> None:
    with Client(daemon.socket_path) as client:
        for n in range(3):
            client.put(f"old {n}", tags=["t"])
        client.put("untagged")
    run = memoryd("tail", "-n", "2", "--tag", "t", "--json", socket=daemon.socket_path)
    assert [json.loads(line)["content"] for line in run.out.splitlines()] == ["old 1", "old 2"]
    follower = subprocess.Popen(
        [*MEMORYD, "--socket", str(daemon.socket_path), "tail", "-f", "-n", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert follower.stdout is not None
        assert json.loads(follower.stdout.readline())["content"] == "untagged"
        with Client(daemon.socket_path) as client:
            client.put("new one")
        assert json.loads(follower.stdout.readline())["content"] == "new one"
    finally:
        follower.kill()
        follower.communicate(timeout=10)


def raw_connection(daemon: DaemonProcess) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(str(daemon.socket_path))
    sock.sendall(protocol.encode_request(0, "hello", {"protocol": 1}))
    assert next_message(sock, protocol.MessageDecoder())["ok"]
    return sock


_pending: dict[int, list[bytes]] = {}


def next_message(sock: socket.socket, decoder: protocol.MessageDecoder) -> dict[str, Any]:
    queue = _pending.setdefault(id(decoder), [])
    while not queue:
        data = sock.recv(1 << 20)
        assert data, "connection closed"
        queue.extend(decoder.feed(data))
    message: dict[str, Any] = orjson.loads(queue.pop(0))
    return message
