"""MeteredCache: bounded by bytes, counts hits and misses, drops by key."""

from __future__ import annotations

import time

from memoryd.storage.caches import MeteredCache


def test_lru_bound_hits_and_misses() -> None:
    cache: MeteredCache[str, bytes] = MeteredCache("t", 100, len)
    cache.put("a", b"x" * 40)
    cache.put("b", b"y" * 40)
    assert cache.get("a") == b"x" * 40  # a is now the most recent
    cache.put("c", b"z" * 40)  # over 100 bytes: the least recent (b) goes
    assert cache.get("b") is None
    assert cache.get("c") is not None
    stats = cache.stats()
    assert stats["cache_t_hits"] == 2 and stats["cache_t_misses"] == 1
    assert stats["cache_t_bytes"] == 80 <= stats["cache_t_bytes_max"] == 100
    assert stats["cache_t_entries"] == 2


def test_an_entry_larger_than_the_bound_is_not_kept() -> None:
    cache: MeteredCache[str, bytes] = MeteredCache("t", 10, len)
    cache.put("big", b"x" * 11)
    assert cache.get("big") is None and cache.stats()["cache_t_bytes"] == 0


def test_drop_by_key_and_ttl() -> None:
    cache: MeteredCache[tuple[str, int], bytes] = MeteredCache("t", 1000, len, ttl_s=0.05)
    for i in range(5):
        cache.put(("ns", i), b"v")
    assert cache.drop(lambda key: key[1] % 2 == 0) == 2
    assert cache.stats()["cache_t_entries"] == 3
    time.sleep(0.08)
    assert cache.get(("ns", 0)) is None
