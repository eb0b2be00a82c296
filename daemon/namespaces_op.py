"""The ``namespaces`` op: every namespace with its live frames and core memory blocks.

Frame counts leave out expired frames (they wait for compaction); a
namespace appears while it has a frame or a block.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from memoryd.daemon import validation
from memoryd.storage.projection import Projection


def namespaces_handler(projection: Projection) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The handler, over ``projection``."""

    def namespaces(args: dict[str, Any]) -> dict[str, Any]:
        if args:
            raise validation.bad_request(f"unknown field(s): {', '.join(sorted(args))}")
        frames = projection.table.namespaces()
        now_ms = time.time_ns() // 1_000_000
        for frame_id in projection.expiry.expired(now_ms):
            slot = projection.table.get(frame_id)
            if slot is not None:
                frames[slot.namespace] -= 1
        blocks = projection.blocks.namespaces()
        names = sorted({name for name, count in frames.items() if count} | set(blocks))
        return {
            "namespaces": [
                {"namespace": name, "frames": frames.get(name, 0), "blocks": blocks.get(name, 0)}
                for name in names
            ]
        }

    return namespaces
