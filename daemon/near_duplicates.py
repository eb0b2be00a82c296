"""Near twins of new frames, for the put response's ``near_duplicate_of``.

A frame just committed is compared (SimHash, storage/search/simhash.py) with
the frames already built in its namespace, among the most recent
``NEAR_DUPLICATE_DOCS_MAX`` (a bounded index the builder keeps).  Frames
committed but not yet built are not compared.  Cost: one SimHash per frame
(numpy over the batch) and a few dict and binary-search lookups.
"""

from __future__ import annotations

from collections.abc import Sequence

from memoryd.storage.derived import DerivedState
from memoryd.storage.events import Frame
from memoryd.storage.search.simhash import simhash_batch


class NearDuplicates:
    """Callable: the id of each frame's near twin among built frames, or None."""

    def __init__(self, derived: DerivedState) -> None:
        self._derived = derived
        self.found = 0

    def __call__(self, frames: Sequence[Frame]) -> list[str | None]:
        derived = self._derived
        if not len(derived.near):
            return [None] * len(frames)
        hashes = simhash_batch([frame.content for frame in frames]).tolist()
        out = [
            derived.near_duplicate_of(int(h), frame.namespace)
            for frame, h in zip(frames, hashes, strict=True)
        ]
        self.found += sum(twin is not None for twin in out)
        return out
