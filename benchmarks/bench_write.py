"""Write path: acknowledged frames per second and put latency, memoryd beside SQLite.

Rows, all with default durability (acknowledged after fsync):
  (a) one put at a time from one client          (round-trip latency p50/p99)
  (b) pipelined puts from one client              (window of in-flight puts)
  (c) 8 concurrent clients, one put at a time each (8 processes: group commit)
  (d) put_batch                                    (batches of BATCH frames)
  (e) put_batch, pipelined                         (BATCHES_IN_FLIGHT batches at once)
and what a user would pick instead: SQLite (standard library, WAL,
synchronous=FULL) inserting the same frames one transaction each, and in
transactions of BATCH frames.

Fixed seed, a warm-up before every measured row, the daemon started fresh on
a new data directory for each memoryd row.  Prints a Markdown table and
writes it, with the machine, to benchmarks/results/.

    python benchmarks/bench_write.py [--frames 20000] [--out benchmarks/results/write.md]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from daemon_runner import BenchDaemon

from memoryd.client import AsyncClient, Client

SEED = 1121
BATCH = 1000
BATCHES_IN_FLIGHT = 4
PIPELINE_WINDOW = 256
CONCURRENT_CLIENTS = 8
WORDS = [
    "the",
    "a",
    "to",
    "and",
    "of",
    "in",
    "memory",
    "agent",
    "user",
    "said",
    "project",
    "deadline",
    "meeting",
    "coffee",
    "tea",
    "caroline",
    "melanie",
    "support",
    "group",
    "painting",
    "camping",
    "kids",
    "book",
    "library",
    "python",
    "rust",
    "release",
    "bug",
    "fix",
    "deploy",
    "friday",
    "monday",
    "weekend",
    "trip",
    "beach",
    "mountain",
    "dinner",
    "family",
    "remember",
    "prefers",
    "likes",
    "dislikes",
    "because",
    "tomorrow",
    "yesterday",
    "week",
    "month",
    "plan",
    "goal",
]


def make_frames(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    frames = []
    for i in range(count):
        words = rng.choices(WORDS, k=rng.randint(20, 80))
        frames.append(
            {
                "content": f"{i} " + " ".join(words),
                "kind": rng.choice(["conversation", "fact", "note"]),
                "namespace": rng.choice(["agent-a", "agent-b"]),
                "tags": rng.sample(["work", "home", "health", "travel"], k=rng.randint(0, 2)),
                "importance": round(rng.random(), 3),
                "metadata": {"turn": i},
            }
        )
    return frames


@dataclass
class Row:
    name: str
    frames: int
    seconds: float
    latencies_s: list[float]

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies_s) * 1000 if self.latencies_s else float("nan")


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_single(frames: list[dict[str, Any]], warm: list[dict[str, Any]]) -> Row:
    daemon = BenchDaemon()
    daemon.start()
    try:
        with Client(daemon.socket) as client:
            for frame in warm:
                client.put(**frame)
            latencies = []
            start = time.perf_counter()
            for frame in frames:
                latencies.append(timed(lambda f=frame: client.put(**f)))  # type: ignore[misc]
            return Row(
                "memoryd (a) one put at a time", len(frames), time.perf_counter() - start, latencies
            )
    finally:
        daemon.remove()


def bench_pipelined(frames: list[dict[str, Any]], warm: list[dict[str, Any]]) -> Row:
    daemon = BenchDaemon()
    daemon.start()
    try:
        with Client(daemon.socket) as client:
            client.pipeline_put(warm, window=PIPELINE_WINDOW)
            latencies = []
            start = time.perf_counter()
            for i in range(0, len(frames), BATCH):
                chunk = frames[i : i + BATCH]
                latencies.append(
                    timed(
                        lambda c=chunk: client.pipeline_put(  # type: ignore[misc]
                            c, window=PIPELINE_WINDOW
                        )
                    )
                    / len(chunk)
                )
            return Row(
                f"memoryd (b) pipelined, window {PIPELINE_WINDOW}",
                len(frames),
                time.perf_counter() - start,
                latencies,
            )
    finally:
        daemon.remove()


def _one_client(socket: str, frames: list[dict[str, Any]], out: Any) -> None:
    with Client(socket) as client:
        latencies = [timed(lambda f=frame: client.put(**f)) for frame in frames]  # type: ignore[misc]
    out.put(latencies)


def bench_concurrent(frames: list[dict[str, Any]], warm: list[dict[str, Any]]) -> Row:
    daemon = BenchDaemon()
    daemon.start()
    try:
        with Client(daemon.socket) as client:
            client.pipeline_put(warm)
        queue: Any = multiprocessing.get_context("fork").Queue()
        share = len(frames) // CONCURRENT_CLIENTS
        workers = [
            multiprocessing.get_context("fork").Process(
                target=_one_client,
                args=(str(daemon.socket), frames[i * share : (i + 1) * share], queue),
            )
            for i in range(CONCURRENT_CLIENTS)
        ]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        latencies: list[float] = []
        for _ in workers:
            latencies += queue.get()
        for worker in workers:
            worker.join()
        return Row(
            f"memoryd (c) {CONCURRENT_CLIENTS} clients, one put at a time each",
            share * CONCURRENT_CLIENTS,
            time.perf_counter() - start,
            latencies,
        )
    finally:
        daemon.remove()


def bench_batch(frames: list[dict[str, Any]], warm: list[dict[str, Any]]) -> Row:
    daemon = BenchDaemon()
    daemon.start()
    try:
        with Client(daemon.socket) as client:
            client.put_batch(warm[:BATCH])
            latencies = []
            start = time.perf_counter()
            for i in range(0, len(frames), BATCH):
                chunk = frames[i : i + BATCH]
                latencies.append(
                    timed(lambda c=chunk: client.put_batch(c)) / len(chunk)  # type: ignore[misc]
                )
            return Row(
                f"memoryd (d) put_batch of {BATCH}",
                len(frames),
                time.perf_counter() - start,
                latencies,
            )
    finally:
        daemon.remove()


async def _batches_in_flight(
    socket: Path, frames: list[dict[str, Any]], warm: list[dict[str, Any]]
) -> tuple[float, list[float]]:
    """Seconds for ``frames`` in batches of BATCH, BATCHES_IN_FLIGHT at once on one
    connection, and each batch's latency per frame."""
    async with AsyncClient(socket) as client:
        await client.put_batch(warm[:BATCH])
        gate = asyncio.Semaphore(BATCHES_IN_FLIGHT)
        latencies: list[float] = []

        async def one(chunk: list[dict[str, Any]]) -> None:
            async with gate:
                sent = time.perf_counter()
                await client.put_batch(chunk)
                latencies.append((time.perf_counter() - sent) / len(chunk))

        start = time.perf_counter()
        await asyncio.gather(*(one(frames[i : i + BATCH]) for i in range(0, len(frames), BATCH)))
        return time.perf_counter() - start, latencies


def bench_batch_pipelined(frames: list[dict[str, Any]], warm: list[dict[str, Any]]) -> Row:
    daemon = BenchDaemon()
    daemon.start()
    try:
        seconds, latencies = uvloop.run(_batches_in_flight(daemon.socket, frames, warm))
        return Row(
            f"memoryd (e) put_batch of {BATCH}, {BATCHES_IN_FLIGHT} in flight",
            len(frames),
            seconds,
            latencies,
        )
    finally:
        daemon.remove()


def _sqlite(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE frames (id TEXT PRIMARY KEY, ts INTEGER, namespace TEXT, kind TEXT, "
        "content TEXT, tags TEXT, importance REAL, metadata TEXT)"
    )
    db.execute("CREATE INDEX frames_ts ON frames (namespace, ts)")
    return db


def _sqlite_insert(db: sqlite3.Connection, frames: list[dict[str, Any]]) -> None:
    import hashlib

    db.execute("BEGIN")
    db.executemany(
        "INSERT OR IGNORE INTO frames VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                hashlib.sha256(
                    f"{f['namespace']}\x1f{f['kind']}\x1f{f['content']}".encode()
                ).hexdigest()[:32],
                time.time_ns() // 1_000_000,
                f["namespace"],
                f["kind"],
                f["content"],
                orjson.dumps(f["tags"]).decode(),
                f["importance"],
                orjson.dumps(f["metadata"]).decode(),
            )
            for f in frames
        ],
    )
    db.execute("COMMIT")


def bench_sqlite(frames: list[dict[str, Any]], warm: list[dict[str, Any]], batch: int) -> Row:
    root = Path(tempfile.mkdtemp(prefix="mdb-sqlite-", dir=os.environ.get("BENCH_DIR")))
    try:
        db = _sqlite(root / "frames.db")
        _sqlite_insert(db, warm)
        latencies = []
        start = time.perf_counter()
        for i in range(0, len(frames), batch):
            chunk = frames[i : i + batch]
            latencies.append(
                timed(lambda c=chunk: _sqlite_insert(db, c))
                / (  # type: ignore[misc]
                    1 if batch == 1 else len(chunk)
                )
            )
        elapsed = time.perf_counter() - start
        db.close()
        name = (
            "SQLite WAL FULL, one transaction per frame"
            if batch == 1
            else f"SQLite WAL FULL, transactions of {batch}"
        )
        return Row(name, len(frames), elapsed, latencies)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def machine() -> str:
    cpu = platform.processor() or "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    fs = (
        subprocess.run(
            ["df", "-T", os.environ.get("BENCH_DIR", tempfile.gettempdir())],
            capture_output=True,
            text=True,
        )
        .stdout.splitlines()[-1]
        .split()[1]
    )
    return (
        f"{os.cpu_count()} cores, {cpu}; Python {platform.python_version()}; "
        f"SQLite {sqlite3.sqlite_version}; data on {fs}; {platform.platform()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument(
        "--single-frames",
        type=int,
        default=3_000,
        help="frames for the one-at-a-time rows (each costs an fsync)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    frames = make_frames(args.frames, SEED)
    single = frames[: args.single_frames]
    warm = make_frames(2_000, SEED + 1)
    warm_small = warm[:200]
    rows = [
        bench_single(single, warm_small),
        bench_pipelined(frames, warm),
        bench_concurrent(single, warm_small),
        bench_batch(frames, warm),
        bench_batch_pipelined(frames, warm),
        bench_sqlite(single, warm_small, batch=1),
        bench_sqlite(frames, warm, batch=BATCH),
    ]
    sqlite_single = rows[-2].frames_per_s
    sqlite_batch = rows[-1].frames_per_s
    lines = [
        f"# Write path, {time.strftime('%Y-%m-%d')}",
        "",
        f"Machine: {machine()}.",
        f"Command: `python benchmarks/bench_write.py --frames {args.frames} "
        f"--single-frames {args.single_frames}` (seed {SEED}; frames of 20-80 words).",
        "Latency columns: per put for (a) and (c) and SQLite one-per-transaction; per frame "
        "otherwise (a window's or a batch's time over its frames).",
        "",
        "| row | frames | frames/s | p50 ms | p99 ms | vs SQLite one-per-txn | vs SQLite batched |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.frames} | {row.frames_per_s:,.0f} | {row.p50_ms:.3f} | "
            f"{row.percentile_ms(0.99):.3f} | {row.frames_per_s / sqlite_single:.2f}x | "
            f"{row.frames_per_s / sqlite_batch:.2f}x |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
