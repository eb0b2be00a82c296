"""The ``related`` op: the memories most similar to a given one, with a TTL cache.

Arguments: ``id`` (a live frame), ``k`` (1..search_k_max, default 10),
``namespace`` (default: the frame's own), ``min_seq`` (read-your-writes, as
search).  The frame's own text is the query of a hybrid search (keyword and
semantic, as ``search``), the frame itself excluded.  Result:
``{"hits": [{"frame", "score", "significance", "fact_kind"}], "next_cursor":
null}``.  A frame not built yet is waited for (bounded).

Rankings are cached (``cache_related_bytes_max``, TTL ``RELATED_TTL_S``) by
(id, k, namespace); new frames reaching a namespace drop its entries, and a
delete drops them all, as for search results.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from memoryd.client import errors, protocol
from memoryd.client.errors import MemorydError
from memoryd.daemon import validation
from memoryd.daemon.builder import Builder
from memoryd.daemon.search_op import SEARCH_K_MAX, WAIT_MS_DEFAULT, SearchOp
from memoryd.storage.caches import MeteredCache
from memoryd.storage.catalog import Filters
from memoryd.storage.derived import BuildStep
from memoryd.storage.frame_table import FrameTable
from memoryd.storage.search import SearchIndex

RELATED_TTL_S = 60.0
RelatedKey = tuple[str, int, str]  # (id, k, namespace)
RelatedList = list[tuple[int, float]]  # (doc, score) best first
_FIELDS = frozenset(("id", "k", "namespace", "min_seq"))


def related_size(ranked: RelatedList) -> int:
    return 120 + 72 * len(ranked)


class RelatedOp:
    """The handler for ``related``; reads derived state the builder owns (same thread)."""

    def __init__(
        self,
        table: FrameTable,
        builder: Builder,
        index: SearchIndex,
        search: SearchOp,
        cache: MeteredCache[RelatedKey, RelatedList],
    ) -> None:
        self._table = table
        self._builder = builder
        self._index = index
        self._search = search
        self.cache = cache

    def forget_stale(self, step: BuildStep) -> None:
        """Drop cached rankings that ``step`` may have changed."""
        if step.deleted:
            self.cache.clear()
        elif step.frames:
            touched = step.namespaces
            self.cache.drop(lambda key: key[2] not in touched)

    def __call__(self, args: dict[str, Any]) -> dict[str, Any] | asyncio.Future[Any]:
        unknown = set(args) - _FIELDS
        if unknown:
            raise validation.bad_request(f"unknown field(s): {', '.join(sorted(unknown))}")
        fid = validation.frame_id_arg(args)
        k = validation.optional_int(args, "k", minimum=1)
        if k is not None and k > SEARCH_K_MAX:
            raise validation.limit_exceeded("search_k_max", SEARCH_K_MAX, k, "k")
        namespace = validation.optional_str(
            args, "namespace", "namespace_bytes_max", protocol.NAMESPACE_BYTES_MAX
        )
        slot = self._table.get(fid)
        if slot is None:
            raise MemorydError(errors.NOT_FOUND, f"no live frame has id {fid}")
        request = (fid, k or 10, namespace or slot.namespace)
        wanted = max(slot.seq, validation.optional_int(args, "min_seq", minimum=0) or 0)
        if self._builder.derived.built_seq >= wanted:
            return self._run(*request)
        return asyncio.ensure_future(self._after_build(wanted, request))

    async def _after_build(self, seq: int, request: RelatedKey) -> Any:
        if not await self._builder.wait_built(seq, WAIT_MS_DEFAULT / 1000):
            raise MemorydError(errors.BUSY, f"seq {seq} is not built yet; retry")
        return self._run(*request)

    def _run(self, fid: str, k: int, namespace: str) -> dict[str, Any]:
        catalog = self._builder.derived.catalog
        ranked = self.cache.get((fid, k, namespace))
        if ranked is None:
            doc = catalog.doc_of.get(fid)
            slot = self._table.get(fid)
            if doc is None or slot is None:
                raise MemorydError(errors.NOT_FOUND, f"no live frame has id {fid}")
            mask = catalog.mask(Filters(namespace=namespace))
            mask[doc] = False
            shown = self._search.frame_of(slot)
            if shown is None:
                raise MemorydError(
                    errors.NOT_FOUND, f"frame {fid} cannot be read now (expired, or private)"
                )
            text = shown["content"]
            result = self._index.search(text, k, mask=mask, now_ms=time.time_ns() // 1_000_000)
            ranked = list(zip(result.docs.tolist(), result.scores.tolist(), strict=True))
            self.cache.put((fid, k, namespace), ranked)
        hits = self._search.hits((doc, score, None) for doc, score in ranked)
        return {"hits": hits, "next_cursor": None}
