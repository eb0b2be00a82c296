"""The append-only event log: a directory of segment files (see FORMAT.md).

``EventLog`` is the small interface the daemon uses, so that another log (a
replicated one, say) could stand in later; ``FileLog`` implements it on local
files.

Threads: exactly one thread calls ``append``, ``sync`` and ``close`` (the
daemon's commit writer).  ``read_at``, ``read_from`` and ``follow`` may run
concurrently on other threads: they use their own descriptors and ``os.pread``
only, and see only records whose ``append`` has returned (committed records).
"""

from __future__ import annotations

import bisect
import contextlib
import enum
import errno
import hashlib
import os
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

from memoryd.storage.errors import LogCorruptionError
from memoryd.storage.fsio import fsync_dir, pread_exact, pwrite_all
from memoryd.storage.layout import QUARANTINE_DIR_NAME
from memoryd.storage.record import Record, RecordError, decode_record, encode_record
from memoryd.storage.recovery import RecoveryReport, TrustedPrefix, recover_log
from memoryd.storage.segment import (
    READ_FILES_MAX,
    SegmentFile,
    SegmentReadFiles,
    iter_segment_records,
    list_segments,
    segment_path,
)

SEGMENT_BYTES_MAX_DEFAULT = 64 * 1024 * 1024
RELAXED_SYNC_INTERVAL_MS_DEFAULT = 50


# These three are named tuples rather than frozen dataclasses: as immutable, but
# made in under half the time, and ``append`` and replay make one per record.


class RecordLocation(NamedTuple):
    """Where a record's bytes are: segment (its first seq, i.e. its name), offset, length."""

    segment: int
    offset: int
    length: int


class AppendedRecord(NamedTuple):
    """A record that ``append`` committed, and where it is (flat: one object per record)."""

    seq: int
    timestamp_ms: int
    segment: int
    offset: int
    length: int

    @property
    def location(self) -> RecordLocation:
        return RecordLocation(self.segment, self.offset, self.length)


class LogEntry(NamedTuple):
    """A record read back from the log, and where it is."""

    record: Record
    location: RecordLocation


class Durability(enum.StrEnum):
    """When ``append`` returns relative to the disk (FORMAT.md, "Durability")."""

    FSYNC = "fsync"  # after fdatasync: an acknowledged record survives power loss
    RELAXED = "relaxed"  # after write: at most the last interval's records can be lost


Event = tuple[int, int, bytes]  # (record_type, timestamp_ms, payload)


class EventLog(Protocol):
    """The log as the daemon sees it."""

    @property
    def last_seq(self) -> int:
        """The seq of the last committed record, 0 for an empty log."""
        ...

    def append(self, events: Sequence[Event]) -> list[AppendedRecord]:
        """Commit ``events`` as consecutive records, all or nothing (group commit)."""
        ...

    def sync(self) -> None:
        """Make every committed record durable now."""
        ...

    def read_from(self, seq: int, start: RecordLocation | None = None) -> Iterator[LogEntry]:
        """Every committed record with seq >= ``seq``, in order.

        ``start``, when given, is where reading may begin: the position just
        past the last record a follower has read (``offset`` + ``length`` of
        its location), so that it resumes without rescanning the segment.
        """
        ...

    def read_at(self, location: RecordLocation) -> Record:
        """The record at ``location``, CRC verified."""
        ...

    def follow(
        self, after_seq: int, poll_interval_s: float, should_stop: Callable[[], bool]
    ) -> Iterator[LogEntry]:
        """Records after ``after_seq`` as they are committed, until ``should_stop()``."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters and sizes, for the daemon's stats."""
        ...

    def close(self) -> None:
        """Sync and release the log's files."""
        ...


class _View(NamedTuple):
    """What readers may see: committed bytes only.  Replaced whole, never mutated."""

    sealed: tuple[tuple[int, int], ...]  # (first_seq, bytes) of every full segment, in order
    active_first_seq: int  # 0 before the first segment exists
    active_bytes: int
    last_seq: int

    def segments(self) -> list[tuple[int, int]]:
        if self.active_first_seq == 0:
            return list(self.sealed)
        return [*self.sealed, (self.active_first_seq, self.active_bytes)]


class _Run:
    """The records of one append that go into one segment."""

    __slots__ = ("chunks", "end", "first_seq", "new", "start")

    def __init__(self, first_seq: int, start: int, new: bool) -> None:
        self.first_seq = first_seq
        self.start = start
        self.end = start
        self.new = new
        self.chunks: list[bytes] = []


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class FileLog:
    """The log on local files.  Make one with ``FileLog.open``."""

    @classmethod
    def open(
        cls,
        log_dir: Path,
        *,
        segment_bytes_max: int = SEGMENT_BYTES_MAX_DEFAULT,
        durability: Durability = Durability.FSYNC,
        relaxed_sync_interval_ms: int = RELAXED_SYNC_INTERVAL_MS_DEFAULT,
        now_ms: Callable[[], int] = monotonic_ms,
        fault_injector: Callable[[str], None] | None = None,
        quarantine_dir: Path | None = None,
        trusted: TrustedPrefix | None = None,
    ) -> tuple[FileLog, RecoveryReport]:
        """Recover the log in ``log_dir`` (creating it if missing), then open it for appends.

        ``quarantine_dir`` (default: ``quarantine`` beside ``log_dir``) receives
        a torn tail.  ``now_ms`` times relaxed mode's syncs.  ``fault_injector``
        is a test seam, called with "write" or "sync" just before each write or
        sync syscall of ``append``/``sync``; it may raise OSError.  ``trusted`` (a
        checkpoint's view of the log) spares verifying a prefix that still matches
        it (see recovery.py).  Raises
        LogCorruptionError (having changed nothing) if the log is corrupt.
        """
        if segment_bytes_max < 1:
            raise ValueError(f"segment_bytes_max must be positive, not {segment_bytes_max}")
        if relaxed_sync_interval_ms < 0:
            raise ValueError(f"relaxed_sync_interval_ms must be >= 0: {relaxed_sync_interval_ms}")
        if quarantine_dir is None:
            quarantine_dir = log_dir.parent / QUARANTINE_DIR_NAME
        report = recover_log(log_dir, quarantine_dir, trusted)
        segments, _others = list_segments(log_dir)
        log = cls(
            log_dir,
            segments,
            report,
            segment_bytes_max=segment_bytes_max,
            durability=Durability(durability),
            relaxed_sync_interval_ms=relaxed_sync_interval_ms,
            now_ms=now_ms,
            fault_injector=fault_injector,
        )
        return log, report

    def __init__(
        self,
        log_dir: Path,
        segments: list[SegmentFile],
        recovered: RecoveryReport,
        *,
        segment_bytes_max: int,
        durability: Durability,
        relaxed_sync_interval_ms: int,
        now_ms: Callable[[], int],
        fault_injector: Callable[[str], None] | None,
    ) -> None:
        self._log_dir = log_dir
        self._segment_bytes_max = segment_bytes_max
        self._fsync_each_append = durability is Durability.FSYNC
        self._relaxed_sync_interval_ms = relaxed_sync_interval_ms
        self._now_ms = now_ms
        self._fault_injector = fault_injector
        self._last_seq = recovered.last_seq
        self._last_hash = recovered.last_hash
        self._sealed = tuple((s.first_seq, s.size) for s in segments[:-1])
        self._sealed_bytes = sum(s.size for s in segments[:-1])
        self._active_fd: int | None = None
        self._active_first_seq = 0
        self._active_bytes = 0
        if segments:
            active = segments[-1]
            self._active_fd = os.open(active.path, os.O_WRONLY)
            self._active_first_seq = active.first_seq
            self._active_bytes = active.size
        self._unsynced = False
        self._last_sync_ms = now_ms()
        self._failure: OSError | None = None
        self._closed = False
        self._read_files = SegmentReadFiles(log_dir)
        self._records_appended = 0
        self._bytes_written = 0
        self._syncs = 0
        self._view = self._make_view()

    # --- the writer's side: one thread only ---

    @property
    def last_seq(self) -> int:
        return self._view.last_seq

    def append(self, events: Sequence[Event]) -> list[AppendedRecord]:
        """Commit ``events`` as consecutive records: one write (per segment touched) and,
        in FSYNC mode, one fdatasync before returning.

        All or nothing: when a write or sync fails, the segment is truncated
        back to its size before the call, segments this call created are
        removed, and the OSError is re-raised with the log as it was.  An
        invalid event raises RecordError before anything is written.
        """
        self._require_writable()
        if not events:
            return []
        runs, appended, last_hash = self._encode(events)
        bytes_before = self._active_bytes
        unsynced_before = self._unsynced
        created: list[tuple[int, int]] = []
        try:
            self._write_runs(runs, created)
        except OSError:
            self._undo(created, bytes_before, unsynced_before)
            raise
        self._publish(runs, created, appended[-1].seq, last_hash)
        return appended

    def sync(self) -> None:
        """fdatasync the segment being written, if anything in it is not yet synced."""
        self._require_writable()
        if self._unsynced and self._active_fd is not None:
            self._sync_fd(self._active_fd)

    def close(self) -> None:
        """Sync what is unsynced and close every file.  Idempotent."""
        if self._closed:
            return
        try:
            if self._failure is None:
                self.sync()
        finally:
            self._closed = True
            if self._active_fd is not None:
                os.close(self._active_fd)
                self._active_fd = None
            self._read_files.close()

    def stats(self) -> dict[str, int]:
        view = self._view
        return {
            "segments": len(view.sealed) + (1 if view.active_first_seq else 0),
            "log_bytes": self._sealed_bytes + view.active_bytes,
            "last_seq": view.last_seq,
            "records_appended": self._records_appended,
            "bytes_written": self._bytes_written,
            "syncs": self._syncs,
            "read_files_open": len(self._read_files),
            "read_files_max": READ_FILES_MAX,
        }

    def _encode(self, events: Sequence[Event]) -> tuple[list[_Run], list[AppendedRecord], bytes]:
        """Encode and chain every record, and split them into per-segment runs (no I/O)."""
        # Locals: this loop is the per-record cost of every put.
        encode = encode_record
        sha256 = hashlib.sha256
        appended_record = AppendedRecord
        bytes_max = self._segment_bytes_max
        seq = self._last_seq
        prev_hash = self._last_hash
        if self._active_fd is None:
            run = _Run(seq + 1, 0, new=True)
        else:
            run = _Run(self._active_first_seq, self._active_bytes, new=False)
        runs = [run]
        chunks = run.chunks
        segment = run.first_seq
        offset = run.start
        appended: list[AppendedRecord] = []
        for record_type, timestamp_ms, payload in events:
            seq += 1
            raw = encode(record_type, seq, timestamp_ms, prev_hash, payload)
            length = len(raw)
            # Roll over before a record that would overflow a non-empty segment; a
            # record bigger than a whole segment still gets a segment of its own.
            if offset + length > bytes_max and offset > 0:
                run.end = offset
                run = _Run(seq, 0, new=True)
                runs.append(run)
                chunks = run.chunks
                segment = seq
                offset = 0
            chunks.append(raw)
            appended.append(appended_record(seq, timestamp_ms, segment, offset, length))
            offset += length
            prev_hash = sha256(raw).digest()
        run.end = offset
        if not runs[0].chunks:
            del runs[0]  # the first record rolled over: nothing goes to the old segment
        return runs, appended, prev_hash

    def _write_runs(self, runs: list[_Run], created: list[tuple[int, int]]) -> None:
        fd = self._active_fd
        for run in runs:
            if run.new:
                if fd is not None and self._unsynced:
                    # Relaxed mode too: only the last segment may ever end torn.
                    self._sync_fd(fd)
                fd = self._create_segment(run.first_seq, created)
            assert fd is not None
            self._inject("write")
            pwrite_all(fd, b"".join(run.chunks), run.start)
            self._unsynced = True
            if self._fsync_each_append:
                self._sync_fd(fd)
        assert fd is not None
        if self._unsynced and self._now_ms() - self._last_sync_ms > self._relaxed_sync_interval_ms:
            self._sync_fd(fd)

    def _create_segment(self, first_seq: int, created: list[tuple[int, int]]) -> int:
        path = segment_path(self._log_dir, first_seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        created.append((first_seq, fd))
        self._inject("sync")
        os.fsync(fd)
        self._inject("sync")
        fsync_dir(self._log_dir)
        return fd

    def _sync_fd(self, fd: int) -> None:
        self._inject("sync")
        os.fdatasync(fd)
        self._unsynced = False
        self._last_sync_ms = self._now_ms()
        self._syncs += 1

    def _undo(
        self, created: list[tuple[int, int]], bytes_before: int, unsynced_before: bool
    ) -> None:
        """Put the files back as they were before a failed append.

        The truncation is synced too: bytes of a failed append must not come
        back after a power loss as records nobody acknowledged.  If undoing
        fails as well, the log is left refusing writes (``_failure``) rather
        than appending after bytes it could not remove.
        """
        try:
            for first_seq, fd in created:
                os.close(fd)
                segment_path(self._log_dir, first_seq).unlink(missing_ok=True)
            if created:
                fsync_dir(self._log_dir)
            if self._active_fd is not None:
                os.ftruncate(self._active_fd, bytes_before)
                os.fdatasync(self._active_fd)
        except OSError as exc:
            self._failure = exc
            return
        self._unsynced = unsynced_before

    def _publish(
        self, runs: list[_Run], created: list[tuple[int, int]], last_seq: int, last_hash: bytes
    ) -> None:
        """Adopt a successful append: seal full segments, then show readers the new records."""
        if created:
            sealed = list(self._sealed)
            if self._active_fd is not None:
                final_bytes = runs[0].end if not runs[0].new else self._active_bytes
                sealed.append((self._active_first_seq, final_bytes))
                self._sealed_bytes += final_bytes
                os.close(self._active_fd)
            new_runs = runs[-len(created) :]
            for (first_seq, fd), run in zip(created[:-1], new_runs[:-1], strict=True):
                sealed.append((first_seq, run.end))
                self._sealed_bytes += run.end
                os.close(fd)
            self._sealed = tuple(sealed)
            self._active_first_seq, self._active_fd = created[-1]
        self._active_bytes = runs[-1].end
        self._records_appended += last_seq - self._last_seq
        self._bytes_written += sum(run.end - run.start for run in runs)
        self._last_seq = last_seq
        self._last_hash = last_hash
        self._view = self._make_view()

    def _make_view(self) -> _View:
        return _View(self._sealed, self._active_first_seq, self._active_bytes, self._last_seq)

    def _inject(self, point: str) -> None:
        if self._fault_injector is not None:
            self._fault_injector(point)

    def _require_writable(self) -> None:
        if self._closed:
            raise ValueError("the log is closed")
        if self._failure is not None:
            raise OSError(
                errno.EIO,
                f"the log refuses writes: a failed append could not be undone ({self._failure})",
            )

    # --- the readers' side: any thread ---

    def read_at(self, location: RecordLocation) -> Record:
        """The record at ``location`` (one pread), CRC verified; LogCorruptionError if bad."""
        try:
            handle = self._read_files.acquire(location.segment)
        except FileNotFoundError:
            raise self._damaged(location, "missing_segment", "the segment file is gone") from None
        try:
            data = pread_exact(handle.fd, location.length, location.offset)
        finally:
            self._read_files.release(handle)
        try:
            record = decode_record(data)
        except RecordError as exc:
            raise self._damaged(location, exc.reason, exc.detail) from None
        if record.size != location.length:
            raise self._damaged(
                location, "bad_length", f"record of {record.size} bytes, not {location.length}"
            )
        return record

    def _damaged(self, location: RecordLocation, reason: str, detail: str) -> LogCorruptionError:
        # The segment's path is built only here, for an error: a Path costs more than
        # the pread itself, and a search reads ten records or more per answer.
        path = segment_path(self._log_dir, location.segment)
        return LogCorruptionError(path, location.offset, reason, detail)

    def read_from(self, seq: int, start: RecordLocation | None = None) -> Iterator[LogEntry]:
        """Every record with seq >= ``seq`` committed when this is called, in order.

        ``start`` (see EventLog.read_from) skips to a known position: reading
        begins at ``start.offset + start.length`` of segment ``start.segment``.
        """
        segments = self._view.segments()
        firsts = [first for first, _ in segments]
        if start is not None:
            index = bisect.bisect_left(firsts, start.segment)
            if index < len(firsts) and firsts[index] == start.segment:
                return self._entries(segments, index, start.offset + start.length, seq)
        index = max(0, bisect.bisect_right(firsts, seq) - 1)
        return self._entries(segments, index, 0, seq)

    def follow(
        self, after_seq: int, poll_interval_s: float, should_stop: Callable[[], bool]
    ) -> Iterator[LogEntry]:
        """Yield records after ``after_seq`` as they are committed, polling every
        ``poll_interval_s`` once caught up; return when ``should_stop()`` is true
        (checked before each round of reading)."""
        next_seq = after_seq + 1
        position: tuple[int, int] | None = None  # (segment, offset) just past the last yielded
        while not should_stop():
            segments = self._view.segments()
            firsts = [first for first, _ in segments]
            if position is None:
                index, offset = max(0, bisect.bisect_right(firsts, next_seq) - 1), 0
            else:
                index, offset = bisect.bisect_left(firsts, position[0]), position[1]
            progressed = False
            with contextlib.closing(self._entries(segments, index, offset, next_seq)) as entries:
                for entry in entries:
                    yield entry
                    location = entry.location
                    next_seq = entry.record.seq + 1
                    position = (location.segment, location.offset + location.length)
                    progressed = True
            if not progressed:
                time.sleep(poll_interval_s)

    def _entries(
        self, segments: list[tuple[int, int]], index: int, offset: int, min_seq: int
    ) -> Generator[LogEntry, None, None]:
        for first_seq, committed_bytes in segments[index:]:
            path = segment_path(self._log_dir, first_seq)
            fd = os.open(path, os.O_RDONLY)
            try:
                for record_offset, record in iter_segment_records(
                    path, fd, offset, committed_bytes
                ):
                    if record.seq >= min_seq:
                        location = RecordLocation(first_seq, record_offset, record.size)
                        yield LogEntry(record, location)
            finally:
                os.close(fd)
            offset = 0

    # --- invariants ---

    def _check(self) -> None:
        """Assert the writer's invariants (tests call this after every mutation)."""
        view = self._view
        assert view.last_seq == self._last_seq
        assert view.active_first_seq == self._active_first_seq
        assert view.active_bytes == self._active_bytes
        firsts = [first for first, _ in view.segments()]
        assert firsts == sorted(set(firsts)), firsts
        assert self._sealed_bytes == sum(size for _, size in view.sealed)
        if self._active_fd is not None and not self._closed:
            assert os.fstat(self._active_fd).st_size == self._active_bytes
            assert self._active_first_seq <= self._last_seq + 1
        for first, size in view.segments():
            assert segment_path(self._log_dir, first).stat().st_size >= size
