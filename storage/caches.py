"""Bounded caches with a memory bound in bytes and hit/miss counters.

Every cache the daemon keeps is one of these, so that ``stats`` can report
for each how full it is and how often it hits.  Sizes are estimates: the
``size_of`` function given for each cache says what one entry costs.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import cachetools

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class MeteredCache(Generic[K, V]):
    """An LRU (or, with ``ttl_s``, a TTL) cache bounded to ``bytes_max``."""

    def __init__(
        self,
        name: str,
        bytes_max: int,
        size_of: Callable[[V], int],
        *,
        ttl_s: float | None = None,
    ) -> None:
        if bytes_max <= 0:
            raise ValueError(f"{name}: bytes_max must be positive")
        self.name = name
        self.bytes_max = bytes_max
        self._cache: cachetools.Cache[K, V]
        if ttl_s is None:
            self._cache = cachetools.LRUCache(maxsize=bytes_max, getsizeof=size_of)
        else:
            self._cache = cachetools.TTLCache(maxsize=bytes_max, ttl=ttl_s, getsizeof=size_of)
        self._size_of = size_of
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        value = self._cache.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: K, value: V) -> None:
        # An entry larger than the whole bound is simply not kept.
        if self._size_of(value) <= self.bytes_max:
            self._cache[key] = value

    def drop(self, keep: Callable[[K], bool]) -> int:
        """Remove every entry whose key ``keep`` rejects; returns how many went."""
        doomed = [key for key in list(self._cache.keys()) if not keep(key)]
        for key in doomed:
            self._cache.pop(key, None)
        return len(doomed)

    def clear(self) -> None:
        self._cache.clear()

    def stats(self) -> dict[str, int]:
        prefix = f"cache_{self.name}"
        return {
            f"{prefix}_bytes": int(self._cache.currsize),
            f"{prefix}_bytes_max": self.bytes_max,
            f"{prefix}_entries": len(self._cache),
            f"{prefix}_hits": self.hits,
            f"{prefix}_misses": self.misses,
        }
