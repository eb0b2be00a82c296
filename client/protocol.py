"""The wire protocol, with no I/O: framing, limits, requests and responses.

PROTOCOL.md beside this file is the full specification.  In short, every
message in either direction is::

    +----------------+-----------+---------------------------+
    | length: u32 BE | version:  | body: `length` bytes of   |
    | (body bytes)   | u8 = 1    | UTF-8 JSON, one object    |
    +----------------+-----------+---------------------------+

Requests are ``{"id": <int or str>, "op": <str>, "args": {...}}``; responses
are ``{"id": ..., "ok": true, "result": {...}}`` or ``{"id": ..., "ok": false,
"error": {"code": str, "message": str, "details": {...}?}}``.  The daemon, the
blocking client and the asyncio client all frame and parse through this
module.
"""

from __future__ import annotations

import struct
from typing import Any, Final, NamedTuple

import orjson

from . import errors

PROTOCOL_VERSION: Final = 1
HEADER_STRUCT: Final = struct.Struct(">IB")
HEADER_BYTES: Final = HEADER_STRUCT.size  # 5

# Named limits.  The server enforces them and reports them in hello's result.
MESSAGE_BYTES_MAX: Final = 8 * 1024 * 1024
CONTENT_BYTES_MAX: Final = 256 * 1024
BATCH_FRAMES_MAX: Final = 1000
TAGS_MAX: Final = 64
TAG_BYTES_MAX: Final = 128
METADATA_BYTES_MAX: Final = 16 * 1024
NAMESPACE_BYTES_MAX: Final = 128
KIND_BYTES_MAX: Final = 64
SOURCE_BYTES_MAX: Final = 256
ID_BYTES_MAX: Final = 64
PAGE_FRAMES_MAX: Final = 1000
REQUEST_ID_BYTES_MAX: Final = 64
CURSOR_BYTES_MAX: Final = 32
# Core memory blocks: the largest size limit a block may be given (its own
# ``chars_limit``, Unicode characters), and its label and description.
BLOCK_CHARS_MAX: Final = 100_000
BLOCK_LABEL_BYTES_MAX: Final = 128
BLOCK_DESCRIPTION_BYTES_MAX: Final = 1024

LIMITS: Final[dict[str, int]] = {
    "message_bytes_max": MESSAGE_BYTES_MAX,
    "content_bytes_max": CONTENT_BYTES_MAX,
    "batch_frames_max": BATCH_FRAMES_MAX,
    "tags_max": TAGS_MAX,
    "tag_bytes_max": TAG_BYTES_MAX,
    "metadata_bytes_max": METADATA_BYTES_MAX,
    "namespace_bytes_max": NAMESPACE_BYTES_MAX,
    "kind_bytes_max": KIND_BYTES_MAX,
    "source_bytes_max": SOURCE_BYTES_MAX,
    "page_frames_max": PAGE_FRAMES_MAX,
    "block_chars_max": BLOCK_CHARS_MAX,
}

# A batch of the largest frames must still fit a record payload (16 MiB), and
# a single largest put must fit a message with room for its JSON envelope.
assert CONTENT_BYTES_MAX + METADATA_BYTES_MAX + 64 * 1024 < MESSAGE_BYTES_MAX
assert TAGS_MAX * TAG_BYTES_MAX < METADATA_BYTES_MAX
# A full block (4 bytes a character at most) fits a message with room to spare.
assert BLOCK_CHARS_MAX * 4 + 64 * 1024 < MESSAGE_BYTES_MAX

DEFAULT_NAMESPACE: Final = "default"
DEFAULT_KIND: Final = "note"
DEFAULT_IMPORTANCE: Final = 0.5
# The documented default set of kinds; any other non-empty string is accepted.
DEFAULT_KINDS: Final = ("conversation", "fact", "note", "breakthrough", "event", "task")


class FramingError(errors.MemorydError):
    """The byte stream cannot be split into messages; the connection must close.

    ``bodies`` holds the complete messages that preceded the bad header in the
    same ``feed`` call, so that a reader can still answer them before it sends
    the framing error and closes; how bytes were split into reads must not
    change which requests get served.
    """

    bodies: list[bytes] = []  # replaced per instance, never mutated


def encode_message(body: dict[str, Any]) -> bytes:
    """Frame one message.  Raises FramingError if the body exceeds the limit."""
    payload = orjson.dumps(body)
    if len(payload) > MESSAGE_BYTES_MAX:
        raise FramingError(
            errors.MESSAGE_TOO_LARGE,
            f"message of {len(payload)} bytes exceeds message_bytes_max={MESSAGE_BYTES_MAX}",
        )
    return HEADER_STRUCT.pack(len(payload), PROTOCOL_VERSION) + payload


def encode_request(request_id: int | str, op: str, args: dict[str, Any]) -> bytes:
    return encode_message({"id": request_id, "op": op, "args": args})


def encode_ok(request_id: Any, result: dict[str, Any]) -> bytes:
    return encode_message({"id": request_id, "ok": True, "result": result})


def encode_error(
    request_id: Any, code: str, message: str, details: dict[str, Any] | None = None
) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return encode_message({"id": request_id, "ok": False, "error": error})


class MessageDecoder:
    """Splits a byte stream into message bodies (bytes), never buffering past the limit.

    ``feed`` returns the complete bodies seen so far; a partial message stays
    buffered.  It raises FramingError (``message_too_large`` or ``bad_frame``
    or ``unsupported_version``) as soon as a header is invalid, before
    buffering the oversized body; the error's ``bodies`` carries the complete
    messages of that same call that came before the bad header.  After a
    FramingError the decoder is dead: the connection must be closed.
    """

    __slots__ = ("_buffer", "_limit")

    def __init__(self, message_bytes_max: int = MESSAGE_BYTES_MAX) -> None:
        self._buffer = bytearray()
        self._limit = message_bytes_max

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        bodies: list[bytes] = []
        buf = self._buffer
        pos = 0
        while len(buf) - pos >= HEADER_BYTES:
            length, version = HEADER_STRUCT.unpack_from(buf, pos)
            if version != PROTOCOL_VERSION:
                exc = FramingError(
                    errors.UNSUPPORTED_VERSION,
                    f"message version byte {version}, this server speaks {PROTOCOL_VERSION}",
                )
                exc.bodies = bodies
                raise exc
            if length > self._limit:
                exc = FramingError(
                    errors.MESSAGE_TOO_LARGE,
                    f"length prefix {length} exceeds message_bytes_max={self._limit}",
                )
                exc.bodies = bodies
                raise exc
            end = pos + HEADER_BYTES + length
            if len(buf) < end:
                break
            bodies.append(bytes(buf[pos + HEADER_BYTES : end]))
            pos = end
        if pos:
            del buf[:pos]
        return bodies


class Request(NamedTuple):
    """A parsed request: its id (echoed back), op name and arguments (immutable, cheap)."""

    id: int | str | None
    op: str
    args: dict[str, Any]


def _id_acceptable(request_id: object) -> bool:
    return request_id is None or (
        isinstance(request_id, int | str)
        and not isinstance(request_id, bool)
        # Bytes, as the limit's name says (orjson has already rejected lone surrogates).
        and len(str(request_id).encode()) <= REQUEST_ID_BYTES_MAX
    )


def parse_request(body: bytes) -> Request:
    """Parse one request body; raises MemorydError(bad_json | bad_request).

    The error carries the request id in ``details["id"]`` whenever one could
    be read, so that the response can still be matched by the client.
    """
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.MemorydError(errors.BAD_JSON, f"body is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise errors.MemorydError(errors.BAD_JSON, "body must be a JSON object")
    request_id = obj.get("id")
    # The usual id, an integer, passes at once: orjson reads no integer wider than
    # 64 bits (a wider one becomes a float), so it has at most 20 characters.
    if type(request_id) is not int and not _id_acceptable(request_id):
        raise errors.MemorydError(
            errors.BAD_REQUEST,
            f"id must be an integer or a string of at most {REQUEST_ID_BYTES_MAX} bytes",
        )
    op = obj.get("op")
    if not isinstance(op, str):
        raise errors.MemorydError(errors.BAD_REQUEST, "op must be a string", {"id": request_id})
    args = obj.get("args", {})
    if not isinstance(args, dict):
        raise errors.MemorydError(
            errors.BAD_REQUEST, "args must be a JSON object", {"id": request_id}
        )
    return Request(request_id, op, args)


def parse_response(body: bytes) -> dict[str, Any]:
    """Parse one response body as a client; raises ProtocolViolationError if malformed."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.ProtocolViolationError(
            errors.PROTOCOL_VIOLATION, f"response is not JSON: {exc}"
        ) from None
    if not isinstance(obj, dict) or "ok" not in obj:
        raise errors.ProtocolViolationError(
            errors.PROTOCOL_VIOLATION, "response is not an object with 'ok'"
        )
    return obj
