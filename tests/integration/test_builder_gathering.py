"""When the builder builds: puts that stream share a step; a waiting search cuts the wait.

The policy's times are stretched to seconds so that what is asserted
does not depend on how fast this machine answers a put.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memoryd.client import Client
from tests.integration.builder_support import wait_built
from tests.integration.daemon_process import DaemonProcess

LONE_PUTS = 12  # more than build_min_frames (5), fewer than build_queue_bound (20)
SEARCH_WAIT_MS = 800  # below build_quiet_ms (1 s): a search that waited for quiet fails


def policy_daemon(
    tmp_path: Path, socket_dir: Path, *, quiet_ms: int, idle_ms: int
) -> DaemonProcess:
    config = tmp_path / "memoryd.toml"
    config.write_text(
        f"build_min_frames = 5\nbuild_queue_bound = 20\nbuild_idle_ms = {idle_ms}\n"
        f"build_quiet_ms = {quiet_ms}\n"
    )
    return DaemonProcess(tmp_path / "data", socket_dir / "memoryd.sock", "--config", str(config))


@pytest.fixture
def quiet_daemon(tmp_path: Path, socket_dir: Path) -> Iterator[DaemonProcess]:
    # A second between puts before a step: far more than any put takes, even on a
    # loaded machine, so that the stream below is never cut in two.
    daemon = policy_daemon(tmp_path, socket_dir, quiet_ms=1000, idle_ms=5000).start()
    yield daemon
    assert daemon.terminate() == 0, daemon.stderr()


def lone_puts(client: Client, count: int) -> list[int]:
    return [client.put(f"lone put {i} of a stream, marker{i}").seq for i in range(count)]


def test_puts_one_at_a_time_are_built_together_once_they_pause(
    quiet_daemon: DaemonProcess,
) -> None:
    with Client(quiet_daemon.socket_path) as client:
        steps_before = client.stats()["builder_steps"]
        lone_puts(client, LONE_PUTS)
        # Twelve wait (past build_min_frames), but the puts came back to back: nothing
        # is built until they have paused for build_quiet_ms.
        assert client.stats()["builder_lag"] == LONE_PUTS
        wait_built(client)
        assert client.stats()["builder_steps"] - steps_before == 1
        found = client.search("marker7", k=1, mode="keyword")
        assert [hit.frame.content for hit in found.hits] == ["lone put 7 of a stream, marker7"]


def test_without_a_quiet_time_a_step_starts_once_min_frames_wait(
    tmp_path: Path, socket_dir: Path
) -> None:
    daemon = policy_daemon(tmp_path, socket_dir, quiet_ms=0, idle_ms=200).start()
    try:
        with Client(daemon.socket_path) as client:
            steps_before = client.stats()["builder_steps"]
            lone_puts(client, LONE_PUTS)
            wait_built(client)
            # 5 at a time (at least two steps), not all twelve in one.
            assert client.stats()["builder_steps"] - steps_before >= 2
    finally:
        assert daemon.terminate() == 0, daemon.stderr()


def search_within(client: Client, query: str, min_seq: int) -> list[str]:
    """Contents of the one best keyword hit, the search allowed to wait ``SEARCH_WAIT_MS``
    for ``min_seq`` to be built (a ``busy`` error past that)."""
    args = {"query": query, "k": 1, "mode": "keyword", "min_seq": min_seq}
    answer = client.call("search", {**args, "wait_ms": SEARCH_WAIT_MS})
    return [hit["frame"]["content"] for hit in answer["hits"]]


def test_a_search_waiting_for_a_put_does_not_wait_for_the_stream_to_pause(
    quiet_daemon: DaemonProcess,
) -> None:
    with Client(quiet_daemon.socket_path) as client:
        seqs = lone_puts(client, LONE_PUTS)
        # Built at once for the search: were it built only after build_quiet_ms
        # (1 s), the search would give up at SEARCH_WAIT_MS with a busy error.
        found = search_within(client, "marker11", seqs[-1])
        assert found == ["lone put 11 of a stream, marker11"]


def test_a_search_waiting_for_a_lone_put_does_not_wait_for_the_idle_time(
    quiet_daemon: DaemonProcess,
) -> None:
    with Client(quiet_daemon.socket_path) as client:
        put = client.put("a single put, fewer than build_min_frames: beacon")
        # Fewer than build_min_frames wait: without the search, idle (5 s) would pass first.
        found = search_within(client, "beacon", put.seq)
        assert found == ["a single put, fewer than build_min_frames: beacon"]
