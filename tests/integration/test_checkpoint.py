"""Checkpoints through a real daemon: kill -9 after one, a tail replayed, damage ignored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from memoryd.client import Client
from memoryd.storage.checkpoint import checkpoint_path
from memoryd.storage.chunks import iter_chunk_paths
from tests.integration.daemon_process import DaemonProcess

NOW_MS = 1_795_000_000_000
MODES = ("hybrid", "keyword", "semantic", "classic")
QUERIES = ["garden tomatoes", "the release on friday", "sister wedding", "python build green"]
WORDS = (
    "garden tomatoes release friday sister wedding python build green river coffee "
    "mountain camping painting support group adoption lake sunrise team"
).split()


def frames(start: int, count: int) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + count):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(6 + i % 5)]
        out.append(
            {
                "content": f"memory {i}: " + " ".join(words),
                "namespace": ("home", "work")[i % 2],
                "kind": ("note", "fact", "breakthrough")[i % 3],
                "importance": (i % 10) / 10,
                "timestamp_ms": NOW_MS - (200 - i) * 3_600_000,
            }
        )
    return out


def answers(client: Client, min_seq: int) -> dict[tuple[str, str], list[tuple[str, float]]]:
    return {
        (q, mode): [
            (h.frame.id, round(h.score, 6))
            for h in client.search(q, mode=mode, now_ms=NOW_MS, k=10, min_seq=min_seq).hits
        ]
        for q in QUERIES
        for mode in MODES
    }


def start(tmp_path: Path, socket_dir: Path, interval_s: float = 0.2) -> DaemonProcess:
    config = tmp_path / "memoryd.toml"
    config.write_text(f"checkpoint_interval_s = {interval_s}\n")
    return DaemonProcess(
        tmp_path / "data", socket_dir / "memoryd.sock", "--config", str(config)
    ).start()


def wait_checkpoint(client: Client, seq: int) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        last = client.call("status", {})["last_checkpoint"]
        if last is not None and last["seq"] >= seq:
            return dict(last)
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint reached seq {seq}")


def test_kill_after_a_checkpoint_then_more_puts_replays_only_the_tail(
    tmp_path: Path, socket_dir: Path
) -> None:
    first = start(tmp_path, socket_dir)
    try:
        with Client(first.socket_path) as c:
            c.put_batch(frames(0, 150))
            seq = c.delete(c.put_batch(frames(150, 1))[0].id).seq
            assert seq is not None
            c.search("x", min_seq=seq)
            checkpoint = wait_checkpoint(c, seq)
            assert checkpoint["seq"] == seq and checkpoint["bytes"] > 0
            # After the checkpoint: more puts and a delete of a frame it holds.
            tail = c.put_batch(frames(151, 40))
            victim = c.search("garden tomatoes", k=1, min_seq=tail[-1].seq).hits[0].frame.id
            seq = c.delete(victim).seq
            assert seq is not None
            before = answers(c, seq)
        first.kill()  # kill -9: no shutdown checkpoint
    finally:
        first.ensure_stopped()
    second = start(tmp_path, socket_dir, interval_s=3600)
    try:
        with Client(second.socket_path) as c:
            stats = c.stats()
            assert stats["start_checkpoint_problem"] is None
            # Only what follows the checkpoint is replayed (the checkpoint may be newer
            # than the one we saw, never older).
            assert 0 <= stats["start_replayed_records"] <= stats["last_seq"] - checkpoint["seq"]
            assert c.call("status", {})["last_checkpoint"]["seq"] >= checkpoint["seq"]
            assert answers(c, stats["last_seq"]) == before
            assert all(victim != hit.frame.id for hit in c.search("garden tomatoes").hits)
            assert stats["frames_live"] == 189
    finally:
        assert second.terminate() == 0


def test_chunks_the_checkpoint_covers_are_kept_across_a_restart(
    tmp_path: Path, socket_dir: Path
) -> None:
    first = start(tmp_path, socket_dir)
    try:
        with Client(first.socket_path) as c:
            seq = c.put_batch(frames(0, 60))[-1].seq
            c.search("x", min_seq=seq)
            wait_checkpoint(c, seq)
    finally:
        assert first.terminate() == 0
    chunks = {p: p.stat().st_mtime_ns for p in iter_chunk_paths(tmp_path / "data" / "chunks")}
    assert chunks
    second = start(tmp_path, socket_dir)
    try:
        with Client(second.socket_path) as c:
            assert c.stats()["start_replayed_records"] == 0
    finally:
        assert second.terminate() == 0
    after = {p: p.stat().st_mtime_ns for p in iter_chunk_paths(tmp_path / "data" / "chunks")}
    assert after == chunks  # neither deleted nor rewritten


def test_a_damaged_checkpoint_is_reported_ignored_and_rebuilt(
    tmp_path: Path, socket_dir: Path
) -> None:
    first = start(tmp_path, socket_dir)
    try:
        with Client(first.socket_path) as c:
            seq = c.put_batch(frames(0, 80))[-1].seq
            before = answers(c, seq)
            wait_checkpoint(c, seq)
    finally:
        assert first.terminate() == 0
    path = checkpoint_path(tmp_path / "data")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    second = start(tmp_path, socket_dir, interval_s=3600)
    try:
        with Client(second.socket_path) as c:
            stats = c.stats()
            assert "checksum mismatch" in stats["start_checkpoint_problem"]
            assert stats["start_replayed_records"] == stats["last_seq"]
            assert answers(c, stats["last_seq"]) == before
    finally:
        assert second.terminate() == 0
    assert "checkpoint not used" in second.stderr()


def test_a_checkpoint_of_another_log_is_not_trusted(tmp_path: Path, socket_dir: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    first = DaemonProcess(other / "data", socket_dir / "memoryd.sock").start()
    try:
        with Client(first.socket_path) as c:
            c.search("x", min_seq=c.put_batch(frames(0, 30))[-1].seq)
    finally:
        assert first.terminate() == 0
    second = start(tmp_path, socket_dir)
    try:
        with Client(second.socket_path) as c:
            seq = c.put_batch(frames(100, 30))[-1].seq
            before = answers(c, seq)
    finally:
        assert second.terminate() == 0
    # Same sequence numbers, different records: the hash at built_seq differs.
    checkpoint_path(tmp_path / "data").write_bytes(checkpoint_path(other / "data").read_bytes())
    third = start(tmp_path, socket_dir, interval_s=3600)
    try:
        with Client(third.socket_path) as c:
            stats = c.stats()
            assert "does not hold" in stats["start_checkpoint_problem"]
            assert answers(c, stats["last_seq"]) == before
    finally:
        assert third.terminate() == 0


def rebuild(data_dir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    command = [sys.executable, "-m", "memoryd.daemon", "rebuild", "--data-dir", str(data_dir)]
    return subprocess.run(
        [*command, *options], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_rebuild_from_the_log_alone_answers_every_query_identically(
    tmp_path: Path, socket_dir: Path
) -> None:
    first = start(tmp_path, socket_dir, interval_s=3600)
    try:
        with Client(first.socket_path) as c:
            put = c.put_batch(frames(0, 120))
            seq = c.delete(
                c.search("sister wedding", k=1, min_seq=put[-1].seq).hits[0].frame.id
            ).seq
            assert seq is not None
            before = answers(c, seq)
    finally:
        assert first.terminate() == 0
    done = rebuild(tmp_path / "data", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["removed_checkpoint"] is True
    assert report["records"] == seq and report["frames_built"] == 120
    assert report["docs_live"] == 119 and report["checkpoint"]["seq"] == seq
    second = start(tmp_path, socket_dir, interval_s=3600)
    try:
        with Client(second.socket_path) as c:
            stats = c.stats()
            assert stats["start_replayed_records"] == 0
            assert stats["checkpoint_seq"] == seq
            assert answers(c, seq) == before
    finally:
        assert second.terminate() == 0


def test_rebuild_refuses_while_the_daemon_runs(tmp_path: Path, socket_dir: Path) -> None:
    daemon = start(tmp_path, socket_dir)
    try:
        done = rebuild(tmp_path / "data")
        assert done.returncode == 1
        assert "stop it before rebuilding" in done.stderr
    finally:
        assert daemon.terminate() == 0
