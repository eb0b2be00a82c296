"""The notify protocol of a real daemon, read from a real AF_UNIX datagram socket.

The daemon gets ``NOTIFY_SOCKET`` in its environment, as under systemd with
``Type=notify``; the tests assert the exact messages, in order.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoryd.client import Client
from tests.integration.daemon_process import DaemonProcess
from tests.integration.systemd_helpers import NotifyListener, write_frames


@pytest.fixture
def listener(socket_dir: Path) -> Iterator[NotifyListener]:
    receiver = NotifyListener(socket_dir / "notify")
    yield receiver
    receiver.close()


def start(
    tmp_path: Path, socket_dir: Path, monkeypatch: pytest.MonkeyPatch, **env: str
) -> DaemonProcess:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return DaemonProcess(tmp_path / "data", socket_dir / "memoryd.sock").start(wait=False)


def test_lifecycle_messages_in_order(
    tmp_path: Path,
    socket_dir: Path,
    listener: NotifyListener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """STATUS during recovery, READY once served, RELOADING/READY on SIGHUP, STOPPING first."""
    write_frames(tmp_path / "data", ["one", "two", "three"])
    daemon = start(tmp_path, socket_dir, monkeypatch, NOTIFY_SOCKET=str(listener.path))
    try:
        listener.wait_for("READY=1")
        # READY means served: the very first connection after it gets answers.
        with Client(daemon.socket_path, timeout=5) as client:
            assert client.put("four").is_new
            assert client.stats()["frames_live"] == 4
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGHUP)
        listener.wait_for("READY=1\nSTATUS=serving 4")
        code = daemon.terminate()
    finally:
        daemon.ensure_stopped()
    assert code == 0, daemon.stderr()
    messages = listener.drain()
    sock = daemon.socket_path
    assert messages[3].startswith("RELOADING=1\nMONOTONIC_USEC=")
    messages[3] = "RELOADING=1\nMONOTONIC_USEC=*"
    assert messages == [
        "STATUS=recovering: verifying the log",
        "STATUS=recovering: replaying the log up to seq 3",
        f"READY=1\nSTATUS=serving 3 frames on {sock}",
        "RELOADING=1\nMONOTONIC_USEC=*",
        f"READY=1\nSTATUS=serving 4 frames on {sock}",
        "STOPPING=1\nSTATUS=stopping: finishing requests in flight",
        "STATUS=stopping: writing a checkpoint",
        "STATUS=stopped: log synced and closed",
    ]


def test_watchdog_pings_while_serving(
    tmp_path: Path,
    socket_dir: Path,
    listener: NotifyListener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon = start(
        tmp_path,
        socket_dir,
        monkeypatch,
        NOTIFY_SOCKET=str(listener.path),
        WATCHDOG_USEC="200000",  # ping every 0.1 s
    )
    try:
        listener.wait_for("READY=1")
        ready_at = len(listener.messages)
        listener.collect_for(0.6)
        code = daemon.terminate()
    finally:
        daemon.ensure_stopped()
    assert code == 0, daemon.stderr()
    after_ready = listener.messages[ready_at:]
    assert after_ready.count("WATCHDOG=1") >= 3
    before_ready = listener.messages[:ready_at]
    assert "WATCHDOG=1" not in before_ready  # never before it serves
    assert "watchdog: pinging systemd every 0.1 s" in daemon.stderr()


def test_no_watchdog_for_another_process(
    tmp_path: Path,
    socket_dir: Path,
    listener: NotifyListener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon = start(
        tmp_path,
        socket_dir,
        monkeypatch,
        NOTIFY_SOCKET=str(listener.path),
        WATCHDOG_USEC="200000",
        WATCHDOG_PID="1",  # meant for another process
    )
    try:
        listener.wait_for("READY=1")
        listener.collect_for(0.4)
        assert daemon.terminate() == 0
    finally:
        daemon.ensure_stopped()
    assert "WATCHDOG=1" not in listener.messages


def test_a_refused_configuration_never_says_ready(
    tmp_path: Path, socket_dir: Path, listener: NotifyListener
) -> None:
    bad = tmp_path / "memoryd.toml"
    bad.write_text("chunk_frames_max = 0\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "memoryd.daemon",
            "--socket",
            str(socket_dir / "memoryd.sock"),
            "serve",
            "--config",
            str(bad),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        env={"NOTIFY_SOCKET": str(listener.path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "chunk_frames_max" in result.stderr and str(bad) in result.stderr
    assert listener.drain(quiet_s=0.1) == []
