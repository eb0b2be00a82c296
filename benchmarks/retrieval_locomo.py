"""Retrieval quality on LoCoMo, through a real daemon, beside BM25 from rank-bm25.

Every dialog turn of a conversation is stored as a frame (namespace per
conversation, its time = its session's date, its dia_id in metadata); every
question of categories 1-4 is asked with memoryd's keyword, semantic, hybrid
and classic modes, with "now" one day after the conversation's last session.
In the same run, BM25 (``rank_bm25.BM25Okapi``, tokens: lowercase runs of
letters and digits, English stop words removed) ranks the same turns.

    python benchmarks/retrieval_locomo.py [--embedder hashing|minilm] [--out FILE]

No tuning happens here: the daemon runs on its embedded defaults.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from rank_bm25 import BM25Okapi

sys.path.insert(0, str(Path(__file__).resolve().parent))
import locomo
from daemon_runner import BenchDaemon

from memoryd.client import Client

MODES = ("keyword", "semantic", "hybrid", "classic")
K = 10
# The usual English stop list for the reference BM25 (lowercase letter/digit runs).
STOP_WORDS = frozenset(
    (
        "a about above after again against all am an and any are as at be because been "
        "before being below between both but by can did do does doing down during each few "
        "for from further had has have having he her here hers herself him himself his how i "
        "if in into is it its itself just me more most my myself no nor not now of off on "
        "once only or other our ours ourselves out over own same she should so some such "
        "than that the their theirs them themselves then there these they this those through "
        "to too under until up very was we were what when where which while who whom why "
        "will with you your yours yourself yourselves "
    ).split()
)
_TOKEN = re.compile(r"[a-z0-9]+")


def bm25_tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOP_WORDS]


def store(client: Client, conversation: locomo.Conversation) -> str:
    """Every turn of the conversation as a frame in its own namespace; returns the namespace."""
    namespace = f"locomo-{conversation.sample_id}"
    frames = [
        {
            "content": turn.text,
            "kind": "conversation",
            "namespace": namespace,
            "timestamp_ms": turn.timestamp_ms,
            "metadata": {"dia_id": turn.dia_id},
        }
        for turn in conversation.turns
    ]
    for start in range(0, len(frames), 500):
        client.put_batch(frames[start : start + 500])
    return namespace


def ranked_dia_ids(client: Client, query: str, namespace: str, mode: str, now_ms: int) -> list[str]:
    result = client.search(query, k=K, mode=mode, namespace=namespace, now_ms=now_ms)
    return [hit.frame.metadata["dia_id"] for hit in result.hits]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedder", default="hashing", choices=("hashing", "minilm"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    conversations = locomo.load()
    results: dict[str, dict[str, locomo.Scores]] = {}
    daemon = BenchDaemon({"MEMORYD_EMBEDDER": args.embedder})
    daemon.start()
    started = time.perf_counter()
    try:
        with Client(daemon.socket, timeout=120) as client:
            for conversation in conversations:
                namespace = store(client, conversation)
                BenchDaemon.wait_built(client)
                texts = [t.text for t in conversation.turns]
                ids = [t.dia_id for t in conversation.turns]
                bm25 = BM25Okapi([bm25_tokens(t) for t in texts])
                for question in conversation.questions:
                    scores = bm25.get_scores(bm25_tokens(question.text))
                    order = sorted(range(len(ids)), key=lambda i: -scores[i])[:K]
                    locomo.record(
                        results.setdefault("rank-bm25 BM25Okapi", {}),
                        question,
                        [ids[i] for i in order],
                    )
                    for mode in MODES:
                        ranked = ranked_dia_ids(
                            client, question.text, namespace, mode, conversation.now_ms
                        )
                        locomo.record(results.setdefault(f"memoryd {mode}", {}), question, ranked)
    finally:
        daemon.remove()
    questions = sum(len(c.questions) for c in conversations)
    report = (
        f"# LoCoMo retrieval, {time.strftime('%Y-%m-%d')}\n\n"
        f"5 conversations, {questions} questions of categories 1-4, k={K}; "
        f"memoryd embedder: {args.embedder}; run took {time.perf_counter() - started:.0f} s.\n"
        f"Command: `python benchmarks/retrieval_locomo.py --embedder {args.embedder}`\n\n"
        + locomo.table(results, questions)
        + "\n"
    )
    print(report)
    if args.out:
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
