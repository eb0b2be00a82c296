"""The ``search`` op: validate, wait (bounded) for the builder if asked, rank, answer.

Arguments (all but ``query`` optional)::

    query: str            non-empty, at most query_bytes_max UTF-8 bytes
    k: int                1..search_k_max, default 10
    mode: str             hybrid (default), keyword, semantic or classic
    namespace: str        only frames of this namespace
    kinds: [str]          only frames of one of these kinds
    tags: [str]           only frames carrying every one of these tags
    since_ms, until_ms    frame time, since inclusive, until exclusive
    min_importance: num   0..1
    min_significance: {dimension: num}   only frames scoring at least this on each
    fact_kinds: [str]     only frames of these fact kinds (procedural, declarative, episodic)
    significance_weights: {dimension: num}   rank by score x (1 + sum weight x scores),
                          each weight 0..significance_weight_max; explain shows the factor
    explain: bool         each part of each score
    min_seq: int          read-your-writes: first wait until the builder has built
                          everything up to this sequence number (a put's ``seq``)
    wait_ms: int          how long min_seq may wait, default 2000, at most 10000
    now_ms: int           the "now" that recency is measured from (default: now)

Result: ``{"hits": [{"frame": Frame, "score": float, "significance": {...},
"fact_kind": str, "explain": {...}?}], "mode": str, "built_seq": int}``.  A
frame deleted after it was built, or expired, is never returned, whatever the
builder has caught up with.

Private frames are indexed under blinded terms and tags (storage/derived.py);
while the vault is unlocked the query's terms and tags are blinded too and
looked up both ways.  While it is locked no private frame is indexed (and a
private hit would be dropped anyway): the result says ``private_excluded``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from memoryd.client import errors, protocol
from memoryd.client.errors import MemorydError
from memoryd.daemon import validation
from memoryd.daemon.builder import Builder
from memoryd.daemon.frame_cache import FrameCache
from memoryd.daemon.vault import Vault
from memoryd.storage import EventLog
from memoryd.storage.caches import MeteredCache
from memoryd.storage.catalog import BoolArray, Catalog, Filters
from memoryd.storage.derived import BuildStep, blinded_tag_name
from memoryd.storage.events import Frame
from memoryd.storage.expiry import ExpiryIndex
from memoryd.storage.frame_table import FrameSlot, FrameTable
from memoryd.storage.search import MODES, SearchIndex
from memoryd.storage.search.significance import FACT_KINDS, SIGNIFICANCE_DIMENSIONS

# (query, k, mode, filters, explain, now_ms, significance weights): everything a
# ranking depends on besides the index.  With now_ms absent, the cache's short
# TTL bounds how stale "now" may be (recency half-lives are days).
CacheKey = tuple[str, int, str, Filters, bool, int | None, tuple[tuple[str, float], ...]]
Ranked = list[tuple[int, float, dict[str, Any] | None]]
RESULTS_TTL_S = 2.0
QUERY_BYTES_MAX = 16 * 1024
SEARCH_K_MAX = 1000
KINDS_MAX = 32
WAIT_MS_DEFAULT = 2000
WAIT_MS_MAX = 10_000
SIGNIFICANCE_WEIGHT_MAX = 10.0
FRAMES_BYTES_MAX_DEFAULT = 1 << 20  # a search op made without a shared frame cache

_FIELDS = frozenset(
    (
        "query",
        "k",
        "mode",
        "namespace",
        "kinds",
        "tags",
        "since_ms",
        "until_ms",
        "min_importance",
        "explain",
        "min_seq",
        "wait_ms",
        "now_ms",
        "min_significance",
        "fact_kinds",
        "significance_weights",
    )
)


def _string_list(
    args: dict[str, Any], name: str, count_max: int, limit_name: str
) -> tuple[str, ...] | None:
    value = args.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise validation.bad_request(f"{name} must be a list of non-empty strings")
    if len(value) > count_max:
        raise validation.limit_exceeded(limit_name, count_max, len(value), f"number of {name}")
    return tuple(value)


def _filters(args: dict[str, Any]) -> Filters:
    since = validation.optional_timestamp(args, "since_ms")
    until = validation.optional_timestamp(args, "until_ms")
    if since is not None and until is not None and since > until:
        raise validation.bad_request(f"since_ms ({since}) is later than until_ms ({until})")
    min_importance = args.get("min_importance")
    if min_importance is not None and (
        isinstance(min_importance, bool)
        or not isinstance(min_importance, int | float)
        or not 0.0 <= min_importance <= 1.0
    ):
        raise validation.bad_request("min_importance must be a number between 0 and 1")
    return Filters(
        namespace=validation.optional_str(
            args, "namespace", "namespace_bytes_max", protocol.NAMESPACE_BYTES_MAX
        ),
        kinds=_string_list(args, "kinds", KINDS_MAX, "search_kinds_max"),
        tags=_string_list(args, "tags", protocol.TAGS_MAX, "tags_max"),
        since_ms=since,
        until_ms=until,
        min_importance=None if min_importance is None else float(min_importance),
        min_significance=_pairs(validation.significance_scores(args, "min_significance")),
        fact_kinds=_fact_kinds(args),
    )


def _pairs(scores: dict[str, float] | None) -> tuple[tuple[str, float], ...] | None:
    return None if scores is None else tuple(sorted(scores.items()))


def _fact_kinds(args: dict[str, Any]) -> tuple[str, ...] | None:
    kinds = _string_list(args, "fact_kinds", len(FACT_KINDS), "fact_kinds_max")
    if kinds is not None and not set(kinds) <= set(FACT_KINDS):
        raise validation.bad_request(f"fact_kinds must be among {', '.join(FACT_KINDS)}")
    return kinds


def significance_weights(args: dict[str, Any]) -> tuple[tuple[str, float], ...]:
    """Validated ``significance_weights``: (dimension, weight) pairs, sorted; () if none."""
    value = args.get("significance_weights")
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise validation.bad_request(
            "significance_weights must be an object of dimension -> weight"
        )
    out = []
    for name, weight in value.items():
        if name not in SIGNIFICANCE_DIMENSIONS:
            raise validation.bad_request(
                f"significance_weights: unknown dimension {str(name)[:64]!r}; dimensions: "
                + ", ".join(SIGNIFICANCE_DIMENSIONS)
            )
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not 0.0 <= weight <= SIGNIFICANCE_WEIGHT_MAX
        ):
            raise validation.bad_request(
                f"significance_weights: {name} must be a number between 0 and "
                f"{SIGNIFICANCE_WEIGHT_MAX:g}"
            )
        out.append((name, float(weight)))
    return tuple(sorted(out))


def significance_factor(
    catalog: Catalog, weights: tuple[tuple[str, float], ...]
) -> tuple[str, npt.NDArray[np.float32]] | None:
    """``1 + sum(weight x score)`` by doc, named for explain; None without weights."""
    if not weights:
        return None
    factor = np.ones(len(catalog), dtype=np.float32)
    for name, weight in weights:
        factor += np.float32(weight) * catalog.significance[name].view()
    return "significance", factor


_NO_FILTERS = Filters()


class SearchOp:
    """The handler for ``search``; reads derived state the builder owns (same thread)."""

    def __init__(
        self,
        event_log: EventLog,
        table: FrameTable,
        builder: Builder,
        index: SearchIndex,
        results_cache: MeteredCache[CacheKey, Ranked],
        vault: Vault | None = None,
        expiry: ExpiryIndex | None = None,
        frames: FrameCache | None = None,
    ) -> None:
        self._log = event_log
        self._frames = frames or FrameCache(event_log, FRAMES_BYTES_MAX_DEFAULT)
        self._table = table
        # Expired frames are never returned (they wait in the log for compaction).
        self._expiry = expiry if expiry is not None else ExpiryIndex()
        self._builder = builder
        self._index = index
        # Ranked docs by request.  Liveness is checked on every answer, so a
        # cached ranking never returns a deleted frame; builds drop what they stale.
        self._results = results_cache
        self._vault = vault
        self.searches = 0

    def forget_all(self) -> None:
        """Drop every cached ranking (the vault was locked or unlocked, or its key changed)."""
        self._results.clear()

    def forget_stale(self, step: BuildStep) -> None:
        """Drop cached rankings that ``step`` may have changed."""
        if step.deleted:
            self._results.clear()
        elif step.frames:
            touched = step.namespaces
            self._results.drop(
                lambda key: key[3].namespace not in touched and key[3].namespace is not None
            )

    def __call__(self, args: dict[str, Any]) -> dict[str, Any] | asyncio.Future[Any]:
        unknown = set(args) - _FIELDS
        if unknown:
            raise validation.bad_request(f"unknown field(s): {', '.join(sorted(unknown))}")
        query = args.get("query")
        if not isinstance(query, str) or not query.strip():
            raise validation.bad_request("query must be a non-empty string")
        size = validation.utf8_length(query, "query")
        if size > QUERY_BYTES_MAX:
            raise validation.limit_exceeded("query_bytes_max", QUERY_BYTES_MAX, size, "query size")
        k = validation.optional_int(args, "k", minimum=1)
        if k is not None and k > SEARCH_K_MAX:
            raise validation.limit_exceeded("search_k_max", SEARCH_K_MAX, k, "k")
        mode = args.get("mode", "hybrid")
        if mode not in MODES:
            raise validation.bad_request(f"mode must be one of {', '.join(MODES)}")
        explain = args.get("explain", False)
        if not isinstance(explain, bool):
            raise validation.bad_request("explain must be true or false")
        request = {
            "query": query,
            "k": k or 10,
            "mode": mode,
            "filters": _filters(args),
            "explain": explain,
            "now_ms": validation.optional_timestamp(args, "now_ms"),
            "weights": significance_weights(args),
        }
        min_seq = validation.optional_int(args, "min_seq", minimum=0)
        if min_seq is None or self._builder.searchable_seq >= min_seq:
            return self._run(**request)
        wait_ms = validation.optional_int(args, "wait_ms", minimum=0, maximum=WAIT_MS_MAX)
        return asyncio.ensure_future(
            self._after_build(min_seq, WAIT_MS_DEFAULT if wait_ms is None else wait_ms, request)
        )

    async def _after_build(self, min_seq: int, wait_ms: int, request: dict[str, Any]) -> Any:
        if not await self._builder.wait_built(min_seq, wait_ms / 1000):
            raise MemorydError(
                errors.BUSY,
                f"the builder has not reached seq {min_seq} within {wait_ms} ms "
                f"(searchable up to seq {self._builder.searchable_seq}); retry or raise wait_ms",
            )
        return self._run(**request)

    def _run(
        self,
        *,
        query: str,
        k: int,
        mode: str,
        filters: Filters,
        explain: bool,
        now_ms: int | None,
        weights: tuple[tuple[str, float], ...],
    ) -> dict[str, Any]:
        self.searches += 1
        catalog = self._builder.derived.catalog
        key: CacheKey = (query, k, mode, filters, explain, now_ms, weights)
        ranked = self._results.get(key)
        blind = self._blinder()
        wall_ms = time.time_ns() // 1_000_000
        if ranked is None:
            expired = self._expiry.expired(wall_ms) if self._expiry else []
            doc_of = catalog.doc_of
            mask = self._mask(filters, blind, [doc_of[i] for i in expired if i in doc_of])
            result = self._index.search(
                query,
                k,
                mask=mask,
                mode=mode,  # type: ignore[arg-type]
                now_ms=now_ms if now_ms is not None else wall_ms,
                explain=explain,
                text_of=self._text_of,
                blind=blind,
                doc_factor=significance_factor(catalog, weights),
            )
            explained = result.explain() if explain else [None] * len(result.docs)
            ranked = list(zip(result.docs.tolist(), result.scores.tolist(), explained, strict=True))
            self._results.put(key, ranked)
        hits = self.hits(ranked, wall_ms)
        out = {"hits": hits, "mode": mode, "built_seq": self._builder.derived.built_seq}
        if self._vault is not None and self._vault.state == "locked":
            out["private_excluded"] = True
        return out

    def hits(
        self, ranked: Iterable[tuple[int, float, Any]], now_ms: int | None = None
    ) -> list[dict[str, Any]]:
        """The wire hits of ``ranked`` ((doc, score, explanation or None), best first):
        each live frame that may be shown now (deleted, expired and unreadable private
        ones are left out) with its score, significance scores and fact kind, and its
        explanation when there is one."""
        catalog = self._builder.derived.catalog
        wall_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        shown: list[tuple[int, dict[str, Any], float, Any]] = []
        for doc, score, explanation in ranked:
            slot = self._table.get(catalog.ids[doc])
            if slot is None:  # deleted since it was ranked
                continue
            frame = self.frame_of(slot, wall_ms)
            if frame is None:  # expired, or private and not to be shown now
                continue
            shown.append((doc, frame, score, explanation))
        annotations = catalog.annotations([doc for doc, _, _, _ in shown])
        hits = []
        for (_, frame, score, explanation), (significance, fact_kind) in zip(
            shown, annotations, strict=True
        ):
            hit: dict[str, Any] = {
                "frame": frame,
                "score": score,
                "significance": significance,
                "fact_kind": fact_kind,
            }
            if explanation is not None:
                hit["explain"] = explanation
            hits.append(hit)
        return hits

    def _blinder(self) -> Callable[[list[str]], list[str]] | None:
        """The query-side blinding while unlocked (private docs hold blinded terms only)."""
        vault = self._vault
        key_id = None if vault is None else vault.index_key_id
        if vault is None or key_id is None or not self._builder.derived.private_indexed:
            return None

        def blind(terms: list[str]) -> list[str]:
            return vault.blind_terms(terms, key_id) or []

        return blind

    def _mask(
        self,
        filters: Filters,
        blind: Callable[[list[str]], list[str]] | None,
        expired: list[int],
    ) -> BoolArray | None:
        """The docs a search may return: those passing ``filters``, less the
        ``expired`` ones.  None stands for every live doc (no filter, nothing
        expired): the indexes keep their own live masks, and building a mask over
        a million docs costs more than a rare word's search."""
        if filters == _NO_FILTERS and not expired:
            return None
        catalog = self._builder.derived.catalog
        mask = catalog.mask(filters)
        if blind is not None and filters.tags:
            tags = blind([blinded_tag_name(tag) for tag in filters.tags])
            if len(tags) == len(filters.tags):
                mask |= catalog.mask(dataclasses.replace(filters, tags=tuple(tags)))
        mask[expired] = False
        return mask

    def frame_of(self, slot: FrameSlot, now_ms: int | None = None) -> dict[str, Any] | None:
        """A live frame's wire form, from the recent-frames cache or the log; None when
        it has expired, or is private and cannot be opened now (locked, tampered)."""
        frame = self._frames.frame(slot)
        wall_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        if self._expiry.is_expired(frame.id, wall_ms):
            return None
        readable = self._readable(frame)
        return None if readable is None else readable.to_dict()

    def _readable(self, frame: Frame) -> Frame | None:
        """``frame`` opened if sealed (never cached opened: a lock must leave no
        plaintext behind), or None when it cannot be."""
        if frame.sealed is None:
            return frame
        return None if self._vault is None else self._vault.readable(frame)

    def _text_of(self, doc: int) -> str:
        slot = self._table.get(self._builder.derived.catalog.ids[doc])
        if slot is None:
            return ""
        frame = self._readable(self._frames.frame(slot))
        return "" if frame is None else frame.content


def ranked_size(ranked: Ranked) -> int:
    """Rough bytes of a cached ranking: a tuple per hit, more when explained."""
    return 64 + sum(96 + (0 if e is None else 48 * len(e)) for _, _, e in ranked)
