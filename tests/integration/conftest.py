"""Fixtures that run a real memoryd process on a real socket and real files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon_process import DaemonProcess, cleanup_socket_dir, short_socket_dir


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    path = short_socket_dir()
    yield path
    cleanup_socket_dir(path)


@pytest.fixture
def daemon(tmp_path: Path, socket_dir: Path) -> Iterator[DaemonProcess]:
    """A running daemon; stopped with SIGTERM after the test, which must exit 0."""
    process = DaemonProcess(tmp_path / "data", socket_dir / "memoryd.sock").start()
    yield process
    if process.process is not None and process.process.poll() is None:
        code = process.terminate()
        assert code == 0, process.stderr()
