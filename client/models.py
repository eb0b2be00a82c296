"""Typed, immutable results of the protocol's ops, decoded from their wire objects.

Each ``from_wire`` checks every field it reads (type and presence) and raises
ProtocolViolationError naming the field when the server sent something the
protocol does not allow: a result is checked where it crosses the boundary,
so code using it can trust it.  Unknown fields are ignored, so that a newer
server may add fields without breaking older clients (PROTOCOL.md, versioning).
Field names are the wire names, so ``dataclasses.asdict`` gives the wire form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from . import errors

_T = TypeVar("_T")


def _violation(what: str) -> errors.ProtocolViolationError:
    return errors.ProtocolViolationError(errors.PROTOCOL_VIOLATION, what)


def _field(obj: Mapping[str, Any], name: str, kind: type[_T], where: str) -> _T:
    """``obj[name]`` if present and of type ``kind`` (bool is never an int here)."""
    value = obj.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _violation(f"{where}.{name} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _optional(obj: Mapping[str, Any], name: str, kind: type[_T], where: str) -> _T | None:
    if obj.get(name) is None:
        return None
    return _field(obj, name, kind, where)


def _number(obj: Mapping[str, Any], name: str, where: str) -> float:
    value = obj.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _violation(f"{where}.{name} must be a number, got {type(value).__name__}")
    return float(value)


def _strings(obj: Mapping[str, Any], name: str, where: str) -> tuple[str, ...]:
    items = _field(obj, name, list, where)
    if not all(isinstance(item, str) for item in items):
        raise _violation(f"{where}.{name} must be a list of strings")
    return tuple(items)


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _violation(f"{where} must be an object, got {type(value).__name__}")
    return value


# The exact types of a well-formed frame's id, seq, timestamp_ms, namespace, kind,
# content, metadata, private and source, in that order (Frame.from_wire's fast path).
_FRAME_TYPES = (str, int, int, str, str, str, dict, bool, str)


@dataclass(frozen=True, slots=True)
class Frame:
    """One memory as stored: content-addressed ``id``, log position ``seq``, and its fields.

    ``timestamp_ms`` is milliseconds since the Unix epoch (UTC).  ``metadata``
    is the JSON object given at put time; it takes no part in hashing.
    """

    id: str
    seq: int
    timestamp_ms: int
    namespace: str
    kind: str
    content: str
    tags: tuple[str, ...]
    importance: float
    metadata: Mapping[str, Any] = field(hash=False)
    private: bool
    source: str
    # When the frame expires (ms since the epoch); None: never.
    expires_at_ms: int | None = None

    @property
    def time(self) -> datetime:
        """``timestamp_ms`` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp_ms / 1000, tz=UTC)

    @classmethod
    def from_wire(cls, obj: Any) -> Frame:
        # Every search hit and listed frame comes through here: take a well-formed
        # frame with exact type tests first (type() is int never admits a bool), and
        # leave anything else to the field-by-field checks below, which name the fault.
        if type(obj) is dict:
            get = obj.get
            tags, importance, expires_at_ms = get("tags"), get("importance"), get("expires_at_ms")
            frame: tuple[Any, ...] = (
                get("id"),
                get("seq"),
                get("timestamp_ms"),
                get("namespace"),
                get("kind"),
                get("content"),
                get("metadata"),
                get("private"),
                get("source"),
            )
            if (
                tuple(map(type, frame)) == _FRAME_TYPES
                and type(tags) is list
                and all(type(tag) is str for tag in tags)
                and (type(importance) is float or type(importance) is int)
                and (expires_at_ms is None or type(expires_at_ms) is int)
            ):
                id_, seq, timestamp_ms, namespace, kind, content, metadata, private, source = frame
                return cls(
                    id_,
                    seq,
                    timestamp_ms,
                    namespace,
                    kind,
                    content,
                    tuple(tags),
                    float(importance),
                    metadata,
                    private,
                    source,
                    expires_at_ms,
                )
        w = "frame"
        o = _object(obj, w)
        return cls(
            id=_field(o, "id", str, w),
            seq=_field(o, "seq", int, w),
            timestamp_ms=_field(o, "timestamp_ms", int, w),
            namespace=_field(o, "namespace", str, w),
            kind=_field(o, "kind", str, w),
            content=_field(o, "content", str, w),
            tags=_strings(o, "tags", w),
            importance=_number(o, "importance", w),
            metadata=_field(o, "metadata", dict, w),
            private=_field(o, "private", bool, w),
            source=_field(o, "source", str, w),
            expires_at_ms=_optional(o, "expires_at_ms", int, w),
        )


@dataclass(frozen=True, slots=True)
class PutResult:
    """The outcome of a put: the frame's id, seq and time, and whether this put created it.

    ``is_new`` is false when a frame with the same (namespace, kind, content)
    already existed; the id, seq and timestamp are then the existing frame's.
    """

    id: str
    seq: int
    timestamp_ms: int
    is_new: bool
    # The id of a built frame of the same namespace whose text is nearly the same.
    near_duplicate_of: str | None = None

    @classmethod
    def from_wire(cls, obj: Any) -> PutResult:
        # One per frame of a batch or pipeline: take a well-formed result with exact
        # type tests first (type() is int never admits a bool); anything else gets
        # the field-by-field checks below, which name what is wrong.
        if type(obj) is dict:
            id_, seq, timestamp_ms, is_new = (
                obj.get("id"),
                obj.get("seq"),
                obj.get("timestamp_ms"),
                obj.get("is_new"),
            )
            if (
                type(id_) is str
                and type(seq) is int
                and type(timestamp_ms) is int
                and type(is_new) is bool
                and "near_duplicate_of" not in obj
            ):
                return cls(id_, seq, timestamp_ms, is_new)
        w = "put result"
        o = _object(obj, w)
        return cls(
            id=_field(o, "id", str, w),
            seq=_field(o, "seq", int, w),
            timestamp_ms=_field(o, "timestamp_ms", int, w),
            is_new=_field(o, "is_new", bool, w),
            near_duplicate_of=_optional(o, "near_duplicate_of", str, w),
        )


@dataclass(frozen=True, slots=True)
class Page:
    """One page of frames; pass ``next_cursor`` back to get the next, None when there is none."""

    frames: tuple[Frame, ...]
    next_cursor: str | None

    @classmethod
    def from_wire(cls, obj: Any) -> Page:
        w = "page"
        o = _object(obj, w)
        frames = _field(o, "frames", list, w)
        return cls(
            frames=tuple(Frame.from_wire(frame) for frame in frames),
            next_cursor=_optional(o, "next_cursor", str, w),
        )


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One result: the frame, its final score and, when asked, every part of that score."""

    frame: Frame
    score: float
    explain: dict[str, Any] | None = None
    # The six significance scores (0-1) by dimension, and the fact kind, when built.
    significance: dict[str, float] | None = None
    fact_kind: str | None = None

    @classmethod
    def from_wire(cls, obj: Any) -> SearchHit:
        if type(obj) is dict:  # the well-formed hit first, as Frame.from_wire does
            frame, score = obj.get("frame"), obj.get("score")
            explain, significance, fact_kind = (
                obj.get("explain"),
                obj.get("significance"),
                obj.get("fact_kind"),
            )
            if (
                type(frame) is dict
                and (type(score) is float or type(score) is int)
                and (explain is None or type(explain) is dict)
                and (significance is None or type(significance) is dict)
                and (fact_kind is None or type(fact_kind) is str)
            ):
                return cls(Frame.from_wire(frame), float(score), explain, significance, fact_kind)
        w = "search hit"
        o = _object(obj, w)
        return cls(
            frame=Frame.from_wire(_field(o, "frame", dict, w)),
            score=_number(o, "score", w),
            explain=_optional(o, "explain", dict, w),
            significance=_optional(o, "significance", dict, w),
            fact_kind=_optional(o, "fact_kind", str, w),
        )


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Hits best first; ``built_seq`` is how far the builder had got when it ran."""

    hits: tuple[SearchHit, ...]
    mode: str
    built_seq: int

    @classmethod
    def from_wire(cls, obj: Any) -> SearchResult:
        w = "search result"
        o = _object(obj, w)
        return cls(
            hits=tuple(SearchHit.from_wire(hit) for hit in _field(o, "hits", list, w)),
            mode=_field(o, "mode", str, w),
            built_seq=_field(o, "built_seq", int, w),
        )


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """``deleted`` is false when no live frame had ``id`` (deleting is idempotent).

    ``seq`` is the log position of the deletion, None when nothing was deleted.
    """

    id: str
    deleted: bool
    seq: int | None

    @classmethod
    def from_wire(cls, obj: Any) -> DeleteResult:
        w = "delete result"
        o = _object(obj, w)
        return cls(
            id=_field(o, "id", str, w),
            deleted=_field(o, "deleted", bool, w),
            seq=_optional(o, "seq", int, w),
        )


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """The result of the hello handshake: protocol, server name and version, limits, ops."""

    protocol: int
    server: str
    version: str
    limits: Mapping[str, int] = field(hash=False)
    ops: tuple[str, ...]

    @classmethod
    def from_wire(cls, obj: Any) -> ServerInfo:
        w = "hello result"
        o = _object(obj, w)
        limits = _field(o, "limits", dict, w)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in limits.values()):
            raise _violation(f"{w}.limits must map names to integers")
        return cls(
            protocol=_field(o, "protocol", int, w),
            server=_field(o, "server", str, w),
            version=_field(o, "version", str, w),
            limits=limits,
            ops=_strings(o, "ops", w),
        )


@dataclass(frozen=True, slots=True)
class ExportPage:
    """One page of ``export``: events (JSON objects, see PROTOCOL.md) after a seq.

    Ask again with ``after_seq=next_after_seq`` until ``done``.
    """

    events: tuple[Mapping[str, Any], ...]
    next_after_seq: int
    last_seq: int
    done: bool

    @classmethod
    def from_wire(cls, obj: Any) -> ExportPage:
        w = "export result"
        o = _object(obj, w)
        events = _field(o, "events", list, w)
        return cls(
            events=tuple(_object(event, "export event") for event in events),
            next_after_seq=_field(o, "next_after_seq", int, w),
            last_seq=_field(o, "last_seq", int, w),
            done=_field(o, "done", bool, w),
        )


@dataclass(frozen=True, slots=True)
class RankedPage:
    """Hits in order (``important``, ``related``); ``next_cursor`` continues, None at the end."""

    hits: tuple[SearchHit, ...]
    next_cursor: str | None

    @classmethod
    def from_wire(cls, obj: Any) -> RankedPage:
        w = "ranked page"
        o = _object(obj, w)
        return cls(
            hits=tuple(SearchHit.from_wire(hit) for hit in _field(o, "hits", list, w)),
            next_cursor=_optional(o, "next_cursor", str, w),
        )
