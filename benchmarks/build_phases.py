"""What the builder costs per frame, phase by phase: a rebuild of N corpus frames.

A plain script, not a test:

    python benchmarks/build_phases.py [--frames 20000] [--chunk 50] [--runs 3]

Writes N synthetic frames (benchmarks/corpus.py: 20-80 words) to a log in a
temporary directory on the current filesystem, then rebuilds derived state
from it (``rebuild_data_dir``, chunks of ``--chunk`` frames, the hashing
embedder) ``--runs`` times in this process, and prints the best run's CPU time
(this thread's, so other processes on the machine count less) per frame of each
builder phase: ``prepare`` (decoding, tokenizing once, embedding, significance,
SimHash; on the builder's thread in the daemon), ``apply`` (catalog, keyword
and vector indexes; on the event loop) and ``store_chunk`` (chunk files).  The
first run starts with a cold lexicon (every word new); later ones find its words.
"""

from __future__ import annotations

import argparse
import collections
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus

from memoryd.storage import FileLog
from memoryd.storage import derived as derived_module
from memoryd.storage.events import Frame, encode_frame_put, frame_id
from memoryd.storage.rebuild import rebuild_data_dir
from memoryd.storage.record import RecordType
from memoryd.storage.search import HashingEmbedder

PHASES = ("prepare", "apply", "store_chunk")


def write_log(log_dir: Path, frames: int) -> None:
    log, _ = FileLog.open(log_dir)
    for batch in corpus.frames(frames, batch=1000):
        records = []
        for row in batch.rows():
            frame = Frame(
                frame_id(row.namespace, row.kind, row.text),
                0,
                row.timestamp_ms,
                row.namespace,
                row.kind,
                row.text,
                tags=list(row.tags),
                importance=row.importance,
            )
            records.append((int(RecordType.FRAME_PUT), row.timestamp_ms, encode_frame_put(frame)))
        log.append(records)
    log.close()


def timed(times: collections.Counter[str], name: str) -> None:
    """Wrap DerivedState.<name> to add its thread CPU time to ``times[name]``."""
    inner: Callable[..., Any] = getattr(derived_module.DerivedState, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            times[name] += time.thread_time() - start

    setattr(derived_module.DerivedState, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times: collections.Counter[str] = collections.Counter()
    for name in PHASES:
        timed(times, name)
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        data_dir = Path(tmp)
        write_log(data_dir / "log", args.frames)
        for _ in range(args.runs):
            times.clear()
            start = time.thread_time()
            report = rebuild_data_dir(data_dir, HashingEmbedder(), args.chunk)
            times["rebuild (all)"] = time.thread_time() - start
            assert report.records == args.frames
            for name, seconds in times.items():
                best[name] = min(best.get(name, seconds), seconds)
    print(
        f"{args.frames} frames, chunks of {args.chunk}, best of {args.runs}; "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    for name in (*PHASES, "rebuild (all)"):
        print(f"  {name:14} {best[name] / args.frames * 1e6:7.1f} us/frame")


if __name__ == "__main__":
    main()
