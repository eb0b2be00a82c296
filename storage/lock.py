"""The data directory lock: one memoryd (or one repair) per data directory.

An exclusive, non-blocking ``flock`` on ``<data_dir>/LOCK``.  The kernel drops
it when the holder exits, however it exits, so a crash never leaves a stale
lock behind; the pid written into the file only serves the error message.
The file itself is never removed: removing a lock file races with another
process opening it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from memoryd.storage.layout import LOCK_FILE_NAME

LOCK_PID_BYTES_MAX = 32  # a pid in decimal and a newline, with room to spare


class DataDirLockedError(Exception):
    """Another process holds the data directory's lock."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"data directory {data_dir} is in use by another memoryd ({holder})")
        self.data_dir = data_dir
        self.pid = pid


class DataDirLock:
    """``with DataDirLock(data_dir):`` holds the lock for the block."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock and write our pid into it; DataDirLockedError if someone holds it."""
        assert self._fd is None, "lock already held by this object"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DataDirLockedError(self.data_dir, pid) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)  # closing drops the flock too
            raise
        self._fd = fd

    def release(self) -> None:
        """Drop the lock.  Idempotent."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    """The holder's pid, or None if it has not written it yet (or wrote garbage)."""
    text = os.pread(fd, LOCK_PID_BYTES_MAX, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None
