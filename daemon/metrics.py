"""Request counters and latency histograms, and the Prometheus text exposition.

``Metrics.observe`` is called once per answered request (connection.py), so
it is a few dict look-ups and a bisect, no allocation.  Labels are bounded:
an op the daemon does not implement is counted as ``unknown`` and an error
code is one of the protocol's codes, so no client can grow the label set.

``render`` writes Prometheus' text format 0.0.4; ``serve_http`` answers
``GET /metrics`` with it on a loopback TCP socket (config ``metrics_address``).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from memoryd.client import errors

log = logging.getLogger("memoryd.metrics")

# Seconds.  From 50 µs (a cached get) to 10 s (a put stuck behind a full queue).
LATENCY_BUCKETS_S: Final = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)
UNKNOWN_OP: Final = "unknown"
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
HTTP_REQUEST_BYTES_MAX: Final = 8 * 1024  # a scrape's request line and headers
HTTP_READ_TIMEOUT_S: Final = 5.0
HTTP_CONNECTIONS_MAX: Final = 16  # scrapers, not clients: a handful at most
_KNOWN_CODES: Final = frozenset(errors.ERROR_CODES)
assert list(LATENCY_BUCKETS_S) == sorted(set(LATENCY_BUCKETS_S))


class Histogram:
    """Counts of observations per bucket (not cumulative: ``render`` adds them up)."""

    __slots__ = ("counts", "total", "total_s")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS_S) + 1)  # the last is +Inf
        self.total = 0
        self.total_s = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.total += 1
        self.total_s += seconds

    def cumulative(self) -> list[int]:
        out: list[int] = []
        running = 0
        for count in self.counts:
            running += count
            out.append(running)
        return out

    def _check(self) -> None:
        assert sum(self.counts) == self.total
        assert self.total_s >= 0


class Metrics:
    """Requests by (op, code) and a latency histogram per op."""

    def __init__(self, ops: Iterable[str] = ()) -> None:
        self._ops: set[str] = {"hello", *ops}
        self.requests: dict[tuple[str, str], int] = {}
        self.latency: dict[str, Histogram] = {}

    def add_ops(self, ops: Iterable[str]) -> None:
        self._ops.update(ops)

    def observe(self, op: str | None, code: str, seconds: float) -> None:
        """One answered request: ``code`` is "ok" or the error code sent."""
        label = op if op in self._ops else UNKNOWN_OP
        if code != "ok" and code not in _KNOWN_CODES:
            code = errors.INTERNAL
        key = (label, code)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get(label)
        if histogram is None:
            histogram = self.latency[label] = Histogram()
        histogram.observe(seconds)

    def _check(self) -> None:
        for histogram in self.latency.values():
            histogram._check()
        by_op: dict[str, int] = {}
        for (op, _code), count in self.requests.items():
            by_op[op] = by_op.get(op, 0) + count
        assert by_op == {op: h.total for op, h in self.latency.items()}


# -- exposition ---------------------------------------------------------------------

# (stats key, metric name, type, help); a dotted key reaches into a nested dict.
STATS_METRICS: Final = (
    ("uptime_s", "memoryd_uptime_seconds", "gauge", "Seconds since the daemon started."),
    ("frames_live", "memoryd_frames_live", "gauge", "Live frames."),
    ("frames_deleted", "memoryd_frames_deleted", "gauge", "Deleted frames."),
    ("last_seq", "memoryd_log_last_seq", "gauge", "Sequence number of the last record."),
    ("log.log_bytes", "memoryd_log_bytes", "gauge", "Bytes in the log's segments."),
    ("log.segments", "memoryd_log_segments", "gauge", "Segment files in the log."),
    ("log.syncs", "memoryd_log_syncs_total", "counter", "fdatasync calls on the log."),
    ("commits", "memoryd_commits_total", "counter", "Group commits written."),
    ("events_committed", "memoryd_events_committed_total", "counter", "Records committed."),
    ("commit_failures", "memoryd_commit_failures_total", "counter", "Failed group commits."),
    ("commit_queue_events", "memoryd_commit_queue_events", "gauge", "Events waiting to commit."),
    ("connections", "memoryd_connections", "gauge", "Open client connections."),
    ("connections_max", "memoryd_connections_max", "gauge", "The connections_max limit."),
    (
        "connections_accepted",
        "memoryd_connections_accepted_total",
        "counter",
        "Connections accepted.",
    ),
    (
        "connections_refused",
        "memoryd_connections_refused_total",
        "counter",
        "Connections refused (busy, uid, stopping).",
    ),
    ("builder_lag", "memoryd_builder_lag_records", "gauge", "Committed records not yet built."),
    ("builder_failures", "memoryd_builder_failures_total", "counter", "Failed build steps."),
    (
        "builder_progressing",
        "memoryd_builder_progressing",
        "gauge",
        "1 while the builder keeps up.",
    ),
    ("disk_free_bytes", "memoryd_disk_free_bytes", "gauge", "Free bytes for the data directory."),
)


def render(metrics: Metrics, stats: Mapping[str, Any]) -> str:
    """The Prometheus text exposition (format 0.0.4) of ``metrics`` and ``stats``."""
    lines: list[str] = []
    lines += [
        "# HELP memoryd_requests_total Requests answered, by op and result code.",
        "# TYPE memoryd_requests_total counter",
    ]
    for (op, code), count in sorted(metrics.requests.items()):
        lines.append(f"memoryd_requests_total{_labels(op=op, code=code)} {count}")
    lines += [
        "# HELP memoryd_request_duration_seconds From reading a request to writing its answer.",
        "# TYPE memoryd_request_duration_seconds histogram",
    ]
    for op, histogram in sorted(metrics.latency.items()):
        bounds = [*(_number(b) for b in LATENCY_BUCKETS_S), "+Inf"]
        for bound, count in zip(bounds, histogram.cumulative(), strict=True):
            lines.append(
                f"memoryd_request_duration_seconds_bucket{_labels(op=op, le=bound)} {count}"
            )
        lines.append(
            f"memoryd_request_duration_seconds_sum{_labels(op=op)} {_number(histogram.total_s)}"
        )
        lines.append(f"memoryd_request_duration_seconds_count{_labels(op=op)} {histogram.total}")
    for key, name, kind, help_text in STATS_METRICS:
        value = _lookup(stats, key)
        if value is None:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
    return "\n".join(lines) + "\n"


def _lookup(stats: Mapping[str, Any], key: str) -> str | None:
    value: Any = stats
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return _number(value)
    return None


def _number(value: float) -> str:
    if isinstance(value, float):
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        if math.isnan(value):
            return "NaN"
        return repr(value)
    return str(value)


def _labels(**labels: str) -> str:
    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    inner = ",".join(f'{name}="{escape(value)}"' for name, value in labels.items())
    return "{" + inner + "}"


# -- the HTTP endpoint ----------------------------------------------------------------


async def serve_http(
    sock: socket.socket | None, host: str, port: int, render_text: Callable[[], str]
) -> asyncio.Server:
    """Answer ``GET /metrics`` on ``sock`` (a passed socket) or on a new ``host:port``."""
    active: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(active) >= HTTP_CONNECTIONS_MAX:
            writer.close()
            return
        active.add(writer)
        try:
            await _answer(reader, writer, render_text)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a scraper that went away or sent junk: nothing to answer
        finally:
            active.discard(writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    if sock is not None:
        return await asyncio.start_server(handle, sock=sock, limit=HTTP_REQUEST_BYTES_MAX)
    return await asyncio.start_server(
        handle, host=host, port=port, limit=HTTP_REQUEST_BYTES_MAX, reuse_address=True
    )


async def _answer(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, render_text: Callable[[], str]
) -> None:
    async with asyncio.timeout(HTTP_READ_TIMEOUT_S):
        head = await reader.readuntil(b"\r\n\r\n")
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        status, body, content_type = "400 Bad Request", "bad request\n", "text/plain"
    elif parts[0] not in ("GET", "HEAD"):
        status, body, content_type = "405 Method Not Allowed", "GET only\n", "text/plain"
    elif parts[1].split("?", 1)[0] != "/metrics":
        status, body, content_type = "404 Not Found", "see /metrics\n", "text/plain"
    else:
        status, body, content_type = "200 OK", render_text(), CONTENT_TYPE
    data = body.encode("utf-8")
    header = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    writer.write(header if parts and parts[0] == "HEAD" else header + data)
    await writer.drain()
