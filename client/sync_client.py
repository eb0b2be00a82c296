"""The blocking client: one Unix socket, one request at a time (or a pipeline of puts).

Methods build their request with ``ops`` and run it through ``_execute``; the
only code here is the socket transport.  A Client is not thread-safe: use one
per thread.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

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
from .subscription import Subscription, subscribe_args

T = TypeVar("T")

RECV_BYTES: Final = 256 * 1024


class _ConnectionLostError(Exception):
    """Internal: the connection broke before the response arrived (maybe retryable)."""


class Client:
    """A blocking memoryd client.

    Connects, and sends hello, on the first call or on ``__enter__``.
    ``timeout`` bounds each call (connecting, sending, receiving) in seconds;
    when it passes, ClientTimeoutError is raised and the connection is dropped
    (the next call reconnects).  If the connection breaks during an idempotent
    op (every op the client wraps), the client reconnects once and resends it.
    Server errors are raised as the typed exceptions of ``errors``; an
    unreachable daemon as DaemonConnectionError naming the socket path.
    After ``close()`` every call raises DaemonConnectionError.
    """

    def __init__(
        self,
        socket_path: str | Path | None = None,
        *,
        timeout: float = 30.0,
        client_name: str = "memoryd-python",
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.socket_path = Path(socket_path) if socket_path is not None else default_socket_path()
        self.timeout = timeout
        self.client_name = client_name
        self._sock: socket.socket | None = None
        self._decoder = protocol.MessageDecoder()
        self._ready: deque[bytes] = deque()
        self._next_id = 1
        self._server_info: ServerInfo | None = None
        self._closed = False

    # --- ops ----------------------------------------------------------------

    def ping(self) -> float:
        """Round-trip time of a ping, in seconds."""
        start = time.perf_counter()
        self._execute(ops.ping())
        return time.perf_counter() - start

    def put(
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
        return self._execute(
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

    def put_batch(
        self, frames: Iterable[Mapping[str, Any]], *, near_duplicates: bool = False
    ) -> list[PutResult]:
        """Store frames (put arguments as mappings) all or nothing; results in the same order.

        ``near_duplicates``: also name each frame's near twin (as ``put`` always does).
        """
        return self._execute(ops.put_batch(frames, near_duplicates))

    def get(self, frame_id: str) -> Frame:
        """The live frame with that id; NotFoundError if there is none."""
        return self._execute(ops.get(frame_id))

    def recent(
        self,
        *,
        namespace: str | None = None,
        kind: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> Page:
        """Live frames, newest first."""
        return self._execute(ops.recent(namespace=namespace, kind=kind, limit=limit, cursor=cursor))

    def range(
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
        return self._execute(
            ops.time_range(
                since_ms=since_ms,
                until_ms=until_ms,
                namespace=namespace,
                kind=kind,
                limit=limit,
                cursor=cursor,
            )
        )

    def search(
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
        return self._execute(
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

    def delete(self, frame_id: str) -> DeleteResult:
        """Delete a frame; deleting an unknown or deleted id is not an error."""
        return self._execute(ops.delete(frame_id))

    def stats(self) -> dict[str, Any]:
        """The daemon's counters (free-form: names to numbers or strings)."""
        return self._execute(ops.stats())

    def call(self, op: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Any op by name; returns its result object.  Retried only if the op is idempotent."""
        return self._execute(ops.generic(op, args))

    def pipeline_put(
        self, frames: Iterable[Mapping[str, Any]], *, window: int = ops.PIPELINE_WINDOW
    ) -> list[PutResult]:
        """Many independent puts, written ahead of their responses; results in order.

        Keeps up to ``window`` requests in flight.  Each put stands alone: when
        some fail, the others are still stored, and the first failure (in
        order) is raised with ``details["index"]``.  ``timeout`` bounds each
        wait for the next response, not the whole pipeline.  Puts left
        unanswered by a broken connection are resent once after reconnecting.
        """
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        args_list = ops.frames_args(frames)
        if not args_list:
            return []
        responses: list[dict[str, Any] | None] = [None] * len(args_list)
        for attempt in range(2):
            self._ensure_connected()
            missing = [i for i, response in enumerate(responses) if response is None]
            try:
                self._pipeline(args_list, missing, responses, window)
                break
            except _ConnectionLostError:
                self._drop()
                if attempt:
                    raise ops.connection_broken(self.socket_path, "put", retried=True) from None
        return ops.pipeline_results([r for r in responses if r is not None])

    # --- lifecycle ----------------------------------------------------------

    @property
    def server_info(self) -> ServerInfo | None:
        """The hello result of the current connection; None while not connected."""
        return self._server_info

    def connect(self) -> ServerInfo:
        """Connect and hello now, unless already connected; returns the hello result."""
        return self._ensure_connected()

    def close(self) -> None:
        """Close the connection; the client cannot be used again.  Idempotent."""
        self._closed = True
        self._drop()

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self._sock else "idle"
        return f"<Client {str(self.socket_path)!r} {state}>"

    # --- transport ----------------------------------------------------------

    def _execute(self, call: ops.Call[T]) -> T:
        self._ensure_connected()
        try:
            response = self._roundtrip(call.op, call.args)
        except _ConnectionLostError:
            self._drop()
            if not call.idempotent:
                raise ops.connection_broken(self.socket_path, call.op, retried=False) from None
            self._ensure_connected()
            try:
                response = self._roundtrip(call.op, call.args)
            except _ConnectionLostError:
                self._drop()
                raise ops.connection_broken(self.socket_path, call.op, retried=True) from None
        return call.decode(ops.result_of(response))

    def _ensure_connected(self) -> ServerInfo:
        if self._server_info is not None:
            return self._server_info
        if self._closed:
            raise ops.client_closed()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.socket_path))
        except OSError as exc:
            sock.close()
            raise ops.connect_error(self.socket_path, exc) from None
        self._sock = sock
        self._decoder = protocol.MessageDecoder()
        self._ready.clear()
        hello = ops.hello(self.client_name)
        try:
            info = hello.decode(ops.result_of(self._roundtrip(hello.op, hello.args)))
        except _ConnectionLostError:
            self._drop()
            raise errors.DaemonConnectionError(
                errors.CONNECTION_FAILED,
                f"memoryd at {self.socket_path} closed the connection during hello",
            ) from None
        except BaseException:
            self._drop()
            raise
        self._server_info = info
        return info

    def _drop(self) -> None:
        """Forget the connection (the next call reconnects)."""
        sock, self._sock, self._server_info = self._sock, None, None
        if sock is not None:
            sock.close()

    def _send(self, data: bytes, op: str) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(data)
        except TimeoutError:
            self._drop()  # part of a message may be out: the stream is unusable
            raise ops.timed_out(op, self.timeout) from None
        except OSError:
            raise _ConnectionLostError from None

    def _roundtrip(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        request_id = self._next_id
        self._next_id += 1
        self._send(ops.encode(request_id, op, args), op)
        response = self._next_response(op)
        if response.get("id") == request_id:
            return response
        self._drop()
        if ops.is_connection_error(response):
            raise ops.error_of(response)
        raise ops.unexpected_response(response)

    def _next_response(self, op: str) -> dict[str, Any]:
        """The next response on the stream; waits at most ``timeout`` in total."""
        sock = self._sock
        assert sock is not None
        deadline = 0.0
        try:
            while not self._ready:
                if deadline:  # a second wait within one response: shrink the timeout
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError
                    sock.settimeout(remaining)
                else:
                    deadline = time.monotonic() + self.timeout
                data = sock.recv(RECV_BYTES)
                if not data:
                    raise _ConnectionLostError
                self._ready.extend(self._decoder.feed(data))
        except TimeoutError:
            self._drop()
            raise ops.timed_out(op, self.timeout) from None
        except protocol.FramingError as exc:
            self._drop()
            raise ops.bad_stream(exc) from None
        except OSError:
            raise _ConnectionLostError from None
        if deadline and sock.gettimeout() != self.timeout:
            sock.settimeout(self.timeout)
        try:
            return protocol.parse_response(self._ready.popleft())
        except errors.ProtocolViolationError:
            self._drop()
            raise

    def _pipeline(
        self,
        args_list: list[dict[str, Any]],
        indexes: list[int],
        responses: list[dict[str, Any] | None],
        window: int,
    ) -> None:
        """Send the puts at ``indexes`` with at most ``window`` in flight; fill ``responses``."""
        first_id = self._next_id
        self._next_id += len(indexes)
        messages = [ops.encode(first_id + n, "put", args_list[i]) for n, i in enumerate(indexes)]
        sent = received = 0
        while received < len(indexes):
            if sent < len(indexes) and sent - received <= window // 2:
                end = min(len(indexes), received + window)
                self._send(b"".join(messages[sent:end]), "put")
                sent = end
            response = self._next_response("put")
            n = response.get("id")
            if not isinstance(n, int) or not 0 <= n - first_id < sent:
                self._drop()
                if ops.is_connection_error(response):
                    raise ops.error_of(response)
                raise ops.unexpected_response(response)
            slot = indexes[n - first_id]
            if responses[slot] is not None:
                self._drop()
                raise ops.unexpected_response(response)
            responses[slot] = response
            received += 1

    # --- the vault (private memories) ----------------------------------------

    def unlock(
        self, *, passphrase: str | None = None, key: str | None = None, create: bool = False
    ) -> dict[str, Any]:
        """Unlock the vault (``create``: make it first); ``wrong_key`` changes nothing."""
        return self._execute(ops.unlock(passphrase=passphrase, key=key, create=create))

    def lock(self) -> dict[str, Any]:
        """Lock the vault: its keys are dropped from the daemon's memory."""
        return self._execute(ops.lock())

    def rotate_key(self) -> dict[str, Any]:
        """Begin a vault key rotation; it runs in the background (see vault_status)."""
        return self._execute(ops.rotate_key())

    def change_master(
        self, *, passphrase: str | None = None, key: str | None = None
    ) -> dict[str, Any]:
        """Wrap the vault keys under a new passphrase or key; no memory is re-encrypted."""
        return self._execute(ops.change_master(passphrase=passphrase, key=key))

    def vault_status(self) -> dict[str, Any]:
        """The vault's state: no vault, locked or unlocked, and any rotation."""
        return self._execute(ops.vault_status())

    # --- agent memory: core blocks, context, integrate, namespaces, forget --

    def block_get(self, block_type: str, *, namespace: str | None = None) -> Block:
        """The core memory block of that type; NotFoundError if there is none."""
        return self._execute(memory_ops.block_get(block_type, namespace=namespace))

    def block_set(
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
        return self._execute(
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

    def block_append(
        self, block_type: str, text: str, *, namespace: str | None = None, force: bool = False
    ) -> BlockWriteResult:
        """Append ``text`` to a block on a new line (creating the block if needed)."""
        return self._execute(
            memory_ops.block_append(block_type, text, namespace=namespace, force=force)
        )

    def block_replace(
        self,
        block_type: str,
        old: str,
        new: str,
        *,
        namespace: str | None = None,
        force: bool = False,
    ) -> BlockWriteResult:
        """Replace every occurrence of ``old`` in a block by ``new``; NotFoundError if none."""
        return self._execute(
            memory_ops.block_replace(block_type, old, new, namespace=namespace, force=force)
        )

    def block_delete(
        self, block_type: str, *, namespace: str | None = None, force: bool = False
    ) -> BlockWriteResult:
        """Delete a block (its history stays); deleting a missing block is not an error."""
        return self._execute(memory_ops.block_delete(block_type, namespace=namespace, force=force))

    def blocks_render(self, *, namespace: str | None = None) -> RenderedBlocks:
        """The namespace's blocks in priority order, rendered as tagged text."""
        return self._execute(memory_ops.blocks_render(namespace=namespace))

    def block_history(
        self,
        block_type: str,
        *,
        namespace: str | None = None,
        limit: int = 20,
        before_seq: int | None = None,
    ) -> BlockHistory:
        """Every change of a block, newest first."""
        return self._execute(
            memory_ops.block_history(
                block_type, namespace=namespace, limit=limit, before_seq=before_seq
            )
        )

    def context(
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
        return self._execute(
            memory_ops.context(
                query,
                budget_tokens=budget_tokens,
                namespace=namespace,
                k=k,
                recent=recent,
                min_seq=min_seq,
            )
        )

    def integrate(self, text: str, *, k: int = 5, **fields: Any) -> IntegrateResult:
        """Recall what is relevant to ``text``, then store it (``fields`` as put's), at once."""
        return self._execute(memory_ops.integrate(text, k=k, **fields))

    def namespaces(self) -> list[NamespaceCount]:
        """Every namespace with its live frames and blocks."""
        return self._execute(memory_ops.namespaces())

    def forget(
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
        return self._execute(
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

    def export_page(
        self, after_seq: int = 0, *, limit: int | None = None, decrypt: bool = False
    ) -> ExportPage:
        """One page of the log's events after ``after_seq`` (see ``export_events``).

        Private frames come sealed unless ``decrypt`` (the vault must be unlocked).
        """
        return self._execute(ops.export_page(after_seq, limit, decrypt))

    def export_events(
        self, after_seq: int = 0, *, decrypt: bool = False
    ) -> Iterator[Mapping[str, Any]]:
        """Every event of the log after ``after_seq``, in seq order, page by page.

        Ends at the log's last record as of each page: events committed while
        it runs are included up to the page that reaches the end.
        """
        while True:
            page = self.export_page(after_seq, decrypt=decrypt)
            yield from page.events
            if page.done or page.next_after_seq <= after_seq:
                return
            after_seq = page.next_after_seq

    # --- live tail (added after the core ops) ---------------------------------

    def subscribe(
        self,
        *,
        namespace: str | None = None,
        kinds: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
    ) -> Subscription:
        """Frames as they commit (after ``Subscription.after_seq``), on a connection of
        their own; iterate it, and close it (or use ``with``) when done."""
        args = subscribe_args(namespace, kinds, tags)
        return Subscription.open(self.socket_path, args, self.timeout, self.client_name)

    def important(
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
        return self._execute(
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

    def related(
        self,
        frame_id: str,
        *,
        k: int = 10,
        namespace: str | None = None,
        min_seq: int | None = None,
    ) -> RankedPage:
        """The memories most similar to frame ``frame_id`` (itself excluded), best first."""
        return self._execute(ops.related(frame_id, k=k, namespace=namespace, min_seq=min_seq))
