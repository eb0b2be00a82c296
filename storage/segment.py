"""Segment files: listing them, creating one, and reading records out of one.

A segment is a file of records laid end to end, named after the seq of its
first record (layout.py).  This module knows nothing about the hash chain or
about which segment is being written; log.py and recovery.py do.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from memoryd.storage.errors import LogCorruptionError
from memoryd.storage.fsio import pread_exact
from memoryd.storage.layout import parse_segment_file_name, segment_file_name
from memoryd.storage.record import (
    RECORD_HEADER_BYTES,
    Record,
    RecordError,
    decode_record,
    record_length_at,
)

# Sequential reads fetch this much per pread: large enough that syscalls do not
# dominate a replay, small enough that a reader's buffer stays modest.
READ_CHUNK_BYTES = 1024 * 1024
# read_at keeps this many segment files open for readers.
READ_FILES_MAX = 64


@dataclass(frozen=True, slots=True)
class SegmentFile:
    """One segment file as found on disk."""

    first_seq: int
    path: Path
    size: int


def list_segments(log_dir: Path) -> tuple[list[SegmentFile], list[str]]:
    """The segment files of ``log_dir`` in seq order, and the names of any other entries."""
    segments: list[SegmentFile] = []
    others: list[str] = []
    with os.scandir(log_dir) as entries:
        for entry in entries:
            first_seq = parse_segment_file_name(entry.name)
            if first_seq is None or not entry.is_file(follow_symlinks=False):
                others.append(entry.name)
                continue
            segments.append(SegmentFile(first_seq, Path(entry.path), entry.stat().st_size))
    segments.sort(key=lambda s: s.first_seq)
    others.sort()
    return segments, others


def segment_path(log_dir: Path, first_seq: int) -> Path:
    return log_dir / segment_file_name(first_seq)


def iter_segment_records(path: Path, fd: int, start: int, end: int) -> Iterator[tuple[int, Record]]:
    """Yield ``(offset, record)`` for every record in bytes [start, end) of a segment.

    ``start`` must be a record boundary and ``end`` the end of committed data.
    Every record's CRC is verified; a bad or cut record raises
    LogCorruptionError naming this segment and the record's offset.
    """
    pos = start
    need = 0  # bytes the record at ``pos`` needs, once known to exceed a chunk
    while pos < end:
        want = min(end - pos, max(READ_CHUNK_BYTES, need))
        buf = pread_exact(fd, want, pos)
        size = len(buf)
        off = 0
        try:
            while size - off >= RECORD_HEADER_BYTES:
                total = record_length_at(buf, off)
                if size - off < total:
                    need = total
                    break
                yield pos + off, decode_record(buf, off)
                off += total
            else:
                need = RECORD_HEADER_BYTES
        except RecordError as exc:
            raise LogCorruptionError(path, pos + off, exc.reason, exc.detail) from None
        if off == 0:
            if size == want < end - pos:
                continue  # one record bigger than a chunk: read it whole
            raise LogCorruptionError(
                path, pos, "truncated", f"committed data ends {size} bytes into a record"
            )
        pos += off
        need = 0


class _OpenFile:
    __slots__ = ("evicted", "fd", "users")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.users = 0
        self.evicted = False


class SegmentReadFiles:
    """Read-only descriptors for segment files, shared by reader threads.

    Readers only ``os.pread`` them, so sharing one descriptor between threads
    never shares a file position.  At most READ_FILES_MAX stay open when idle;
    a descriptor evicted while a reader uses it is closed when that reader
    releases it, never under it.
    """

    def __init__(self, log_dir: Path, files_max: int = READ_FILES_MAX) -> None:
        assert files_max >= 1
        self._log_dir = log_dir
        self._files_max = files_max
        self._lock = threading.Lock()
        self._open: OrderedDict[int, _OpenFile] = OrderedDict()

    def acquire(self, first_seq: int) -> _OpenFile:
        """A descriptor for segment ``first_seq``; pass it to ``release`` when done."""
        with self._lock:
            entry = self._open.get(first_seq)
            if entry is not None:
                self._open.move_to_end(first_seq)
                entry.users += 1
                return entry
        # Open outside the lock: a slow filesystem must not stall other readers.
        fd = os.open(segment_path(self._log_dir, first_seq), os.O_RDONLY)
        with self._lock:
            entry = self._open.get(first_seq)
            if entry is None:
                entry = _OpenFile(fd)
                self._open[first_seq] = entry
                self._evict_idle()
            else:
                os.close(fd)  # another reader opened it meanwhile
            entry.users += 1
            return entry

    def release(self, entry: _OpenFile) -> None:
        with self._lock:
            entry.users -= 1
            if entry.evicted and entry.users == 0:
                os.close(entry.fd)

    def close(self) -> None:
        """Close every descriptor; readers still holding one close it on release."""
        with self._lock:
            for entry in self._open.values():
                entry.evicted = True
                if entry.users == 0:
                    os.close(entry.fd)
            self._open.clear()

    def __len__(self) -> int:
        return len(self._open)

    def _evict_idle(self) -> None:
        excess = len(self._open) - self._files_max
        if excess <= 0:
            return
        for first_seq in list(self._open)[:excess]:
            entry = self._open.pop(first_seq)
            entry.evicted = True
            if entry.users == 0:
                os.close(entry.fd)
