"""The recent-frames cache: decoded frames read back from the log, by sequence number.

Search, ``important`` and ``related`` hits, and the phrase checks of a search,
read frame text back from the log (one pread and a JSON decode each); this LRU
keeps the decoded frames they read, bounded in bytes
(``cache_recent_frames_bytes_max``).  Keys are sequence numbers: a record
never changes, and liveness is always checked in the frame table before the
cache is asked, so a deleted frame is never served from it.
"""

from __future__ import annotations

from memoryd.storage import EventLog
from memoryd.storage.caches import MeteredCache
from memoryd.storage.events import Frame
from memoryd.storage.frame_table import FrameSlot
from memoryd.storage.projection import frame_at

FRAME_OVERHEAD_BYTES = 600  # the Frame object, its strings and lists, the cache entry


def frame_bytes(frame: Frame) -> int:
    """Rough bytes a cached frame holds: its text (UTF-8 upper bound) and overhead."""
    return FRAME_OVERHEAD_BYTES + 4 * len(frame.content) + 64 * len(frame.tags)


class FrameCache:
    """Frames by slot, from the LRU or else from the log."""

    def __init__(self, event_log: EventLog, bytes_max: int) -> None:
        self._log = event_log
        self.cache: MeteredCache[int, Frame] = MeteredCache("recent_frames", bytes_max, frame_bytes)

    def frame(self, slot: FrameSlot) -> Frame:
        frame = self.cache.get(slot.seq)
        if frame is None:
            frame = frame_at(self._log, slot)
            self.cache.put(slot.seq, frame)
        return frame
