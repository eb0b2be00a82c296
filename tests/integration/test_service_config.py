"""A real daemon and its configuration: refused at start naming the key, reloaded on SIGHUP."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memoryd.client import Client
from tests.integration.daemon_process import DaemonProcess
from tests.integration.systemd_helpers import environment


def serve(socket_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``memoryd serve`` expected to refuse to start (it would run until stopped)."""
    command = [sys.executable, "-m", "memoryd.daemon", "--socket", str(socket_dir / "m.sock")]
    return subprocess.run(
        [*command, "serve", *args],
        env=environment(**env),
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("file_text", "env", "named"),
    [
        ("connections_max = 0\n", {}, "connections_max"),
        ("durability = 'eventually'\n", {}, "durability"),
        ("", {"MEMORYD_OUTBOUND_BYTES_MAX": "lots"}, "MEMORYD_OUTBOUND_BYTES_MAX"),
        ("shutdown_deadlin_s = 3\n", {}, "shutdown_deadlin_s"),
    ],
)
def test_an_invalid_value_is_refused_at_start_naming_the_key(
    tmp_path: Path, socket_dir: Path, file_text: str, env: dict[str, str], named: str
) -> None:
    config = tmp_path / "memoryd.toml"
    config.write_text(file_text)
    result = serve(socket_dir, "--config", str(config), "--data-dir", str(tmp_path / "d"), **env)
    assert result.returncode == 1
    assert result.stderr.startswith("memoryd: invalid configuration: ")
    assert named in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()  # refused before touching anything


def wait_for_log(daemon: DaemonProcess, text: str, timeout_s: float = 10.0) -> str:
    deadline = time.monotonic() + timeout_s
    while text not in (log := daemon.stderr()):
        assert time.monotonic() < deadline, f"no {text!r} in:\n{log}"
        time.sleep(0.02)
    return log


def test_sighup_reloads_what_can_be_reloaded(tmp_path: Path, socket_dir: Path) -> None:
    config = tmp_path / "memoryd.toml"
    config.write_text('log_level = "warning"\n')
    daemon = DaemonProcess(
        tmp_path / "data", socket_dir / "memoryd.sock", "--config", str(config)
    ).start()
    try:
        assert daemon.process is not None
        # At warning, the daemon's info lines are not written.
        assert "serving on" not in daemon.stderr()
        config.write_text('log_level = "info"\nshutdown_deadline_s = 4.5\nconnections_max = 5\n')
        daemon.process.send_signal(signal.SIGHUP)
        log = wait_for_log(daemon, "reloaded the configuration: ")
        assert "log_level warning -> info" in log and "shutdown_deadline_s 30.0 -> 4.5" in log
        assert "reload: connections_max changed; it takes effect at the next start" in log

        config.write_text("connections_max = -1\n")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for_log(daemon, "reload refused, the configuration in use is kept: connections_max")
        with Client(daemon.socket_path, timeout=5) as client:  # still serving
            assert client.put("after a refused reload").is_new
    finally:
        assert daemon.terminate() == 0
    assert "stopped cleanly" in daemon.stderr()  # logged: the reloaded level is info


def test_flags_beat_the_file(tmp_path: Path, socket_dir: Path) -> None:
    config = tmp_path / "memoryd.toml"
    config.write_text(f'durability = "relaxed"\ndata_dir = "{tmp_path / "from-file"}"\n')
    daemon = DaemonProcess(
        tmp_path / "from-flag", socket_dir / "memoryd.sock", "--config", str(config)
    ).start()
    try:
        with Client(daemon.socket_path, timeout=5) as client:
            status = client.call("status")
        assert status["data_dir"] == str(tmp_path / "from-flag")
        assert status["durability"] == "relaxed"  # from the file
    finally:
        assert daemon.terminate() == 0
    assert not (tmp_path / "from-file").exists()
