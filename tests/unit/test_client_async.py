"""The AsyncClient against a real Unix-socket server speaking the protocol (under uvloop)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from memoryd.client import (
    AsyncClient,
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
async def client(server: ProtocolServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.path, timeout=5) as c:
        yield c


def _other_tasks() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[arg-type]


async def test_runs_under_uvloop() -> None:
    loop = asyncio.get_running_loop()
    assert type(loop).__module__.startswith("uvloop")


async def test_connects_lazily_and_says_hello_first(server: ProtocolServer) -> None:
    c = AsyncClient(server.path, client_name="async-tests")
    assert server.connections_accepted == 0
    assert c.server_info is None
    assert await c.ping() > 0
    assert server.requests[0] == ("hello", {"protocol": 1, "client": "async-tests"})
    assert c.server_info is not None and c.server_info.version == "0.0-test"
    await c.close()
    with pytest.raises(DaemonConnectionError, match="the client is closed"):
        await c.ping()


async def test_missing_daemon_raises_connection_error() -> None:
    with short_tmpdir() as tmp:
        c = AsyncClient(tmp / "none.sock")
        with pytest.raises(DaemonConnectionError, match=r"not running at .*none\.sock"):
            await c.stats()
        await c.close()


async def test_ops_round_trip(client: AsyncClient) -> None:
    content = "🧠 memory\nwith lines"
    put = await client.put(content, kind="fact", tags=["t"], metadata={"n": 1})
    assert put.is_new
    again = await client.put(content, kind="fact")
    assert (again.id, again.is_new) == (put.id, False)
    frame = await client.get(put.id)
    assert (frame.content, frame.tags, frame.metadata) == (content, ("t",), {"n": 1})
    batch = await client.put_batch([{"content": "b1"}, {"content": "b2"}])
    assert [(await client.get(r.id)).content for r in batch] == ["b1", "b2"]
    page = await client.recent(limit=2)
    assert [f.content for f in page.frames] == ["b2", "b1"] and page.next_cursor is not None
    assert [f.content for f in (await client.range(kind="fact")).frames] == [content]
    deleted = await client.delete(put.id)
    assert deleted.deleted
    assert not (await client.delete(put.id)).deleted
    with pytest.raises(NotFoundError):
        await client.get(put.id)
    assert (await client.stats())["frames_live"] == 2
    assert await client.call("echo", {"x": 1}) == {"args": {"x": 1}}


async def test_errors_are_typed(client: AsyncClient) -> None:
    with pytest.raises(UnavailableError) as locked:
        await client.put("secret", private=True)
    assert locked.value.code == errors.LOCKED
    with pytest.raises(RequestError) as unknown:
        await client.call("no_such_op")
    assert unknown.value.code == errors.UNKNOWN_OP
    with pytest.raises(RequestError) as too_big:
        await client.put("x" * (protocol.MESSAGE_BYTES_MAX + 1))
    assert too_big.value.code == errors.MESSAGE_TOO_LARGE


async def test_many_concurrent_calls_share_one_connection(
    client: AsyncClient, server: ProtocolServer
) -> None:
    results = await asyncio.gather(*(client.put(f"c{i}") for i in range(300)))
    assert len({r.id for r in results}) == 300
    frames = await asyncio.gather(*(client.get(r.id) for r in results))
    assert [f.content for f in frames] == [f"c{i}" for i in range(300)]
    assert server.connections_accepted == 1


async def test_responses_out_of_order_reach_their_callers(client: AsyncClient) -> None:
    slow = asyncio.create_task(client.call("sleep", {"ms": 300}))
    fast = asyncio.create_task(client.call("sleep", {"ms": 10}))
    done, _ = await asyncio.wait({slow, fast}, return_when=asyncio.FIRST_COMPLETED)
    assert done == {fast}
    assert fast.result() == {"slept_ms": 10}
    assert await slow == {"slept_ms": 300}


async def test_in_flight_is_bounded(server: ProtocolServer) -> None:
    async with AsyncClient(server.path, in_flight_max=2) as c:
        await asyncio.gather(*(c.call("sleep", {"ms": 50}) for _ in range(6)))
    assert server.sleeping_max == 2


async def test_timeout_leaves_the_connection_usable(server: ProtocolServer) -> None:
    async with AsyncClient(server.path, timeout=0.1) as c:
        with pytest.raises(ClientTimeoutError, match="no response to sleep"):
            await c.call("sleep", {"ms": 400})
        assert await c.ping() > 0
        await asyncio.sleep(0.4)  # the late response arrives and is dropped
        assert await c.ping() > 0
    assert server.connections_accepted == 1


async def test_cancelled_call_leaves_the_connection_usable(
    client: AsyncClient, server: ProtocolServer
) -> None:
    task = asyncio.create_task(client.call("sleep", {"ms": 300}))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await client.ping() > 0
    assert server.connections_accepted == 1


async def test_close_fails_waiting_calls_and_leaves_no_task(server: ProtocolServer) -> None:
    c = AsyncClient(server.path)
    await c.connect()
    waiting = asyncio.create_task(c.call("sleep", {"ms": 2000}))
    await asyncio.sleep(0.05)
    await c.close()
    with pytest.raises(DaemonConnectionError, match="the client is closed"):
        await waiting
    assert _other_tasks() == set()
    await c.close()  # idempotent


async def test_put_is_retried_once_when_the_connection_breaks(
    client: AsyncClient, server: ProtocolServer
) -> None:
    server.drop_after["put"] = 1
    result = await client.put("durable")
    assert not result.is_new
    assert len(server.frames) == 1
    assert server.connections_accepted == 2


async def test_concurrent_calls_survive_a_break_on_one_reconnection(
    client: AsyncClient, server: ProtocolServer
) -> None:
    server.drop_after["put"] = 1
    results = await asyncio.gather(*(client.put(f"r{i}") for i in range(50)))
    assert sorted(server.frames[r.id]["content"] for r in results) == sorted(
        f"r{i}" for i in range(50)
    )
    assert server.connections_accepted == 2


async def test_op_not_known_idempotent_is_not_retried(
    client: AsyncClient, server: ProtocolServer
) -> None:
    server.drop_after["echo"] = 1
    with pytest.raises(DaemonConnectionError, match="not retried"):
        await client.call("echo", {})
    assert server.ops_received().count("echo") == 1


async def test_second_break_is_reported(client: AsyncClient, server: ProtocolServer) -> None:
    server.drop_after["stats"] = 2
    with pytest.raises(DaemonConnectionError, match="again after reconnecting"):
        await client.stats()
    assert await client.ping() > 0


async def test_null_id_error_and_bad_frames(client: AsyncClient) -> None:
    with pytest.raises(RequestError) as info:
        await client.call("null_error")
    assert info.value.code == errors.BAD_FRAME
    with pytest.raises(ProtocolViolationError, match="bad frame"):
        await client.call("garbage")
    assert await client.ping() > 0


async def test_pipeline_put(client: AsyncClient, server: ProtocolServer) -> None:
    frames = [{"content": f"pipe {i}"} for i in range(1000)]
    results = await client.pipeline_put(frames)
    assert [server.frames[r.id]["content"] for r in results] == [f["content"] for f in frames]
    assert await client.pipeline_put([]) == []


async def test_pipeline_put_failure_names_the_index(
    client: AsyncClient, server: ProtocolServer
) -> None:
    with pytest.raises(RequestError) as info:
        await client.pipeline_put([{"content": "ok"}, {"content": " "}, {"content": "ok2"}])
    assert info.value.details["index"] == 1
    assert sorted(f["content"] for f in server.frames.values()) == ["ok", "ok2"]


async def test_pipeline_put_resends_unanswered_after_a_break(
    client: AsyncClient, server: ProtocolServer
) -> None:
    server.drop_after["put"] = 1
    results = await client.pipeline_put([{"content": f"p{i}"} for i in range(100)])
    assert [server.frames[r.id]["content"] for r in results] == [f"p{i}" for i in range(100)]
    assert server.connections_accepted == 2


async def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="timeout"):
        AsyncClient("/x", timeout=0)
    with pytest.raises(ValueError, match="in_flight_max"):
        AsyncClient("/x", in_flight_max=0)
