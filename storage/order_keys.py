"""Order keys: a sorted set of distinct ints, shaped for keys that arrive in order.

The frame table keeps three of these per frame (all frames, by namespace, by
namespace and kind) and adds to each on every put.  Its keys are
``timestamp_ms * SEQ_SPACE + seq``, and puts come in time order, so nearly
every new key is greater than every key present.  The layout is that of
sortedcontainers' SortedList (sorted sublists of bounded length, plus the
largest key of each), cut to the operations the table needs; that usual add is
an append to the last sublist, with no search (about 160 ns against 330 ns
for SortedList.add).  A key that lands elsewhere (an import with an old
timestamp) is placed by bisection, splitting a full sublist in two.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from itertools import chain, islice

# Longest sublist: an out-of-order add or a remove moves at most this many
# pointers; in-order adds fill sublists to exactly this.
SUBLIST_KEYS_MAX = 1000
# A sublist shorter than this after a remove is merged with a neighbour when
# both fit in one, so that deletions cannot leave many near-empty sublists.
SUBLIST_KEYS_MERGE = SUBLIST_KEYS_MAX // 4
assert 0 < SUBLIST_KEYS_MERGE < SUBLIST_KEYS_MAX


class OrderKeys:
    """Distinct int keys, kept sorted; ``irange`` walks them in either direction."""

    __slots__ = ("_len", "_lists", "_maxes")

    def __init__(self) -> None:
        self._lists: list[list[int]] = []  # sorted, non-empty, each after the one before
        self._maxes: list[int] = []  # the last key of each sublist
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __contains__(self, key: int) -> bool:
        pos = bisect_left(self._maxes, key)
        if pos == len(self._maxes):
            return False
        keys = self._lists[pos]
        return keys[bisect_left(keys, key)] == key

    def add(self, key: int) -> None:
        """Add ``key``, which must not be present."""
        maxes = self._maxes
        if maxes and key > maxes[-1]:  # the usual case: after every key present
            last = self._lists[-1]
            if len(last) < SUBLIST_KEYS_MAX:
                last.append(key)
                maxes[-1] = key
            else:
                self._lists.append([key])
                maxes.append(key)
        elif maxes:
            self._insert(key)
        else:
            self._lists.append([key])
            maxes.append(key)
        self._len += 1

    def _insert(self, key: int) -> None:
        pos = bisect_left(self._maxes, key)
        keys = self._lists[pos]
        insort(keys, key)
        if len(keys) > SUBLIST_KEYS_MAX:
            half = len(keys) // 2
            self._lists.insert(pos + 1, keys[half:])
            del keys[half:]
            self._maxes.insert(pos, keys[-1])

    def remove(self, key: int) -> None:
        """Remove ``key``; KeyError if it is not present."""
        maxes = self._maxes
        pos = bisect_left(maxes, key)
        if pos == len(maxes):
            raise KeyError(key)
        keys = self._lists[pos]
        index = bisect_left(keys, key)
        if keys[index] != key:
            raise KeyError(key)
        del keys[index]
        self._len -= 1
        if not keys:
            del self._lists[pos]
            del maxes[pos]
            return
        maxes[pos] = keys[-1]
        if len(keys) < SUBLIST_KEYS_MERGE:
            self._merge(pos)

    def _merge(self, pos: int) -> None:
        """Join the short sublist at ``pos`` with a neighbour when the two fit in one."""
        lists = self._lists
        for left in (pos, pos - 1):
            fits = (
                left >= 0
                and left + 1 < len(lists)
                and len(lists[left]) + len(lists[left + 1]) <= SUBLIST_KEYS_MAX
            )
            if fits:
                lists[left].extend(lists[left + 1])
                del lists[left + 1]
                del self._maxes[left]
                return

    def irange(self, low: int | None, high: int | None, *, reverse: bool) -> Iterator[int]:
        """Keys from ``low`` to ``high``, both included (None: unbounded), ascending
        unless ``reverse``.  Do not add or remove while iterating."""
        lists = self._lists
        maxes = self._maxes
        first = 0 if low is None else bisect_left(maxes, low)
        last = len(maxes) - 1 if high is None else min(bisect_left(maxes, high), len(maxes) - 1)
        if first > last:
            return iter(())
        start = 0 if low is None else bisect_left(lists[first], low)
        stop = len(lists[last]) if high is None else bisect_right(lists[last], high)
        if reverse:
            return _descending(lists, first, start, last, stop)
        return _ascending(lists, first, start, last, stop)

    def _check(self) -> None:
        """Verify every invariant (tests call this after each change)."""
        lists = self._lists
        assert len(lists) == len(self._maxes)
        assert self._len == sum(len(keys) for keys in lists)
        previous: int | None = None
        for keys, largest in zip(lists, self._maxes, strict=True):
            assert 0 < len(keys) <= SUBLIST_KEYS_MAX
            assert keys[-1] == largest
            for key in keys:
                assert previous is None or previous < key, (previous, key)
                previous = key


def _ascending(
    lists: list[list[int]], first: int, start: int, last: int, stop: int
) -> Iterator[int]:
    # Iterators over the sublists themselves, not copies: a page takes few keys.
    if first == last:
        return islice(lists[first], start, stop)
    return chain(
        islice(lists[first], start, None),
        chain.from_iterable(lists[first + 1 : last]),
        islice(lists[last], stop),
    )


def _descending(
    lists: list[list[int]], first: int, start: int, last: int, stop: int
) -> Iterator[int]:
    head, tail = lists[first], lists[last]
    if first == last:
        return islice(reversed(head), len(head) - stop, len(head) - start)
    return chain(
        islice(reversed(tail), len(tail) - stop, None),
        chain.from_iterable(map(reversed, reversed(lists[first + 1 : last]))),
        islice(reversed(head), len(head) - start),
    )
