"""Error codes of the wire protocol and the exceptions that carry them.

Codes are stable strings: clients in any language switch on them.  PROTOCOL.md
lists them with their meaning; ``ERROR_CODES`` is the same list in code.
Exception names end in ``Error`` and never reuse a built-in name.
"""

from __future__ import annotations

from typing import Any, Final

# Framing is broken: the server answers once, then closes the connection.
BAD_FRAME: Final = "bad_frame"
MESSAGE_TOO_LARGE: Final = "message_too_large"
UNSUPPORTED_VERSION: Final = "unsupported_version"
# The message framed fine but is not a valid request; the connection stays open.
BAD_JSON: Final = "bad_json"
BAD_REQUEST: Final = "bad_request"
UNKNOWN_OP: Final = "unknown_op"
HANDSHAKE_REQUIRED: Final = "handshake_required"
LIMIT_EXCEEDED: Final = "limit_exceeded"
# The request was valid but could not be served.
NOT_FOUND: Final = "not_found"
BUSY: Final = "busy"
DISK_FULL: Final = "disk_full"
STORAGE_ERROR: Final = "storage_error"
SHUTTING_DOWN: Final = "shutting_down"
PERMISSION_DENIED: Final = "permission_denied"
LOCKED: Final = "locked"
WRONG_KEY: Final = "wrong_key"
TAMPERED: Final = "tampered"
READ_ONLY: Final = "read_only"
INTERNAL: Final = "internal"
# Raised by clients only, never sent by the server.
CONNECTION_FAILED: Final = "connection_failed"
TIMEOUT: Final = "timeout"
PROTOCOL_VIOLATION: Final = "protocol_violation"

ERROR_CODES: Final[dict[str, str]] = {
    BAD_FRAME: "the length prefix or version byte is invalid; the connection is closed",
    MESSAGE_TOO_LARGE: "the length prefix exceeds message_bytes_max; the connection is closed",
    UNSUPPORTED_VERSION: "the message or hello names a protocol version the server does not speak",
    BAD_JSON: "the body is not valid UTF-8 JSON, or not a JSON object",
    BAD_REQUEST: "a field is missing, has the wrong type or an invalid value",
    UNKNOWN_OP: "the op is not one the server knows",
    HANDSHAKE_REQUIRED: "the first request on a connection must be hello",
    LIMIT_EXCEEDED: "a named limit was exceeded; the message names it and its value",
    NOT_FOUND: "no live frame has that id (or no such block, or no such text in it)",
    BUSY: "a bounded queue is full; retry later",
    DISK_FULL: "the disk is full; nothing was stored, reads still work",
    STORAGE_ERROR: "the log could not be written; nothing was stored",
    SHUTTING_DOWN: "the daemon is stopping and takes no new work",
    PERMISSION_DENIED: "the peer's uid is not allowed",
    LOCKED: "private memories are locked",
    WRONG_KEY: "the passphrase or key does not unlock the vault; nothing was changed",
    TAMPERED: "a private frame or a key failed verification; details name the frame id",
    READ_ONLY: "the core memory block is read-only; nothing was changed",
    INTERNAL: "an unexpected server error; the daemon keeps serving",
    CONNECTION_FAILED: "(client) the daemon could not be reached",
    TIMEOUT: "(client) no response within the timeout",
    PROTOCOL_VIOLATION: "(client) the server sent something the protocol does not allow",
}


class MemorydError(Exception):
    """Base of every memoryd error; ``code`` is one of ERROR_CODES."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's default pickling replays ``self.args`` (one string) into
        # __init__, which takes three; errors must cross process boundaries.
        return (type(self), (self.code, self.message, self.details or None))


class RequestError(MemorydError):
    """The server rejected a request (bad input, unknown op, limit)."""


class NotFoundError(MemorydError):
    """No live frame has that id."""


class UnavailableError(MemorydError):
    """The server cannot serve now (busy, disk full, shutting down, locked)."""


class DaemonConnectionError(MemorydError):
    """The daemon could not be reached, or the connection broke."""


class ClientTimeoutError(MemorydError):
    """No response arrived within the client's timeout."""


class ProtocolViolationError(MemorydError):
    """The peer sent bytes the protocol does not allow."""


_CLASS_BY_CODE: dict[str, type[MemorydError]] = {
    NOT_FOUND: NotFoundError,
    BUSY: UnavailableError,
    DISK_FULL: UnavailableError,
    STORAGE_ERROR: UnavailableError,
    SHUTTING_DOWN: UnavailableError,
    LOCKED: UnavailableError,
    CONNECTION_FAILED: DaemonConnectionError,
    TIMEOUT: ClientTimeoutError,
    PROTOCOL_VIOLATION: ProtocolViolationError,
}


def error_from_wire(error: dict[str, Any]) -> MemorydError:
    """The typed exception for a server error object ``{code, message, details?}``."""
    code = str(error.get("code", INTERNAL))
    message = str(error.get("message", ""))
    details = error.get("details")
    cls = _CLASS_BY_CODE.get(code, RequestError)
    return cls(code, message, details if isinstance(details, dict) else None)
