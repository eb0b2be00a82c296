"""After building many frames and catching up, the builder returns free heap memory."""

from __future__ import annotations

import time

import pytest

from memoryd.client import Client
from memoryd.daemon import builder, heap
from tests.integration.daemon_process import DaemonProcess


def test_the_builder_trims_the_heap_once_it_has_caught_up(daemon: DaemonProcess) -> None:
    if not heap.trim():
        pytest.skip("no malloc_trim here (not glibc)")
    with Client(daemon.socket_path) as client:
        assert client.stats()["builder_heap_trims"] == 0
        batch = 1000
        for start in range(0, builder.HEAP_TRIM_FRAMES, batch):
            client.put_batch(
                [{"content": f"heap frame {i} of many words"} for i in range(start, start + batch)]
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stats = client.stats()
            if stats["builder_lag"] == 0 and stats["builder_heap_trims"] >= 1:
                break
            time.sleep(0.05)
        assert stats["builder_lag"] == 0
        assert stats["builder_heap_trims"] == 1  # once per HEAP_TRIM_FRAMES built
        hit = client.search("frame 9999", k=1, mode="keyword").hits
        assert hit and hit[0].frame.content == "heap frame 9999 of many words"
