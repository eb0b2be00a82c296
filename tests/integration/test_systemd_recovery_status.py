"""A long recovery keeps systemd informed: STATUS= progress and EXTEND_TIMEOUT_USEC, then READY.

The daemon runs in this process (real log, real socket, real notify socket);
only the reporting interval is shortened, so that a log of a few thousand
records takes "long" without the test taking long.
"""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path

import pytest

from memoryd.daemon import server
from memoryd.daemon.config import Config
from memoryd.daemon.server import Daemon
from tests.integration.systemd_helpers import NotifyListener, write_frames

RECORDS = 10_000


async def test_progress_during_a_long_recovery(
    tmp_path: Path, socket_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    write_frames(data_dir, [f"recovered frame {n}" for n in range(RECORDS)])
    listener = NotifyListener(socket_dir / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(listener.path))
    monkeypatch.setattr(server, "PROGRESS_INTERVAL_S", 0.002)
    sock = socket_dir / "memoryd.sock"
    daemon = Daemon(Config(data_dir=data_dir, socket_path=sock).validate())
    # The daemon's loop is this thread's: read the notify socket on another,
    # or its queue (10 datagrams by default) fills and messages are dropped.
    stop = threading.Event()
    reader = threading.Thread(target=listener.collect_until, args=(stop,))
    reader.start()
    try:
        run = asyncio.create_task(daemon.run(on_ready=daemon.request_stop))
        assert await asyncio.wait_for(run, timeout=60) == 0
    finally:
        stop.set()
        reader.join()
        listener.close()
    messages = listener.messages
    assert daemon.notifier.dropped == 0
    ready = messages.index(f"READY=1\nSTATUS=serving {RECORDS} frames on {sock}")
    recovery = messages[:ready]
    assert recovery[0] == "STATUS=recovering: verifying the log"
    replay_start = recovery.index(f"STATUS=recovering: replaying the log up to seq {RECORDS}")
    extend = "EXTEND_TIMEOUT_USEC=10000000\nSTATUS=recovering: "
    for message in recovery[1:replay_start]:
        assert re.fullmatch(r"verifying the log \(\d+ s\)", message.removeprefix(extend))
    progress = recovery[replay_start + 1 :]
    assert progress, "no progress reported during the replay"
    counts = []
    for message in progress:
        match = re.fullmatch(r"replayed (\d+) records", message.removeprefix(extend))
        assert match and message.startswith(extend), message
        counts.append(int(match.group(1)))
    assert counts == sorted(counts) and counts[0] > 0 and counts[-1] <= RECORDS
    assert messages[ready + 1] == "STOPPING=1\nSTATUS=stopping: finishing requests in flight"
