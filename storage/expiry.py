"""Frame expiry: which live frames have a time-to-live, and which have passed it.

Derived state folded with the frame table: a FRAME_PUT whose payload has
``exp`` adds its frame here, a FRAME_DELETE removes it.  An expired frame
stays in the frame table (and the log) until compaction drops it; every
query asks ``is_expired`` and leaves it out, and ``expired`` lists what
compaction may reclaim.

Memory: per frame with a time-to-live, one dict entry and one sorted-list key.
"""

from __future__ import annotations

import itertools

from sortedcontainers import SortedList


class ExpiryIndex:
    """Expiry time by frame id, and the ids in order of expiry.  Single writer."""

    def __init__(self) -> None:
        self._at: dict[str, int] = {}
        self._order = SortedList()  # (expires_at_ms, id)

    def add(self, frame_id: str, expires_at_ms: int) -> None:
        """Record a live frame's expiry (a frame's expiry never changes while it lives)."""
        if frame_id in self._at:
            return
        self._at[frame_id] = expires_at_ms
        self._order.add((expires_at_ms, frame_id))

    def remove(self, frame_id: str) -> None:
        """Forget a frame that was deleted (no-op when it had no expiry)."""
        expires_at_ms = self._at.pop(frame_id, None)
        if expires_at_ms is not None:
            self._order.remove((expires_at_ms, frame_id))

    def expires_at(self, frame_id: str) -> int | None:
        return self._at.get(frame_id)

    def is_expired(self, frame_id: str, now_ms: int) -> bool:
        expires_at_ms = self._at.get(frame_id)
        return expires_at_ms is not None and expires_at_ms <= now_ms

    def expired(self, now_ms: int, limit: int | None = None) -> list[str]:
        """Ids of frames expired at ``now_ms``, the longest expired first."""
        ids = (frame_id for _at, frame_id in self._order.irange(maximum=(now_ms, "\U0010ffff")))
        return list(itertools.islice(ids, limit))

    def count_expired(self, now_ms: int) -> int:
        return int(self._order.bisect_right((now_ms, "\U0010ffff")))

    def __len__(self) -> int:
        return len(self._at)

    def _check(self) -> None:
        """Verify every invariant; cheap enough for tests to call after each change."""
        assert len(self._at) == len(self._order)
        for expires_at_ms, frame_id in self._order:
            assert self._at[frame_id] == expires_at_ms
