"""Validation of request arguments: every field checked, every limit named.

Each function takes the raw ``args`` object of a request and returns typed
values or raises MemorydError with ``bad_request`` (missing field, wrong type,
bad value) or ``limit_exceeded`` (a named limit; the message names it and both
numbers).  Nothing is ever truncated to fit.
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

import orjson

from memoryd.client import errors, protocol
from memoryd.client.errors import MemorydError
from memoryd.storage.frame_table import TIMESTAMP_MS_MAX
from memoryd.storage.search.significance import SIGNIFICANCE_DIMENSIONS


def bad_request(message: str, **details: Any) -> MemorydError:
    return MemorydError(errors.BAD_REQUEST, message, details or None)


def limit_exceeded(name: str, limit: int, got: int, what: str) -> MemorydError:
    return MemorydError(
        errors.LIMIT_EXCEEDED,
        f"{what} is {got}, over {name}={limit}",
        {"limit": name, "max": limit, "got": got},
    )


class FrameInput(NamedTuple):
    """A validated put: everything but the id, sequence number and (maybe) time.

    A named tuple: immutable, and made in a quarter of a frozen dataclass's time
    (one per frame of every put).
    """

    content: str
    namespace: str
    kind: str
    tags: list[str]
    importance: float
    metadata: dict[str, Any]
    private: bool
    source: str
    timestamp_ms: int | None
    expires_at_ms: int | None = None
    # Significance scores the caller gives, by dimension (None: computed when built).
    significance: dict[str, float] | None = None


# The longest time-to-live a put may ask for: about a hundred years.
TTL_S_MAX = 100 * 365 * 86_400

_PUT_FIELDS = frozenset(
    (
        "significance",
        "content",
        "kind",
        "namespace",
        "tags",
        "importance",
        "metadata",
        "private",
        "source",
        "timestamp_ms",
        "ttl_s",
        "expires_at_ms",
    )
)


def utf8_length(value: str, field_name: str) -> int:
    """UTF-8 byte length; lone surrogates (unencodable) are a bad request, not a crash."""
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise bad_request(f"{field_name} is not valid Unicode text") from None


def _string(
    args: dict[str, Any],
    name: str,
    default: str | None,
    limit_name: str,
    limit: int,
    *,
    empty_ok: bool,
) -> str:
    value: object = args.get(name, default)
    if value is None:
        raise bad_request(f"{name} is required")
    if value is default and default is not None:  # an embedded default is valid by construction
        return default
    if type(value) is not str:
        raise bad_request(f"{name} must be a string, got {type(value).__name__}")
    # A UTF-8 character is at most 4 bytes: only a long string needs encoding to measure.
    if len(value) * 4 > limit:
        size = utf8_length(value, name)
        if size > limit:
            raise limit_exceeded(limit_name, limit, size, f"{name} size in bytes")
    if (
        not empty_ok
        and (not value or value[0].isspace() or value[-1].isspace())
        and (not value.strip())
    ):
        raise bad_request(f"{name} must not be empty")
    return value


def optional_int(
    args: dict[str, Any], name: str, *, minimum: int = 0, maximum: int | None = None
) -> int | None:
    value = args.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_request(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise bad_request(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise bad_request(f"{name} must be at most {maximum}, got {value}")
    return value


def optional_timestamp(args: dict[str, Any], name: str) -> int | None:
    """Milliseconds since the epoch, from 0 to the end of year 9999."""
    return optional_int(args, name, minimum=0, maximum=TIMESTAMP_MS_MAX)


def optional_str(args: dict[str, Any], name: str, limit_name: str, limit: int) -> str | None:
    if args.get(name) is None:
        return None
    return _string(args, name, None, limit_name, limit, empty_ok=False)


def page_limit(args: dict[str, Any], default: int) -> int:
    value = optional_int(args, "limit", minimum=1)
    if value is None:
        return default
    if value > protocol.PAGE_FRAMES_MAX:
        raise limit_exceeded("page_frames_max", protocol.PAGE_FRAMES_MAX, value, "limit")
    return value


def frame_id_arg(args: dict[str, Any]) -> str:
    return _string(args, "id", None, "id_bytes_max", protocol.ID_BYTES_MAX, empty_ok=False)


def _tags(args: dict[str, Any]) -> list[str]:
    tags = args.get("tags")
    if tags is None or tags == []:
        return []
    if not isinstance(tags, list):
        raise bad_request(f"tags must be a list of strings, got {type(tags).__name__}")
    if len(tags) > protocol.TAGS_MAX:
        raise limit_exceeded("tags_max", protocol.TAGS_MAX, len(tags), "number of tags")
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise bad_request("each tag must be a non-empty string")
        # An ASCII tag's size is its length (and it cannot hold a lone surrogate).
        size = len(tag) if tag.isascii() else utf8_length(tag, "tag")
        if size > protocol.TAG_BYTES_MAX:
            raise limit_exceeded("tag_bytes_max", protocol.TAG_BYTES_MAX, size, "tag size in bytes")
        if tag not in out:
            out.append(tag)
    return out


def _importance(args: dict[str, Any]) -> float:
    value = args.get("importance", protocol.DEFAULT_IMPORTANCE)
    # The usual case first: a float in range (NaN and infinities fail the comparison).
    if type(value) is float and 0.0 <= value <= 1.0:
        return value
    if value is None:
        return protocol.DEFAULT_IMPORTANCE
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise bad_request(f"importance must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise bad_request(f"importance must be between 0 and 1, got {value}")
    return float(value)


def _metadata(args: dict[str, Any]) -> dict[str, Any]:
    value = args.get("metadata")
    if value is None or value == {}:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"metadata must be a JSON object, got {type(value).__name__}")
    try:
        size = len(orjson.dumps(value))
    except TypeError as exc:  # e.g. an integer beyond 64 bits
        raise bad_request(f"metadata is not encodable: {exc}") from None
    if size > protocol.METADATA_BYTES_MAX:
        raise limit_exceeded(
            "metadata_bytes_max", protocol.METADATA_BYTES_MAX, size, "metadata size in bytes"
        )
    return value


def _private(args: dict[str, Any]) -> bool:
    value = args.get("private", False)
    if not isinstance(value, bool):
        raise bad_request(f"private must be true or false, got {type(value).__name__}")
    return value


def frame_input(args: dict[str, Any]) -> FrameInput:
    """Validate the arguments of one put (also each element of put_batch)."""
    if not _PUT_FIELDS.issuperset(args):
        unknown = set(args) - _PUT_FIELDS
        raise bad_request(f"unknown field(s): {', '.join(sorted(unknown))}")
    # Checked in this order (the first bad field is the one reported), then built
    # positionally: keyword arguments cost a named tuple twice the time.
    content = _string(
        args, "content", None, "content_bytes_max", protocol.CONTENT_BYTES_MAX, empty_ok=False
    )
    namespace = _string(
        args,
        "namespace",
        protocol.DEFAULT_NAMESPACE,
        "namespace_bytes_max",
        protocol.NAMESPACE_BYTES_MAX,
        empty_ok=False,
    )
    kind = _string(
        args,
        "kind",
        protocol.DEFAULT_KIND,
        "kind_bytes_max",
        protocol.KIND_BYTES_MAX,
        empty_ok=False,
    )
    tags = _tags(args)
    importance = _importance(args)
    metadata = _metadata(args)
    private = _private(args)
    source = _string(
        args, "source", "", "source_bytes_max", protocol.SOURCE_BYTES_MAX, empty_ok=True
    )
    timestamp_ms = optional_timestamp(args, "timestamp_ms")
    expires_at_ms = (
        _expiry(args) if "ttl_s" in args or "expires_at_ms" in args else None  # rare: look once
    )
    return FrameInput(
        content,
        namespace,
        kind,
        tags,
        importance,
        metadata,
        private,
        source,
        timestamp_ms,
        expires_at_ms,
        significance_scores(args, "significance") if "significance" in args else None,
    )


def _expiry(args: dict[str, Any]) -> int | None:
    """When the frame expires: ``ttl_s`` seconds from now, or ``expires_at_ms``; never both."""
    ttl_s = optional_int(args, "ttl_s", minimum=1, maximum=TTL_S_MAX)
    expires_at_ms = optional_timestamp(args, "expires_at_ms")
    if ttl_s is not None and expires_at_ms is not None:
        raise bad_request("give ttl_s or expires_at_ms, not both")
    now_ms = time.time_ns() // 1_000_000
    if ttl_s is not None:
        return now_ms + ttl_s * 1000
    if expires_at_ms is not None and expires_at_ms <= now_ms:
        raise bad_request(f"expires_at_ms ({expires_at_ms}) is not in the future")
    return expires_at_ms


def significance_scores(args: dict[str, Any], name: str) -> dict[str, float] | None:
    """An object of significance dimensions (some or all of the six) to numbers in 0-1."""
    value = args.get(name)
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise bad_request(
            f"{name} must be an object of dimension -> score; dimensions: "
            + ", ".join(SIGNIFICANCE_DIMENSIONS)
        )
    out: dict[str, float] = {}
    for dimension, score in value.items():
        if dimension not in SIGNIFICANCE_DIMENSIONS:
            raise bad_request(
                f"{name}: unknown dimension {str(dimension)[:64]!r}; dimensions: "
                + ", ".join(SIGNIFICANCE_DIMENSIONS)
            )
        if (
            isinstance(score, bool)
            or not isinstance(score, int | float)
            or not (math.isfinite(score) and 0.0 <= score <= 1.0)
        ):
            raise bad_request(f"{name}: {dimension} must be a number between 0 and 1")
        out[dimension] = float(score)
    return out


def batch_inputs(args: dict[str, Any]) -> list[FrameInput]:
    """Validate a put_batch: all frames first, so one bad frame stores nothing."""
    frames = args.get("frames")
    if not isinstance(frames, list):
        raise bad_request("frames must be a list of put arguments")
    if not frames:
        raise bad_request("frames must not be empty")
    if len(frames) > protocol.BATCH_FRAMES_MAX:
        raise limit_exceeded(
            "batch_frames_max", protocol.BATCH_FRAMES_MAX, len(frames), "number of frames"
        )
    out: list[FrameInput] = []
    for index, item in enumerate(frames):
        if not isinstance(item, dict):
            raise bad_request(f"frames[{index}] must be an object", index=index)
        try:
            out.append(frame_input(item))
        except MemorydError as exc:
            raise MemorydError(
                exc.code, f"frames[{index}]: {exc.message}", {**exc.details, "index": index}
            ) from None
    return out
