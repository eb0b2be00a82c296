"""context, integrate, namespaces, forget and time-to-live through a real daemon."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoryd.client import Client, NotFoundError, RequestError
from memoryd.daemon.tokens import approximate_tokens
from tests.integration.daemon_process import DaemonProcess
from tests.integration.test_cli import memoryd


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[Client]:
    with Client(daemon.socket_path) as c:
        yield c


def _seed(client: Client) -> int:
    client.block_set("persona", "A patient tutor", namespace="ann")
    client.block_set("system", "Answer briefly", namespace="ann")
    results = client.put_batch(
        [
            {"content": "Ann is learning Spanish verbs", "namespace": "ann", "kind": "fact"},
            {"content": "Ann prefers morning lessons", "namespace": "ann", "kind": "fact"},
            {"content": "Ann's cat is called Miso", "namespace": "ann", "tags": ["pets"]},
            {"content": "Bob studies chemistry", "namespace": "bob"},
        ]
    )
    latest = client.put("Ann finished chapter three today", namespace="ann", kind="event")
    return max(latest.seq, *(r.seq for r in results))


def test_context_orders_blocks_relevant_recent_without_duplicates(client: Client) -> None:
    seq = _seed(client)
    result = client.context("Spanish verbs", budget_tokens=500, namespace="ann", k=2, min_seq=seq)
    assert result.tokens <= 500
    assert result.tokenizer in ("approx-v1", "tiktoken:o200k_base")
    text = result.text
    assert text.index("<core_memory>") < text.index("<relevant_memories>")
    assert text.index("<relevant_memories>") < text.index("<recent_memories>")
    assert text.index("<system") < text.index("<persona")
    assert "Bob" not in text
    sections = [item.section for item in result.included]
    assert sections == sorted(sections, key=["blocks", "relevant", "recent"].index)
    assert [i.block_type for i in result.included if i.kind == "block"] == ["system", "persona"]
    relevant = [i for i in result.included if i.section == "relevant"]
    assert len(relevant) == 2 and relevant[0].score is not None
    first = client.get(relevant[0].id or "")
    assert first.content == "Ann is learning Spanish verbs"
    ids = [i.id for i in result.included if i.kind == "frame"]
    assert len(ids) == len(set(ids)) == 4  # each memory once, in whichever section came first
    for item in result.included:
        assert item.timestamp_ms is not None and item.tokens > 0
    stamp = time.strftime("%Y-%m-%d", time.gmtime(first.timestamp_ms / 1000))
    assert f"[{stamp} " in text and " UTC] Ann is learning Spanish verbs" in text
    assert result.omitted == 0


def test_context_keeps_within_a_small_budget_and_says_what_it_left_out(client: Client) -> None:
    seq = _seed(client)
    full = client.context("Spanish", budget_tokens=10_000, namespace="ann", min_seq=seq)
    for budget in (5, 20, 40, full.tokens - 1):
        small = client.context("Spanish", budget_tokens=budget, namespace="ann")
        assert small.tokens <= budget
        assert small.omitted > 0
        assert len(small.included) < len(full.included)
        if small.tokenizer == "approx-v1":
            assert approximate_tokens(small.text) == small.tokens
    empty = client.context("Spanish", budget_tokens=1, namespace="ann")
    assert (empty.text, empty.included, empty.tokens) == ("", (), 0)


def test_context_without_query_is_blocks_then_recent(client: Client) -> None:
    _seed(client)
    result = client.context(budget_tokens=1000, namespace="ann", recent=2)
    assert "<relevant_memories>" not in result.text
    recent = [i for i in result.included if i.section == "recent"]
    assert len(recent) == 2
    assert client.get(recent[0].id or "").content == "Ann finished chapter three today"


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        ({"budget_tokens": 0}, "bad_request", "at least 1"),
        ({"budget_tokens": -5}, "bad_request", "at least 1"),
        ({"budget_tokens": "many"}, "bad_request", "integer"),
        ({"budget_tokens": 2_000_000}, "limit_exceeded", "context_budget_tokens_max"),
        ({"query": "  "}, "bad_request", "non-empty"),
        ({"k": 101}, "limit_exceeded", "context_k_max"),
        ({"recent": -1}, "bad_request", "at least 0"),
        ({"budget": 10}, "bad_request", "unknown field"),
    ],
)
def test_context_bad_input(client: Client, args: dict[str, object], code: str, words: str) -> None:
    with pytest.raises(RequestError) as info:
        client.call("context", args)
    assert info.value.code == code
    assert words in info.value.message


def test_integrate_recalls_then_stores_in_one_round_trip(client: Client) -> None:
    seq = _seed(client)
    client.search("warm up", min_seq=seq)
    result = client.integrate("Ann now conjugates Spanish verbs well", namespace="ann", k=3)
    assert result.put.is_new
    assert client.get(result.put.id).content == "Ann now conjugates Spanish verbs well"
    assert result.related and result.related[0].frame.content == "Ann is learning Spanish verbs"
    assert all(hit.frame.namespace == "ann" for hit in result.related)
    assert all(hit.frame.id != result.put.id for hit in result.related)
    again = client.integrate("Ann now conjugates Spanish verbs well", namespace="ann")
    assert not again.put.is_new and again.put.id == result.put.id
    with pytest.raises(RequestError) as info:
        client.call("integrate", {"content": "", "namespace": "ann"})
    assert info.value.code == "bad_request"
    with pytest.raises(RequestError) as info:
        client.call("integrate", {"content": "x", "k": 0})
    assert info.value.code == "bad_request"


def test_namespaces_count_frames_and_blocks(client: Client) -> None:
    _seed(client)
    client.block_set("goals", "ship", namespace="only-blocks")
    found = {n.namespace: (n.frames, n.blocks) for n in client.namespaces()}
    assert found == {"ann": (4, 2), "bob": (1, 0), "only-blocks": (0, 1)}


def test_forget_by_id_filter_and_namespace_with_dry_runs(client: Client) -> None:
    seq = _seed(client)
    ann = client.recent(namespace="ann", limit=10).frames
    by_id = client.forget(ids=[ann[0].id, "0" * 32], dry_run=True)
    assert (by_id.matched, by_id.deleted, by_id.dry_run) == (1, 0, True)
    assert client.get(ann[0].id) == ann[0]
    gone = client.forget(ids=[ann[0].id])
    assert (gone.matched, gone.deleted) == (1, 1) and gone.seq is not None
    with pytest.raises(NotFoundError):
        client.get(ann[0].id)
    counted = client.forget(namespace="ann", kind="fact", dry_run=True)
    assert counted.matched == 2 and counted.deleted == 0
    assert len(client.recent(namespace="ann").frames) == 3
    tagged = client.forget(namespace="ann", tags=["pets"])
    assert (tagged.matched, tagged.deleted) == (1, 1)
    whole = client.forget(namespace="ann")
    assert (whole.matched, whole.deleted, whole.more) == (2, 2, False)
    assert client.recent(namespace="ann").frames == ()
    assert client.search("Spanish", namespace="ann", min_seq=seq).hits == ()
    assert [n.namespace for n in client.namespaces()] == ["ann", "bob"]  # blocks stay
    assert client.recent(namespace="bob").frames[0].content == "Bob studies chemistry"


def test_forget_by_time_window(client: Client) -> None:
    client.put("old one", timestamp_ms=1_000_000)
    client.put("older one", timestamp_ms=500_000)
    keep = client.put("new one")
    result = client.forget(since_ms=0, until_ms=1_000_001)
    assert result.deleted == 2
    assert [f.id for f in client.recent().frames] == [keep.id]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({}, "needs ids or at least one filter"),
        ({"dry_run": True}, "needs ids or at least one filter"),
        ({"ids": [], "namespace": "x"}, "not both"),
        ({"ids": "abc"}, "list of non-empty strings"),
        ({"ids": []}, "must not be empty"),
        ({"namespace": "x", "since_ms": 5, "until_ms": 1}, "later than"),
        ({"tags": []}, "non-empty list"),
        ({"namespace": "x", "dry_run": "yes"}, "true or false"),
        ({"everything": True}, "unknown field"),
    ],
)
def test_forget_bad_input_deletes_nothing(
    client: Client, args: dict[str, object], words: str
) -> None:
    put = client.put("still here", namespace="x")
    with pytest.raises(RequestError) as info:
        client.call("forget", args)
    assert info.value.code == "bad_request"
    assert words in info.value.message
    assert client.get(put.id).content == "still here"


def test_forget_limits_ids(client: Client) -> None:
    with pytest.raises(RequestError) as info:
        client.forget(ids=[f"{n:032x}" for n in range(1001)])
    assert info.value.details["limit"] == "forget_ids_max"


def test_expired_frames_leave_every_query_at_once(client: Client) -> None:
    keep = client.put("a lasting memory about tea", namespace="ttl")
    short = client.put("a fleeting memory about tea", namespace="ttl", ttl_s=1, tags=["t"])
    assert client.get(short.id).expires_at_ms is not None
    assert client.get(keep.id).expires_at_ms is None
    hits = client.search("fleeting tea", namespace="ttl", min_seq=short.seq).hits
    assert short.id in [h.frame.id for h in hits]
    time.sleep(1.1)
    with pytest.raises(NotFoundError):
        client.get(short.id)
    assert [f.id for f in client.recent(namespace="ttl").frames] == [keep.id]
    assert [f.id for f in client.range(namespace="ttl").frames] == [keep.id]
    assert [h.frame.id for h in client.search("fleeting tea", namespace="ttl").hits] == [keep.id]
    # Unfiltered too, and the expired frame leaves its place to the next best: it is
    # left out of the ranking, not dropped from a ranked page.
    assert [h.frame.id for h in client.search("fleeting tea", k=1).hits] == [keep.id]
    context = client.context("fleeting tea", namespace="ttl")
    assert "fleeting" not in context.text and "lasting" in context.text
    assert {n.namespace: n.frames for n in client.namespaces()} == {"ttl": 1}
    assert client.stats()["frames_expired"] == 1
    # Putting it again stores it anew, live, with a new time-to-live (or none).
    again = client.put("a fleeting memory about tea", namespace="ttl", tags=["t"])
    assert again.is_new and again.id == short.id and again.seq > short.seq
    assert client.get(short.id).expires_at_ms is None
    assert client.stats()["frames_expired"] == 0


@pytest.mark.parametrize("stop", ["kill", "terminate"])
def test_expiry_survives_a_restart(tmp_path: Path, socket_dir: Path, stop: str) -> None:
    # kill -9: the start replays the log; a clean stop: it restores the checkpoint
    # written at the stop, which must carry every frame's expiry.
    sock = socket_dir / "memoryd.sock"
    first = DaemonProcess(tmp_path / "data", sock).start()
    try:
        with Client(sock) as memory:
            memory.put("a frame that never expires")
            later = int(time.time() * 1000) + 3_600_000
            put = memory.put("expires in an hour", expires_at_ms=later)
            soon = memory.put("expires soon", ttl_s=2)
    finally:
        if stop == "kill":
            first.kill()
        else:
            assert first.terminate() == 0
    second = DaemonProcess(tmp_path / "data", sock).start()
    try:
        with Client(sock) as memory:
            replayed = memory.stats()["start_replayed_records"]
            assert replayed == (3 if stop == "kill" else 0)
            assert memory.get(put.id).expires_at_ms == later
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    memory.get(soon.id)
                except NotFoundError:
                    break
                time.sleep(0.1)
            with pytest.raises(NotFoundError):
                memory.get(soon.id)
            assert memory.stats()["frames_expired"] == 1
            assert soon.id not in [f.id for f in memory.recent().frames]
    finally:
        assert second.terminate() == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({"ttl_s": 0}, "at least 1"),
        ({"ttl_s": 1.5}, "integer"),
        ({"ttl_s": 10, "expires_at_ms": 10**13}, "not both"),
        ({"expires_at_ms": 1000}, "not in the future"),
    ],
)
def test_bad_time_to_live_is_refused(client: Client, args: dict[str, object], words: str) -> None:
    with pytest.raises(RequestError) as info:
        client.call("put", {"content": "x", **args})
    assert words in info.value.message
    assert client.recent().frames == ()


def test_context_namespaces_forget_commands(daemon: DaemonProcess) -> None:
    sock = daemon.socket_path
    with Client(sock) as memory:
        seq = _seed(memory)
        memory.search("warm up", min_seq=seq)
    run = memoryd("context", "Spanish", "--namespace", "ann", "--budget", "300", socket=sock)
    assert run.code == 0 and "<core_memory>" in run.out and "/300 tokens" in run.err
    doc = memoryd("context", "--namespace", "ann", "--json", socket=sock).json()
    assert doc["budget_tokens"] == 2000 and doc["included"]
    bad = memoryd("context", "--budget", "0", socket=sock)
    assert bad.code == 2
    names = memoryd("namespaces", "--json", socket=sock).json()
    assert {n["namespace"] for n in names["namespaces"]} == {"ann", "bob"}
    dry = memoryd("forget", "--namespace", "ann", "--dry-run", socket=sock)
    assert dry.code == 0 and "would forget 4" in dry.out
    done = memoryd("forget", "--namespace", "ann", "--json", socket=sock).json()
    assert done["deleted"] == 4
    usage = memoryd("forget", socket=sock)
    assert usage.code == 2 and "give --id" in usage.err
    ttl = memoryd("put", "--ttl", "60", "brief", "--json", socket=sock).json()
    assert memoryd("get", ttl["id"], "--json", socket=sock).json()["frame"]["expires_at_ms"]
