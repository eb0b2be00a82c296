"""The daemon's own ops for operators: ``status``, ``metrics`` and ``backup_info``.

``status`` answers "is it well?" in a few fields (``memoryd status``);
``metrics`` is the Prometheus exposition (``memoryd stats --prometheus``);
``backup_info`` names exactly the committed bytes of every segment, so that
``memoryd backup`` can copy a consistent log while the daemon keeps writing.
``problem`` is what the systemd watchdog asks before each ping.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memoryd.daemon.config import Config
from memoryd.daemon.metrics import CONTENT_TYPE, Metrics, render
from memoryd.daemon.service import VERSION, Handler, Result, Service
from memoryd.storage import EventLog
from memoryd.storage.layout import LOG_DIR_NAME
from memoryd.storage.segment import READ_FILES_MAX, list_segments

log = logging.getLogger("memoryd.health")

VAULT_STATE = "no vault"  # private memories are refused (`locked`) until the vault exists


@dataclass(frozen=True, slots=True)
class DiskSpace:
    free_bytes: int
    total_bytes: int


def disk_space(path: Path) -> DiskSpace | None:
    """Space left for an unprivileged writer on ``path``'s filesystem (None if unknown)."""
    try:
        info = os.statvfs(path)
    except OSError:
        return None
    return DiskSpace(info.f_bavail * info.f_frsize, info.f_blocks * info.f_frsize)


class Health:
    """What the status, metrics and backup_info ops and the watchdog look at."""

    def __init__(
        self,
        config: Config,
        service: Service,
        event_log: EventLog,
        metrics: Metrics,
        *,
        socket_path: Path,
        socket_activated: bool,
        stopping: Callable[[], bool],
        builder_problem: Callable[[], str | None],
        last_checkpoint: Callable[[], dict[str, Any] | None] = lambda: None,
    ) -> None:
        self._config = config
        self._last_checkpoint = last_checkpoint
        self._service = service
        self._log = event_log
        self._metrics = metrics
        self._stopping = stopping
        self._builder_problem = builder_problem
        self._started = time.monotonic()
        self.socket_path = socket_path
        self.socket_activated = socket_activated
        self.metrics_url: str | None = None

    def handlers(self) -> dict[str, Handler]:
        return {"status": self.status, "metrics": self.metrics, "backup_info": self.backup_info}

    def problem(self) -> str | None:
        """Why the daemon is not healthy (for the watchdog), or None."""
        return self._builder_problem()

    def status(self, args: dict[str, Any]) -> Result:
        stats = self._service.stats({})
        assert isinstance(stats, dict)
        space = disk_space(self._config.data_dir)
        return {
            "state": "stopping" if self._stopping() else "serving",
            "version": VERSION,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self._started, 3),
            "data_dir": str(self._config.data_dir.absolute()),
            "socket": str(self.socket_path),
            "socket_activated": self.socket_activated,
            "frames_live": stats.get("frames_live"),
            "last_seq": stats.get("last_seq"),
            "builder_lag": stats.get("builder_lag"),
            "builder_progressing": stats.get("builder_progressing"),
            "problem": self.problem(),
            "last_checkpoint": self._last_checkpoint(),
            "vault": stats.get("vault", VAULT_STATE),
            "disk_free_bytes": space.free_bytes if space else None,
            "disk_total_bytes": space.total_bytes if space else None,
            "commit_failures": stats.get("commit_failures"),
            "durability": self._config.durability.value,
            "connections": stats.get("connections"),
            "metrics_url": self.metrics_url,
        }

    def metrics(self, args: dict[str, Any]) -> Result:
        return {"content_type": CONTENT_TYPE, "text": self.prometheus()}

    def prometheus(self) -> str:
        stats = self._service.stats({})
        assert isinstance(stats, dict)
        space = disk_space(self._config.data_dir)
        if space is not None:
            stats = {**stats, "disk_free_bytes": space.free_bytes}
        return render(self._metrics, stats)

    def backup_info(self, args: dict[str, Any]) -> Result:
        """The committed bytes of every segment now; found on a thread (it reads the log)."""
        last_seq = self._log.last_seq
        return asyncio.ensure_future(asyncio.to_thread(self._committed_segments, last_seq))

    def _committed_segments(self, last_seq: int) -> dict[str, Any]:
        """Segments up to the one holding ``last_seq``, with their committed sizes.

        Segments before it are sealed: never written again, so their size is
        their committed size.  In the one holding ``last_seq`` (which may be
        growing under a concurrent append) only the bytes up to the end of that
        record are committed.  Later segments hold nothing committed yet.
        """
        log_dir = (self._config.data_dir / LOG_DIR_NAME).absolute()
        segments: list[dict[str, Any]] = []
        if last_seq > 0:
            entries = self._log.read_from(last_seq)
            try:
                last = next(entries)
            finally:
                close = getattr(entries, "close", None)  # a generator: release its file
                if close is not None:
                    close()
            end_segment = last.location.segment
            end_bytes = last.location.offset + last.location.length
            found, _others = list_segments(log_dir)
            for segment in found:
                if segment.first_seq > end_segment:
                    break
                size = end_bytes if segment.first_seq == end_segment else segment.size
                segments.append(
                    {"name": segment.path.name, "first_seq": segment.first_seq, "bytes": size}
                )
        return {
            "version": VERSION,
            "log_dir": str(log_dir),
            "last_seq": last_seq,
            "segments": segments,
        }


# Descriptors besides client connections: the log's segments open for reading,
# the segment being written, the lock, the listening sockets, the metrics
# endpoint's scrapers, the notify socket, stdio and what libraries keep open.
FILES_RESERVED = READ_FILES_MAX + 64


def open_files_needed(config: Config) -> int:
    return config.connections_max + FILES_RESERVED


def check_open_files(config: Config) -> None:
    """Raise the soft RLIMIT_NOFILE to what ``connections_max`` needs, or warn that it is low."""
    needed = open_files_needed(config)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass  # e.g. forbidden by a seccomp filter; the warning below says what to do
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "open files limit is %d but connections_max=%d needs %d: raise LimitNOFILE "
            "(or ulimit -n), or lower connections_max",
            soft,
            config.connections_max,
            needed,
        )
