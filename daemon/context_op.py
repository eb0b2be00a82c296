"""The ``context`` and ``integrate`` ops: one round trip for what an agent needs each turn.

``context`` assembles a prompt context within a token budget, in this order:

1. the namespace's core memory blocks, in priority order (system, persona,
   human, facts, goals, scratch);
2. the memories most relevant to ``query`` (the hybrid search), best first;
3. the most recent memories, newest first, leaving out those already in 2.

Each section is wrapped in a tag (``<core_memory>``, ``<relevant_memories>``,
``<recent_memories>``), each memory is one line starting with its time in
UTC.  Candidates are taken in that order while they fit; one that does not
fit is left out (and counted in ``omitted``) and smaller ones after it may
still go in.  The whole text is counted again at the end, and items are
dropped from the end until it fits, so ``tokens <= budget_tokens`` holds
whatever the tokenizer (``daemon/tokens.py``).  ``included`` lists what went
in, in order, machine-readably.

``integrate`` recalls the memories relevant to a text, then stores the text
(a put), and answers both: what the agent should know about what it just
learned, and where it went.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from memoryd.client import protocol
from memoryd.daemon import validation
from memoryd.daemon.builder import Builder
from memoryd.daemon.tokens import TokenCounter, token_counter
from memoryd.storage import EventLog
from memoryd.storage.blocks import render_block
from memoryd.storage.events import Frame
from memoryd.storage.projection import Projection, frame_at

Result = dict[str, Any] | asyncio.Future[Any]
Handler = Callable[[dict[str, Any]], Result]

BUDGET_TOKENS_DEFAULT = 2000
CONTEXT_BUDGET_TOKENS_MAX = 1_000_000
CONTEXT_K_MAX = 100  # relevant memories, and recent ones, each
K_DEFAULT = 10
RECENT_DEFAULT = 10
INTEGRATE_K_DEFAULT = 5
# integrate recalls with the text's first query_bytes_max bytes (search's limit).
QUERY_BYTES_MAX = 16 * 1024

_CONTEXT_FIELDS = frozenset(
    ("query", "budget_tokens", "namespace", "k", "recent", "min_seq", "wait_ms")
)

Item = tuple[str, dict[str, Any]]  # (text, its entry in ``included``)


def _stamp(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _memory(frame: dict[str, Any], section: str, score: float | None) -> Item:
    entry: dict[str, Any] = {
        "kind": "frame",
        "section": section,
        "id": frame["id"],
        "timestamp_ms": frame["timestamp_ms"],
    }
    if score is not None:
        entry["score"] = score
    return f"[{_stamp(frame['timestamp_ms'])}] {frame['content']}", entry


def _render(sections: list[tuple[str, list[Item]]]) -> str:
    parts = []
    for tag, items in sections:
        if items:
            body = "".join(f"{text}\n" for text, _ in items)
            parts.append(f"<{tag}>\n{body}</{tag}>\n")
    return "\n".join(parts)


def assemble(
    candidates: list[tuple[str, list[Item]]], budget_tokens: int, counter: TokenCounter
) -> tuple[str, int, list[dict[str, Any]], int]:
    """Fit ``candidates`` (per section: tag and items, in order) into the budget.

    Returns the text, its token count, the ``included`` entries (each with
    its ``tokens``) and how many candidates were left out.
    """
    count = counter.count
    chosen: list[tuple[str, list[Item]]] = []
    used = 0
    omitted = 0
    for tag, items in candidates:
        wrapper = count(f"<{tag}>\n</{tag}>\n\n")
        taken: list[Item] = []
        for text, entry in items:
            cost = count(f"{text}\n") + (0 if taken else wrapper)
            if used + cost > budget_tokens:
                omitted += 1
                continue
            used += cost
            taken.append((text, {**entry, "tokens": cost - (0 if taken else wrapper)}))
        chosen.append((tag, taken))
    text = _render(chosen)
    total = count(text)
    # Counts of parts need not add up exactly with a real tokenizer: trim until it fits.
    while total > budget_tokens:
        for _tag, taken in reversed(chosen):
            if taken:
                taken.pop()
                omitted += 1
                break
        text = _render(chosen)
        total = count(text)
    included = [entry for _tag, taken in chosen for _text, entry in taken]
    return text, total, included, omitted


class ContextOps:
    """The ``context`` and ``integrate`` handlers."""

    def __init__(
        self,
        event_log: EventLog,
        projection: Projection,
        builder: Builder,
        search: Handler,
        put: Handler,
        hidden: Callable[[], Callable[[str], bool] | None],
        readable: Callable[[Frame], Frame | None] = lambda frame: frame,
    ) -> None:
        self._log = event_log
        self._projection = projection
        self._builder = builder
        self._search = search
        self._put = put
        self._hidden = hidden  # what listings skip now (expired frames)
        # A frame as a client may see it (private frames opened), or None to leave out.
        self._readable = readable

    def handlers(self) -> dict[str, Handler]:
        return {"context": self.context, "integrate": self.integrate}

    # -- context ---------------------------------------------------------------------

    def context(self, args: dict[str, Any]) -> Result:
        unknown = set(args) - _CONTEXT_FIELDS
        if unknown:
            raise validation.bad_request(f"unknown field(s): {', '.join(sorted(unknown))}")
        budget = args.get("budget_tokens", BUDGET_TOKENS_DEFAULT)
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise validation.bad_request("budget_tokens must be an integer")
        if budget <= 0:
            raise validation.bad_request(f"budget_tokens must be at least 1, got {budget}")
        if budget > CONTEXT_BUDGET_TOKENS_MAX:
            raise validation.limit_exceeded(
                "context_budget_tokens_max", CONTEXT_BUDGET_TOKENS_MAX, budget, "budget_tokens"
            )
        query = args.get("query")
        if query is not None and (not isinstance(query, str) or not query.strip()):
            raise validation.bad_request("query must be a non-empty string when given")
        namespace = validation.optional_str(
            args, "namespace", "namespace_bytes_max", protocol.NAMESPACE_BYTES_MAX
        )
        k = self._count(args, "k", K_DEFAULT)
        recent = self._count(args, "recent", RECENT_DEFAULT)
        search_args: dict[str, Any] = {
            "query": query,
            "k": k,
            "namespace": namespace or protocol.DEFAULT_NAMESPACE,
        }
        for name in ("min_seq", "wait_ms"):
            if args.get(name) is not None:
                search_args[name] = args[name]
        # Validate the search part now, so that bad input is answered before any work.
        found = self._search(search_args) if query is not None and k else None
        return asyncio.ensure_future(
            self._assemble(found, budget, namespace or protocol.DEFAULT_NAMESPACE, recent)
        )

    @staticmethod
    def _count(args: dict[str, Any], name: str, default: int) -> int:
        value = validation.optional_int(args, name, minimum=0)
        if value is None:
            return default
        if value > CONTEXT_K_MAX:
            raise validation.limit_exceeded("context_k_max", CONTEXT_K_MAX, value, name)
        return value

    async def _assemble(
        self, found: Result | None, budget: int, namespace: str, recent: int
    ) -> dict[str, Any]:
        counter = await asyncio.to_thread(token_counter)
        searched = await _settled(found) if found is not None else None
        hits = searched["hits"] if searched is not None else []
        built_seq = (
            searched["built_seq"] if searched is not None else self._builder.derived.built_seq
        )
        blocks: list[Item] = [
            (
                render_block(block),
                {
                    "kind": "block",
                    "section": "blocks",
                    "block_type": block.block_type,
                    "timestamp_ms": block.modified_ms,
                },
            )
            for block in self._projection.blocks.in_namespace(namespace)
        ]
        relevant = [_memory(hit["frame"], "relevant", hit["score"]) for hit in hits]
        seen = {hit["frame"]["id"] for hit in hits}
        page = self._projection.table.recent(
            namespace=namespace, kind=None, limit=recent, cursor=None, hidden=self._hidden()
        )
        latest = []
        for slot in page.slots:
            readable = self._readable(frame_at(self._log, slot))
            if readable is not None and readable.id not in seen:
                latest.append(_memory(readable.to_dict(), "recent", None))
        candidates = [
            ("core_memory", blocks),
            ("relevant_memories", relevant),
            ("recent_memories", latest),
        ]
        text, tokens, included, omitted = assemble(candidates, budget, counter)
        return {
            "namespace": namespace,
            "text": text,
            "tokens": tokens,
            "budget_tokens": budget,
            "tokenizer": counter.name,
            "included": included,
            "omitted": omitted,
            "built_seq": built_seq,
        }

    # -- integrate -------------------------------------------------------------------

    def integrate(self, args: dict[str, Any]) -> Result:
        put_args = {name: value for name, value in args.items() if name != "k"}
        k = validation.optional_int(args, "k", minimum=1, maximum=CONTEXT_K_MAX)
        item = validation.frame_input(put_args)  # all of it checked before anything happens
        query = item.content.encode("utf-8")[:QUERY_BYTES_MAX].decode("utf-8", "ignore")
        found = self._search(
            {"query": query, "k": k or INTEGRATE_K_DEFAULT, "namespace": item.namespace}
        )
        return asyncio.ensure_future(self._integrate(found, put_args))

    async def _integrate(self, found: Result, put_args: dict[str, Any]) -> dict[str, Any]:
        searched = await _settled(found)
        stored = await _settled(self._put(put_args))
        related = [hit for hit in searched["hits"] if hit["frame"]["id"] != stored["id"]]
        return {"put": stored, "related": related}


async def _settled(result: Result) -> dict[str, Any]:
    """A handler's answer, awaited if it is still to come."""
    if isinstance(result, asyncio.Future):
        value: dict[str, Any] = await result
        return value
    return result
