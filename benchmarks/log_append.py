"""Append throughput of FileLog: N ~200-byte payloads in batches, FSYNC and RELAXED.

A plain script, not a test:  python benchmarks/log_append.py [--records N] [--batch B]
Writes into a temporary directory on the same filesystem as the current one.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

from memoryd.storage import Durability, FileLog
from memoryd.storage.record import RecordType

PAYLOAD_BYTES = 200


def run(records: int, batch: int, durability: Durability) -> float:
    payload = b'{"id":"' + b"a" * 32 + b'","content":"' + b"x" * (PAYLOAD_BYTES - 50) + b'"}'
    events = [(int(RecordType.FRAME_PUT), 1_700_000_000_000 + i, payload) for i in range(batch)]
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        log, _ = FileLog.open(Path(tmp) / "log", durability=durability)
        start = time.perf_counter()
        for _ in range(records // batch):
            log.append(events)
        log.sync()
        elapsed = time.perf_counter() - start
        stats = log.stats()
        log.close()
    print(
        f"{durability.value:8} {records} records x {len(payload)} B payload, batches of {batch}: "
        f"{records / elapsed:,.0f} records/s ({elapsed:.2f} s, {stats['syncs']} syncs)"
    )
    return records / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {platform.system()}")
    for durability in (Durability.FSYNC, Durability.RELAXED):
        run(args.records, args.batch, durability)


if __name__ == "__main__":
    main()
