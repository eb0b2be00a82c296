"""Build time, query latency and memory of the search indexes on the synthetic corpus.

    python benchmarks/search_latency.py 100000 [--vectors] [--ann]

Prints one line per measure.  Single-threaded numpy (set before import) so that the
figures are what one builder core gives.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from corpus import frames, query_words

from memoryd.storage.search import HashingEmbedder, InvertedIndex, VectorIndex

queries_per_kind = 200


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentiles(samples_s: list[float]) -> str:
    a = np.array(samples_s) * 1000
    return f"p50 {np.percentile(a, 50):6.2f} ms  p99 {np.percentile(a, 99):6.2f} ms"


def bench_keyword(n: int) -> None:
    index = InvertedIndex()
    texts_all: list[str] = []
    t0 = time.perf_counter()
    tok_s = 0.0
    for batch in frames(n):
        docs = np.arange(batch.first_doc, batch.first_doc + len(batch.texts))
        t = time.perf_counter()
        index.add_batch(docs, batch.texts)
        tok_s += time.perf_counter() - t
        if len(texts_all) < 20_000:
            texts_all.extend(batch.texts)
    build = time.perf_counter() - t0
    print(f"keyword n={n}: add_batch {tok_s:.1f} s ({n / tok_s:,.0f} frames/s)")
    print(f"keyword stats: {index.stats()}")
    print(f"keyword memory_bytes {index.memory_bytes() / 2**20:.0f} MiB; rss {rss_mib():.0f} MiB")
    _ = build
    rng = np.random.default_rng(7)
    mask = np.random.default_rng(8).random(index.doc_end) < 0.5
    for label, words, frequent, use_mask in [
        ("1-word", 1, False, False),
        ("2-word", 2, False, False),
        ("3-word", 3, False, False),
        ("frequent+1", 2, True, False),
        ("frequent 1", 1, True, False),
        ("3-word masked", 3, False, True),
    ]:
        samples = []
        for _ in range(queries_per_kind):
            q = query_words(rng, words, frequent)
            terms = index.tokenizer.terms(" ".join(q))
            t = time.perf_counter()
            index.search(terms, 10, mask=mask if use_mask else None)
            samples.append(time.perf_counter() - t)
        print(f"keyword {label:14s} {percentiles(samples)}")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        index.save(Path(tmp) / "kw")
        saved = time.perf_counter() - t
        t = time.perf_counter()
        loaded = InvertedIndex.load(Path(tmp) / "kw")
        print(f"keyword save {saved:.2f} s, load {time.perf_counter() - t:.2f} s")
        del loaded


def bench_vectors(n: int, ann: bool) -> None:
    embedder = HashingEmbedder()
    index = VectorIndex(embedder.dim)
    t_embed = t_add = 0.0
    sample_texts: list[str] = []
    for batch in frames(n):
        docs = np.arange(batch.first_doc, batch.first_doc + len(batch.texts))
        t = time.perf_counter()
        vecs = embedder.embed(batch.texts)
        t_embed += time.perf_counter() - t
        t = time.perf_counter()
        index.add_batch(docs, vecs)
        t_add += time.perf_counter() - t
        if len(sample_texts) < 1000:
            sample_texts.extend(batch.texts[:50])
    print(f"vectors n={n}: embed {n / t_embed:,.0f} frames/s, add {n / t_add:,.0f} frames/s")
    print(f"vectors memory_bytes {index.memory_bytes() / 2**20:.0f} MiB; rss {rss_mib():.0f} MiB")
    rng = np.random.default_rng(9)
    queries = embedder.embed([" ".join(query_words(rng, 3)) for _ in range(queries_per_kind)])
    samples, recalls = [], []
    for q in queries:
        t = time.perf_counter()
        hits = index.search(q, 10)
        samples.append(time.perf_counter() - t)
        exact = index.search(q, 10, exact=True)
        recalls.append(len(set(hits.docs.tolist()) & set(exact.docs.tolist())) / 10)
    print(f"vectors search {percentiles(samples)}  recall@10 vs exact {np.mean(recalls):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int)
    parser.add_argument("--vectors", action="store_true")
    parser.add_argument("--ann", action="store_true")
    parser.add_argument("--no-keyword", action="store_true")
    args = parser.parse_args()
    if not args.no_keyword:
        bench_keyword(args.n)
    if args.vectors:
        bench_vectors(args.n, args.ann)


if __name__ == "__main__":
    main()
