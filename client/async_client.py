"""The asyncio client: many concurrent calls multiplexed on one Unix socket connection.

The connection is an ``asyncio.Protocol``: ``data_received`` decodes
responses and resolves the waiting call's future by request id, so no reader
task exists and nothing runs loose.  Calls in flight are bounded by a
semaphore; writers wait while the transport's buffer is full.  Methods build
their request with ``ops`` exactly as the blocking client does; the only code
here is the transport.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

from . import errors, memory_ops, ops, protocol
from .memory_models import (
    Block,
    BlockHistory,
    BlockWriteResult,
    ContextResult,
    ForgetResult,
    IntegrateResult,
    NamespaceCount,
    RenderedBlocks,
)
from .models import (
    DeleteResult,
    ExportPage,
    Frame,
    Page,
    PutResult,
    RankedPage,
    SearchResult,
    ServerInfo,
)
from .paths import default_socket_path
from .subscription import AsyncSubscription, subscribe_args

T = TypeVar("T")

_Response = dict[str, Any]


class _ConnectionLostError(Exception):
    """Internal: the connection broke before the response arrived (maybe retryable)."""


class _Connection(asyncio.Protocol):
    """One connection: writes requests, resolves each response's future by its id.

    A response whose id no call waits for any more (the call timed out or was
    cancelled) is dropped.  When the connection breaks, every waiting call
    fails with _ConnectionLostError; when the server sends a connection-level
    error (id null), every waiting call fails with it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._decoder = protocol.MessageDecoder()
        self._pending: dict[int, asyncio.Future[_Response]] = {}
        self._transport: asyncio.Transport | None = None
        self._outbox: list[bytes] = []  # requests written at the end of this loop turn
        self._writable = asyncio.Event()
        self._writable.set()
        self.lost = False
        self.closed: asyncio.Future[None] = loop.create_future()
        self.server_info: ServerInfo | None = None

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            bodies = self._decoder.feed(data)
        except protocol.FramingError as exc:
            self.fail(ops.bad_stream(exc))
            return
        for body in bodies:
            try:
                response = protocol.parse_response(body)
            except errors.ProtocolViolationError as exc:
                self.fail(exc)
                return
            request_id = response.get("id")
            future = self._pending.pop(request_id, None) if type(request_id) is int else None
            if future is not None:
                if not future.done():
                    future.set_result(response)
            elif ops.is_connection_error(response):
                self.fail(ops.error_of(response))
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._writable.set()  # wake writers, who then see the connection is gone
        self._fail_pending(_ConnectionLostError)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # used by AsyncClient

    @property
    def usable(self) -> bool:
        return not self.lost and self._transport is not None and not self._transport.is_closing()

    async def request(self, request_id: int, data: bytes) -> _Response:
        """Send one request and wait for its response."""
        await self.wait_writable()
        future = self.send(request_id, data)
        try:
            return await future
        finally:
            self._pending.pop(request_id, None)  # cancelled or timed out: forget it

    async def wait_writable(self) -> None:
        if not self._writable.is_set():
            await self._writable.wait()

    def send(self, request_id: int, data: bytes) -> asyncio.Future[_Response]:
        """Write one request; the returned future gets its response."""
        if not self.usable:
            raise _ConnectionLostError
        assert self._transport is not None
        future: asyncio.Future[_Response] = self._loop.create_future()
        self._pending[request_id] = future
        if not self._outbox:
            self._loop.call_soon(self._flush)
        self._outbox.append(data)
        return future

    def _flush(self) -> None:
        """Write every request queued since the last loop turn at once: one syscall, not one
        per concurrent call, and one wake-up of the daemon."""
        outbox, self._outbox = self._outbox, []
        if self.usable:
            assert self._transport is not None
            self._transport.write(outbox[0] if len(outbox) == 1 else b"".join(outbox))

    def forget(self, request_id: int) -> None:
        self._pending.pop(request_id, None)

    def fail(self, error: errors.MemorydError) -> None:
        """Fail every waiting call with (a copy of) ``error``, and close."""
        self._fail_pending(lambda: type(error)(error.code, error.message, error.details or None))
        if self._transport is not None:
            self._transport.close()

    def _fail_pending(self, make_error: Callable[[], BaseException]) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(make_error())


class AsyncClient:
    """An asyncio memoryd client; the same methods as Client, as coroutines.

    Connects, and sends hello, on the first call or on ``__aenter__``; many
    tasks may call concurrently on one connection (at most ``in_flight_max``
    requests in flight; more wait).  ``timeout`` bounds each call in seconds
    (ClientTimeoutError); a timed-out or cancelled call leaves the connection
    usable.  If the connection breaks during an idempotent op (every op the
    client wraps), the call reconnects once and resends.  ``close()`` fails
    calls still waiting with DaemonConnectionError, and makes every later call
    raise it.
    """

    def __init__(
        self,
        socket_path: str | Path | None = None,
        *,
        timeout: float = 30.0,
        client_name: str = "memoryd-python",
        in_flight_max: int = ops.PIPELINE_WINDOW,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if in_flight_max < 1:
            raise ValueError(f"in_flight_max must be at least 1, got {in_flight_max}")
        self.socket_path = Path(socket_path) if socket_path is not None else default_socket_path()
        self.timeout = timeout
        self.client_name = client_name
        self.in_flight_max = in_flight_max
        self._conn: _Connection | None = None
        self._connect_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(in_flight_max)
        self._next_id = 1
        self._closed = False

    # --- ops ----------------------------------------------------------------

    async def ping(self) -> float:
        """Round-trip time of a ping, in seconds."""
        start = time.perf_counter()
        await self._execute(ops.ping())
        return time.perf_counter() - start

    async def put(
        self,
        content: str,
        *,
        kind: str = protocol.DEFAULT_KIND,
        namespace: str = protocol.DEFAULT_NAMESPACE,
        tags: Iterable[str] = (),
        importance: float = protocol.DEFAULT_IMPORTANCE,
        metadata: Mapping[str, Any] | None = None,
        private: bool = False,
        source: str = "",
        timestamp_ms: int | None = None,
        ttl_s: int | None = None,
        expires_at_ms: int | None = None,
        significance: Mapping[str, float] | None = None,
    ) -> PutResult:
        """Store one memory durably; the same (namespace, kind, content) again is a no-op."""
        return await self._execute(
            ops.put(
                content,
                kind=kind,
                namespace=namespace,
                tags=tags,
                importance=importance,
                metadata=metadata,
                private=private,
                source=source,
                timestamp_ms=timestamp_ms,
                ttl_s=ttl_s,
                expires_at_ms=expires_at_ms,
                significance=significance,
            )
        )

    async def put_batch(
        self, frames: Iterable[Mapping[str, Any]], *, near_duplicates: bool = False
    ) -> list[PutResult]:
        """Store frames (put arguments as mappings) all or nothing; results in the same order.

        ``near_duplicates``: also name each frame's near twin (as ``put`` always does).
        """
        return await self._execute(ops.put_batch(frames, near_duplicates))

    async def get(self, frame_id: str) -> Frame:
        """The live frame with that id; NotFoundError if there is none."""
        return await self._execute(ops.get(frame_id))

    async def recent(
        self,
        *,
        namespace: str | None = None,
        kind: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> Page:
        """Live frames, newest first."""
        return await self._execute(
            ops.recent(namespace=namespace, kind=kind, limit=limit, cursor=cursor)
        )

    async def range(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        namespace: str | None = None,
        kind: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        """Live frames with since_ms <= timestamp_ms < until_ms, oldest first."""
        return await self._execute(
            ops.time_range(
                since_ms=since_ms,
                until_ms=until_ms,
                namespace=namespace,
                kind=kind,
                limit=limit,
                cursor=cursor,
            )
        )

    async def search(
        self,
        query: str,
        *,
        k: int = 10,
        mode: str = "hybrid",
        namespace: str | None = None,
        kinds: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        min_importance: float | None = None,
        explain: bool = False,
        min_seq: int | None = None,
        now_ms: int | None = None,
        min_significance: Mapping[str, float] | None = None,
        fact_kinds: Sequence[str] | None = None,
        significance_weights: Mapping[str, float] | None = None,
    ) -> SearchResult:
        """Memories ranked for ``query`` (modes: hybrid, keyword, semantic, classic).

        ``min_seq`` (a put's ``seq``) first waits until that put is searchable.
        """
        return await self._execute(
            ops.search(
                query,
                k=k,
                mode=mode,
                namespace=namespace,
                kinds=kinds,
                tags=tags,
                since_ms=since_ms,
                until_ms=until_ms,
                min_importance=min_importance,
                explain=explain,
                min_seq=min_seq,
                now_ms=now_ms,
                min_significance=min_significance,
                fact_kinds=fact_kinds,
                significance_weights=significance_weights,
            )
        )

    async def delete(self, frame_id: str) -> DeleteResult:
        """Delete a frame; deleting an unknown or deleted id is not an error."""
        return await self._execute(ops.delete(frame_id))

    async def stats(self) -> dict[str, Any]:
        """The daemon's counters (free-form: names to numbers or strings)."""
        return await self._execute(ops.stats())

    async def call(self, op: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Any op by name; returns its result object.  Retried only if the op is idempotent."""
        return await self._execute(ops.generic(op, args))

    async def pipeline_put(self, frames: Iterable[Mapping[str, Any]]) -> list[PutResult]:
        """Many independent puts written without waiting for each response; results in order.

        Up to ``in_flight_max`` are in flight.  Each put stands alone: when
        some fail, the others are still stored, and the first failure (in
        order) is raised with ``details["index"]``.  ``timeout`` bounds each
        wait for progress, not the whole pipeline.  Puts left unanswered by a
        broken connection are resent once after reconnecting.
        """
        args_list = ops.frames_args(frames)
        responses: list[_Response | None] = [None] * len(args_list)
        for attempt in range(2):
            missing = [i for i, response in enumerate(responses) if response is None]
            if not missing:
                break
            if attempt:
                # Only a lost connection leaves responses missing.
                self._check_open()
            try:
                async with asyncio.timeout(self.timeout):
                    conn = await self._connection()
                await self._pipeline(conn, args_list, missing, responses)
            except TimeoutError:
                raise ops.timed_out("put", self.timeout) from None
        if any(response is None for response in responses):
            raise ops.connection_broken(self.socket_path, "put", retried=True)
        return ops.pipeline_results([r for r in responses if r is not None])

    # --- lifecycle ----------------------------------------------------------

    @property
    def server_info(self) -> ServerInfo | None:
        """The hello result of the current connection; None while not connected."""
        conn = self._conn
        return conn.server_info if conn is not None and conn.usable else None

    async def connect(self) -> ServerInfo:
        """Connect and hello now, unless already connected; returns the hello result."""
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._connection()
        except TimeoutError:
            raise ops.timed_out("hello", self.timeout) from None
        assert conn.server_info is not None
        return conn.server_info

    async def close(self) -> None:
        """Close the connection and wait until it is closed; the client cannot be used again.

        Calls still waiting fail with DaemonConnectionError.  Idempotent.
        """
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.fail(ops.client_closed())
            await conn.closed

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        conn = self._conn
        state = "closed" if self._closed else "connected" if conn and conn.usable else "idle"
        return f"<AsyncClient {str(self.socket_path)!r} {state}>"

    # --- transport ----------------------------------------------------------

    async def _execute(self, call: ops.Call[T]) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._request(call)
        except TimeoutError:
            raise ops.timed_out(call.op, self.timeout) from None
        return call.decode(ops.result_of(response))

    async def _request(self, call: ops.Call[Any]) -> _Response:
        for attempt in range(2):
            conn = await self._connection()
            request_id = self._take_ids(1)
            data = ops.encode(request_id, call.op, call.args)
            try:
                async with self._slots:
                    return await conn.request(request_id, data)
            except _ConnectionLostError:
                if not call.idempotent:
                    raise ops.connection_broken(self.socket_path, call.op, retried=False) from None
                if attempt:
                    raise ops.connection_broken(self.socket_path, call.op, retried=True) from None
        raise AssertionError("unreachable")

    def _take_ids(self, count: int) -> int:
        first = self._next_id
        self._next_id += count
        return first

    def _check_open(self) -> None:
        if self._closed:
            raise ops.client_closed()

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and conn.usable:
            return conn
        async with self._connect_lock:
            conn = self._conn
            if conn is not None and conn.usable:
                return conn
            self._check_open()
            conn = await self._open()
            if self._closed:  # close() ran while we were connecting
                conn.fail(ops.client_closed())
                raise ops.client_closed()
            self._conn = conn
            return conn

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_unix_connection(
                lambda: _Connection(loop), str(self.socket_path)
            )
        except OSError as exc:
            raise ops.connect_error(self.socket_path, exc) from None
        hello = ops.hello(self.client_name)
        request_id = self._take_ids(1)
        try:
            response = await conn.request(request_id, ops.encode(request_id, "hello", hello.args))
            conn.server_info = hello.decode(ops.result_of(response))
        except _ConnectionLostError:
            raise errors.DaemonConnectionError(
                errors.CONNECTION_FAILED,
                f"memoryd at {self.socket_path} closed the connection during hello",
            ) from None
        except BaseException:
            conn.fail(ops.client_closed())
            raise
        return conn

    async def _pipeline(
        self,
        conn: _Connection,
        args_list: list[dict[str, Any]],
        indexes: list[int],
        responses: list[_Response | None],
    ) -> None:
        """Send the puts at ``indexes``, fill ``responses``; a lost connection leaves gaps."""
        first_id = self._take_ids(len(indexes))
        messages = [ops.encode(first_id + n, "put", args_list[i]) for n, i in enumerate(indexes)]
        loop = asyncio.get_running_loop()
        sent: list[tuple[int, int, asyncio.Future[_Response]]] = []
        try:
            async with asyncio.timeout(self.timeout) as deadline:
                for n, i in enumerate(indexes):
                    await self._slots.acquire()
                    try:
                        await conn.wait_writable()
                        future = conn.send(first_id + n, messages[n])
                    except _ConnectionLostError:
                        self._slots.release()
                        break  # what was sent is still awaited below; the rest is resent
                    except BaseException:
                        self._slots.release()
                        raise
                    future.add_done_callback(lambda _: self._slots.release())
                    sent.append((i, first_id + n, future))
                    deadline.reschedule(loop.time() + self.timeout)
                for i, _, future in sent:
                    try:
                        responses[i] = await future
                    except _ConnectionLostError:
                        continue
                    deadline.reschedule(loop.time() + self.timeout)
        finally:
            for _, request_id, future in sent:
                conn.forget(request_id)
                if not future.done():
                    future.cancel()
                elif not future.cancelled():
                    future.exception()  # retrieved: no "never retrieved" log

    # --- the vault (private memories) ----------------------------------------

    async def unlock(
        self, *, passphrase: str | None = None, key: str | None = None, create: bool = False
    ) -> dict[str, Any]:
        """Unlock the vault (``create``: make it first); ``wrong_key`` changes nothing."""
        return await self._execute(ops.unlock(passphrase=passphrase, key=key, create=create))

    async def lock(self) -> dict[str, Any]:
        """Lock the vault: its keys are dropped from the daemon's memory."""
        return await self._execute(ops.lock())

    async def rotate_key(self) -> dict[str, Any]:
        """Begin a vault key rotation; it runs in the background (see vault_status)."""
        return await self._execute(ops.rotate_key())

    async def change_master(
        self, *, passphrase: str | None = None, key: str | None = None
    ) -> dict[str, Any]:
        """Wrap the vault keys under a new passphrase or key; no memory is re-encrypted."""
        return await self._execute(ops.change_master(passphrase=passphrase, key=key))

    async def vault_status(self) -> dict[str, Any]:
        """The vault's state: no vault, locked or unlocked, and any rotation."""
        return await self._execute(ops.vault_status())

    # --- agent memory: core blocks, context, integrate, namespaces, forget --

    async def block_get(self, block_type: str, *, namespace: str | None = None) -> Block:
        """The core memory block of that type; NotFoundError if there is none."""
        return await self._execute(memory_ops.block_get(block_type, namespace=namespace))

    async def block_set(
        self,
        block_type: str,
        content: str,
        *,
        namespace: str | None = None,
        label: str | None = None,
        description: str | None = None,
        chars_limit: int | None = None,
        read_only: bool | None = None,
        force: bool = False,
    ) -> BlockWriteResult:
        """Set a block's content (creating it); attributes not given keep their value.

        Content over the block's ``chars_limit`` is refused (limit_exceeded); a
        read-only block is refused (read_only) unless ``force``.
        """
        return await self._execute(
            memory_ops.block_set(
                block_type,
                content,
                namespace=namespace,
                label=label,
                description=description,
                chars_limit=chars_limit,
                read_only=read_only,
                force=force,
            )
        )

    async def block_append(
        self, block_type: str, text: str, *, namespace: str | None = None, force: bool = False
    ) -> BlockWriteResult:
        """Append ``text`` to a block on a new line (creating the block if needed)."""
        return await self._execute(
            memory_ops.block_append(block_type, text, namespace=namespace, force=force)
        )

    async def block_replace(
        self,
        block_type: str,
        old: str,
        new: str,
        *,
        namespace: str | None = None,
        force: bool = False,
    ) -> BlockWriteResult:
        """Replace every occurrence of ``old`` in a block by ``new``; NotFoundError if none."""
        return await self._execute(
            memory_ops.block_replace(block_type, old, new, namespace=namespace, force=force)
        )

    async def block_delete(
        self, block_type: str, *, namespace: str | None = None, force: bool = False
    ) -> BlockWriteResult:
        """Delete a block (its history stays); deleting a missing block is not an error."""
        return await self._execute(
            memory_ops.block_delete(block_type, namespace=namespace, force=force)
        )

    async def blocks_render(self, *, namespace: str | None = None) -> RenderedBlocks:
        """The namespace's blocks in priority order, rendered as tagged text."""
        return await self._execute(memory_ops.blocks_render(namespace=namespace))

    async def block_history(
        self,
        block_type: str,
        *,
        namespace: str | None = None,
        limit: int = 20,
        before_seq: int | None = None,
    ) -> BlockHistory:
        """Every change of a block, newest first."""
        return await self._execute(
            memory_ops.block_history(
                block_type, namespace=namespace, limit=limit, before_seq=before_seq
            )
        )

    async def context(
        self,
        query: str | None = None,
        *,
        budget_tokens: int = 2000,
        namespace: str | None = None,
        k: int = 10,
        recent: int = 10,
        min_seq: int | None = None,
    ) -> ContextResult:
        """A prompt context within ``budget_tokens``: blocks, relevant, then recent memories."""
        return await self._execute(
            memory_ops.context(
                query,
                budget_tokens=budget_tokens,
                namespace=namespace,
                k=k,
                recent=recent,
                min_seq=min_seq,
            )
        )

    async def integrate(self, text: str, *, k: int = 5, **fields: Any) -> IntegrateResult:
        """Recall what is relevant to ``text``, then store it (``fields`` as put's), at once."""
        return await self._execute(memory_ops.integrate(text, k=k, **fields))

    async def namespaces(self) -> list[NamespaceCount]:
        """Every namespace with its live frames and blocks."""
        return await self._execute(memory_ops.namespaces())

    async def forget(
        self,
        *,
        ids: Sequence[str] | None = None,
        namespace: str | None = None,
        kind: str | None = None,
        tags: Sequence[str] | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        dry_run: bool = False,
    ) -> ForgetResult:
        """Delete frames by id or by filter (tombstones); ``dry_run`` only counts them."""
        return await self._execute(
            memory_ops.forget(
                ids=ids,
                namespace=namespace,
                kind=kind,
                tags=tags,
                since_ms=since_ms,
                until_ms=until_ms,
                dry_run=dry_run,
            )
        )

    # --- export (added after the core ops) ------------------------------------

    async def export_page(
        self, after_seq: int = 0, *, limit: int | None = None, decrypt: bool = False
    ) -> ExportPage:
        """One page of the log's events after ``after_seq`` (see ``export_events``).

        Private frames come sealed unless ``decrypt`` (the vault must be unlocked).
        """
        return await self._execute(ops.export_page(after_seq, limit, decrypt))

    async def export_events(
        self, after_seq: int = 0, *, decrypt: bool = False
    ) -> AsyncIterator[Mapping[str, Any]]:
        """Every event of the log after ``after_seq``, in seq order, page by page."""
        while True:
            page = await self.export_page(after_seq, decrypt=decrypt)
            for event in page.events:
                yield event
            if page.done or page.next_after_seq <= after_seq:
                return
            after_seq = page.next_after_seq

    # --- live tail (added after the core ops) ---------------------------------

    async def subscribe(
        self,
        *,
        namespace: str | None = None,
        kinds: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
    ) -> AsyncSubscription:
        """Frames as they commit, on a connection of their own: ``async for`` over it."""
        args = subscribe_args(namespace, kinds, tags)
        return await AsyncSubscription.open(self.socket_path, args, self.timeout, self.client_name)

    async def important(
        self,
        *,
        keywords: str | None = None,
        namespace: str | None = None,
        kinds: Sequence[str] | None = None,
        by: str = "importance",
        limit: int = 20,
        cursor: str | None = None,
        min_seq: int | None = None,
    ) -> RankedPage:
        """Most important first (``by``: importance or a significance dimension), optionally
        only frames holding every word of ``keywords``; page on with ``next_cursor``."""
        return await self._execute(
            ops.important(
                keywords=keywords,
                namespace=namespace,
                kinds=kinds,
                by=by,
                limit=limit,
                cursor=cursor,
                min_seq=min_seq,
            )
        )

    async def related(
        self,
        frame_id: str,
        *,
        k: int = 10,
        namespace: str | None = None,
        min_seq: int | None = None,
    ) -> RankedPage:
        """The memories most similar to frame ``frame_id`` (itself excluded), best first."""
        return await self._execute(ops.related(frame_id, k=k, namespace=namespace, min_seq=min_seq))
