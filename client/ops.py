"""Everything the blocking and asyncio clients share that is not I/O.

Each op is a function that builds a ``Call``: the op name, its wire arguments
(defaults left out, since the server applies the same ones), how to decode
its result into a model, and whether resending it after a broken connection
is safe.  Both clients' methods are one line: build the Call, run it over
their transport.  Adding an op means one function here and one line in each
client.  Response checking, error mapping, connection error messages and
pipeline bookkeeping live here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

from . import errors, protocol
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

T = TypeVar("T")

# Ops whose request may be sent again after the connection broke before its
# response arrived: reads, and writes whose repetition changes nothing (put is
# content-addressed, delete of a deleted frame is a no-op).
IDEMPOTENT_OPS: Final = frozenset(
    (
        "hello",
        "ping",
        "put",
        "put_batch",
        "get",
        "recent",
        "range",
        "delete",
        "stats",
        "search",
        "important",
        "related",
    )
)

# Requests a pipelining client keeps in flight on one connection.  The daemon
# serves at most 256 per connection and stops reading beyond that; staying
# under it keeps every request flowing without waiting on the daemon.
PIPELINE_WINDOW: Final = 128
assert 0 < PIPELINE_WINDOW <= 256


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request ready to send, and how to turn its result object into a T."""

    op: str
    args: dict[str, Any]
    decode: Callable[[dict[str, Any]], T]
    idempotent: bool = True


def _identity(result: dict[str, Any]) -> dict[str, Any]:
    return result


# --- per-op builders -------------------------------------------------------


def hello(client_name: str) -> Call[ServerInfo]:
    def decode(result: dict[str, Any]) -> ServerInfo:
        info = ServerInfo.from_wire(result)
        if info.protocol != protocol.PROTOCOL_VERSION:
            raise errors.ProtocolViolationError(
                errors.PROTOCOL_VIOLATION,
                f"server answered hello with protocol {info.protocol}, "
                f"this client speaks {protocol.PROTOCOL_VERSION}",
            )
        return info

    return Call("hello", {"protocol": protocol.PROTOCOL_VERSION, "client": client_name}, decode)


def ping() -> Call[dict[str, Any]]:
    def decode(result: dict[str, Any]) -> dict[str, Any]:
        if result.get("pong") is not True:
            raise errors.ProtocolViolationError(
                errors.PROTOCOL_VIOLATION, "ping result lacks pong: true"
            )
        return result

    return Call("ping", {}, decode)


def put_args(
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
) -> dict[str, Any]:
    """The wire arguments of one put; optional fields at their default are left out."""
    if isinstance(tags, str):
        raise TypeError("tags must be an iterable of strings, not a string")
    args: dict[str, Any] = {"content": content, "kind": kind, "namespace": namespace}
    tag_list = list(tags)
    if tag_list:
        args["tags"] = tag_list
    if importance != protocol.DEFAULT_IMPORTANCE:
        args["importance"] = importance
    if metadata:
        args["metadata"] = dict(metadata)
    if private:
        args["private"] = True
    if source:
        args["source"] = source
    if timestamp_ms is not None:
        args["timestamp_ms"] = timestamp_ms
    if ttl_s is not None:
        args["ttl_s"] = ttl_s
    if expires_at_ms is not None:
        args["expires_at_ms"] = expires_at_ms
    if significance:
        args["significance"] = dict(significance)
    return args


def put(content: str, **fields: Any) -> Call[PutResult]:
    """A put; ``fields`` are put_args' keyword arguments."""
    return Call("put", put_args(content, **fields), PutResult.from_wire)


def frames_args(frames: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Put arguments given as mappings (wire field names), copied as plain dicts."""
    out: list[dict[str, Any]] = []
    for index, frame in enumerate(frames):
        if not isinstance(frame, Mapping):
            raise TypeError(f"frames[{index}] must be a mapping of put arguments")
        out.append(dict(frame))
    return out


def put_batch(
    frames: Iterable[Mapping[str, Any]], near_duplicates: bool = False
) -> Call[list[PutResult]]:
    frame_list = frames_args(frames)
    args: dict[str, Any] = {"frames": frame_list}
    if near_duplicates:
        args["near_duplicates"] = True

    def decode(result: dict[str, Any]) -> list[PutResult]:
        results = result.get("results")
        if not isinstance(results, list) or len(results) != len(frame_list):
            raise errors.ProtocolViolationError(
                errors.PROTOCOL_VIOLATION,
                f"put_batch result must list {len(frame_list)} results",
            )
        return [PutResult.from_wire(item) for item in results]

    return Call("put_batch", args, decode)


def get(frame_id: str) -> Call[Frame]:
    def decode(result: dict[str, Any]) -> Frame:
        return Frame.from_wire(result.get("frame"))

    return Call("get", {"id": frame_id}, decode)


def _page_args(
    namespace: str | None, kind: str | None, limit: int, cursor: str | None
) -> dict[str, Any]:
    args: dict[str, Any] = {"limit": limit}
    if namespace is not None:
        args["namespace"] = namespace
    if kind is not None:
        args["kind"] = kind
    if cursor is not None:
        args["cursor"] = cursor
    return args


def recent(
    *,
    namespace: str | None = None,
    kind: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> Call[Page]:
    return Call("recent", _page_args(namespace, kind, limit, cursor), Page.from_wire)


def time_range(
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    namespace: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Call[Page]:
    args = _page_args(namespace, kind, limit, cursor)
    if since_ms is not None:
        args["since_ms"] = since_ms
    if until_ms is not None:
        args["until_ms"] = until_ms
    return Call("range", args, Page.from_wire)


def search(
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
) -> Call[SearchResult]:
    args: dict[str, Any] = {"query": query, "k": k, "mode": mode}
    optional = {
        "namespace": namespace,
        "kinds": list(kinds) if kinds is not None else None,
        "tags": list(tags) if tags is not None else None,
        "since_ms": since_ms,
        "until_ms": until_ms,
        "min_importance": min_importance,
        "min_seq": min_seq,
        "now_ms": now_ms,
        "min_significance": dict(min_significance) if min_significance else None,
        "fact_kinds": list(fact_kinds) if fact_kinds is not None else None,
        "significance_weights": dict(significance_weights) if significance_weights else None,
    }
    args.update({name: value for name, value in optional.items() if value is not None})
    if explain:
        args["explain"] = True
    return Call("search", args, SearchResult.from_wire)


def delete(frame_id: str) -> Call[DeleteResult]:
    return Call("delete", {"id": frame_id}, DeleteResult.from_wire)


def stats() -> Call[dict[str, Any]]:
    return Call("stats", {}, _identity)


def generic(op: str, args: Mapping[str, Any] | None) -> Call[dict[str, Any]]:
    """Any op by name, its result object returned as is; retried only if known idempotent."""
    return Call(op, dict(args or {}), _identity, idempotent=op in IDEMPOTENT_OPS)


def export_page(
    after_seq: int = 0, limit: int | None = None, decrypt: bool = False
) -> Call[ExportPage]:
    args: dict[str, Any] = {"after_seq": after_seq}
    if limit is not None:
        args["limit"] = limit
    if decrypt:
        args["decrypt"] = True
    return Call("export", args, ExportPage.from_wire)


# --- requests and responses ------------------------------------------------


def encode(request_id: int, op: str, args: dict[str, Any]) -> bytes:
    """Frame a request; a message over the limit is the caller's RequestError, not framing."""
    try:
        return protocol.encode_request(request_id, op, args)
    except protocol.FramingError as exc:
        raise errors.RequestError(exc.code, exc.message) from None


def result_of(response: dict[str, Any]) -> dict[str, Any]:
    """The result object of a response, or its error raised as the typed exception."""
    ok = response.get("ok")
    if ok is True:
        result = response.get("result")
        if isinstance(result, dict):
            return result
        raise errors.ProtocolViolationError(
            errors.PROTOCOL_VIOLATION, "ok response without a result object"
        )
    if ok is False:
        raise error_of(response)
    raise errors.ProtocolViolationError(errors.PROTOCOL_VIOLATION, "response 'ok' is not a bool")


def error_of(response: dict[str, Any]) -> errors.MemorydError:
    """The typed exception of an error response."""
    error = response.get("error")
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        return errors.ProtocolViolationError(
            errors.PROTOCOL_VIOLATION, "error response without an error object with a code"
        )
    return errors.error_from_wire(error)


def is_connection_error(response: dict[str, Any]) -> bool:
    """An error with id null: the server could not read the request (framing) and closes."""
    return response.get("id") is None and response.get("ok") is False


def unexpected_response(response: dict[str, Any]) -> errors.ProtocolViolationError:
    return errors.ProtocolViolationError(
        errors.PROTOCOL_VIOLATION, f"response for unknown request id {response.get('id')!r}"
    )


def bad_stream(exc: protocol.FramingError) -> errors.ProtocolViolationError:
    return errors.ProtocolViolationError(
        errors.PROTOCOL_VIOLATION, f"server sent a bad frame: {exc.message}"
    )


def pipeline_results(responses: Sequence[dict[str, Any]]) -> list[PutResult]:
    """Decode pipelined put responses, given in request order.

    Every put stands alone, so some may have been stored when others failed:
    the first failure (in request order) is raised with ``details["index"]``.
    """
    results: list[PutResult] = []
    for index, response in enumerate(responses):
        try:
            results.append(PutResult.from_wire(result_of(response)))
        except errors.MemorydError as exc:
            raise type(exc)(exc.code, exc.message, {**exc.details, "index": index}) from None
    return results


# --- connecting ------------------------------------------------------------


def connect_error(path: Path, exc: OSError) -> errors.MemorydError:
    """One line that says why the daemon at ``path`` could not be reached, and what to do."""
    start = "start it with `memoryd serve`"
    if isinstance(exc, FileNotFoundError):
        message = f"memoryd is not running at {path} (no such socket); {start}"
    elif isinstance(exc, ConnectionRefusedError):
        message = f"memoryd is not running at {path} (connection refused, stale socket); {start}"
    elif isinstance(exc, PermissionError):
        message = f"cannot connect to memoryd at {path} (permission denied)"
    elif isinstance(exc, TimeoutError):
        return errors.ClientTimeoutError(
            errors.TIMEOUT, f"timed out connecting to memoryd at {path}"
        )
    else:
        message = f"cannot connect to memoryd at {path} ({exc.strerror or exc})"
    return errors.DaemonConnectionError(errors.CONNECTION_FAILED, message)


def connection_broken(path: Path, op: str, *, retried: bool) -> errors.DaemonConnectionError:
    if retried:
        why = "again after reconnecting"
    else:
        why = "and the op is not known to be idempotent, so it was not retried"
    return errors.DaemonConnectionError(
        errors.CONNECTION_FAILED, f"connection to memoryd at {path} broke during {op} {why}"
    )


def client_closed() -> errors.DaemonConnectionError:
    return errors.DaemonConnectionError(errors.CONNECTION_FAILED, "the client is closed")


def timed_out(op: str, timeout: float) -> errors.ClientTimeoutError:
    return errors.ClientTimeoutError(errors.TIMEOUT, f"no response to {op} within {timeout:g} s")


# --- the vault (private memories) ------------------------------------------


def unlock(
    *, passphrase: str | None = None, key: str | None = None, create: bool = False
) -> Call[dict[str, Any]]:
    """Unlock the vault with a passphrase or a key (hex or base64 of 32 bytes)."""
    if (passphrase is None) == (key is None):
        raise ValueError("give one of passphrase or key")
    args: dict[str, Any] = {"passphrase": passphrase} if key is None else {"key": key}
    if create:
        args["create"] = True
    return Call("unlock", args, _identity, idempotent=False)


def lock() -> Call[dict[str, Any]]:
    return Call("lock", {}, _identity)


def rotate_key() -> Call[dict[str, Any]]:
    return Call("rotate_key", {}, _identity, idempotent=False)


def change_master(*, passphrase: str | None = None, key: str | None = None) -> Call[dict[str, Any]]:
    """Wrap the vault keys under a new passphrase or key (the vault must be unlocked)."""
    if (passphrase is None) == (key is None):
        raise ValueError("give one of passphrase or key")
    args: dict[str, Any] = {"passphrase": passphrase} if key is None else {"key": key}
    return Call("change_master", args, _identity, idempotent=False)


def vault_status() -> Call[dict[str, Any]]:
    return Call("vault_status", {}, _identity)


def important(
    *,
    keywords: str | None = None,
    namespace: str | None = None,
    kinds: Sequence[str] | None = None,
    by: str = "importance",
    limit: int = 20,
    cursor: str | None = None,
    min_seq: int | None = None,
) -> Call[RankedPage]:
    """Most important first (``by`` importance or a significance dimension)."""
    optional = {
        "keywords": keywords,
        "namespace": namespace,
        "kinds": list(kinds) if kinds is not None else None,
        "cursor": cursor,
        "min_seq": min_seq,
    }
    args: dict[str, Any] = {"by": by, "limit": limit}
    args.update({name: value for name, value in optional.items() if value is not None})
    return Call("important", args, RankedPage.from_wire)


def related(
    frame_id: str, *, k: int = 10, namespace: str | None = None, min_seq: int | None = None
) -> Call[RankedPage]:
    """The memories most similar to frame ``frame_id`` (itself excluded)."""
    args: dict[str, Any] = {"id": frame_id, "k": k}
    if namespace is not None:
        args["namespace"] = namespace
    if min_seq is not None:
        args["min_seq"] = min_seq
    return Call("related", args, RankedPage.from_wire)
