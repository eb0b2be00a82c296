"""The frame table: where every live frame is, and in what order, without scanning the log.

The table is derived state, folded from committed records in log order
(``apply_put`` / ``apply_delete``) and rebuilt from the log at start.  It holds,
per live frame, only what locating and ordering need: its id, its record's
location, its timestamp, namespace and kind.  Contents stay in the log and are
read with one ``pread`` per frame.

Memory: per frame, one dict entry (id -> seq) plus a slot tuple, and one key
in each of three sorted lists (global, namespace, namespace+kind).

Chronological keys pack ``(timestamp_ms, seq)`` into one int,
``timestamp_ms * SEQ_SPACE + seq``, so that sorted lists hold plain ints and
frames with the same millisecond keep their log order.  Cursors handed to
clients are those keys, as decimal strings.
"""

from __future__ import annotations

import heapq
import itertools
import operator
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from sortedcontainers import SortedList

SEQ_SPACE = 1 << 40  # sequence numbers stay below ~1.1e12; checked in apply_put
# 9999-12-31T23:59:59.999Z: the last instant ISO-8601 dates name.  Keys are
# Python ints (about 88 bits), so nothing else bounds them.
TIMESTAMP_MS_MAX = 253_402_300_799_999


class FrameSlot(NamedTuple):
    """Where one live frame is: its record's segment, offset and length, and its order key."""

    seq: int
    segment: int
    offset: int
    length: int
    key: int
    namespace: str
    kind: str


class CursorError(ValueError):
    """A cursor string that this table did not hand out."""


@dataclass(frozen=True, slots=True)
class SlotPage:
    """A page of slots and the cursor that continues after it (None when exhausted)."""

    slots: list[FrameSlot]
    next_cursor: str | None


def _pick(values: list[int], positions: npt.NDArray[np.int64]) -> list[int]:
    """``[values[i] for i in positions]``, at C speed."""
    if positions.shape[0] == 0:
        return []
    if positions.shape[0] == 1:
        return [values[int(positions[0])]]
    return list(operator.itemgetter(*positions.tolist())(values))


def order_key(timestamp_ms: int, seq: int) -> int:
    return timestamp_ms * SEQ_SPACE + seq


# Cursors are order keys in decimal: today's keys already have 25 digits, the largest 27.
CURSOR_DIGITS_MAX = len(str(order_key(TIMESTAMP_MS_MAX, SEQ_SPACE - 1)))


def parse_cursor(cursor: str) -> int:
    """The order key a cursor names; raises CursorError if it is not one."""
    if not cursor.isascii() or not cursor.isdigit() or len(cursor) > CURSOR_DIGITS_MAX:
        raise CursorError(f"invalid cursor {cursor[:32]!r}")
    return int(cursor)


class FrameTable:
    """Live frames by id and by time.  Single writer; readers see committed state only."""

    def __init__(self) -> None:
        self._by_id: dict[str, FrameSlot] = {}
        self._all = SortedList()
        self._by_namespace: dict[str, SortedList] = {}
        self._by_namespace_kind: dict[tuple[str, str], SortedList] = {}
        self._key_to_id: dict[int, str] = {}
        self.frames_deleted = 0

    @classmethod
    def from_columns(
        cls,
        ids: list[str],
        seqs: npt.NDArray[np.int64],
        timestamps_ms: npt.NDArray[np.int64],
        namespace_codes: npt.NDArray[np.int64],
        namespace_names: list[str],
        kind_codes: npt.NDArray[np.int64],
        kind_names: list[str],
        locations: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]],
        frames_deleted: int,
    ) -> FrameTable:
        """A table holding exactly these live frames (arrays aligned with ``ids``, distinct).

        What a checkpoint restores: the same state ``apply_put`` of each frame in
        seq order would give, built in bulk: the order by (time, seq) is found by
        numpy, and each sorted list is made from keys already in order.
        """
        table = cls()
        n = len(ids)
        seq_list = seqs.tolist()
        keys = [t * SEQ_SPACE + s for t, s in zip(timestamps_ms.tolist(), seq_list, strict=True)]
        namespaces = [namespace_names[c] for c in namespace_codes.tolist()]
        kinds = [kind_names[c] for c in kind_codes.tolist()]
        segments, offsets, lengths = (column.tolist() for column in locations)
        slots = list(
            map(
                FrameSlot._make,
                zip(seq_list, segments, offsets, lengths, keys, namespaces, kinds, strict=True),
            )
        )
        table._by_id = dict(zip(ids, slots, strict=True))
        table._key_to_id = dict(zip(keys, ids, strict=True))
        if len(table._by_id) != n:
            raise ValueError("frame ids are not distinct")
        order = np.lexsort((seqs, timestamps_ms))
        table._all = SortedList(_pick(keys, order))
        ns_sorted = namespace_codes[order]
        for code in np.unique(namespace_codes).tolist():
            table._by_namespace[namespace_names[code]] = SortedList(
                _pick(keys, order[ns_sorted == code])
            )
        pair = namespace_codes.astype(np.int64) * (len(kind_names) + 1) + kind_codes
        pair_sorted = pair[order]
        for code in np.unique(pair).tolist():
            ns_code, kind_code = divmod(code, len(kind_names) + 1)
            table._by_namespace_kind[(namespace_names[ns_code], kind_names[kind_code])] = (
                SortedList(_pick(keys, order[pair_sorted == code]))
            )
        table.frames_deleted = frames_deleted
        return table

    # -- folding committed events -------------------------------------------------

    def apply_put(
        self,
        frame_id: str,
        seq: int,
        timestamp_ms: int,
        namespace: str,
        kind: str,
        segment: int,
        offset: int,
        length: int,
    ) -> bool:
        """Record a committed FRAME_PUT; False (and no change) for a live duplicate."""
        by_id = self._by_id
        if frame_id in by_id:
            return False
        assert 0 < seq < SEQ_SPACE, seq
        assert 0 <= timestamp_ms <= TIMESTAMP_MS_MAX, timestamp_ms
        key = timestamp_ms * SEQ_SPACE + seq  # order_key, inline: this runs once per put
        by_id[frame_id] = FrameSlot(seq, segment, offset, length, key, namespace, kind)
        self._key_to_id[key] = frame_id
        self._all.add(key)
        keys = self._by_namespace.get(namespace)
        if keys is None:
            keys = self._by_namespace[namespace] = SortedList()
        keys.add(key)
        keys = self._by_namespace_kind.get((namespace, kind))
        if keys is None:
            keys = self._by_namespace_kind[(namespace, kind)] = SortedList()
        keys.add(key)
        return True

    def apply_delete(self, frame_id: str) -> bool:
        """Record a committed FRAME_DELETE; returns whether a live frame was removed."""
        slot = self._by_id.pop(frame_id, None)
        if slot is None:
            return False
        del self._key_to_id[slot.key]
        self._all.remove(slot.key)
        self._by_namespace[slot.namespace].remove(slot.key)
        self._by_namespace_kind[(slot.namespace, slot.kind)].remove(slot.key)
        self.frames_deleted += 1
        return True

    # -- reads ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, frame_id: object) -> bool:
        return frame_id in self._by_id

    def get(self, frame_id: str) -> FrameSlot | None:
        return self._by_id.get(frame_id)

    def namespaces(self) -> dict[str, int]:
        """Live frame count per namespace."""
        return {ns: len(keys) for ns, keys in self._by_namespace.items() if keys}

    def recent(
        self,
        *,
        namespace: str | None,
        kind: str | None,
        limit: int,
        cursor: str | None,
        hidden: Callable[[str], bool] | None = None,
    ) -> SlotPage:
        """Newest first; ``cursor`` continues strictly before the last key of the previous page.

        Frames whose id ``hidden`` holds true for (expired ones) are skipped.
        """
        before = parse_cursor(cursor) - 1 if cursor is not None else None
        keys = self._ordered_keys(namespace, kind, None, before, reverse=True)
        return self._page(keys, limit, hidden)

    def range(
        self,
        *,
        since_ms: int | None,
        until_ms: int | None,
        namespace: str | None,
        kind: str | None,
        limit: int,
        cursor: str | None,
        hidden: Callable[[str], bool] | None = None,
    ) -> SlotPage:
        """Oldest first, ``since_ms`` inclusive and ``until_ms`` exclusive; skips ``hidden``."""
        low = order_key(since_ms, 0) if since_ms is not None else None
        if cursor is not None:
            after = parse_cursor(cursor) + 1
            low = after if low is None else max(low, after)
        high = order_key(until_ms, 0) - 1 if until_ms is not None else None
        keys = self._ordered_keys(namespace, kind, low, high, reverse=False)
        return self._page(keys, limit, hidden)

    def _ordered_keys(
        self,
        namespace: str | None,
        kind: str | None,
        low: int | None,
        high: int | None,
        *,
        reverse: bool,
    ) -> Iterator[int]:
        lists: list[SortedList]
        if namespace is not None and kind is not None:
            lists = [self._by_namespace_kind.get((namespace, kind), SortedList())]
        elif namespace is not None:
            lists = [self._by_namespace.get(namespace, SortedList())]
        elif kind is not None:
            # Kind alone: merge that kind's list from every namespace rather than
            # filtering the global list, so a rare kind never costs a long walk.
            lists = [keys for (_ns, k), keys in self._by_namespace_kind.items() if k == kind]
        else:
            lists = [self._all]
        iterators: list[Iterator[int]] = [keys.irange(low, high, reverse=reverse) for keys in lists]
        if len(iterators) == 1:
            return iterators[0]
        return heapq.merge(*iterators, reverse=reverse)

    def _page(
        self, keys: Iterable[int], limit: int, hidden: Callable[[str], bool] | None = None
    ) -> SlotPage:
        if hidden is not None:
            key_to_id = self._key_to_id
            keys = (key for key in keys if not hidden(key_to_id[key]))
        taken = list(itertools.islice(keys, limit + 1))
        more = len(taken) > limit
        taken = taken[:limit]
        slots = [self._by_id[self._key_to_id[key]] for key in taken]
        next_cursor = str(taken[-1]) if more and taken else None
        return SlotPage(slots, next_cursor)

    def id_at_key(self, key: int) -> str:
        return self._key_to_id[key]

    def _check(self) -> None:
        """Verify every invariant; cheap enough for tests to call after each change."""
        assert len(self._by_id) == len(self._all) == len(self._key_to_id)
        assert sum(len(v) for v in self._by_namespace.values()) == len(self._all)
        assert sum(len(v) for v in self._by_namespace_kind.values()) == len(self._all)
        for frame_id, slot in self._by_id.items():
            assert self._key_to_id[slot.key] == frame_id
            assert slot.key in self._by_namespace[slot.namespace]
            assert slot.key in self._by_namespace_kind[(slot.namespace, slot.kind)]
