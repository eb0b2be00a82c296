"""Small file I/O helpers that loop over short reads and writes and make changes durable.

Every function here works on file descriptors with ``os.pread``/``os.pwrite``
at an explicit offset, so no caller ever depends on (or moves) a shared file
position.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """fsync a directory, so that files created, renamed or removed in it survive power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir_durable(path: Path) -> None:
    """Create ``path`` (and missing parents) and fsync each parent it was created in."""
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made concurrently: it exists, which is all we need
        fsync_dir(created.parent)


def pread_exact(fd: int, length: int, offset: int) -> bytes:
    """Read ``length`` bytes at ``offset``; fewer only when the file ends first."""
    data = os.pread(fd, length, offset)
    if len(data) == length or not data:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset``; a short write is continued, an error raised."""
    written = os.pwrite(fd, data, offset)
    if written == len(data):
        return
    view = memoryview(data)
    while written < len(data):
        more = os.pwrite(fd, view[written:], offset + written)
        if more == 0:  # the kernel reports a full disk as an error; never spin on zero
            raise OSError(errno.EIO, "write made no progress")
        written += more


def write_new_file_durably(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist), write ``data``, fsync it and its directory."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        pwrite_all(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def read_file(path: Path) -> bytes:
    """The whole content of a file."""
    with open(path, "rb") as f:
        return f.read()
