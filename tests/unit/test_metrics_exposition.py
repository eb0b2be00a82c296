"""Counters, histograms and the Prometheus text they are exposed as, also over HTTP."""

from __future__ import annotations

import asyncio
import re

import pytest

from memoryd.daemon.metrics import (
    CONTENT_TYPE,
    LATENCY_BUCKETS_S,
    Histogram,
    Metrics,
    render,
    serve_http,
)

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    """A strict reader of the text format: (type of each family, samples in order)."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples: list[tuple[str, dict[str, str], float]] = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types, f"TYPE twice for {name}"
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert family in types or name in types, f"sample before its TYPE: {line!r}"
        parsed = dict(LABEL.findall(labels or ""))
        samples.append((name, parsed, float(value)))
    return types, samples


def test_histogram_buckets_are_inclusive_upper_bounds() -> None:
    histogram = Histogram()
    histogram.observe(LATENCY_BUCKETS_S[0])  # exactly on the first bound: first bucket
    histogram.observe(LATENCY_BUCKETS_S[0] * 1.01)
    histogram.observe(1000.0)  # beyond the last bound: +Inf
    histogram._check()
    assert histogram.counts[0] == 1
    assert histogram.counts[1] == 1
    assert histogram.counts[-1] == 1
    assert histogram.cumulative()[-1] == histogram.total == 3


def test_labels_stay_bounded() -> None:
    metrics = Metrics(["put", "get"])
    metrics.observe("put", "ok", 0.001)
    metrics.observe("x" * 1000, "unknown_op", 0.0001)  # any op a client makes up
    metrics.observe(None, "bad_json", 0.0001)  # no op could be read
    metrics.observe("get", "made_up_code", 0.0001)
    metrics._check()
    assert set(metrics.requests) == {
        ("put", "ok"),
        ("unknown", "unknown_op"),
        ("unknown", "bad_json"),
        ("get", "internal"),
    }


def test_exposition_is_valid_and_consistent() -> None:
    metrics = Metrics(["put", "get"])
    for seconds in (0.0002, 0.003, 0.003, 0.7):
        metrics.observe("put", "ok", seconds)
    metrics.observe("put", "disk_full", 0.004)
    metrics.observe("get", "not_found", 0.00003)
    stats = {
        "uptime_s": 12.5,
        "frames_live": 3,
        "builder_progressing": True,
        "log": {"log_bytes": 618, "segments": 1},
        "not_a_metric": "text",
    }
    types, samples = parse(render(metrics, stats))
    assert types["memoryd_requests_total"] == "counter"
    assert types["memoryd_request_duration_seconds"] == "histogram"
    assert types["memoryd_frames_live"] == "gauge"
    values = {(name, tuple(sorted(labels.items()))): value for name, labels, value in samples}
    assert values[("memoryd_requests_total", (("code", "ok"), ("op", "put")))] == 4
    assert values[("memoryd_requests_total", (("code", "disk_full"), ("op", "put")))] == 1
    assert values[("memoryd_frames_live", ())] == 3
    assert values[("memoryd_builder_progressing", ())] == 1
    assert values[("memoryd_log_bytes", ())] == 618
    assert "memoryd_commits_total" not in types  # absent from stats: not invented
    for op, count in (("put", 5), ("get", 1)):
        buckets = [
            (labels["le"], value)
            for name, labels, value in samples
            if name == "memoryd_request_duration_seconds_bucket" and labels["op"] == op
        ]
        counts = [value for _, value in buckets]
        assert counts == sorted(counts), "buckets are cumulative"
        assert buckets[-1] == ("+Inf", count)
        assert values[("memoryd_request_duration_seconds_count", (("op", op),))] == count
    assert values[("memoryd_request_duration_seconds_sum", (("op", "put"),))] == pytest.approx(
        0.0002 + 0.003 + 0.003 + 0.7 + 0.004
    )


def test_label_values_are_escaped() -> None:
    metrics = Metrics(['we"ird\\op\n'])
    metrics.observe('we"ird\\op\n', "ok", 0.001)
    _types, samples = parse(render(metrics, {}))
    assert any(labels.get("op") == 'we\\"ird\\\\op\\n' for _, labels, _ in samples)


async def http_get(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return status_line, headers, body


async def test_http_endpoint() -> None:
    metrics = Metrics(["put"])
    metrics.observe("put", "ok", 0.001)
    server = await serve_http(None, "127.0.0.1", 0, lambda: render(metrics, {"frames_live": 1}))
    port = server.sockets[0].getsockname()[1]
    try:
        status, headers, body = await http_get(
            port, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        assert status == "HTTP/1.1 200 OK"
        assert headers["Content-Type"] == CONTENT_TYPE
        assert int(headers["Content-Length"]) == len(body)
        parse(body.decode())
        assert b'memoryd_requests_total{op="put",code="ok"} 1' in body
        assert (await http_get(port, b"GET / HTTP/1.1\r\n\r\n"))[0] == "HTTP/1.1 404 Not Found"
        status = (await http_get(port, b"POST /metrics HTTP/1.1\r\n\r\n"))[0]
        assert status == "HTTP/1.1 405 Method Not Allowed"
        assert (await http_get(port, b"nonsense\r\n\r\n"))[0] == "HTTP/1.1 400 Bad Request"
        status, headers, body = await http_get(port, b"HEAD /metrics HTTP/1.0\r\n\r\n")
        assert status == "HTTP/1.1 200 OK" and body == b""
    finally:
        server.close()
        await server.wait_closed()
