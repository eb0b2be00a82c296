"""The builder gives way to puts, and never to a search that waits for them."""

from __future__ import annotations

import threading
import time

from memoryd.client import Client
from tests.integration.builder_support import wait_built
from tests.integration.daemon_process import DaemonProcess

FRAMES = 4000


def frames(start: int, count: int) -> list[dict[str, object]]:
    return [
        {"content": f"burst frame {i} about harbour lighthouse number{i}", "namespace": "burst"}
        for i in range(start, start + count)
    ]


def test_a_burst_of_puts_is_indexed_after_it_and_a_waiting_search_is_not_held_back(
    daemon: DaemonProcess,
) -> None:
    with Client(daemon.socket_path) as client:
        results = client.pipeline_put(frames(0, FRAMES), window=256)
        assert len({r.id for r in results}) == FRAMES
        # Puts kept waiting for their commit, so the builder held back at times.
        assert client.stats()["builder_yields"] > 0

        # A search for the last put is answered once it is built, burst or not.
        last = results[-1]
        found = client.search(f"number{FRAMES - 1}", k=1, mode="keyword", min_seq=last.seq)
        assert [hit.frame.id for hit in found.hits] == [last.id]

        wait_built(client)
        first = client.search("number0", k=1, mode="keyword")
        assert [hit.frame.id for hit in first.hits] == [results[0].id]


def test_searches_waiting_during_bursts_see_their_put(daemon: DaemonProcess) -> None:
    stop = threading.Event()

    def writer() -> None:
        # Bursts of puts with pauses: on average no faster than the builder indexes.
        with Client(daemon.socket_path) as c:
            start = 10_000
            while not stop.is_set():
                c.pipeline_put(frames(start, 200), window=128)
                start += 200
                time.sleep(0.05)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with Client(daemon.socket_path) as client:
            for i in range(20):
                put = client.put(f"needle{i} under the writers' burst", namespace="probe")
                hits = client.search(f"needle{i}", k=1, mode="keyword", min_seq=put.seq)
                assert [hit.frame.id for hit in hits.hits] == [put.id]
    finally:
        stop.set()
        thread.join()
