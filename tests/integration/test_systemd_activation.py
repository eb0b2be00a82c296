"""Socket activation for real: systemd-socket-activate holds the socket and starts
``memoryd serve`` on the first connection, passing it as LISTEN_FDS."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memoryd.client import Client
from tests.integration.systemd_helpers import NotifyListener, environment

ACTIVATOR = shutil.which("systemd-socket-activate")

pytestmark = pytest.mark.skipif(
    ACTIVATOR is None,
    reason="systemd-socket-activate is not installed (Debian package systemd; .ci/run installs it)",
)


def command_name(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def test_first_connection_starts_the_daemon(tmp_path: Path, socket_dir: Path) -> None:
    assert ACTIVATOR is not None
    sock = socket_dir / "memoryd.sock"
    listener = NotifyListener(socket_dir / "notify")
    stderr_path = tmp_path / "stderr.log"
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [
                ACTIVATOR,
                "--listen",
                str(sock),
                "--fdname=memoryd",
                f"--setenv=NOTIFY_SOCKET={listener.path}",
                sys.executable,
                "-m",
                "memoryd.daemon",
                "serve",
                "--data-dir",
                str(tmp_path / "data"),
            ],
            stderr=stderr,
            env=environment(),
        )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline, stderr_path.read_text()
            time.sleep(0.01)
        time.sleep(0.1)
        # Listening, but nothing started yet: no connection has come.
        assert command_name(process.pid).startswith("systemd-socket")
        assert not (tmp_path / "data").exists()
        with Client(sock, timeout=20) as client:  # this connection starts memoryd
            put = client.put("started by the first connection")
            status = client.call("status")
            assert client.get(put.id).content == "started by the first connection"
        assert command_name(process.pid) != "systemd-socket"  # exec'd into memoryd
        assert status["socket_activated"] is True
        assert status["socket"] == str(sock)
        assert status["pid"] == process.pid  # LISTEN_PID matched: the same process
        listener.wait_for("READY=1")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, stderr_path.read_text()
        # The socket file belongs to whoever passed it (systemd): memoryd leaves it.
        assert sock.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        listener.close()
    log = stderr_path.read_text()
    assert f"serving on {sock} (socket activated)" in log
    assert "stopped cleanly" in log
