"""A real memoryd process for integration tests: started, probed, signalled, killed.

Sockets live in a short private folder under /tmp because a Unix socket path
may not exceed 107 bytes, which pytest's tmp_path can.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memoryd.client import protocol

START_TIMEOUT_S = 20.0


def short_socket_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="md-", dir="/tmp"))


class DaemonProcess:
    """``memoryd serve`` in a subprocess, with its stderr captured to a file."""

    def __init__(self, data_dir: Path, socket_path: Path, *extra_args: str) -> None:
        self.data_dir = data_dir
        self.socket_path = socket_path
        self.extra_args = extra_args
        self.stderr_path = data_dir.parent / f"{data_dir.name}-stderr.log"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "memoryd.daemon",
            "--socket",
            str(self.socket_path),
            "serve",
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]

    def start(self, *, wait: bool = True) -> DaemonProcess:
        self.stderr_file = open(self.stderr_path, "ab")  # noqa: SIM115 - closed in stop/kill
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=self.stderr_file, env=env
        )
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.ensure_stopped()
                raise
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"memoryd exited with {self.process.returncode}: {self.stderr()}"
                )
            if self._answers_hello():
                return
            time.sleep(0.02)
        raise RuntimeError(f"memoryd did not become ready: {self.stderr()}")

    def _answers_hello(self) -> bool:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(2.0)
        try:
            sock.connect(str(self.socket_path))
            sock.sendall(protocol.encode_request(0, "hello", {"protocol": 1}))
            decoder = protocol.MessageDecoder()
            while not (bodies := decoder.feed(sock.recv(65536))):
                pass
            return bool(protocol.parse_response(bodies[0])["ok"])
        except OSError:
            return False
        finally:
            sock.close()

    def stderr(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.stderr_path.read_text(errors="replace")
        return ""

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self.stderr_file.close()
        return code

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)
        self.stderr_file.close()

    def ensure_stopped(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()
        self.stderr_file.close()


def cleanup_socket_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
