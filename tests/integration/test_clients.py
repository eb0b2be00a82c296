"""Round trips through ``Client`` and ``AsyncClient`` against a real daemon process.

Everything goes over the real Unix socket to a ``memoryd serve`` subprocess
writing real files: stored fields come back exactly, content addressing
makes a repeated put a no-op, batches are all or nothing, paging covers every
frame exactly once, server errors arrive as the typed exceptions carrying the
server's code, and connection failures and timeouts are clear.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from memoryd.client import (
    AsyncClient,
    Client,
    ClientTimeoutError,
    DaemonConnectionError,
    Frame,
    MemorydError,
    NotFoundError,
    Page,
    PutResult,
    RequestError,
    UnavailableError,
)
from tests.integration.daemon_process import DaemonProcess

TIMESTAMP_MS_MAX = 253_402_300_799_999  # end of year 9999 (PROTOCOL.md, put)

# Each case: put arguments, and the tags the stored frame must have.
ROUND_TRIP_CASES: list[dict[str, Any]] = [
    {
        "content": "Caroline went to the LGBTQ support group on 7 May",
        "kind": "fact",
        "tags": ["caroline", "support"],
        "importance": 0.8,
    },
    {
        "content": "naïve café — 日本語 — Ελληνικά — عربى — e\u0301 (not normalised)",
        "namespace": "ünïcode",
        "kind": "note",
        "metadata": {"clé": "valeur", "nested": {"list": [1, 2.5, None, True], "emoji": "🦀"}},
    },
    {
        "content": "emoji 🌈👩‍👩‍👧🏳️‍🌈 and a supplementary-plane 𝄞, with\ttabs\nand lines\n",
        "kind": "breakthrough",
        "tags": ["🌈", "dup", "dup", "x"],  # duplicates removed, order kept
        "importance": 1.0,
        "timestamp_ms": 1_700_000_000_123,
        "source": "chat ✓",
    },
    {
        "content": "   leading and trailing whitespace is kept   \n\n",
        "importance": 0.0,
        "timestamp_ms": 0,
    },
    {"content": "the last representable instant", "timestamp_ms": TIMESTAMP_MS_MAX},
]


def _expected_tags(case: dict[str, Any]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(case.get("tags", [])))


def assert_stored(frame: Frame, put: PutResult, case: dict[str, Any]) -> None:
    assert frame.id == put.id and frame.seq == put.seq
    assert frame.timestamp_ms == put.timestamp_ms
    assert frame.content == case["content"]  # byte for byte: never trimmed or normalised
    assert frame.kind == case.get("kind", "note")
    assert frame.namespace == case.get("namespace", "default")
    assert frame.tags == _expected_tags(case)
    assert frame.importance == case.get("importance", 0.5)
    assert dict(frame.metadata) == case.get("metadata", {})
    assert frame.source == case.get("source", "")
    assert frame.private is False
    if "timestamp_ms" in case:
        assert frame.timestamp_ms == case["timestamp_ms"]
    else:
        assert abs(frame.timestamp_ms - time.time() * 1000) < 60_000


def test_round_trip_sync(daemon: DaemonProcess) -> None:
    with Client(daemon.socket_path) as memory:
        assert memory.server_info is not None and memory.server_info.protocol == 1
        puts = [memory.put(**case) for case in ROUND_TRIP_CASES]
        assert all(put.is_new for put in puts)
        assert len({put.id for put in puts}) == len(puts)
        assert [put.seq for put in puts] == sorted({put.seq for put in puts})
        for put, case in zip(puts, ROUND_TRIP_CASES, strict=True):
            assert_stored(memory.get(put.id), put, case)
        assert memory.stats()["frames_live"] == len(ROUND_TRIP_CASES)
    # A fresh connection reads the same frames: they are the daemon's, not the client's.
    with Client(daemon.socket_path) as other:
        for put, case in zip(puts, ROUND_TRIP_CASES, strict=True):
            assert_stored(other.get(put.id), put, case)


async def test_round_trip_async(daemon: DaemonProcess) -> None:
    async with AsyncClient(daemon.socket_path) as memory:
        puts = await asyncio.gather(*(memory.put(**case) for case in ROUND_TRIP_CASES))
        assert all(put.is_new for put in puts)
        assert len({put.seq for put in puts}) == len(puts)
        frames = await asyncio.gather(*(memory.get(put.id) for put in puts))
        for frame, put, case in zip(frames, puts, ROUND_TRIP_CASES, strict=True):
            assert_stored(frame, put, case)
        assert (await memory.stats())["frames_live"] == len(ROUND_TRIP_CASES)


def test_repeated_put_is_a_no_op_that_returns_the_stored_frame(daemon: DaemonProcess) -> None:
    with Client(daemon.socket_path) as memory:
        first = memory.put("the user prefers tea", kind="fact", tags=["prefs"], importance=0.9)
        last_seq = memory.stats()["last_seq"]
        again = memory.put(
            "the user prefers tea",
            kind="fact",
            tags=["other"],
            importance=0.1,
            metadata={"ignored": True},
            timestamp_ms=5,
        )
        assert again == PutResult(first.id, first.seq, first.timestamp_ms, is_new=False)
        stats = memory.stats()
        assert stats["last_seq"] == last_seq and stats["frames_live"] == 1  # nothing written
        stored = memory.get(first.id)
        assert stored.tags == ("prefs",) and stored.importance == 0.9  # not changed
        assert stored.metadata == {}
        # The id covers namespace, kind and content: change any one and it is a new frame.
        other_kind = memory.put("the user prefers tea", kind="note")
        other_namespace = memory.put("the user prefers tea", kind="fact", namespace="work")
        other_content = memory.put("the user prefers tea.", kind="fact")
        ids = {first.id, other_kind.id, other_namespace.id, other_content.id}
        assert len(ids) == 4
        assert other_kind.is_new and other_namespace.is_new and other_content.is_new
        assert memory.stats()["frames_live"] == 4


async def test_identical_puts_from_two_clients_store_exactly_one_frame(
    daemon: DaemonProcess,
) -> None:
    content = "said twice, by two agents at once 🔁"
    async with AsyncClient(daemon.socket_path) as a, AsyncClient(daemon.socket_path) as b:
        before = (await a.stats())["last_seq"]
        calls = [(a if i % 2 else b).put(content, kind="event") for i in range(50)]
        results = await asyncio.gather(*calls)
        assert sum(result.is_new for result in results) == 1
        assert len({(r.id, r.seq, r.timestamp_ms) for r in results}) == 1
        stats = await b.stats()
        assert stats["frames_live"] == 1
        assert stats["last_seq"] == before + 1  # one record in the log
        assert (await a.get(results[0].id)).content == content


def test_put_batch_with_an_in_batch_duplicate(daemon: DaemonProcess) -> None:
    with Client(daemon.socket_path) as memory:
        existing = memory.put("stored before the batch")
        frames = [
            {"content": "batch one", "kind": "fact", "tags": ["b"]},
            {"content": "batch two ✨", "metadata": {"n": 2}},
            {"content": "batch one", "kind": "fact"},  # the same frame as index 0
            {"content": "stored before the batch"},
        ]
        results = memory.put_batch(frames)
        assert [r.is_new for r in results] == [True, True, False, False]
        assert results[2].id == results[0].id and results[2].seq == results[0].seq
        assert results[3] == PutResult(
            existing.id, existing.seq, existing.timestamp_ms, is_new=False
        )
        assert results[0].seq != results[1].seq
        assert memory.stats()["frames_live"] == 3
        assert memory.get(results[0].id).tags == ("b",)
        assert memory.get(results[1].id).metadata == {"n": 2}


async def test_put_batch_with_one_invalid_frame_stores_nothing(daemon: DaemonProcess) -> None:
    async with AsyncClient(daemon.socket_path) as memory:
        await memory.put("already here")
        before = await memory.stats()
        good = [{"content": f"would be stored {i}"} for i in range(5)]
        with pytest.raises(RequestError) as bad:
            await memory.put_batch([*good[:3], {"content": "   "}, *good[3:]])
        assert bad.value.code == "bad_request" and bad.value.details["index"] == 3
        with pytest.raises(RequestError) as over:
            await memory.put_batch([*good, {"content": "x", "tags": [f"t{i}" for i in range(65)]}])
        assert over.value.code == "limit_exceeded"
        assert over.value.details == {"limit": "tags_max", "max": 64, "got": 65, "index": 5}
        after = await memory.stats()
        assert after["frames_live"] == before["frames_live"] == 1
        assert after["last_seq"] == before["last_seq"]
        assert (await memory.recent(limit=10)).frames[0].content == "already here"
        # The same frames without the bad one go in together.
        results = await memory.put_batch(good)
        assert all(r.is_new for r in results)
        assert (await memory.stats())["frames_live"] == 6


def _all_pages(fetch: Any, limit: int) -> list[Frame]:
    frames: list[Frame] = []
    cursor = None
    pages = 0
    while True:
        page: Page = fetch(limit=limit, cursor=cursor)
        assert len(page.frames) <= limit
        frames.extend(page.frames)
        pages += 1
        assert pages < 1000
        if page.next_cursor is None:
            return frames
        assert page.frames, "a page with a cursor after it must hold frames"
        cursor = page.next_cursor


def test_recent_and_range_paging_cover_everything_exactly_once(daemon: DaemonProcess) -> None:
    base_ms = 1_750_000_000_000
    with Client(daemon.socket_path) as memory:
        # 61 frames; groups of three share a millisecond, so order falls back to seq.
        frames = [
            {"content": f"paged frame {i} ⏱", "timestamp_ms": base_ms + (i // 3) * 1000}
            for i in range(61)
        ]
        # Written out of time order, across several batches.
        order = list(range(0, 61, 2)) + list(range(1, 61, 2))
        results: list[PutResult] = []
        for start in range(0, 61, 25):
            results += memory.put_batch([frames[i] for i in order[start : start + 25]])
        puts = dict(zip(order, results, strict=True))
        key = {puts[i].id: (frames[i]["timestamp_ms"], puts[i].seq) for i in range(61)}

        newest_first = _all_pages(memory.recent, limit=7)
        ids = [f.id for f in newest_first]
        assert len(ids) == len(set(ids)) == 61
        assert ids == sorted(key, key=lambda fid: key[fid], reverse=True)

        oldest_first = _all_pages(memory.range, limit=8)
        assert [f.id for f in oldest_first] == list(reversed(ids))

        # Bounds: since inclusive, until exclusive.
        since, until = base_ms + 5_000, base_ms + 12_000
        window = _all_pages(
            lambda **kw: memory.range(since_ms=since, until_ms=until, **kw), limit=4
        )
        expected = [fid for fid in reversed(ids) if since <= key[fid][0] < until]
        assert [f.id for f in window] == expected and len(expected) == 21
        assert memory.range(since_ms=base_ms + 10**9).frames == ()
        # A page exactly as long as what is left ends with no cursor.
        whole = memory.range(limit=61)
        assert len(whole.frames) == 61 and whole.next_cursor is None


async def test_filters_by_namespace_and_kind(daemon: DaemonProcess) -> None:
    async with AsyncClient(daemon.socket_path) as memory:
        frames = [
            {"content": f"{ns}/{kind} {i}", "namespace": ns, "kind": kind, "timestamp_ms": 1000 + i}
            for i, (ns, kind) in enumerate(
                (ns, kind)
                for ns in ("alice", "bob", "ça")
                for kind in ("fact", "task")
                for _ in range(4)
            )
        ]
        await memory.put_batch(frames)

        def labels(page: Page) -> set[tuple[str, str]]:
            return {(f.namespace, f.kind) for f in page.frames}

        alice = await memory.recent(namespace="alice", limit=100)
        assert len(alice.frames) == 8 and labels(alice) == {("alice", "fact"), ("alice", "task")}
        facts = await memory.recent(kind="fact", limit=100)
        assert len(facts.frames) == 12 and {f.kind for f in facts.frames} == {"fact"}
        both = await memory.range(namespace="ça", kind="task", limit=100)
        assert len(both.frames) == 4 and labels(both) == {("ça", "task")}
        assert [f.timestamp_ms for f in both.frames] == sorted(f.timestamp_ms for f in both.frames)
        paged: list[str] = []
        cursor = None
        while True:
            page = await memory.recent(namespace="bob", kind="fact", limit=3, cursor=cursor)
            paged += [f.content for f in page.frames]
            if (cursor := page.next_cursor) is None:
                break
        assert paged == [f"bob/fact {i}" for i in (11, 10, 9, 8)]
        assert (await memory.recent(namespace="nobody")).frames == ()
        assert (await memory.recent(kind="unknown-kind")).frames == ()


def test_delete_then_get_raises_not_found(daemon: DaemonProcess) -> None:
    with Client(daemon.socket_path) as memory:
        keep = memory.put("keep me")
        gone = memory.put("forget me", kind="fact")
        deleted = memory.delete(gone.id)
        assert deleted.id == gone.id and deleted.deleted is True
        assert deleted.seq is not None and deleted.seq > gone.seq
        with pytest.raises(NotFoundError) as missing:
            memory.get(gone.id)
        assert missing.value.code == "not_found" and gone.id in missing.value.message
        again = memory.delete(gone.id)
        assert again.deleted is False and again.seq is None
        assert [f.id for f in memory.recent().frames] == [keep.id]
        stats = memory.stats()
        assert stats["frames_live"] == 1 and stats["frames_deleted"] == 1
        # Deleted content may be stored again: it is a new frame with a new seq.
        back = memory.put("forget me", kind="fact")
        assert back.id == gone.id and back.is_new and back.seq > deleted.seq
        assert memory.get(gone.id).content == "forget me"
        with pytest.raises(NotFoundError):
            memory.get("0" * 32)


async def test_server_errors_are_typed_and_carry_codes(daemon: DaemonProcess) -> None:
    async with AsyncClient(daemon.socket_path) as memory:
        limits = (await memory.connect()).limits
        content_max = limits["content_bytes_max"]
        with pytest.raises(RequestError) as too_big:
            await memory.put("é" * (content_max // 2 + 1))
        error = too_big.value
        assert error.code == "limit_exceeded" and "content_bytes_max" in error.message
        assert error.details == {
            "limit": "content_bytes_max",
            "max": content_max,
            "got": content_max + 2,
        }
        with pytest.raises(RequestError) as page_limit:
            await memory.recent(limit=limits["page_frames_max"] + 1)
        assert page_limit.value.code == "limit_exceeded"
        assert page_limit.value.details["limit"] == "page_frames_max"
        with pytest.raises(RequestError) as bad_range:
            await memory.range(since_ms=10, until_ms=5)
        assert bad_range.value.code == "bad_request"
        with pytest.raises(RequestError) as bad_cursor:
            await memory.recent(cursor="not-a-cursor")
        assert bad_cursor.value.code == "bad_request"
        with pytest.raises(RequestError) as unknown:
            await memory.call("format_disk")
        assert unknown.value.code == "unknown_op"
        with pytest.raises(UnavailableError) as locked:
            await memory.put("a secret", private=True)
        assert locked.value.code == "locked"
        with pytest.raises(NotFoundError):
            await memory.get("f" * 32)
        for exc in (too_big, page_limit, bad_range, unknown, locked):
            assert isinstance(exc.value, MemorydError)
            assert "\n" not in exc.value.message
        # Every error left the connection usable, and stored nothing.
        assert (await memory.stats())["frames_live"] == 0
        assert await memory.ping() > 0


def test_sync_client_raises_the_same_typed_errors(daemon: DaemonProcess) -> None:
    with Client(daemon.socket_path) as memory:
        with pytest.raises(RequestError) as over:
            memory.put("x", tags=[f"tag{i}" for i in range(70)])
        assert over.value.code == "limit_exceeded"
        assert over.value.details == {"limit": "tags_max", "max": 64, "got": 70}
        with pytest.raises(RequestError) as empty:
            memory.put("")
        assert empty.value.code == "bad_request"
        with pytest.raises(UnavailableError) as locked:
            memory.put("a secret", private=True)
        assert locked.value.code == "locked"
        assert memory.stats()["frames_live"] == 0


def _assert_unreachable(exc: DaemonConnectionError, path: Path) -> None:
    assert exc.code == "connection_failed"
    assert str(path) in exc.message
    assert "\n" not in str(exc)
    assert "not running" in exc.message


def test_sync_client_without_daemon(socket_dir: Path) -> None:
    path = socket_dir / "absent.sock"
    memory = Client(path, timeout=2)
    try:
        with pytest.raises(DaemonConnectionError) as error:
            memory.ping()
        _assert_unreachable(error.value, path)
    finally:
        memory.close()


async def test_async_client_without_daemon(socket_dir: Path) -> None:
    path = socket_dir / "absent.sock"
    memory = AsyncClient(path, timeout=2)
    try:
        with pytest.raises(DaemonConnectionError) as error:
            await memory.put("nobody listens")
        _assert_unreachable(error.value, path)
    finally:
        await memory.close()


def test_stale_socket_file_is_reported_as_not_running(socket_dir: Path) -> None:
    path = socket_dir / "stale.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.close()  # the file stays, nobody listens: what a killed daemon leaves
    with pytest.raises(DaemonConnectionError) as error, Client(path, timeout=2):
        pass
    _assert_unreachable(error.value, path)
    assert "refused" in error.value.message


@contextmanager
def stopped(daemon: DaemonProcess) -> Iterator[None]:
    """The daemon frozen with SIGSTOP (it accepts nothing, answers nothing), then SIGCONT."""
    assert daemon.process is not None
    os.kill(daemon.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(daemon.process.pid, signal.SIGCONT)


def test_sync_client_timeout_then_reconnects(daemon: DaemonProcess) -> None:
    with Client(daemon.socket_path, timeout=0.3) as memory:
        put = memory.put("before the freeze")
        with stopped(daemon):
            started = time.monotonic()
            with pytest.raises(ClientTimeoutError) as error:
                memory.get(put.id)
            assert 0.25 <= time.monotonic() - started < 3.0
            assert error.value.code == "timeout" and "get" in error.value.message
        # The timed-out connection was dropped; the next call reconnects.
        memory.timeout = 10
        assert memory.get(put.id).content == "before the freeze"


async def test_async_client_timeout_leaves_connection_usable(daemon: DaemonProcess) -> None:
    async with AsyncClient(daemon.socket_path, timeout=0.3) as memory:
        with stopped(daemon):
            started = time.monotonic()
            with pytest.raises(ClientTimeoutError) as error:
                await memory.put("sent while the daemon was frozen")
            assert 0.25 <= time.monotonic() - started < 3.0
            assert error.value.code == "timeout"
        memory.timeout = 10
        # The put reached the socket, so the daemon stores it once it runs again;
        # resending it is safe: content addressing never duplicates.
        retried = await memory.put("sent while the daemon was frozen")
        assert (await memory.get(retried.id)).seq == retried.seq
        stats = await memory.stats()
        assert stats["frames_live"] == 1 and stats["last_seq"] == 1


async def test_async_client_connect_timeout_while_daemon_frozen(daemon: DaemonProcess) -> None:
    memory = AsyncClient(daemon.socket_path, timeout=0.3)
    try:
        with stopped(daemon), pytest.raises(ClientTimeoutError):
            await memory.connect()  # the kernel accepts; hello is never answered
        memory.timeout = 10
        assert (await memory.connect()).server == "memoryd"
    finally:
        await memory.close()
