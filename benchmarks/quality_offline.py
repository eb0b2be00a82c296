"""Offline retrieval quality on LoCoMo (no daemon): the tuning harness of storage/search.

Reads ``../shared/data/locomo/locomo_dev.json`` (see its README.md), stores every turn
of a conversation as a doc (``"<speaker>: <text>"`` plus `` <blip_caption>`` when
there is one; time = its session's date_time), asks each question of categories
1-4 against that conversation's turns with each mode, and prints recall@1/5/10,
any-hit@10 and MRR@10 per category and overall, next to BM25 from ``rank-bm25``
(lowercase letter/digit runs, scikit-learn's English stop words) as the reference.
"now" for recency is one day after the conversation's last session.

    python benchmarks/quality_offline.py [--minilm] [--set phrase_weight=0.3 ...]

Weights are tuned on the whole set only (``--set``), never per question.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from memoryd.storage.search import (
    Embedder,
    HashingEmbedder,
    HashingSettings,
    RankingWeights,
    SearchIndex,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo" / "locomo_dev.json"
CATEGORIES = (1, 2, 3, 4)
CATEGORY_NAMES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
day_ms = 86_400_000


@dataclasses.dataclass
class Conversation:
    dia_ids: list[str]
    texts: list[str]
    times_ms: list[int]
    questions: list[tuple[str, set[str], int]]  # question, evidence, category
    now_ms: int


def parse_time(s: str) -> int:
    dt = datetime.strptime(s.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def load(path: Path) -> list[Conversation]:
    out = []
    for conv in json.loads(path.read_text(encoding="utf-8")):
        c = conv["conversation"]
        ids, texts, times = [], [], []
        sessions = sorted(
            int(m.group(1)) for key in c if (m := re.fullmatch(r"session_(\d+)", key))
        )
        for n in sessions:
            t = parse_time(c[f"session_{n}_date_time"])
            for turn in c[f"session_{n}"]:
                text = f"{turn['speaker']}: {turn['text']}"
                if turn.get("blip_caption"):
                    text += " " + turn["blip_caption"]
                ids.append(turn["dia_id"])
                texts.append(text)
                times.append(t)
        qs = [
            (q["question"], set(q["evidence"]), int(q["category"]))
            for q in conv["qa"]
            if int(q["category"]) in CATEGORIES
        ]
        out.append(Conversation(ids, texts, times, qs, max(times) + day_ms))
    return out


def metrics(ranked: list[str], evidence: set[str]) -> np.ndarray:
    """recall@1, recall@5, recall@10, any-hit@10, MRR@10 of one question."""
    if not evidence:
        return np.zeros(5)
    rec = [len(set(ranked[:k]) & evidence) / len(evidence) for k in (1, 5, 10)]
    first = next((i for i, d in enumerate(ranked[:10]) if d in evidence), None)
    return np.array([*rec, float(first is not None), 0.0 if first is None else 1 / (first + 1)])


Ranker = Callable[[Conversation, str], list[str]]


def bm25_reference(conv: Conversation) -> Ranker:
    from rank_bm25 import BM25Okapi
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    def tok(s: str) -> list[str]:
        return [w for w in re.findall(r"[a-z0-9]+", s.lower()) if w not in ENGLISH_STOP_WORDS]

    bm = BM25Okapi([tok(t) for t in conv.texts])

    def rank(c: Conversation, q: str) -> list[str]:
        scores = bm.get_scores(tok(q))
        return [c.dia_ids[i] for i in np.argsort(-scores, kind="stable")[:10]]

    return rank


def memoryd_ranker(
    conv: Conversation, embedder: Embedder, mode: str, weights: RankingWeights
) -> Ranker:
    index = SearchIndex(embedder=embedder)
    index.add_batch(range(len(conv.texts)), conv.texts, conv.times_ms)

    def rank(c: Conversation, q: str) -> list[str]:
        res = index.search(
            q, 10, mode=mode, now_ms=c.now_ms, text_of=c.texts.__getitem__, weights=weights
        )  # type: ignore[arg-type]
        return [c.dia_ids[d] for d in res.docs.tolist()]

    return rank


def evaluate(
    convs: list[Conversation], make: Callable[[Conversation], Ranker]
) -> dict[int, np.ndarray]:
    per_cat: dict[int, list[np.ndarray]] = {c: [] for c in CATEGORIES}
    for conv in convs:
        rank = make(conv)
        for q, ev, cat in conv.questions:
            per_cat[cat].append(metrics(rank(conv, q), ev))
    out = {c: np.mean(v, axis=0) for c, v in per_cat.items()}
    out[0] = np.mean([m for v in per_cat.values() for m in v], axis=0)
    return out


def print_table(rows: dict[str, dict[int, np.ndarray]]) -> None:
    print(f"{'retriever':28s} {'cat':>11s}  R@1   R@5   R@10  any@10 MRR@10")
    for name, res in rows.items():
        for cat in (0, *CATEGORIES):
            label = "1-4" if cat == 0 else CATEGORY_NAMES[cat]
            m = res[cat]
            print(f"{name:28s} {label:>11s} " + " ".join(f"{x:.3f}" for x in m))
        print()


def parse_overrides(items: list[str], cls: type) -> dict[str, object]:
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    out: dict[str, object] = {}
    for item in items:
        key, value = item.split("=", 1)
        if key in fields:
            out[key] = type(getattr(cls(), key))(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minilm", action="store_true", help="also run all-MiniLM-L6-v2")
    parser.add_argument("--set", nargs="*", default=[], help="RankingWeights/HashingSettings")
    parser.add_argument("--modes", default="keyword,semantic,hybrid,classic")
    parser.add_argument("--no-reference", action="store_true")
    args = parser.parse_args()
    convs = load(DATA)
    weights = RankingWeights(**parse_overrides(args.set, RankingWeights))  # type: ignore[arg-type]
    settings = HashingSettings(**parse_overrides(args.set, HashingSettings))  # type: ignore[arg-type]
    rows: dict[str, dict[int, np.ndarray]] = {}
    if not args.no_reference:
        rows["BM25 (rank-bm25)"] = evaluate(convs, bm25_reference)
    embedders: dict[str, Embedder] = {"hashing": HashingEmbedder(settings)}
    if args.minilm:
        from memoryd.storage.search import MiniLMEmbedder

        embedders["minilm"] = _CachedEmbedder(MiniLMEmbedder())
    for ename, emb in embedders.items():
        for mode in args.modes.split(","):
            if mode == "keyword" and ename != "hashing":
                continue
            rows[f"{mode} ({ename})"] = evaluate(
                convs, lambda c, e=emb, m=mode: memoryd_ranker(c, e, m, weights)
            )
    print_table(rows)
    print("weights:", weights)
    print("hashing:", settings)
    sys.stdout.flush()


class _CachedEmbedder:
    """Memoizes a slow model's vectors per text, for the many queries of a run."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.dim = inner.dim
        self.model_id = inner.model_id
        self._memo: dict[str, np.ndarray] = {}

    def embed(self, texts: list[str]) -> np.ndarray:  # type: ignore[override]
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            for t, v in zip(missing, self.inner.embed(missing), strict=True):
                self._memo[t] = v
        return np.stack([self._memo[t] for t in texts]) if texts else np.zeros((0, self.dim))


if __name__ == "__main__":
    main()
