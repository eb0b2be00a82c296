"""The sd_notify side of daemon/systemd.py, against real AF_UNIX datagram sockets."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from memoryd.daemon import systemd
from memoryd.daemon.server import PROGRESS_EXTEND_S, drain
from memoryd.daemon.systemd import Notifier, status_line, watchdog_interval_s


class Listener:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(2.0)

    def receive(self) -> str:
        return self.sock.recv(4096).decode()

    def pending(self) -> list[str]:
        """Every message already queued, without waiting."""
        self.sock.setblocking(False)
        out = []
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return out
        finally:
            self.sock.settimeout(2.0)


@pytest.fixture
def listener() -> Iterator[tuple[Listener, str]]:
    folder = tempfile.mkdtemp(prefix="md-n-", dir="/tmp")
    path = os.path.join(folder, "notify")
    receiver = Listener(path)
    yield receiver, path
    receiver.sock.close()
    os.unlink(path)
    os.rmdir(folder)


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.send("READY=1") is False
    notifier.ready("serving")
    notifier.watchdog()
    assert notifier.sent == []
    notifier.close()


def test_messages_arrive_whole_and_in_order(listener: tuple[Listener, str]) -> None:
    receiver, path = listener
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path})
    try:
        notifier.status("recovering: verifying the log")
        notifier.ready("serving 3 frames")
        notifier.extend_timeout(2.5, "stopping: 1 in flight")
        notifier.stopping("stopping")
        notifier.watchdog()
    finally:
        notifier.close()
    assert [receiver.receive() for _ in range(5)] == [
        "STATUS=recovering: verifying the log",
        "READY=1\nSTATUS=serving 3 frames",
        "EXTEND_TIMEOUT_USEC=2500000\nSTATUS=stopping: 1 in flight",
        "STOPPING=1\nSTATUS=stopping",
        "WATCHDOG=1",
    ]


def test_abstract_notify_socket() -> None:
    name = f"memoryd-test-{os.getpid()}"
    receiver = Listener(b"\0" + name.encode())
    notifier = Notifier(f"@{name}")
    try:
        assert notifier.send("READY=1")
        assert receiver.receive() == "READY=1"
    finally:
        notifier.close()
        receiver.sock.close()


def test_reloading_carries_the_monotonic_clock(listener: tuple[Listener, str]) -> None:
    receiver, path = listener
    notifier = Notifier(path)
    notifier.reloading()
    notifier.close()
    first, second = receiver.receive().split("\n")
    assert first == "RELOADING=1"
    assert second.startswith("MONOTONIC_USEC=") and int(second.split("=")[1]) > 0


def test_a_vanished_systemd_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "gone"))
    with caplog.at_level(logging.WARNING, logger="memoryd.systemd"):
        assert notifier.send("READY=1") is False
        assert notifier.send("WATCHDOG=1") is False
    notifier.close()
    assert notifier.dropped == 2
    assert len([r for r in caplog.records if "cannot notify" in r.message]) == 1


def test_status_is_one_short_line() -> None:
    assert status_line("a\nb\tc") == "STATUS=a b c"
    assert len(status_line("x" * 1000)) == len("STATUS=") + systemd.STATUS_CHARS_MAX


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, 0.0),
        ({"WATCHDOG_USEC": "0"}, 0.0),
        ({"WATCHDOG_USEC": "junk"}, 0.0),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, 0.0),  # another process's
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float) -> None:
    assert watchdog_interval_s(environ, pid=4242) == expected


async def test_watchdog_pings_only_while_healthy(listener: tuple[Listener, str]) -> None:
    receiver, path = listener
    notifier = Notifier(path)
    problem: list[str | None] = [None]
    task = asyncio.create_task(systemd.run_watchdog(notifier, 0.02, lambda: problem[0]))
    try:
        await asyncio.sleep(0.15)
        healthy_pings = receiver.pending()
        problem[0] = "the builder is not progressing (7 records waiting)"
        await asyncio.sleep(0.03)  # a ping may have been on its way
        receiver.pending()
        await asyncio.sleep(0.15)
        assert receiver.pending() == []  # withheld while unhealthy
        problem[0] = None
        await asyncio.sleep(0.1)
        resumed = receiver.pending()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        notifier.close()
    assert len(healthy_pings) >= 2 and set(healthy_pings) == {"WATCHDOG=1"}
    assert resumed and set(resumed) == {"WATCHDOG=1"}


async def test_progress_reports_extend_the_timeout_until_done(
    listener: tuple[Listener, str],
) -> None:
    receiver, path = listener
    notifier = Notifier(path)
    count = [0]

    def describe() -> str:
        count[0] += 1
        return f"recovering: step {count[0]}"

    async with systemd.progress_reports(notifier, 0.05, describe, 10.0):
        await asyncio.sleep(0.18)
    await asyncio.sleep(0.1)  # nothing more once the block is left
    notifier.close()
    messages = receiver.pending()
    assert messages == [
        f"EXTEND_TIMEOUT_USEC=10000000\nSTATUS=recovering: step {n}"
        for n in range(1, len(messages) + 1)
    ]
    assert 2 <= len(messages) <= 4


async def test_a_long_drain_asks_for_more_time(listener: tuple[Listener, str]) -> None:
    """While requests stay in flight at shutdown, systemd hears it and the timeout grows."""
    receiver, path = listener
    notifier = Notifier(path)
    idle = asyncio.Event()
    busy = SimpleNamespace(idle=False)
    registry: Any = SimpleNamespace(connections=[busy], wait_idle=idle.wait)
    loop = asyncio.get_running_loop()
    loop.call_later(0.25, idle.set)
    assert await drain(registry, 5.0, notifier, interval_s=0.1)
    notifier.close()
    messages = receiver.pending()
    extend = f"EXTEND_TIMEOUT_USEC={int(PROGRESS_EXTEND_S * 1_000_000)}"
    assert messages == [f"{extend}\nSTATUS=stopping: 1 connections with requests in flight"] * 2


async def test_a_quick_drain_says_nothing(listener: tuple[Listener, str]) -> None:
    receiver, path = listener
    notifier = Notifier(path)

    async def idle_now() -> None:
        return None

    registry: Any = SimpleNamespace(connections=set(), wait_idle=idle_now)
    assert await drain(registry, 5.0, notifier, interval_s=0.1)
    notifier.close()
    assert receiver.pending() == []


async def test_a_drain_past_its_deadline_gives_up(listener: tuple[Listener, str]) -> None:
    _receiver, path = listener
    notifier = Notifier(path)
    never = asyncio.Event()
    registry: Any = SimpleNamespace(connections=set(), wait_idle=never.wait)
    assert not await drain(registry, 0.05, notifier, interval_s=1.0)
    notifier.close()
