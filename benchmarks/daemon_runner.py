"""A real memoryd process for benchmarks: fresh data directory, started, measured, stopped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memoryd.client import Client, UnavailableError

START_TIMEOUT_S = 120.0


class BenchDaemon:
    """``memoryd serve`` on a new data directory under $BENCH_DIR (else the temp folder)."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mdb-", dir=os.environ.get("BENCH_DIR")))
        # A Unix socket path may not exceed 107 bytes: keep it short, in /tmp.
        self.socket = Path(tempfile.mkdtemp(prefix="mdb-", dir="/tmp")) / "memoryd.sock"
        self.data_dir = self.root / "data"
        self._env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start (or restart) on the same data; returns seconds until it answers."""
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "memoryd.daemon",
                "--socket",
                str(self.socket),
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--log-level",
                "warning",
            ],
            env=self._env,
        )
        while time.perf_counter() - started < START_TIMEOUT_S:
            try:
                with Client(self.socket, timeout=2) as client:
                    client.ping()
                return time.perf_counter() - started
            except Exception:
                if self.process.poll() is not None:
                    raise RuntimeError(f"memoryd exited with {self.process.returncode}") from None
                time.sleep(0.02)
        raise RuntimeError("memoryd did not start")

    @staticmethod
    def wait_built(client: Client) -> None:
        """Until everything committed so far is searchable."""
        target = client.stats()["last_seq"]
        while True:
            try:
                client.search("ready", k=1, min_seq=target)
                return
            except UnavailableError:
                continue  # busy: not built within the bounded wait yet

    @staticmethod
    def wait_settled(client: Client) -> None:
        """Until everything committed is searchable and the idle builder's merge of
        keyword segments (a second or so after it catches up) is done: what a daemon
        that has been serving for a while answers from."""
        BenchDaemon.wait_built(client)
        while True:
            stats = client.stats()
            if stats["keyword_segments"] <= 2 and not stats["keyword_merging"]:
                return
            time.sleep(0.1)

    def rss_bytes(self) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        """SIGTERM and wait (the data stays, for a restart)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=300)

    def kill(self) -> None:
        """kill -9 (no shutdown checkpoint; the data stays, for a restart)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=60)

    def remove(self) -> None:
        """Stop, then delete the data and the socket folder."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.socket.parent, ignore_errors=True)
