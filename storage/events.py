"""Events: what a record's payload means.

Every change to memoryd is one event, stored as one record.  The payload is a
JSON object (orjson) with short, stable keys; the record header already holds
the sequence number and the timestamp, so events do not repeat them.

``FRAME_PUT`` payload::

    {"id": str, "ns": str, "kind": str, "content": str, "tags": [str],
     "imp": float, "meta": object, "priv": bool, "src": str, "exp"?: int,
     "sig"?: {str: float}}

``exp`` (present only when the frame has a time-to-live) is when it expires,
in milliseconds since the epoch: from then on it leaves every query, and
compaction may drop it.

A private frame's ``FRAME_PUT`` holds none of what its writer wrote in clear:
its content, tags, metadata and source are one sealed envelope (memoryd.crypto,
bound to id, namespace and seq), base64 in ``sealed``::

    {"id": str, "ns": str, "kind": str, "imp": float, "priv": true, "sealed": str}

The envelope's plaintext is ``{"content": str, "tags": [str], "meta": object,
"src": str}`` (``private_fields``).  Its id is keyed, not content-addressed
(see daemon/vault.py), so it reveals nothing of the content either.

``sig`` (present only when the caller gave it) holds significance scores by
dimension name (storage/search/significance.py), each within 0-1; the builder
computes the dimensions not given.  A private frame's ``sig`` is sealed with
its other fields, never in clear.

``FRAME_DELETE`` payload::

    {"id": str}

``BLOCK_UPDATE`` payload (a change of one core memory block; see
``BlockChange``)::

    {"ns": str, "type": str, "op": "set" | "append" | "replace",
     "content": str, "label": str, "desc": str, "limit": int, "ro": bool}
    {"ns": str, "type": str, "op": "delete"}

A set, append or replace carries the block's whole state *after* the change,
so that folding it never depends on re-running the edit; ``op`` records what
kind of edit it was, for the block's history.

A frame's ``id`` is content-addressed (see ``frame_id``): the same content in
the same namespace and kind always gets the same id, which is how a retried or
repeated put is recognised and never stored twice.
"""

from __future__ import annotations

import base64
import binascii
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
    expires_at_ms: int | None = None  # None: the frame never expires
    # A private frame as read from the log: its envelope, with content, tags,
    # metadata and source empty until opened (``with_private_fields``).
    sealed: bytes | None = None
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
            "expires_at_ms": self.expires_at_ms,
        }
        if self.significance is not None:
            out["significance"] = self.significance
        return out


def encode_frame_put(frame: Frame) -> bytes:
    """Payload of a FRAME_PUT record for ``frame`` (seq and time live in the header).

    A frame with ``sealed`` set is written sealed: only its id, namespace,
    kind, importance, expiry and envelope.
    """
    if frame.sealed is not None:
        return encode_sealed_put(frame, frame.sealed)
    obj = {
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
    if frame.expires_at_ms is not None:
        obj["exp"] = frame.expires_at_ms
    if frame.significance is not None:
        obj["sig"] = frame.significance
    return orjson.dumps(obj)


def encode_sealed_put(frame: Frame, envelope: bytes) -> bytes:
    """Payload of a private frame's FRAME_PUT: nothing its writer wrote but in ``envelope``."""
    obj = {
        "id": frame.id,
        "ns": frame.namespace,
        "kind": frame.kind,
        "imp": frame.importance,
        "priv": True,
        "sealed": base64.b64encode(envelope).decode("ascii"),
    }
    if frame.expires_at_ms is not None:
        obj["exp"] = frame.expires_at_ms
    return orjson.dumps(obj)


def private_fields(frame: Frame) -> bytes:
    """The plaintext a private frame's envelope seals: everything its writer wrote."""
    fields: dict[str, Any] = {
        "content": frame.content,
        "tags": frame.tags,
        "meta": frame.metadata,
        "src": frame.source,
    }
    if frame.significance is not None:
        fields["sig"] = frame.significance
    return orjson.dumps(fields)


def with_private_fields(frame: Frame, plaintext: bytes) -> Frame:
    """A copy of sealed ``frame`` with the fields ``plaintext`` (an opened envelope) holds."""
    obj = _load_object(plaintext)
    content, tags = obj.get("content"), obj.get("tags", [])
    meta, src = obj.get("meta", {}), obj.get("src", "")
    if not (
        isinstance(content, str)
        and isinstance(tags, list)
        and isinstance(meta, dict)
        and isinstance(src, str)
    ):
        raise EventError("a private frame's sealed fields are malformed")
    significance = obj.get("sig")
    if significance is not None and not _valid_scores(significance):
        raise EventError("a private frame's sealed significance scores are malformed")
    return Frame(
        frame.id,
        frame.seq,
        frame.timestamp_ms,
        frame.namespace,
        frame.kind,
        content,
        tags,
        frame.importance,
        meta,
        True,
        src,
        frame.expires_at_ms,
        frame.sealed,
        significance,
    )


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
    if obj.get("priv") is True and "sealed" in obj:
        return _decode_sealed_put(obj, seq, timestamp_ms)
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
            expires_at_ms=obj.get("exp"),
            significance=obj.get("sig"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise EventError(f"frame put payload is missing or mistypes {exc}") from None
    if not (isinstance(frame.id, str) and isinstance(frame.content, str)):
        raise EventError("frame put payload has a non-string id or content")
    if frame.significance is not None and not _valid_scores(frame.significance):
        raise EventError("frame put payload has malformed significance scores")
    if frame.expires_at_ms is not None and type(frame.expires_at_ms) is not int:
        raise EventError("frame put payload has a non-integer exp")
    return frame


def _decode_sealed_put(obj: dict[str, Any], seq: int, timestamp_ms: int) -> Frame:
    fid, namespace, kind, sealed = obj.get("id"), obj.get("ns"), obj.get("kind"), obj.get("sealed")
    if not (
        isinstance(fid, str)
        and isinstance(namespace, str)
        and isinstance(kind, str)
        and isinstance(sealed, str)
    ):
        raise EventError("private frame put payload is missing or mistypes a field")
    try:
        envelope = base64.b64decode(sealed, validate=True)
        importance = float(obj.get("imp", 0.5))
    except (binascii.Error, TypeError, ValueError):
        raise EventError("private frame put payload has a malformed envelope") from None
    expires_at_ms = obj.get("exp")
    if expires_at_ms is not None and type(expires_at_ms) is not int:
        raise EventError("private frame put payload has a non-integer exp")
    return Frame(
        fid,
        seq,
        timestamp_ms,
        namespace,
        kind,
        "",
        [],
        importance,
        {},
        True,
        "",
        expires_at_ms,
        envelope,
    )


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

# Core memory block types, in the order they are rendered into a prompt.
BLOCK_TYPES = ("system", "persona", "human", "facts", "goals", "scratch")
BLOCK_OPS = ("set", "append", "replace", "delete")


@dataclass(frozen=True, slots=True)
class BlockChange:
    """One change of a core memory block, as a BLOCK_UPDATE record stores it.

    For ``set``, ``append`` and ``replace`` the fields are the block's state
    after the change; for ``delete`` only the namespace and type matter.
    """

    namespace: str
    block_type: str
    op: str
    content: str = ""
    label: str = ""
    description: str = ""
    chars_limit: int = 0
    read_only: bool = False

    def to_payload(self) -> dict[str, Any]:
        """The payload as a plain JSON object (what export writes and import reads)."""
        if self.op == "delete":
            return {"ns": self.namespace, "type": self.block_type, "op": "delete"}
        return {
            "ns": self.namespace,
            "type": self.block_type,
            "op": self.op,
            "content": self.content,
            "label": self.label,
            "desc": self.description,
            "limit": self.chars_limit,
            "ro": self.read_only,
        }

    @classmethod
    def from_payload(cls, obj: dict[str, Any]) -> BlockChange:
        """The change a payload object describes; raises EventError if malformed."""
        try:
            change = cls(
                namespace=obj["ns"],
                block_type=obj["type"],
                op=obj["op"],
                content=obj.get("content", ""),
                label=obj.get("label", ""),
                description=obj.get("desc", ""),
                chars_limit=obj.get("limit", 0),
                read_only=obj.get("ro", False),
            )
        except (KeyError, TypeError) as exc:
            raise EventError(f"block update payload is missing {exc}") from None
        strings = (change.namespace, change.block_type, change.content, change.label)
        if not all(isinstance(value, str) for value in (*strings, change.description)):
            raise EventError("block update payload has a non-string field")
        if change.block_type not in BLOCK_TYPES or change.op not in BLOCK_OPS:
            raise EventError("block update payload has an unknown type or op")
        if type(change.chars_limit) is not int or type(change.read_only) is not bool:
            raise EventError("block update payload mistypes limit or ro")
        if change.op != "delete" and len(change.content) > change.chars_limit:
            raise EventError("block update payload holds more characters than its limit")
        return change


def encode_block_update(change: BlockChange) -> bytes:
    """Payload of a BLOCK_UPDATE record."""
    return orjson.dumps(change.to_payload())


def decode_block_update(payload: bytes) -> BlockChange:
    """The change a BLOCK_UPDATE record stores; raises EventError if malformed."""
    return BlockChange.from_payload(_load_object(payload))
