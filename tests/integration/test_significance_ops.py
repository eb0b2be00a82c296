"""Significance, fact kinds, near twins, important-first reads, related memories and the
caches that serve them, through a real daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from memoryd.client import Client, NotFoundError, RequestError
from memoryd.storage.search.simhash import hamming, near_bits_max, simhash
from tests.integration.daemon_process import DaemonProcess

DIMENSIONS = (
    "emotional_resonance",
    "knowledge_value",
    "relationship_depth",
    "breakthrough_factor",
    "temporal_relevance",
    "pattern_strength",
)


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[Client]:
    with Client(daemon.socket_path) as c:
        yield c


def test_hits_carry_significance_and_fact_kind_computed_or_given(client: Client) -> None:
    given = client.put(
        "Quarterly numbers are in the shared folder",
        significance={"knowledge_value": 0.95, "pattern_strength": 0.1},
    )
    computed = client.put("Yesterday I went hiking with my sister and felt so happy!")
    procedure = client.put("To deploy: 1. run make\n2. then install the wheel")
    hits = {
        h.frame.id: h
        for h in client.search("quarterly numbers sister deploy", k=10, min_seq=procedure.seq).hits
    }
    scores = hits[given.id].significance
    assert scores is not None and set(scores) == set(DIMENSIONS)
    assert scores["knowledge_value"] == pytest.approx(0.95)
    assert scores["pattern_strength"] == pytest.approx(0.1)
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert hits[given.id].frame.id == given.id
    mine = hits[computed.id].significance
    assert mine is not None and mine["emotional_resonance"] > 0.5
    assert mine["relationship_depth"] > 0.3
    assert hits[computed.id].fact_kind == "episodic"
    assert hits[procedure.id].fact_kind == "procedural"
    assert hits[given.id].fact_kind == "declarative"
    # The caller's scores are stored in the log: get returns them.
    assert client.get(given.id) is not None


def test_significance_filters_and_ranking_weight(client: Client) -> None:
    plain = client.put("the garden party is on the lawn")
    loud = client.put("the garden party was amazing, I love my friends so much!")
    seq = loud.seq
    both = [h.frame.id for h in client.search("garden party", min_seq=seq).hits]
    assert set(both) == {plain.id, loud.id}
    only = client.search("garden party", min_significance={"emotional_resonance": 0.5})
    assert [h.frame.id for h in only.hits] == [loud.id]
    episodic = client.search("garden party", fact_kinds=["declarative"])
    assert plain.id in [h.frame.id for h in episodic.hits]
    weighted = client.search(
        "garden party", significance_weights={"emotional_resonance": 2.0}, explain=True
    )
    assert weighted.hits[0].frame.id == loud.id
    explain = weighted.hits[0].explain
    assert explain is not None and explain["significance"] > 1.0
    for bad in (
        {"min_significance": {"joy": 0.5}},
        {"min_significance": {"emotional_resonance": 2}},
        {"significance_weights": {"knowledge_value": -1}},
        {"fact_kinds": ["poetic"]},
    ):
        with pytest.raises(RequestError) as caught:
            client.call("search", {"query": "garden", **bad})
        assert caught.value.code == "bad_request"


def test_bad_significance_on_put_is_a_clear_error(client: Client) -> None:
    for bad in ({"joy": 1.0}, {"knowledge_value": 1.5}, {"knowledge_value": True}, [], "x"):
        with pytest.raises(RequestError) as caught:
            client.call("put", {"content": "x", "significance": bad})
        assert caught.value.code == "bad_request"
    assert client.stats()["frames_live"] == 0


def test_a_put_reports_its_near_twin_among_built_frames(client: Client) -> None:
    # SimHash needs a sentence or two: in a short text one word changes most shingles.
    text = (
        "the quarterly planning meeting with the design team moved from tuesday morning to "
        "thursday afternoon because the projector in the big room is broken again, so we "
        "meet in room four"
    )
    first = client.put(text)
    client.search("x", min_seq=first.seq)
    twin = client.put(text.replace("four", "five"))
    assert twin.is_new and twin.near_duplicate_of == first.id
    other_namespace = client.put(text.replace("four", "six"), namespace="elsewhere")
    assert other_namespace.near_duplicate_of is None
    unrelated = client.put("a completely different memory about sailing boats at dawn")
    assert unrelated.near_duplicate_of is None
    frames = [{"content": text.replace("four", "seven")}, {"content": "zebra"}]
    quiet = client.put_batch([{"content": text.replace("four", "nine")}])
    assert quiet[0].near_duplicate_of is None  # a batch looks for twins only when asked
    batch = client.put_batch(frames, near_duplicates=True)
    assert batch[0].near_duplicate_of == first.id and batch[1].near_duplicate_of is None
    client.delete(first.id)
    client.search("x", min_seq=client.stats()["last_seq"])
    again = client.put(text.replace("four", "eight"))
    assert again.near_duplicate_of in (None, twin.id, batch[0].id)  # never the deleted one


def test_pipelined_puts_each_get_their_near_twin(client: Client) -> None:
    text = (
        "the night ferry to the northern islands leaves from pier nine at eleven and "
        "returns at dawn when the weather allows, otherwise it waits in the harbour"
    )
    first = client.put(text)
    client.search("x", min_seq=first.seq)
    # Texts one word longer, kept when their SimHash is within the twin distance.
    words = [f"w{i}x{j}" for i in range(60) for j in range(3)]
    near = [
        f"{text} {word}"
        for word in words
        if hamming(simhash(text), simhash(f"{text} {word}")) <= near_bits_max
    ][:40]
    assert len(near) >= 20
    variants = [{"content": content} for content in near]
    variants.append({"content": "nothing like the others: a recipe for plum jam"})
    results = client.pipeline_put(variants, window=16)
    # Each names the original, or a variant put before it that was built meanwhile.
    for position, result in enumerate(results[:-1]):
        earlier = {first.id} | {r.id for r in results[:position]}
        assert result.near_duplicate_of in earlier
    assert results[-1].near_duplicate_of is None


def test_important_reads_most_important_first_with_keywords_filters_and_pages(
    client: Client,
) -> None:
    puts = client.put_batch(
        [
            {
                "content": f"note {i} about {'rivers' if i % 2 else 'mountains'}",
                "importance": (i % 7) / 7,
                "namespace": ("a", "b")[i % 3 == 0],
                "kind": "k",
            }
            for i in range(40)
        ]
    )
    seq = puts[-1].seq
    page = client.important(limit=40, min_seq=seq)
    scores = [h.score for h in page.hits]
    assert len(scores) == 40 and scores == sorted(scores, reverse=True)
    assert page.next_cursor is None
    seen: list[str] = []
    cursor = None
    while True:
        part = client.important(limit=7, cursor=cursor)
        seen += [h.frame.id for h in part.hits]
        cursor = part.next_cursor
        if cursor is None:
            break
    assert seen == [h.frame.id for h in page.hits]  # pages neither skip nor repeat
    rivers = client.important(keywords="rivers", namespace="a")
    assert rivers.hits and all("rivers" in h.frame.content for h in rivers.hits)
    assert all(h.frame.namespace == "a" for h in rivers.hits)
    by_emotion = client.important(by="emotional_resonance", limit=5)
    assert len(by_emotion.hits) == 5
    assert client.important(kinds=["nope"]).hits == ()
    for bad in ({"by": "loudness"}, {"cursor": "1.2"}, {"limit": 0}, {"colour": "red"}):
        with pytest.raises(RequestError) as caught:
            client.call("important", bad)
        assert caught.value.code == "bad_request"


def test_related_memories_are_cached_and_dropped_when_the_namespace_changes(
    client: Client,
) -> None:
    base = client.put("we planted tomatoes and basil in the back garden")
    near = client.put("the tomatoes in the back garden need water")
    far = client.put("the invoice for the car repair is overdue")
    elsewhere = client.put("tomatoes and basil in the garden", namespace="other")
    client.search("x", min_seq=elsewhere.seq)
    first = client.related(base.id, k=3)
    ids = [h.frame.id for h in first.hits]
    assert ids[0] == near.id and base.id not in ids and elsewhere.id not in ids
    assert far.id in ids or len(ids) < 3
    stats = client.stats()
    again = client.related(base.id, k=3)
    assert [h.frame.id for h in again.hits] == ids
    after = client.stats()
    assert after["cache_related_hits"] == stats["cache_related_hits"] + 1
    assert after["cache_recent_frames_hits"] > stats["cache_recent_frames_hits"]
    newer = client.put("fresh tomatoes from the back garden tonight")
    refreshed = client.related(base.id, k=3, min_seq=newer.seq)
    assert newer.id in [h.frame.id for h in refreshed.hits]
    assert client.stats()["cache_related_misses"] >= after["cache_related_misses"] + 1
    with pytest.raises(NotFoundError):
        client.related("0" * 32)
    for name in ("cache_recent_frames_bytes_max", "cache_related_bytes_max"):
        assert after[name] > 0


def test_cli_important_and_related(daemon: DaemonProcess, client: Client) -> None:
    low = client.put("watering the tomatoes in the garden", importance=0.2)
    high = client.put("the tomatoes won first prize at the fair", importance=0.9)
    client.search("x", min_seq=high.seq)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    env["MEMORYD_SOCKET"] = str(daemon.socket_path)

    def run(*argv: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "memoryd.daemon", *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    lines = run("important", "tomatoes").splitlines()
    assert "first prize" in lines[0] and "watering" in lines[1]
    assert "first prize" in run("related", low.id, "-k", "1")
    assert json.loads(run("important", "--json", "--limit", "5"))["next_cursor"] is None
