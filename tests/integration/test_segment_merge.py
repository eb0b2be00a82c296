"""An idle builder merges the keyword index's segments, and no answer changes."""

from __future__ import annotations

import time

from memoryd.client import Client
from tests.integration.daemon_process import DaemonProcess

NOW_MS = 1_900_000_000_000
QUERIES = ["harbour lantern", "orchard", "violet river stone", "lantern 7"]


def _ranking(client: Client, query: str, explain: bool) -> list[tuple[str, float]]:
    hits = client.search(query, k=20, mode="keyword", now_ms=NOW_MS, explain=explain).hits
    return [(hit.frame.id, hit.score) for hit in hits]


def test_idle_builder_merges_segments_without_changing_answers(daemon: DaemonProcess) -> None:
    words = ["harbour", "lantern", "orchard", "violet", "river", "stone", "meadow", "copper"]
    with Client(daemon.socket_path) as client:
        # One build step a put (each waits until searchable), so each adds a tail
        # segment: 32 seal into one, the 16 after stay in the tail.
        texts = [
            " ".join(words[(i + j) % len(words)] for j in range(1 + i % 5)) + f" {i}"
            for i in range(48)
        ]
        for text in texts:
            put = client.put(text)
            client.search("warm up", k=1, mode="keyword", min_seq=put.seq)
        stats = client.stats()
        assert stats["keyword_segments"] > 2
        assert stats["keyword_merges"] == 0
        before = {q: _ranking(client, q, explain=False) for q in QUERIES}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stats = client.stats()
            if stats["keyword_merges"] >= 1:
                break
            time.sleep(0.05)
        assert stats["keyword_merges"] == 1
        assert stats["keyword_segments"] == 1
        assert not stats["keyword_merging"]
        # explain makes a new cache key: the rankings are computed again, merged.
        after = {q: _ranking(client, q, explain=True) for q in QUERIES}
        assert after == before
        assert all(before.values())
        # New frames after a merge are found alongside the merged ones.
        put = client.put("lantern by the harbour after the merge")
        assert put.is_new
        hits = client.search("lantern", k=100, mode="keyword", min_seq=put.seq).hits
        holding = {hit.frame.content for hit in hits if "lantern" in hit.frame.content.split()}
        new = "lantern by the harbour after the merge"
        assert holding == {text for text in texts if "lantern" in text.split()} | {new}
        stats = client.stats()
        latest = {q: _ranking(client, q, explain=False) for q in QUERIES}
    # The merged segments are what the stop's checkpoint holds, and what a start loads.
    assert daemon.terminate() == 0
    daemon.start()
    with Client(daemon.socket_path) as client:
        restarted = client.stats()
        assert restarted["start_replayed_records"] == 0
        assert restarted["keyword_segments"] == stats["keyword_segments"] <= 2
        assert {q: _ranking(client, q, explain=False) for q in QUERIES} == latest
