"""The ``important`` op: frames most important first, alongside ``recent``.

Arguments (all optional)::

    by: str               importance (default) or a significance dimension
    keywords: str         only frames holding every keyword term of this text
    namespace: str        only frames of this namespace
    kinds: [str]          only frames of one of these kinds
    limit: int            1..page_frames_max, default 20
    cursor: str           the next_cursor of the previous page
    min_seq: int          first wait (bounded, wait_ms) until this seq is built

Order: ``by`` descending, then newest first, then the later put first: a total
order, so that pages never skip or repeat a frame.  Result:
``{"hits": [{"frame", "score", "significance", "fact_kind"}], "next_cursor"}``;
``score`` is the ``by`` value.  Reads only built frames (the builder's lag, as
search).  Cost: one pass over the catalog's columns (vectorised), then the page.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import numpy.typing as npt

from memoryd.client import errors, protocol
from memoryd.client.errors import MemorydError
from memoryd.daemon import validation
from memoryd.daemon.builder import Builder
from memoryd.daemon.search_op import (
    KINDS_MAX,
    QUERY_BYTES_MAX,
    WAIT_MS_DEFAULT,
    WAIT_MS_MAX,
    SearchOp,
)
from memoryd.storage.catalog import Catalog, Filters
from memoryd.storage.frame_table import FrameTable
from memoryd.storage.search import SearchIndex
from memoryd.storage.search.significance import SIGNIFICANCE_DIMENSIONS

ORDERS = ("importance", *SIGNIFICANCE_DIMENSIONS)
CURSOR_BYTES_MAX = 64
_FIELDS = frozenset(
    ("by", "keywords", "namespace", "kinds", "limit", "cursor", "min_seq", "wait_ms")
)
Cursor = tuple[int, int, int]  # (float32 bits of the value, timestamp_ms, doc) of the last hit


class ImportantOp:
    """The handler for ``important``; reads derived state the builder owns (same thread)."""

    def __init__(
        self, table: FrameTable, builder: Builder, index: SearchIndex, search: SearchOp
    ) -> None:
        self._table = table
        self._builder = builder
        self._index = index
        self._search = search

    def __call__(self, args: dict[str, Any]) -> dict[str, Any] | asyncio.Future[Any]:
        unknown = set(args) - _FIELDS
        if unknown:
            raise validation.bad_request(f"unknown field(s): {', '.join(sorted(unknown))}")
        by = args.get("by", "importance")
        if by not in ORDERS:
            raise validation.bad_request(f"by must be one of {', '.join(ORDERS)}")
        keywords = validation.optional_str(args, "keywords", "query_bytes_max", QUERY_BYTES_MAX)
        kinds = args.get("kinds")
        if kinds is not None and (
            not isinstance(kinds, list) or not all(isinstance(k, str) and k for k in kinds)
        ):
            raise validation.bad_request("kinds must be a list of non-empty strings")
        if kinds is not None and len(kinds) > KINDS_MAX:
            raise validation.limit_exceeded("search_kinds_max", KINDS_MAX, len(kinds), "kinds")
        request = {
            "by": by,
            "keywords": keywords,
            "filters": Filters(
                namespace=validation.optional_str(
                    args, "namespace", "namespace_bytes_max", protocol.NAMESPACE_BYTES_MAX
                ),
                kinds=None if kinds is None else tuple(kinds),
            ),
            "limit": validation.page_limit(args, 20),
            "after": _parse_cursor(
                validation.optional_str(args, "cursor", "cursor_bytes_max", CURSOR_BYTES_MAX)
            ),
        }
        min_seq = validation.optional_int(args, "min_seq", minimum=0)
        if min_seq is None or self._builder.derived.built_seq >= min_seq:
            return self._run(**request)
        wait_ms = validation.optional_int(args, "wait_ms", minimum=0, maximum=WAIT_MS_MAX)
        return asyncio.ensure_future(
            self._after_build(min_seq, WAIT_MS_DEFAULT if wait_ms is None else wait_ms, request)
        )

    async def _after_build(self, min_seq: int, wait_ms: int, request: dict[str, Any]) -> Any:
        if not await self._builder.wait_built(min_seq, wait_ms / 1000):
            raise MemorydError(
                errors.BUSY, f"the builder has not reached seq {min_seq} within {wait_ms} ms"
            )
        return self._run(**request)

    def _run(
        self,
        *,
        by: str,
        keywords: str | None,
        filters: Filters,
        limit: int,
        after: Cursor | None,
    ) -> dict[str, Any]:
        catalog = self._builder.derived.catalog
        mask = catalog.mask(filters)
        if keywords is not None:
            docs = self._index.docs_with_all(keywords, mask)
        else:
            docs = np.flatnonzero(mask)
        values = _values(catalog, by)
        page, more = top_page(values, catalog.timestamp_ms.view(), docs, limit, after)
        docs = page.tolist()
        hits = self._search.hits(zip(docs, values[page].tolist(), [None] * len(docs), strict=True))
        next_cursor = None
        if more and page.shape[0]:
            last = int(page[-1])
            bits = int(values[last : last + 1].view(np.uint32)[0])
            next_cursor = f"{bits}.{int(catalog.timestamp_ms.view()[last])}.{last}"
        return {"hits": hits, "next_cursor": next_cursor}


def _values(catalog: Catalog, by: str) -> npt.NDArray[np.float32]:
    column = catalog.importance if by == "importance" else catalog.significance[by]
    return np.asarray(column.view(), dtype=np.float32)


def _parse_cursor(cursor: str | None) -> Cursor | None:
    if cursor is None:
        return None
    parts = cursor.split(".")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        raise validation.bad_request(f"invalid cursor {cursor[:32]!r}")
    bits, timestamp_ms, doc = (int(p) for p in parts)
    if bits >= 1 << 32:
        raise validation.bad_request(f"invalid cursor {cursor[:32]!r}")
    return bits, timestamp_ms, doc


def top_page(
    values: npt.NDArray[np.float32],
    times: npt.NDArray[np.int64],
    docs: npt.NDArray[np.int64],
    limit: int,
    after: Cursor | None,
) -> tuple[npt.NDArray[np.int64], bool]:
    """The ``limit`` first of ``docs`` in (value, time, doc) descending order, strictly
    after the cursor; and whether more follow.  O(len(docs)) plus a small sort."""
    docs = np.asarray(docs, dtype=np.int64)
    if after is not None:
        value = np.array([after[0]], dtype=np.uint32).view(np.float32)[0]
        v, t = values[docs], times[docs]
        before = (v < value) | (
            (v == value) & ((t < after[1]) | ((t == after[1]) & (docs < after[2])))
        )
        docs = docs[before]
    want = limit + 1
    if docs.shape[0] > want:
        docs = _best(values, times, docs, want)
    order = np.lexsort((-docs, -times[docs], -values[docs].astype(np.float64)))
    ranked = docs[order]
    return ranked[:limit], ranked.shape[0] > limit


def _best(
    values: npt.NDArray[np.float32],
    times: npt.NDArray[np.int64],
    docs: npt.NDArray[np.int64],
    want: int,
) -> npt.NDArray[np.int64]:
    """A superset of the ``want`` best docs that is small unless values and times tie."""
    v = values[docs]
    cut = np.partition(v, v.shape[0] - want)[v.shape[0] - want]
    above = docs[v > cut]
    tied = docs[v == cut]
    need = want - above.shape[0]
    if tied.shape[0] > need:
        t = times[tied]
        time_cut = np.partition(t, t.shape[0] - need)[t.shape[0] - need]
        tied = tied[t >= time_cut]
    out: npt.NDArray[np.int64] = np.concatenate([above, tied])
    return out
