"""Decoding results into models, and the shared request building of ops.py (no I/O)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import memoryd.client
from memoryd.client import errors, ops, protocol
from memoryd.client.models import DeleteResult, Frame, Page, PutResult, ServerInfo

WIRE_FRAME: dict[str, Any] = {
    "id": "ab" * 16,
    "seq": 7,
    "timestamp_ms": 1_700_000_000_123,
    "namespace": "default",
    "kind": "note",
    "content": "x",
    "tags": ["a"],
    "importance": 1,
    "metadata": {"k": {"n": [1]}},
    "private": False,
    "source": "",
    "expires_at_ms": None,
}


def test_frame_from_wire_round_trips_through_asdict() -> None:
    frame = Frame.from_wire(WIRE_FRAME)
    assert frame.tags == ("a",)
    assert frame.importance == 1.0 and isinstance(frame.importance, float)
    assert dataclasses.asdict(frame) == {**WIRE_FRAME, "tags": ("a",), "importance": 1.0}
    assert frame.time.isoformat() == "2023-11-14T22:13:20.123000+00:00"
    assert hash(frame) == hash(Frame.from_wire(WIRE_FRAME))  # metadata takes no part


def test_unknown_fields_are_ignored() -> None:
    frame = Frame.from_wire({**WIRE_FRAME, "added_in_a_later_release": 1})
    assert frame.id == WIRE_FRAME["id"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", "7"),
        ("seq", True),
        ("tags", "a"),
        ("tags", [1]),
        ("importance", None),
        ("metadata", []),
        ("private", 0),
        ("content", None),
    ],
)
def test_a_malformed_frame_is_a_protocol_violation_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(errors.ProtocolViolationError, match=rf"frame\.{field}"):
        Frame.from_wire({**WIRE_FRAME, field: value})


def test_missing_field_and_non_object_are_violations() -> None:
    wire = dict(WIRE_FRAME)
    del wire["source"]
    with pytest.raises(errors.ProtocolViolationError, match=r"frame\.source"):
        Frame.from_wire(wire)
    with pytest.raises(errors.ProtocolViolationError, match="frame must be an object"):
        Frame.from_wire([WIRE_FRAME])


def test_other_results() -> None:
    put = PutResult.from_wire({"id": "i", "seq": 1, "timestamp_ms": 2, "is_new": True})
    assert put == PutResult("i", 1, 2, True)
    page = Page.from_wire({"frames": [WIRE_FRAME], "next_cursor": None})
    assert page.frames[0].seq == 7 and page.next_cursor is None
    assert Page.from_wire({"frames": [], "next_cursor": "12"}).next_cursor == "12"
    assert DeleteResult.from_wire({"id": "i", "deleted": False, "seq": None}).seq is None
    info = ServerInfo.from_wire(
        {"protocol": 1, "server": "memoryd", "version": "1", "limits": {"a_max": 1}, "ops": []}
    )
    assert info.limits == {"a_max": 1}
    with pytest.raises(errors.ProtocolViolationError, match="limits"):
        ServerInfo.from_wire(
            {"protocol": 1, "server": "m", "version": "1", "limits": {"x": "1"}, "ops": []}
        )


# --- ops ------------------------------------------------------------------------


def test_put_args_leave_out_defaults_and_copy_inputs() -> None:
    assert ops.put_args("c") == {"content": "c", "kind": "note", "namespace": "default"}
    tags = ["t"]
    meta = {"m": 1}
    args = ops.put_args(
        "c", tags=tags, importance=0.0, metadata=meta, private=True, source="s", timestamp_ms=0
    )
    assert args == {
        "content": "c",
        "kind": "note",
        "namespace": "default",
        "tags": ["t"],
        "importance": 0.0,
        "metadata": {"m": 1},
        "private": True,
        "source": "s",
        "timestamp_ms": 0,
    }
    assert args["tags"] is not tags and args["metadata"] is not meta


def test_page_args_leave_out_unset_filters() -> None:
    assert ops.recent().args == {"limit": 20}
    assert ops.time_range(since_ms=0, kind="k").args == {"limit": 100, "kind": "k", "since_ms": 0}
    assert ops.time_range().op == "range"


def test_frames_must_be_mappings() -> None:
    with pytest.raises(TypeError, match=r"frames\[1\]"):
        ops.put_batch([{"content": "a"}, "b"])  # type: ignore[list-item]


def test_put_batch_result_count_is_checked() -> None:
    call = ops.put_batch([{"content": "a"}, {"content": "b"}])
    one = {"id": "i", "seq": 1, "timestamp_ms": 2, "is_new": True}
    assert len(call.decode({"results": [one, one]})) == 2
    with pytest.raises(errors.ProtocolViolationError, match="2 results"):
        call.decode({"results": [one]})


def test_generic_calls_retry_only_known_idempotent_ops() -> None:
    assert ops.generic("get", {"id": "x"}).idempotent
    assert not ops.generic("subscribe", None).idempotent
    assert ops.generic("subscribe", None).args == {}


def test_result_of_maps_responses() -> None:
    assert ops.result_of({"id": 1, "ok": True, "result": {"a": 1}}) == {"a": 1}
    with pytest.raises(errors.NotFoundError):
        ops.result_of({"id": 1, "ok": False, "error": {"code": "not_found", "message": "m"}})
    for bad in ({"ok": True}, {"ok": "yes"}, {"ok": False, "error": "x"}):
        with pytest.raises(errors.ProtocolViolationError):
            ops.result_of(bad)


def test_hello_result_with_another_protocol_is_a_violation() -> None:
    call = ops.hello("me")
    assert call.args == {"protocol": protocol.PROTOCOL_VERSION, "client": "me"}
    result = {"protocol": 2, "server": "memoryd", "version": "9", "limits": {}, "ops": []}
    with pytest.raises(errors.ProtocolViolationError, match="protocol 2"):
        call.decode(result)


def test_pipeline_results_raise_the_first_failure_with_its_index() -> None:
    ok = {"id": 1, "ok": True, "result": {"id": "i", "seq": 1, "timestamp_ms": 2, "is_new": True}}
    locked = {"id": 2, "ok": False, "error": {"code": "locked", "message": "m"}}
    bad = {"id": 3, "ok": False, "error": {"code": "bad_request", "message": "m"}}
    assert len(ops.pipeline_results([ok, ok])) == 2
    with pytest.raises(errors.UnavailableError) as info:
        ops.pipeline_results([ok, locked, bad])
    assert info.value.details == {"index": 1}


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (FileNotFoundError(2, "x"), "memoryd is not running at /s (no such socket); start it"),
        (ConnectionRefusedError(111, "x"), "(connection refused, stale socket)"),
        (PermissionError(13, "x"), "cannot connect to memoryd at /s (permission denied)"),
        (OSError(36, "File name too long"), "cannot connect to memoryd at /s (File name too long)"),
    ],
)
def test_connect_errors_are_one_line_naming_the_path(exc: OSError, expected: str) -> None:
    error = ops.connect_error(Path("/s"), exc)
    assert isinstance(error, errors.DaemonConnectionError)
    assert expected in error.message and "\n" not in error.message


def test_connect_timeout_is_a_client_timeout() -> None:
    error = ops.connect_error(Path("/s"), TimeoutError())
    assert isinstance(error, errors.ClientTimeoutError)


def test_oversize_request_is_a_request_error() -> None:
    with pytest.raises(errors.RequestError) as info:
        ops.encode(1, "put", {"content": "x" * protocol.MESSAGE_BYTES_MAX})
    assert info.value.code == errors.MESSAGE_TOO_LARGE


# --- the package ----------------------------------------------------------------


def test_public_api_is_explicit() -> None:
    for name in memoryd.client.__all__:
        assert hasattr(memoryd.client, name), name
    assert memoryd.client.PROTOCOL_VERSION == 1
    assert memoryd.client.LIMITS is protocol.LIMITS


def test_client_never_imports_daemon_storage_or_crypto() -> None:
    code = (
        "import sys, memoryd.client, memoryd.client.cli;"
        "bad = [m for m in sys.modules if m.split('.')[:2] in "
        "(['memoryd','daemon'], ['memoryd','storage'], ['memoryd','crypto'])];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
