"""Events: what a record's payload means.

Every change to memoryd is one event, stored as one record.  The payload is a
JSON object (orjson) with short, stable keys; the record header already holds
the sequence number and the timestamp, so events do not repeat them.

``FRAME_PUT`` payload::

    {"id": str, "ns": str, "kind": str, "content": str, "tags": [str],
     "imp": float, "meta": object, "priv": bool, "src": str, "sig"?: {str: float}}

``sig`` (present only when the caller gave it) holds significance scores by
dimension name (storage/search/significance.py), each within 0-1; the builder
computes the dimensions not given.

``FRAME_DELETE`` payload::

    {"id": str}

A frame's ``id`` is content-addressed (see ``frame_id``): the same content in
the same namespace and kind always gets the same id, which is how a retried or
repeated put is recognised and never stored twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from memoryd.storage.record import RecordType

FRAME_ID_HEX_CHARS = 32  # 128 bits of SHA-256: collisions are not a practical concern
_ID_SEPARATOR = b"\x1f"  # ASCII unit separator: cannot be confused with text boundaries
_ID_SEPARATOR_TEXT = _ID_SEPARATOR.decode()


def frame_id(namespace: str, kind: str, content: str) -> str:
    """The content address of a frame: hex SHA-256 of namespace, kind and content."""
    # The same bytes as namespace, separator, kind, separator, content, hashed
    # without concatenating the content; hex of the first 16 bytes is the first
    # 32 hex characters.  Runs once per frame of every put.
    digest = hashlib.sha256(f"{namespace}{_ID_SEPARATOR_TEXT}{kind}{_ID_SEPARATOR_TEXT}".encode())
    digest.update(content.encode("utf-8", "surrogatepass"))
    return digest.digest()[: FRAME_ID_HEX_CHARS // 2].hex()


class EventError(ValueError):
    """A payload does not decode to a valid event of its record type."""


@dataclass(slots=True)
class Frame:
    """A memory as stored.  ``seq`` and ``timestamp_ms`` come from its record."""

    id: str
    seq: int
    timestamp_ms: int
    namespace: str
    kind: str
    content: str
    tags: list[str] = field(default_factory=list)
    importance: float = 0.5
    metadata: dict[str, Any] = field(default_factory=dict)
    private: bool = False
    source: str = ""
    # Significance scores the caller gave, by dimension (None: computed when built).
    significance: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The frame's public representation (the wire protocol's frame object)."""
        out = {
            "id": self.id,
            "seq": self.seq,
            "timestamp_ms": self.timestamp_ms,
            "namespace": self.namespace,
            "kind": self.kind,
            "content": self.content,
            "tags": self.tags,
            "importance": self.importance,
            "metadata": self.metadata,
            "private": self.private,
            "source": self.source,
        }
        if self.significance is not None:
            out["significance"] = self.significance
        return out


def encode_frame_put(frame: Frame) -> bytes:
    """Payload of a FRAME_PUT record for ``frame`` (seq and time live in the header)."""
    if frame.significance is not None:
        return orjson.dumps({**_put_object(frame), "sig": frame.significance})
    return orjson.dumps(_put_object(frame))


def _put_object(frame: Frame) -> dict[str, Any]:
    return {
        "id": frame.id,
        "ns": frame.namespace,
        "kind": frame.kind,
        "content": frame.content,
        "tags": frame.tags,
        "imp": frame.importance,
        "meta": frame.metadata,
        "priv": frame.private,
        "src": frame.source,
    }


def encode_frame_delete(target_id: str) -> bytes:
    """Payload of a FRAME_DELETE record: a tombstone for ``target_id``."""
    return orjson.dumps({"id": target_id})


def _load_object(payload: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise EventError(f"payload is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise EventError("payload is not a JSON object")
    return obj


def decode_frame_put(payload: bytes, seq: int, timestamp_ms: int) -> Frame:
    """Rebuild the frame stored by a FRAME_PUT record; raises EventError if malformed."""
    obj = _load_object(payload)
    try:
        frame = Frame(
            id=obj["id"],
            seq=seq,
            timestamp_ms=timestamp_ms,
            namespace=obj["ns"],
            kind=obj["kind"],
            content=obj["content"],
            tags=obj.get("tags", []),
            importance=float(obj.get("imp", 0.5)),
            metadata=obj.get("meta", {}),
            private=bool(obj.get("priv", False)),
            source=obj.get("src", ""),
            significance=obj.get("sig"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise EventError(f"frame put payload is missing or mistypes {exc}") from None
    if not (isinstance(frame.id, str) and isinstance(frame.content, str)):
        raise EventError("frame put payload has a non-string id or content")
    if frame.significance is not None and not _valid_scores(frame.significance):
        raise EventError("frame put payload has malformed significance scores")
    return frame


def _valid_scores(scores: object) -> bool:
    return isinstance(scores, dict) and all(
        isinstance(name, str)
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and 0.0 <= value <= 1.0
        for name, value in scores.items()
    )


def decode_frame_delete(payload: bytes) -> str:
    """The id a FRAME_DELETE record tombstones; raises EventError if malformed."""
    target = _load_object(payload).get("id")
    if not isinstance(target, str):
        raise EventError("frame delete payload has no string id")
    return target


FRAME_EVENT_TYPES = (RecordType.FRAME_PUT, RecordType.FRAME_DELETE)
