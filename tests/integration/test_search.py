"""Search through a real daemon: read-your-writes, filters, deletes, explain, rebuild."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoryd.client import Client, RequestError
from tests.integration.daemon_process import DaemonProcess

DAY_MS = 86_400_000
NOW_MS = 1_795_000_000_000

MEMORIES = [
    ("Caroline went to the LGBTQ support group on 7 May", "fact", "caroline", ["support"], 0.9, 40),
    ("Melanie painted a sunrise over the lake last summer", "note", "melanie", ["art"], 0.4, 30),
    ("Caroline is researching adoption agencies", "fact", "caroline", ["family"], 0.8, 20),
    (
        "The flaky integration test finally passes: the build is green",
        "breakthrough",
        "work",
        ["ci"],
        0.7,
        10,
    ),
    (
        "Melanie took the kids camping in the mountains",
        "conversation",
        "melanie",
        ["family"],
        0.5,
        5,
    ),
    ("Coffee with the team about the Friday release", "conversation", "work", [], 0.3, 1),
]


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[Client]:
    with Client(daemon.socket_path) as c:
        yield c


def store(client: Client) -> int:
    results = client.put_batch(
        [
            {
                "content": text,
                "kind": kind,
                "namespace": ns,
                "tags": tags,
                "importance": imp,
                "timestamp_ms": NOW_MS - days * DAY_MS,
            }
            for text, kind, ns, tags, imp, days in MEMORIES
        ]
    )
    return max(r.seq for r in results)


def contents(client: Client, query: str, **options: object) -> list[str]:
    result = client.search(query, now_ms=NOW_MS, **options)  # type: ignore[arg-type]
    return [hit.frame.content for hit in result.hits]


def test_a_put_is_searchable_with_read_your_writes(client: Client) -> None:
    seq = store(client)
    found = contents(client, "when did Caroline go to the support group", min_seq=seq, k=3)
    assert found[0] == MEMORIES[0][0]


@pytest.mark.parametrize("mode", ["hybrid", "keyword", "semantic", "classic"])
def test_every_mode_finds_the_exact_memory(client: Client, mode: str) -> None:
    seq = store(client)
    assert (
        contents(client, "flaky integration test build green", mode=mode, min_seq=seq)[0]
        == (MEMORIES[3][0])
    )


def test_filters(client: Client) -> None:
    seq = store(client)
    query = "Caroline Melanie support group painted adoption camping build coffee"
    everything = set(contents(client, query, min_seq=seq, k=50))
    assert everything == {m[0] for m in MEMORIES}
    assert set(contents(client, query, namespace="melanie")) == {MEMORIES[1][0], MEMORIES[4][0]}
    assert set(contents(client, query, kinds=["fact", "breakthrough"])) == {
        MEMORIES[0][0],
        MEMORIES[2][0],
        MEMORIES[3][0],
    }
    assert set(contents(client, query, tags=["family"])) == {MEMORIES[2][0], MEMORIES[4][0]}
    assert set(
        contents(client, query, since_ms=NOW_MS - 21 * DAY_MS, until_ms=NOW_MS - 4 * DAY_MS)
    ) == {MEMORIES[2][0], MEMORIES[3][0], MEMORIES[4][0]}
    assert set(contents(client, query, min_importance=0.75)) == {MEMORIES[0][0], MEMORIES[2][0]}
    assert contents(client, query, namespace="nobody") == []


def test_a_deleted_frame_never_comes_back(client: Client) -> None:
    store(client)
    target = client.search("adoption agencies", k=1, min_seq=1).hits[0].frame
    client.delete(target.id)
    for mode in ("hybrid", "keyword", "semantic", "classic"):
        found = [hit.frame.id for hit in client.search("adoption agencies", mode=mode, k=50).hits]
        assert target.id not in found


def test_explain_shows_every_part(client: Client) -> None:
    seq = store(client)
    hit = client.search("support group", explain=True, min_seq=seq, now_ms=NOW_MS).hits[0]
    assert hit.explain is not None
    assert {"relevance", "recency", "importance", "kind", "bm25", "cosine"} <= set(hit.explain)
    assert hit.explain["score"] == pytest.approx(hit.score, rel=1e-5)


def test_recency_never_buries_an_old_exact_match(client: Client) -> None:
    seq = store(client)
    old = client.put("the quokka festival of 1999", timestamp_ms=NOW_MS - 3000 * DAY_MS)
    found = contents(client, "quokka festival", min_seq=max(seq, old.seq))
    assert found[0] == "the quokka festival of 1999"


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"query": ""}, "bad_request"),
        ({"query": "   "}, "bad_request"),
        ({"query": "x", "k": 0}, "bad_request"),
        ({"query": "x", "k": 10**9}, "limit_exceeded"),
        ({"query": "word " * 10_000}, "limit_exceeded"),
        ({"query": "x", "mode": "magic"}, "bad_request"),
        ({"query": "x", "since_ms": 10, "until_ms": 5}, "bad_request"),
        ({"query": "x", "colour": "red"}, "bad_request"),
        ({"query": "x", "kinds": "fact"}, "bad_request"),
        ({"query": "x", "min_importance": 2}, "bad_request"),
    ],
)
def test_bad_search_input_gets_a_clear_error(
    client: Client, options: dict[str, object], code: str
) -> None:
    with pytest.raises(RequestError) as caught:
        client.call("search", options)
    assert caught.value.code == code and caught.value.message
    assert client.ping() > 0  # still serving


def test_a_long_query_within_the_limit_is_answered(client: Client) -> None:
    seq = store(client)
    query = " ".join(f"word{i}" for i in range(1500)) + " Caroline support group"
    assert contents(client, query, min_seq=seq)[0] == MEMORIES[0][0]


def test_rebuilt_state_answers_every_query_identically(tmp_path: Path, socket_dir: Path) -> None:
    queries = ["Caroline support group", "camping kids", "release Friday", "green build"]
    socket_path = socket_dir / "memoryd.sock"
    first = DaemonProcess(tmp_path / "data", socket_path).start()
    try:
        with Client(socket_path) as c:
            seq = store(c)
            deleted = c.delete(c.search("lake sunrise", k=1, min_seq=seq).hits[0].frame.id)
            assert deleted.seq is not None
            seq = deleted.seq  # rankings must see the delete built, as a restart does
            before = {
                (q, mode): [
                    (h.frame.id, round(h.score, 6))
                    for h in c.search(q, mode=mode, now_ms=NOW_MS, k=10, min_seq=seq).hits
                ]
                for q in queries
                for mode in ("hybrid", "keyword", "semantic", "classic")
            }
    finally:
        assert first.terminate() == 0
    second = DaemonProcess(tmp_path / "data", socket_path).start()
    try:
        with Client(socket_path) as c:
            last = c.stats()["last_seq"]
            after = {
                (q, mode): [
                    (h.frame.id, round(h.score, 6))
                    for h in c.search(q, mode=mode, now_ms=NOW_MS, k=10, min_seq=last).hits
                ]
                for q in queries
                for mode in ("hybrid", "keyword", "semantic", "classic")
            }
    finally:
        assert second.terminate() == 0
    assert after == before


def test_cli_search(daemon: DaemonProcess, client: Client) -> None:
    seq = store(client)
    client.search("x", min_seq=seq)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    env["MEMORYD_SOCKET"] = str(daemon.socket_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "memoryd.daemon",
            "search",
            "support group",
            "-k",
            "2",
            "--namespace",
            "caroline",
            "--explain",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "Caroline went to the LGBTQ support group" in done.stdout.splitlines()[0]
    assert "relevance" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "memoryd.daemon", "search", "x", "-k", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
