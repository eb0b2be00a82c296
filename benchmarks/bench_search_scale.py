"""Search at scale: memoryd through a real daemon beside SQLite FTS5, same corpus, same queries.

For each size (default 100k and 1M frames of benchmarks/corpus.py, fixed seed):
- build time: from the first put to every frame searchable (memoryd), from the
  first insert to the committed FTS5 index (SQLite, transactions of 10,000);
- queries start once the daemon has settled: built, and its idle builder's merge
  of keyword segments (a second or so after it catches up) done;
- keyword search p50/p99 for 1-, 2- and 3-word queries and for a query led by
  one of the five commonest words: memoryd ``keyword`` mode, k=10, through the
  client (so every figure includes a Unix-socket round trip and the hits' text);
  SQLite FTS5 ``MATCH 'a OR b'`` ranked by ``bm25()`` LIMIT 10, and ``MATCH 'a AND b'``,
  fetching each hit's rowid, text and score (what an answer needs);
- hybrid search p50/p99 (3-word queries);
- searchable after acknowledgement: puts at a steady 1,000/s, then a search
  that waits for each sampled put (``min_seq``), p50/p99 from ack to answer;
- restart: SIGTERM, start, time until it serves, and until fully searchable (from the
  checkpoint of the clean stop); then after kill -9 with 1% more frames past the
  checkpoint; then with no checkpoint (a full rebuild); `--restart-only` runs just these;
- resident memory of the daemon (VmRSS) and bytes on disk per frame.

    python benchmarks/bench_search_scale.py --sizes 100000 1000000 --out FILE

Queries are drawn with a fixed seed; a warm-up of 50 queries precedes each row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus
from bench_write import machine
from daemon_runner import BenchDaemon

from memoryd.client import Client

QUERY_SEED = 7
QUERIES_PER_ROW = 300
WARMUP_QUERIES = 50
PUT_BATCH = 1000
STEADY_PUTS_PER_S = 1000
STEADY_SECONDS = 5


def percentiles_ms(samples_s: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return statistics.median(ordered) * 1000, p99 * 1000


def timed_each(fn: Callable[[list[str]], object], queries: list[list[str]]) -> list[float]:
    for words in queries[:WARMUP_QUERIES]:
        fn(words)
    samples = []
    for words in queries[WARMUP_QUERIES:]:
        start = time.perf_counter()
        fn(words)
        samples.append(time.perf_counter() - start)
    return samples


def query_sets() -> dict[str, list[list[str]]]:
    rng = np.random.default_rng(QUERY_SEED)
    n = QUERIES_PER_ROW + WARMUP_QUERIES
    return {
        "1 word": [corpus.query_words(rng, 1) for _ in range(n)],
        "2 words": [corpus.query_words(rng, 2) for _ in range(n)],
        "3 words": [corpus.query_words(rng, 3) for _ in range(n)],
        "frequent word": [corpus.query_words(rng, 1, frequent=True) for _ in range(n)],
        "frequent + 1": [corpus.query_words(rng, 2, frequent=True) for _ in range(n)],
    }


def du_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def memoryd_frames(batch: corpus.FrameBatch) -> list[dict[str, Any]]:
    return [
        {
            "content": row.text,
            "namespace": row.namespace,
            "kind": row.kind,
            "importance": row.importance,
            "tags": list(row.tags),
            "timestamp_ms": row.timestamp_ms,
        }
        for row in batch.rows()
    ]


def steady_searchable(client_socket: Path) -> list[float]:
    """Puts at STEADY_PUTS_PER_S; a search from another client awaits every 10th (min_seq)."""
    acked: list[tuple[int, float]] = []
    lock = threading.Condition()
    done = threading.Event()

    def writer() -> None:
        with Client(client_socket) as client:
            interval = 1 / STEADY_PUTS_PER_S
            next_at = time.perf_counter()
            for i in range(STEADY_PUTS_PER_S * STEADY_SECONDS):
                result = client.put(f"steady probe {i} zqxwv{i}", namespace="steady")
                with lock:
                    if i % 10 == 0:
                        acked.append((result.seq, time.perf_counter()))
                        lock.notify()
                next_at += interval
                time.sleep(max(0.0, next_at - time.perf_counter()))
        done.set()
        with lock:
            lock.notify()

    samples: list[float] = []
    thread = threading.Thread(target=writer)
    thread.start()
    with Client(client_socket) as client:
        taken = 0
        while True:
            with lock:
                while taken >= len(acked) and not done.is_set():
                    lock.wait()
                if taken >= len(acked):
                    break
                seq, ack_time = acked[taken]
                taken += 1
            client.search("zqxwv", k=1, min_seq=seq, namespace="steady")
            samples.append(time.perf_counter() - ack_time)
    thread.join()
    return samples


def bench_memoryd(size: int, queries: dict[str, list[list[str]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    daemon = BenchDaemon()
    daemon.start()
    try:
        with Client(daemon.socket, timeout=300) as client:
            started = time.perf_counter()
            for batch in corpus.frames(size, batch=PUT_BATCH):
                client.put_batch(memoryd_frames(batch))
            out["ingest acked s"] = time.perf_counter() - started
            daemon.wait_built(client)
            out["build s"] = time.perf_counter() - started
            daemon.wait_settled(client)
            out["settled s"] = time.perf_counter() - started
            # A distinct now_ms per query: every search is ranked afresh, never served
            # from the result cache (which only helps when queries repeat).
            fresh = iter(range(1_800_000_000_000, 1_900_000_000_000))
            for name, qs in queries.items():
                out[f"keyword {name}"] = percentiles_ms(
                    timed_each(
                        lambda w: client.search(
                            " ".join(w), k=10, mode="keyword", now_ms=next(fresh)
                        ),
                        qs,
                    )
                )
            out["hybrid 3 words"] = percentiles_ms(
                timed_each(
                    lambda w: client.search(" ".join(w), k=10, now_ms=next(fresh)),
                    queries["3 words"],
                )
            )
            out["rss bytes"] = daemon.rss_bytes()
        out["searchable after ack"] = percentiles_ms(steady_searchable(daemon.socket))
    finally:
        daemon.stop()
    out["disk bytes per frame"] = du_bytes(daemon.data_dir) / size
    try:
        out.update(bench_restarts(daemon, size))
    finally:
        daemon.remove()
    return out


def restart_times(daemon: BenchDaemon) -> tuple[float, float, int]:
    """Start on the same data: seconds to serving, to fully searchable, records replayed."""
    serving = daemon.start()
    with Client(daemon.socket, timeout=600) as client:
        restarted = time.perf_counter()
        daemon.wait_built(client)
        searchable = serving + time.perf_counter() - restarted
        replayed = int(client.stats()["start_replayed_records"])
    return serving, searchable, replayed


def bench_restarts(daemon: BenchDaemon, size: int) -> dict[str, Any]:
    """Restarts of a stopped daemon holding ``size`` frames: from the checkpoint of a clean
    stop; after kill -9 with a tail of puts past the checkpoint; with no checkpoint."""
    out: dict[str, Any] = {}
    serving, searchable, _ = restart_times(daemon)
    out["restart to serving s"], out["restart to searchable s"] = serving, searchable
    tail = max(size // 100, 1)
    with Client(daemon.socket, timeout=300) as client:
        for batch in corpus.frames(tail, batch=PUT_BATCH, seed=corpus.corpus_seed + 1):
            client.put_batch(memoryd_frames(batch))
    daemon.kill()
    out["tail frames"] = tail
    out["kill restart"] = restart_times(daemon)
    daemon.stop()
    (daemon.data_dir / "checkpoint" / "derived.ckpt").unlink()
    out["no checkpoint restart"] = restart_times(daemon)
    daemon.stop()
    return out


def bench_sqlite(size: int, queries: dict[str, list[list[str]]], root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    root.mkdir(parents=True, exist_ok=True)
    path = root / "fts.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE VIRTUAL TABLE frames USING fts5(content)")
    started = time.perf_counter()
    for batch in corpus.frames(size, batch=10_000):
        db.execute("BEGIN")
        db.executemany("INSERT INTO frames(content) VALUES (?)", [(t,) for t in batch.texts])
        db.execute("COMMIT")
    out["build s"] = time.perf_counter() - started
    sql = (
        "SELECT rowid, content, bm25(frames) FROM frames WHERE frames MATCH ? "
        "ORDER BY bm25(frames) LIMIT 10"
    )
    for mode, joiner in (("OR", " OR "), ("AND", " AND ")):
        for name, qs in queries.items():
            out[f"keyword {name} {mode}"] = percentiles_ms(
                timed_each(lambda w, j=joiner: db.execute(sql, (j.join(w),)).fetchall(), qs)
            )
    db.close()
    out["disk bytes per frame"] = du_bytes(root) / size
    started = time.perf_counter()
    db = sqlite3.connect(path)
    db.execute(sql, (queries["1 word"][0][0],)).fetchall()
    out["restart to serving s"] = time.perf_counter() - started
    db.close()
    return out


def report(size: int, mem: dict[str, Any], lite: dict[str, Any]) -> list[str]:
    lines = [
        f"## {size:,} frames",
        "",
        "| measure | memoryd | SQLite FTS5 (OR) | SQLite FTS5 (AND) | memoryd / FTS5 OR |",
        "|---|---:|---:|---:|---:|",
        f"| build, s | {mem['build s']:.1f} (acked in {mem['ingest acked s']:.1f}, "
        f"settled in {mem['settled s']:.1f}) "
        f"| {lite['build s']:.1f} | | {mem['build s'] / lite['build s']:.2f}x |",
    ]
    for name in ("1 word", "2 words", "3 words", "frequent word", "frequent + 1"):
        m, o, a = mem[f"keyword {name}"], lite[f"keyword {name} OR"], lite[f"keyword {name} AND"]
        lines.append(
            f"| keyword {name}, p50 / p99 ms | {m[0]:.2f} / {m[1]:.2f} | {o[0]:.2f} / {o[1]:.2f} "
            f"| {a[0]:.2f} / {a[1]:.2f} | {m[0] / o[0]:.2f}x / {m[1] / o[1]:.2f}x |"
        )
    h, s = mem["hybrid 3 words"], mem["searchable after ack"]
    lines += [
        f"| hybrid 3 words, p50 / p99 ms | {h[0]:.2f} / {h[1]:.2f} | | | |",
        f"| searchable after ack at {STEADY_PUTS_PER_S}/s, p50 / p99 ms "
        f"| {s[0]:.1f} / {s[1]:.1f} | | | |",
        f"| restart to serving, s | {mem['restart to serving s']:.2f} "
        f"| {lite['restart to serving s']:.3f} | | |",
        f"| restart to fully searchable, s | {mem['restart to searchable s']:.1f} | | | |",
        *restart_rows(mem),
        f"| resident memory, MiB | {mem['rss bytes'] / 2**20:.0f} | | | |",
        f"| disk bytes per frame | {mem['disk bytes per frame']:.0f} "
        f"| {lite['disk bytes per frame']:.0f} | | "
        f"{mem['disk bytes per frame'] / lite['disk bytes per frame']:.2f}x |",
        "",
    ]
    return lines


def restart_rows(mem: dict[str, Any]) -> list[str]:
    kill, full = mem["kill restart"], mem["no checkpoint restart"]
    return [
        f"| restart after kill -9, {mem['tail frames']} frames past the checkpoint: serving / "
        f"searchable s ({kill[2]} records replayed) | {kill[0]:.2f} / {kill[1]:.2f} | | | |",
        f"| restart with no checkpoint: serving / searchable s ({full[2]} records replayed) "
        f"| {full[0]:.2f} / {full[1]:.1f} | | | |",
    ]


def main_restart_only(sizes: list[int], out_path: Path | None) -> int:
    """Ingest, stop cleanly, then only the restart measures (no queries, no SQLite)."""
    lines = [
        f"# Restart with checkpoints, {time.strftime('%Y-%m-%d')}",
        "",
        f"Machine: {machine()}.",
        "Command: `python benchmarks/bench_search_scale.py --restart-only --sizes "
        f"{' '.join(map(str, sizes))}`; corpus seed {corpus.corpus_seed}.",
        "",
        "| frames | measure | seconds |",
        "|---:|---|---:|",
    ]
    for size in sizes:
        daemon = BenchDaemon()
        daemon.start()
        try:
            with Client(daemon.socket, timeout=300) as client:
                for batch in corpus.frames(size, batch=PUT_BATCH):
                    client.put_batch(memoryd_frames(batch))
                daemon.wait_built(client)
            daemon.stop()
            mem = bench_restarts(daemon, size)
        finally:
            daemon.remove()
        kill, full = mem["kill restart"], mem["no checkpoint restart"]
        lines += [
            f"| {size:,} | clean stop, restart to serving (checkpoint) "
            f"| {mem['restart to serving s']:.2f} |",
            f"| {size:,} | clean stop, restart to fully searchable "
            f"| {mem['restart to searchable s']:.2f} |",
            f"| {size:,} | kill -9 with {mem['tail frames']:,} frames past the checkpoint, "
            f"to serving ({kill[2]:,} records replayed) | {kill[0]:.2f} |",
            f"| {size:,} | the same, to fully searchable | {kill[1]:.2f} |",
            f"| {size:,} | no checkpoint, to serving ({full[2]:,} records replayed) "
            f"| {full[0]:.2f} |",
            f"| {size:,} | no checkpoint, to fully searchable (full rebuild) | {full[1]:.2f} |",
        ]
        print("\n".join(lines[-6:]), flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if out_path:
        out_path.write_text(text)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--restart-only",
        action="store_true",
        help="only ingest and measure restarts (checkpoint, kill -9 tail, no checkpoint)",
    )
    args = parser.parse_args()
    if args.restart_only:
        return main_restart_only(args.sizes, args.out)
    queries = query_sets()
    lines = [
        f"# Search at scale, {time.strftime('%Y-%m-%d')}",
        "",
        f"Machine: {machine()}.",
        f"Command: `python benchmarks/bench_search_scale.py --sizes "
        f"{' '.join(map(str, args.sizes))}`; corpus seed {corpus.corpus_seed}, query seed "
        f"{QUERY_SEED}, {QUERIES_PER_ROW} queries a row after {WARMUP_QUERIES} warm-up.",
        "memoryd figures are measured through the client (a Unix-socket round trip each); "
        "FTS5 runs in-process. Both return each hit's text and score.",
        "",
    ]
    for size in args.sizes:
        root = Path(tempfile.mkdtemp(prefix=f"mds-{size}-", dir=os.environ.get("BENCH_DIR")))
        try:
            mem = bench_memoryd(size, queries)
            lite = bench_sqlite(size, queries, root / "sqlite")
            lines += report(size, mem, lite)
            print("\n".join(lines[-16:]), flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
