"""The cost of memoryd.crypto: sealing and opening 200-byte frames, blinding terms, the KDF.

A plain script, not a test:  python benchmarks/crypto_cost.py [--frames N] [--kdf-runs R]
Prints a Markdown report.  Key files go to a temporary directory on the same
filesystem as the current one (the store's fdatasyncs are part of the cost).
Per-call times are measured one call at a time, so the p99 shows the pool
refill (one append and one fdatasync every DATA_KEY_POOL_KEYS seals).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cryptography
from cryptography.hazmat.backends.openssl import backend

from memoryd.crypto import (
    ARGON2ID_DEFAULT,
    DATA_KEY_POOL_KEYS,
    ROTATION_STEP_KEYS_MAX,
    SCRYPT_DEFAULT,
    Keyring,
    MasterKey,
    frame_aad,
    frame_key_id,
)
from memoryd.crypto.kdf import KdfParams, derive_master_key, passphrase_bytes

FRAME_BYTES = 200
SEED = 20261121


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(calls: list[Callable[[], object]]) -> tuple[float, list[float]]:
    """Total seconds and per-call microseconds."""
    per_call: list[float] = []
    start = time.perf_counter()
    for call in calls:
        t0 = time.perf_counter_ns()
        call()
        per_call.append((time.perf_counter_ns() - t0) / 1000)
    return time.perf_counter() - start, per_call


def row(name: str, count: int, seconds: float, per_call: list[float]) -> str:
    return (
        f"| {name} | {count:,} | {count / seconds:,.0f} | {percentile(per_call, 0.5):.1f} "
        f"| {percentile(per_call, 0.99):.1f} | {max(per_call):,.0f} |"
    )


def machine() -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return [
        f"- machine: {cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        f"- python {platform.python_version()}, cryptography {cryptography.__version__}, "
        f"{backend.openssl_version_text()}",
        f"- load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (shared)",
    ]


def frames_section(count: int, directory: Path) -> list[str]:
    rng = random.Random(SEED)
    plaintexts = [rng.randbytes(FRAME_BYTES) for _ in range(count)]
    aads = [frame_aad(f"{i:032x}", "default", i + 1) for i in range(count)]
    master_key = rng.randbytes(32)
    vault = Keyring.create(directory / "keys", MasterKey.from_bytes(master_key))
    blobs: list[bytes] = []

    def seal(i: int) -> Callable[[], object]:
        return lambda: blobs.append(vault.seal_frame(plaintexts[i], aads[i]))

    seal_s, seal_us = timed([seal(i) for i in range(count)])
    open_s, open_us = timed(
        [lambda i=i: vault.open_frame(blobs[i], aads[i]) for i in range(count)]  # type: ignore[misc]
    )
    terms = [f"term{rng.randrange(50_000)}" for _ in range(count)]
    blind_s, blind_us = timed([lambda t=t: vault.blind_term(t) for t in terms])  # type: ignore[misc]
    vault.lock()
    vault = vault.keyring.unlock(MasterKey.from_bytes(master_key))
    # Prefilled pool: what the daemon sees when it calls fill_data_key_pool off the request path.
    prefilled_us: list[float] = []
    for i in range(count):
        if i % (DATA_KEY_POOL_KEYS // 2) == 0:
            vault.fill_data_key_pool()
        t0 = time.perf_counter_ns()
        vault.seal_frame(plaintexts[i], aads[i])
        prefilled_us.append((time.perf_counter_ns() - t0) / 1000)
    prefilled_s = sum(prefilled_us) / 1e6
    keyring = vault.keyring
    forget_s, forget_us = timed(
        [lambda b=b: keyring.forget([frame_key_id(b)]) for b in blobs[:200]]  # type: ignore[misc]
    )
    vault.begin_rotation()
    rotate_s = 0.0

    def rotate() -> None:
        nonlocal rotate_s
        start = time.perf_counter()
        while not vault.rotate_step().done:
            pass
        rotate_s = time.perf_counter() - start

    # Seals go on in this thread, back to back, while another rotates (as the daemon would).
    worker = threading.Thread(target=rotate)
    worker.start()
    during_us: list[float] = []
    while worker.is_alive() and len(during_us) < count:
        i = len(during_us)
        t0 = time.perf_counter_ns()
        vault.seal_frame(plaintexts[i], aads[i])
        during_us.append((time.perf_counter_ns() - t0) / 1000)
    worker.join()
    during_s = sum(during_us) / 1e6
    while not vault.rotate_step().done:  # (the keys made meanwhile are already new-key)
        pass
    rewrapped = keyring.info().data_keys.live
    start = time.perf_counter()
    vault.finish_rotation()
    finish_s = time.perf_counter() - start
    size = (directory / "keys" / "datakeys").stat().st_size
    keyring.close()
    return [
        f"### {count:,} frames of {FRAME_BYTES} bytes",
        "",
        "| operation | calls | per second | p50 µs | p99 µs | max µs |",
        "|---|---:|---:|---:|---:|---:|",
        row("seal_frame (pool refilled inline)", count, seal_s, seal_us),
        row("seal_frame (pool prefilled off-path)", count, prefilled_s, prefilled_us),
        row("open_frame", count, open_s, open_us),
        row("blind_term", count, blind_s, blind_us),
        row("forget (one key, fdatasync)", 200, forget_s, forget_us),
        row("seal_frame while another thread rotates", len(during_us), during_s, during_us),
        "",
        f"- sealed blob: {len(blobs[0])} bytes for {FRAME_BYTES} bytes of plaintext "
        f"(+{len(blobs[0]) - FRAME_BYTES}); data key store: {size:,} bytes after rotation "
        f"and compaction ({size / max(1, rewrapped):.0f} bytes per live key, header included)",
        f"- vault key rotation: {rewrapped:,} data keys re-wrapped in {rotate_s:.2f} s "
        f"({rewrapped / rotate_s:,.0f} keys/s, steps of {ROTATION_STEP_KEYS_MAX:,}, while "
        f"this thread sealed); finish (keyring replace + "
        f"compaction) {finish_s * 1000:.0f} ms",
    ]


def kdf_section(runs: int) -> list[str]:
    lines = [
        "### Master key from a passphrase",
        "",
        "| KDF | parameters | median ms | min ms | max ms |",
        "|---|---|---:|---:|---:|",
    ]
    salt = random.Random(SEED).randbytes(16)
    cases: list[tuple[str, KdfParams]] = [
        ("Argon2id (default)", ARGON2ID_DEFAULT),
        ("scrypt (fallback default)", SCRYPT_DEFAULT),
    ]
    for name, params in cases:
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            derive_master_key(passphrase_bytes("benchmark passphrase"), salt, params)
            samples.append((time.perf_counter() - start) * 1000)
        lines.append(
            f"| {name} | {params} | {statistics.median(samples):.0f} | {min(samples):.0f} "
            f"| {max(samples):.0f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--kdf-runs", type=int, default=5)
    args = parser.parse_args()
    lines = ["## crypto_cost", "", *machine(), ""]
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        lines += frames_section(args.frames, Path(tmp))
    lines += ["", *kdf_section(args.kdf_runs), ""]
    load = os.getloadavg()
    lines.append(f"- load average after the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
