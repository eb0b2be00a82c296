"""The cost of privacy: public beside private frames in one run, the same corpus and queries.

Two fresh daemons, both with an unlocked vault; one stores the corpus
(benchmarks/corpus.py, fixed seed) as public frames, the other the same frames
with ``private: true``.  For each:

- put throughput with ``put_batch`` (batches of 1,000) for the first half of the
  frames, and with pipelined single puts (``pipeline_put``) for the second half;
- once everything is searchable, keyword search p50/p99 (``keyword`` mode, k=10,
  through the client) over 1-, 2- and 3-word queries drawn with a fixed seed,
  after a warm-up; every query gets its own ``now_ms``, so none is served from
  the result cache;
- resident memory (VmRSS).

Each mode runs ``--runs`` times (default 3), alternating, and every figure is
the median of its runs.  Then the ratios private / public.  Targets (issue 4):
private put throughput at least 70% of public; private keyword search within
1.5x of public.

    python benchmarks/bench_privacy.py --frames 100000 --out benchmarks/results/privacy.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus
from bench_search_scale import memoryd_frames, percentiles_ms, timed_each
from bench_write import machine
from daemon_runner import BenchDaemon

from memoryd.client import Client

QUERY_SEED = 7
QUERIES = 300
PUT_BATCH = 1000
PASSPHRASE = "benchmark passphrase"
MODES = ("public", "private")


def frames_of(size: int, private: bool) -> Iterator[list[dict[str, Any]]]:
    for batch in corpus.frames(size, batch=PUT_BATCH):
        frames = memoryd_frames(batch)
        if private:
            for frame in frames:
                frame["private"] = True
        yield frames


def queries() -> list[list[str]]:
    rng = np.random.default_rng(QUERY_SEED)
    return [corpus.query_words(rng, 1 + i % 3) for i in range(QUERIES)]


def bench(size: int, private: bool, qs: list[list[str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # No periodic checkpoint: one landing in either run's query phase would be
    # measured as search latency (a checkpoint of 100k frames takes seconds of CPU).
    daemon = BenchDaemon({"MEMORYD_VAULT_KDF": "test", "MEMORYD_CHECKPOINT_INTERVAL_S": "3600"})
    daemon.start()
    try:
        with Client(daemon.socket, timeout=600) as client:
            client.unlock(passphrase=PASSPHRASE, create=True)
            batches = list(frames_of(size, private))
            half = len(batches) // 2 or 1
            started = time.perf_counter()
            count = 0
            for frames in batches[:half]:
                client.put_batch(frames)
                count += len(frames)
            out["put_batch frames/s"] = count / (time.perf_counter() - started)
            rest = [frame for frames in batches[half:] for frame in frames]
            if rest:
                started = time.perf_counter()
                client.pipeline_put(rest)
                out["pipelined puts/s"] = len(rest) / (time.perf_counter() - started)
            started = time.perf_counter()
            daemon.wait_built(client)
            out["build wait s"] = time.perf_counter() - started
            fresh = iter(range(1_800_000_000_000, 1_900_000_000_000))
            samples = timed_each(
                lambda w: client.search(" ".join(w), k=10, mode="keyword", now_ms=next(fresh)),
                qs,
            )
            out["keyword p50 ms"], out["keyword p99 ms"] = percentiles_ms(samples)
            hits = client.search(" ".join(qs[0]), k=10, mode="keyword").hits
            assert all(hit.frame.private == private for hit in hits)
            out["rss MiB"] = daemon.rss_bytes() / 2**20
    finally:
        daemon.remove()
    return out


def report(size: int, results: dict[str, dict[str, Any]], runs: int) -> list[str]:
    public, private = results["public"], results["private"]
    lines = [
        f"## {size:,} frames ({machine()})",
        "",
        f"Each figure is the median of {runs} runs (fresh daemons, public and private"
        " alternating).",
        "",
        "| measure | public | private | private / public |",
        "|---|---:|---:|---:|",
    ]
    for key in public:
        if key in private:
            ratio = private[key] / public[key] if public[key] else float("nan")
            lines.append(f"| {key} | {public[key]:,.2f} | {private[key]:,.2f} | {ratio:.2f} |")
    put = min(
        private[k] / public[k] for k in ("put_batch frames/s", "pipelined puts/s") if k in public
    )
    search = max(private[k] / public[k] for k in ("keyword p50 ms", "keyword p99 ms"))
    lines += [
        "",
        f"Put throughput, private / public (worst of the two): {put:.2f} (target >= 0.70).",
        f"Keyword latency, private / public (worst of p50, p99): {search:.2f} (target <= 1.5).",
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--out", type=Path, help="append the report (markdown) to this file")
    parser.add_argument("--runs", type=int, default=3, help="fresh daemons per mode (median)")
    args = parser.parse_args()
    qs = queries()
    # Public and private runs alternate, so that a slow spell of a shared machine
    # falls on both; each measure is the median of its runs.
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for _ in range(args.runs):
        for mode in MODES:
            runs[mode].append(bench(args.frames, mode == "private", qs))
    results = {
        mode: {key: statistics.median(run[key] for run in done) for key in done[0]}
        for mode, done in runs.items()
    }
    text = "\n".join(report(args.frames, results, args.runs)) + "\n"
    print(text)
    if args.out is not None:
        with args.out.open("a", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
