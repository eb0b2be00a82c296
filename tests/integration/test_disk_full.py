"""A full disk: puts get ``disk_full``, reads go on, and writes resume once space returns.

For real on a 2 MiB tmpfs when this machine lets us mount one (root in a
sandbox usually may); and always through the log's fault-injection seam.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memoryd.client import Client
from memoryd.client.errors import MemorydError, UnavailableError
from memoryd.daemon.config import Config
from memoryd.daemon.service import Service
from memoryd.daemon.writer import CommitWriter
from memoryd.storage import FileLog, check_data_dir
from memoryd.storage.projection import Projection
from tests.integration.daemon_process import DaemonProcess

TMPFS_BYTES = 2 * 1024 * 1024
BIG_CONTENT = "x" * (200 * 1024)  # more than a full disk has left


@pytest.fixture
def small_filesystem() -> Iterator[Path]:
    mount_point = Path(tempfile.mkdtemp(prefix="md-full-", dir="/tmp"))
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        mount_point.rmdir()
        pytest.skip(
            f"cannot mount a small tmpfs here ({result.stderr.strip() or result.returncode}); "
            "test_disk_full_through_the_fault_seam covers the same path"
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)
        mount_point.rmdir()


def fill(folder: Path) -> Path:
    """Write a file until the filesystem refuses more; returns it."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        block = b"\0" * 4096
        while True:
            try:
                f.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    return filler


def test_disk_full_on_a_small_filesystem(small_filesystem: Path, socket_dir: Path) -> None:
    data_dir = small_filesystem / "data"
    daemon = DaemonProcess(data_dir, socket_dir / "memoryd.sock").start()
    try:
        with Client(daemon.socket_path, timeout=10) as client:
            before = client.put("written while there was room")
            filler = fill(small_filesystem)
            with pytest.raises(UnavailableError) as caught:
                client.put(BIG_CONTENT)
            assert caught.value.code == "disk_full"
            assert "nothing was stored" in caught.value.message
            # Still up and serving reads.
            assert client.get(before.id).content == "written while there was room"
            assert [f.id for f in client.recent().frames] == [before.id]
            status = client.call("status")
            assert status["state"] == "serving" and status["commit_failures"] >= 1
            # Space returns: the same put now succeeds, with no restart.
            filler.unlink()
            again = client.put(BIG_CONTENT)
            assert again.is_new and again.seq == before.seq + 1
            assert client.get(again.id).content == BIG_CONTENT
    finally:
        code = daemon.terminate()
    assert code == 0, daemon.stderr()
    assert "the disk is full" in daemon.stderr()
    report = check_data_dir(data_dir)
    assert report.ok and report.torn_tail is None and report.records == 2


async def test_disk_full_through_the_fault_seam(tmp_path: Path) -> None:
    """The same promise where mounting is not allowed: ENOSPC raised inside the log's append."""
    full = [False]

    def inject(point: str) -> None:
        if full[0] and point == "write":
            raise OSError(errno.ENOSPC, "No space left on device")

    event_log, _ = FileLog.open(tmp_path / "log", fault_injector=inject)
    writer = CommitWriter(
        event_log, queue_events_max=100, batch_events_max=10, relaxed_sync_interval_ms=None
    )
    writer_task = asyncio.create_task(writer.run())
    projection = Projection()
    service = Service(Config(data_dir=tmp_path), event_log, projection, writer, dict)

    async def put(content: str) -> dict[str, Any]:
        result = service.put({"content": content})
        return result if isinstance(result, dict) else await result

    try:
        first = await put("before the disk filled")
        full[0] = True
        with pytest.raises(MemorydError) as caught:
            await put("while the disk is full")
        assert caught.value.code == "disk_full"
        got = service.get({"id": first["id"]})
        assert isinstance(got, dict) and got["frame"]["content"] == "before the disk filled"
        event_log._check()
        full[0] = False
        second = await put("while the disk is full")  # the retry
        assert second["is_new"] and second["seq"] == first["seq"] + 1
        assert len(projection.table) == 2
        event_log._check()
    finally:
        writer.stop()
        await writer_task
        writer.close()
        event_log.close()
    assert os.path.getsize(next((tmp_path / "log").iterdir())) == event_log.stats()["log_bytes"]
