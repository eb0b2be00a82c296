"""File helpers for the key files: atomic replacement, exact reads and writes.

crypto does not import storage, so it keeps these few lines of its own.  Every
key file is created with mode 0600 inside a 0700 directory.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
TMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
    """fsync a directory, so that names created or renamed in it survive power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (not its parents) with mode 0700 if missing, durably."""
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        return
    fsync_dir(path.parent)


def tmp_path(path: Path) -> Path:
    """Where a replacement of ``path`` is written before it is renamed into place."""
    return path.with_name(path.name + TMP_SUFFIX)


def replace_atomically(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Make ``path`` hold ``data`` (bytes, or chunks of it): write a temp file, fsync,
    rename over, fsync the directory.

    A crash leaves the old file or the new one, never a mixture; a leftover temp
    file is never read and is overwritten by the next replacement.
    """
    tmp = tmp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        offset = 0
        for chunk in [data] if isinstance(data, bytes) else data:
            pwrite_all(fd, chunk, offset)
            offset += len(chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    fsync_dir(path.parent)


def pread_exact(fd: int, length: int, offset: int) -> bytes:
    """Read ``length`` bytes at ``offset``; fewer only when the file ends first."""
    parts: list[bytes] = []
    got = 0
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset``; a short write is continued, an error raised."""
    view = memoryview(data)
    written = 0
    while written < len(data):
        more = os.pwrite(fd, view[written:], offset + written)
        if more == 0:  # never spin on a write that makes no progress
            raise OSError(errno.EIO, "write made no progress")
        written += more


def read_small_file(path: Path, bytes_max: int) -> bytes | None:
    """The content of ``path`` if it holds at most ``bytes_max`` bytes, else None."""
    with open(path, "rb") as f:
        data = f.read(bytes_max + 1)
    return data if len(data) <= bytes_max else None
