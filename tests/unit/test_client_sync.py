"""The blocking Client against a real Unix-socket server speaking the protocol."""

from __future__ import annotations

import pickle
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoryd.client import (
    Client,
    ClientTimeoutError,
    DaemonConnectionError,
    NotFoundError,
    ProtocolViolationError,
    RequestError,
    UnavailableError,
    errors,
    protocol,
)

from .test_client_server import ProtocolServer, running_server, short_tmpdir


@pytest.fixture
def server() -> Iterator[ProtocolServer]:
    with running_server() as srv:
        yield srv


@pytest.fixture
def client(server: ProtocolServer) -> Iterator[Client]:
    with Client(server.path, timeout=5) as c:
        yield c


# --- connecting -----------------------------------------------------------------


def test_connects_lazily_and_says_hello_first(server: ProtocolServer) -> None:
    c = Client(server.path, client_name="tests")
    try:
        assert server.connections_accepted == 0
        assert c.server_info is None
        c.ping()
        assert server.requests[0] == ("hello", {"protocol": 1, "client": "tests"})
        assert server.ops_received() == ["hello", "ping"]
        assert c.server_info is not None
        assert c.server_info.server == "memoryd"
        assert c.server_info.limits == protocol.LIMITS
    finally:
        c.close()


def test_context_manager_connects_on_enter_and_closes_on_exit(server: ProtocolServer) -> None:
    with Client(server.path) as c:
        assert server.ops_received() == ["hello"]
    with pytest.raises(DaemonConnectionError, match="the client is closed"):
        c.ping()


def test_missing_daemon_raises_connection_error() -> None:
    with short_tmpdir() as tmp:
        path = tmp / "nothing.sock"
        c = Client(path)
        with pytest.raises(DaemonConnectionError) as info:
            c.ping()
        c.close()
    assert str(info.value) == (
        f"connection_failed: memoryd is not running at {path} (no such socket); "
        "start it with `memoryd serve`"
    )
    assert info.value.code == errors.CONNECTION_FAILED


def test_stale_socket_is_reported_as_refused() -> None:
    with short_tmpdir() as tmp:
        path = tmp / "stale.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.bind(str(path))  # bound, never listening: like a daemon that died
        c = Client(path)
        with pytest.raises(DaemonConnectionError, match="connection refused, stale socket"):
            c.stats()
        c.close()


def test_wrong_protocol_in_hello_is_raised(server: ProtocolServer) -> None:
    server.hello_protocol = 2
    c = Client(server.path)
    with pytest.raises(RequestError) as info:
        c.ping()
    c.close()
    assert info.value.code == errors.UNSUPPORTED_VERSION


def test_default_socket_path_comes_from_environment(
    server: ProtocolServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMORYD_SOCKET", str(server.path))
    with Client() as c:
        assert c.socket_path == server.path
        assert c.ping() > 0


# --- ops ------------------------------------------------------------------------


def test_put_get_round_trip_keeps_content_exact(client: Client) -> None:
    content = (
        "emoji 👩‍👩‍👧 café\n\ttabs, NUL \x00, RTL \u05e9\u05dc\u05d5\u05dd, astral \U0001d518 "
    )
    result = client.put(
        content,
        kind="fact",
        namespace="agent-1",
        tags=["a", "b"],
        importance=0.9,
        metadata={"k": [1, 2], "s": "x"},
        source="test",
        timestamp_ms=1_700_000_000_000,
    )
    assert result.is_new
    frame = client.get(result.id)
    assert frame.content == content
    assert (frame.kind, frame.namespace, frame.tags) == ("fact", "agent-1", ("a", "b"))
    assert frame.metadata == {"k": [1, 2], "s": "x"}
    assert (frame.importance, frame.source) == (0.9, "test")
    assert (frame.seq, frame.timestamp_ms) == (result.seq, 1_700_000_000_000)
    assert frame.private is False


def test_put_sends_only_fields_that_differ_from_defaults(
    client: Client, server: ProtocolServer
) -> None:
    client.put("plain")
    assert server.requests[-1] == (
        "put",
        {"content": "plain", "kind": "note", "namespace": "default"},
    )


def test_put_again_returns_existing_frame(client: Client) -> None:
    first = client.put("same")
    second = client.put("same")
    assert second.id == first.id
    assert second.seq == first.seq
    assert not second.is_new


def test_put_tags_as_a_string_is_a_type_error(client: Client) -> None:
    with pytest.raises(TypeError, match="tags"):
        client.put("x", tags="abc")


def test_private_put_passes_the_flag_and_raises_locked(
    client: Client, server: ProtocolServer
) -> None:
    with pytest.raises(UnavailableError) as info:
        client.put("secret", private=True)
    assert info.value.code == errors.LOCKED
    assert server.requests[-1][1]["private"] is True


def test_server_errors_are_typed_and_carry_details(client: Client) -> None:
    with pytest.raises(RequestError) as info:
        client.put_batch([{"content": "ok"}, {"content": "  "}])
    assert info.value.code == errors.BAD_REQUEST
    assert info.value.details == {"index": 1}
    with pytest.raises(NotFoundError):
        client.get("0" * 32)
    with pytest.raises(RequestError) as unknown:
        client.call("no_such_op")
    assert unknown.value.code == errors.UNKNOWN_OP
    # errors cross process boundaries intact
    copy = pickle.loads(pickle.dumps(info.value))
    assert (type(copy), copy.code, copy.details) == (RequestError, "bad_request", {"index": 1})


def test_put_batch_results_in_order(client: Client) -> None:
    results = client.put_batch([{"content": f"m{i}", "kind": "event"} for i in range(5)])
    assert [client.get(r.id).content for r in results] == [f"m{i}" for i in range(5)]
    assert [r.seq for r in results] == sorted(r.seq for r in results)


def test_recent_pages_newest_first(client: Client) -> None:
    ids = [client.put(f"m{i}").id for i in range(5)]
    first = client.recent(limit=3)
    assert [f.id for f in first.frames] == ids[::-1][:3]
    assert first.next_cursor is not None
    second = client.recent(limit=3, cursor=first.next_cursor)
    assert [f.id for f in second.frames] == ids[::-1][3:]
    assert second.next_cursor is None


def test_recent_and_range_filter(client: Client) -> None:
    client.put("a", kind="fact", timestamp_ms=1000)
    client.put("b", kind="note", timestamp_ms=2000)
    client.put("c", kind="fact", namespace="other", timestamp_ms=3000)
    assert [f.content for f in client.recent(kind="fact").frames] == ["c", "a"]
    assert [f.content for f in client.recent(namespace="other").frames] == ["c"]
    page = client.range(since_ms=1000, until_ms=3000)
    assert [f.content for f in page.frames] == ["a", "b"]
    with pytest.raises(RequestError, match="since_ms"):
        client.range(since_ms=5, until_ms=1)


def test_delete_is_idempotent(client: Client) -> None:
    put = client.put("gone soon")
    first = client.delete(put.id)
    assert first.deleted and first.id == put.id and first.seq is not None
    again = client.delete(put.id)
    assert (again.deleted, again.seq) == (False, None)
    with pytest.raises(NotFoundError):
        client.get(put.id)


def test_stats_ping_and_generic_call(client: Client) -> None:
    client.put("x")
    assert client.stats()["frames_live"] == 1
    assert 0 < client.ping() < 5
    assert client.call("echo", {"a": "ü"}) == {"args": {"a": "ü"}}


def test_message_over_the_limit_is_rejected_locally(client: Client, server: ProtocolServer) -> None:
    with pytest.raises(RequestError) as info:
        client.put("x" * (protocol.MESSAGE_BYTES_MAX + 1))
    assert info.value.code == errors.MESSAGE_TOO_LARGE
    assert client.put("still works").is_new
    assert server.connections_accepted == 1


# --- failures of the connection -------------------------------------------------


def test_put_is_retried_once_when_the_connection_breaks(
    client: Client, server: ProtocolServer
) -> None:
    server.drop_after["put"] = 1  # stores, then drops before answering
    result = client.put("durable")
    assert not result.is_new  # the first attempt had stored it: same frame
    assert len(server.frames) == 1
    assert server.connections_accepted == 2
    assert server.ops_received() == ["hello", "put", "hello", "put"]


def test_second_break_is_reported(client: Client, server: ProtocolServer) -> None:
    server.drop_after["stats"] = 2
    with pytest.raises(DaemonConnectionError, match="broke during stats again"):
        client.stats()
    assert client.ping() > 0  # and the client recovers on the next call


def test_op_not_known_idempotent_is_not_retried(client: Client, server: ProtocolServer) -> None:
    server.drop_after["echo"] = 1
    with pytest.raises(DaemonConnectionError, match="not retried"):
        client.call("echo", {})
    assert server.ops_received().count("echo") == 1


def test_timeout_raises_and_next_call_reconnects(server: ProtocolServer) -> None:
    with Client(server.path, timeout=0.2) as c:
        with pytest.raises(ClientTimeoutError, match=r"no response to sleep within 0\.2 s"):
            c.call("sleep", {"ms": 600})
        assert c.ping() > 0
    assert server.connections_accepted == 2


def test_null_id_error_is_raised_as_its_code(client: Client) -> None:
    with pytest.raises(RequestError) as info:
        client.call("null_error")
    assert info.value.code == errors.BAD_FRAME
    assert client.ping() > 0


def test_bad_frame_from_server_is_a_protocol_violation(client: Client) -> None:
    with pytest.raises(ProtocolViolationError, match="bad frame"):
        client.call("garbage")
    assert client.ping() > 0


# --- pipelining -----------------------------------------------------------------


def test_pipeline_put_returns_results_in_order(client: Client, server: ProtocolServer) -> None:
    frames = [{"content": f"item {i}", "tags": [str(i % 3)]} for i in range(1000)]
    results = client.pipeline_put(frames, window=16)
    assert len(results) == 1000 and all(r.is_new for r in results)
    assert [server.frames[r.id]["content"] for r in results] == [f["content"] for f in frames]
    assert client.pipeline_put([]) == []


def test_pipeline_put_raises_first_failure_with_index_and_keeps_others(
    client: Client, server: ProtocolServer
) -> None:
    frames = [
        {"content": "a"},
        {"content": ""},
        {"content": "b"},
        {"content": "c", "private": True},
    ]
    with pytest.raises(RequestError) as info:
        client.pipeline_put(frames)
    assert info.value.code == errors.BAD_REQUEST
    assert info.value.details["index"] == 1
    assert sorted(f["content"] for f in server.frames.values()) == ["a", "b"]


def test_pipeline_put_resends_unanswered_after_a_break(
    client: Client, server: ProtocolServer
) -> None:
    server.drop_after["put"] = 1
    results = client.pipeline_put([{"content": f"p{i}"} for i in range(50)], window=8)
    assert [server.frames[r.id]["content"] for r in results] == [f"p{i}" for i in range(50)]
    assert len(server.frames) == 50
    assert server.connections_accepted == 2


def test_pipeline_window_must_be_positive(client: Client) -> None:
    with pytest.raises(ValueError, match="window"):
        client.pipeline_put([{"content": "x"}], window=0)


def test_repr_shows_path_and_state(tmp_path: Path) -> None:
    c = Client(tmp_path / "s.sock")
    assert repr(c) == f"<Client {str(tmp_path / 's.sock')!r} idle>"
    c.close()
    assert repr(c).endswith("closed>")
