"""Private frames waiting to be indexed, by id and in log order.

The builder sets private frames aside while the vault is locked (or until no
committed record waits) and indexes them oldest first, a chunk at a time;
read-your-writes needs the oldest pending seq after every build step.  With
tens of thousands pending (a burst of private puts), sorting or scanning them
at every step made indexing them quadratic; here both are O(log n).
"""

from __future__ import annotations

from sortedcontainers import SortedDict

from memoryd.storage.log import RecordLocation

Entry = tuple[int, RecordLocation]  # (seq, where its FRAME_PUT record is)


class PendingFrames:
    """A mapping frame id -> (seq, location) that also knows its entries by seq."""

    __slots__ = ("_by_id", "_by_seq")

    def __init__(self) -> None:
        self._by_id: dict[str, Entry] = {}
        self._by_seq = SortedDict()  # seq -> frame id

    def __setitem__(self, frame_id: str, entry: Entry) -> None:
        self.pop(frame_id, None)
        self._by_id[frame_id] = entry
        self._by_seq[entry[0]] = frame_id

    def pop(self, frame_id: str, default: Entry | None = None) -> Entry | None:
        """Remove ``frame_id``; its entry, or ``default`` if it was not pending."""
        entry = self._by_id.pop(frame_id, None)
        if entry is None:
            return default
        del self._by_seq[entry[0]]
        return entry

    def __contains__(self, frame_id: object) -> bool:
        return frame_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def oldest(self, count: int) -> list[Entry]:
        """Up to ``count`` entries, lowest seq first."""
        by_id = self._by_id
        return [by_id[frame_id] for frame_id in self._by_seq.values()[:count]]

    def min_seq(self) -> int | None:
        """The lowest pending seq, None when nothing is pending."""
        return int(self._by_seq.keys()[0]) if self._by_seq else None
