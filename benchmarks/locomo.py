"""LoCoMo for retrieval: turns as memories, questions with evidence, and the measures.

Shared by the retrieval benchmarks.  Follows ../shared/data/locomo/README.md:
a turn's text is ``"<speaker>: <text>"`` plus its image caption when it has
one; its time is its session's date; "now" for recency is one day after the
conversation's last session; categories 1-4 are reported together.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

DATA_PATH = Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo" / "locomo_dev.json"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
DAY_MS = 86_400_000
_DIA_ID = re.compile(r"D\d+:\d+")


@dataclass(frozen=True, slots=True)
class Turn:
    dia_id: str
    text: str
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    category: int
    evidence: frozenset[str]


@dataclass(slots=True)
class Conversation:
    sample_id: str
    turns: list[Turn]
    questions: list[Question]
    now_ms: int


def parse_session_time(text: str) -> int:
    """'1:56 pm on 8 May, 2023' -> milliseconds since the epoch (read as UTC)."""
    moment = datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def turn_text(turn: dict[str, str]) -> str:
    text = f"{turn['speaker']}: {turn['text']}"
    caption = turn.get("blip_caption")
    return f"{text} {caption}" if caption else text


def load(path: Path = DATA_PATH) -> list[Conversation]:
    conversations = []
    for raw in json.loads(path.read_text()):
        conv = raw["conversation"]
        turns: list[Turn] = []
        session = 1
        while f"session_{session}" in conv:
            when = parse_session_time(conv[f"session_{session}_date_time"])
            turns += [Turn(t["dia_id"], turn_text(t), when) for t in conv[f"session_{session}"]]
            session += 1
        questions = [
            Question(
                q["question"],
                int(q["category"]),
                # Evidence is a list of dia ids; a few entries hold two ("D8:6; D9:17").
                frozenset(_DIA_ID.findall(" ".join(q.get("evidence", [])))),
            )
            for q in raw["qa"]
            if int(q["category"]) in CATEGORIES
        ]
        now = max(t.timestamp_ms for t in turns) + DAY_MS
        conversations.append(Conversation(raw["sample_id"], turns, questions, now))
    return conversations


@dataclass(slots=True)
class Scores:
    """Recall@1/5/10, any-hit@10 and MRR@10, averaged over questions."""

    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    count: int = 0

    def add(self, ranked: Sequence[str], evidence: frozenset[str]) -> None:
        if not evidence:
            return
        self.count += 1
        for k in (1, 5, 10):
            self.sums[f"R@{k}"] += len(evidence & set(ranked[:k])) / len(evidence)
        self.sums["hit@10"] += float(bool(evidence & set(ranked[:10])))
        rank = next((i for i, d in enumerate(ranked[:10], start=1) if d in evidence), None)
        self.sums["MRR@10"] += 1 / rank if rank else 0.0

    def row(self) -> dict[str, float]:
        names = ("R@1", "R@5", "R@10", "hit@10", "MRR@10")
        return {n: self.sums[n] / self.count if self.count else 0.0 for n in names}


def table(results: dict[str, dict[str, Scores]], questions: int) -> str:
    """Markdown: one row per retriever and category set."""
    lines = [
        "| retriever | questions | R@1 | R@5 | R@10 | any-hit@10 | MRR@10 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, by_category in results.items():
        for label in ["1-4", *(f"{c} {CATEGORIES[c]}" for c in CATEGORIES)]:
            scores = by_category.get(label)
            if scores is None or not scores.count:
                continue
            row = scores.row()
            cells = " | ".join(f"{row[m]:.3f}" for m in ("R@1", "R@5", "R@10", "hit@10", "MRR@10"))
            lines.append(f"| {name} ({label}) | {scores.count} | {cells} |")
    return "\n".join(lines)


def record(results: dict[str, Scores], question: Question, ranked: Iterable[str]) -> None:
    ranked = list(ranked)
    for label in ("1-4", f"{question.category} {CATEGORIES[question.category]}"):
        results.setdefault(label, Scores()).add(ranked, question.evidence)
