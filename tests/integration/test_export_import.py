"""``export`` and ``import`` (JSON Lines) through real daemons and the real command line."""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memoryd.client import Client, errors
from memoryd.client.import_mem8 import encode_m8
from tests.integration.daemon_process import DaemonProcess
from tests.integration.test_cli import memoryd

FRAMES: list[dict[str, Any]] = [
    {"content": "Caroline went to the support group 🌈", "kind": "fact", "tags": ["caroline"]},
    {
        "content": "  leading and trailing space, \u0000 a NUL, a tab\tand\nnewlines  ",
        "namespace": "work",
        "importance": 0.9,
        "metadata": {"session": 3, "nested": {"a": [1, 2, None]}},
        "source": "slack",
        "timestamp_ms": 1_600_000_000_123,
    },
    {"content": "an old memory", "timestamp_ms": 0, "kind": "event", "tags": ["x", "y", "z"]},
    {"content": "to be deleted", "namespace": "work"},
    {"content": "deleted then stored again", "importance": 0.1},
]


@pytest.fixture
def second(tmp_path: Path, socket_dir: Path) -> Iterator[DaemonProcess]:
    """A second, fresh daemon."""
    process = DaemonProcess(tmp_path / "data2", socket_dir / "second.sock").start()
    yield process
    if process.process is not None and process.process.poll() is None:
        assert process.terminate() == 0, process.stderr()


def live_frames(client: Client) -> dict[str, dict[str, Any]]:
    """Every live frame by id, every field but seq (a position in the log that holds it)."""
    frames: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        page = client.range(limit=1000, cursor=cursor)
        for frame in page.frames:
            fields = dataclasses.asdict(frame)
            del fields["seq"]
            frames[frame.id] = fields
        if page.next_cursor is None:
            return frames
        cursor = page.next_cursor


def fill(client: Client) -> None:
    results = client.put_batch(FRAMES)
    client.delete(results[3].id)
    client.delete(results[4].id)
    again = client.put(**FRAMES[4])
    assert again.is_new and again.id == results[4].id


def test_export_then_import_into_a_fresh_daemon_reproduces_every_frame(
    daemon: DaemonProcess, second: DaemonProcess, tmp_path: Path
) -> None:
    with Client(daemon.socket_path) as client:
        fill(client)
        expected = live_frames(client)
    assert len(expected) == 4
    exported = tmp_path / "export.jsonl"
    run = memoryd("export", "--output", str(exported), socket=daemon.socket_path)
    assert run.code == 0, run.err
    events = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [e["event"] for e in events] == ["frame_put"] * 5 + ["frame_delete"] * 2 + ["frame_put"]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    put = events[1]
    assert set(put) == {
        "event", "id", "seq", "timestamp_ms", "namespace", "kind", "content", "tags",
        "importance", "metadata", "private", "source", "expires_at_ms",
    }  # fmt: skip
    assert put["content"] == FRAMES[1]["content"] and put["timestamp_ms"] == 1_600_000_000_123

    run = memoryd("import", str(exported), "--json", socket=second.socket_path)
    assert run.code == 0, run.err
    summary = run.json()
    assert summary["format"] == "jsonl"
    # The frame put then deleted is never written; the one stored again is, once.
    assert (summary["stored"], summary["existing"], summary["failed"]) == (4, 0, 0), summary
    with Client(second.socket_path) as client:
        assert live_frames(client) == expected
        last_seq = client.stats()["last_seq"]

    # Importing twice adds nothing: not one record.
    run = memoryd("import", str(exported), "--json", socket=second.socket_path)
    assert run.code == 0, run.err
    summary = run.json()
    assert (summary["stored"], summary["existing"], summary["deleted"]) == (0, 4, 0)
    with Client(second.socket_path) as client:
        assert client.stats()["last_seq"] == last_seq
        assert live_frames(client) == expected


def all_blocks(client: Client) -> dict[tuple[str, str], dict[str, Any]]:
    """Every block of the namespaces used below, every field but seq, with its history."""
    blocks = {}
    for namespace in ("default", "agent-7"):
        for block in client.blocks_render(namespace=namespace).blocks:
            fields = dataclasses.asdict(block)
            del fields["seq"]
            history = client.block_history(block.type, namespace=namespace, limit=100)
            fields["history_times"] = [change.timestamp_ms for change in history.changes]
            blocks[(namespace, block.type)] = fields
    return blocks


def test_blocks_and_expiring_frames_round_trip_with_their_times(
    daemon: DaemonProcess, second: DaemonProcess, tmp_path: Path
) -> None:
    with Client(daemon.socket_path) as client:
        client.block_set("persona", "A careful assistant", label="me", chars_limit=300)
        client.block_append("persona", "who keeps notes")
        client.block_set("human", "Caroline, a counsellor", namespace="agent-7", read_only=True)
        client.block_set("scratch", "temporary")
        client.block_delete("scratch")
        client.block_set("goals", "ship the release", namespace="agent-7")
        client.put("expires in a day", ttl_s=86_400)
        expected_blocks = all_blocks(client)
        expected_frames = live_frames(client)
    assert len(expected_blocks) == 3
    assert [f["expires_at_ms"] is not None for f in expected_frames.values()] == [True]
    exported = tmp_path / "export.jsonl"
    assert memoryd("export", "-o", str(exported), socket=daemon.socket_path).code == 0
    assert exported.stat().st_mode & 0o777 == 0o600
    kinds = [json.loads(line)["event"] for line in exported.read_text().splitlines()]
    assert kinds.count("block_update") == 6

    first = memoryd("import", str(exported), "--json", socket=second.socket_path)
    assert first.code == 0, first.err
    assert first.json()["block_changes"] == 6
    with Client(second.socket_path) as client:
        assert all_blocks(client) == expected_blocks
        assert live_frames(client) == expected_frames
        last_seq = client.stats()["last_seq"]
    again = memoryd("import", str(exported), "--json", socket=second.socket_path)
    assert again.code == 0, again.err
    assert (again.json()["block_changes"], again.json()["stored"]) == (0, 0)
    with Client(second.socket_path) as client:
        assert client.stats()["last_seq"] == last_seq


def test_import_into_a_daemon_holding_the_frame_applies_the_delete(
    daemon: DaemonProcess, second: DaemonProcess, tmp_path: Path
) -> None:
    with Client(second.socket_path) as client:
        doomed = client.put(**FRAMES[3])
    with Client(daemon.socket_path) as client:
        fill(client)
    exported = tmp_path / "export.jsonl"
    assert memoryd("export", "-o", str(exported), socket=daemon.socket_path).code == 0
    summary = memoryd("import", str(exported), "--json", socket=second.socket_path).json()
    assert summary["deleted"] == 1
    with Client(second.socket_path) as client, pytest.raises(errors.NotFoundError):
        client.get(doomed.id)


def test_import_reports_bad_lines_by_number_and_imports_the_rest(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    good = {"event": "frame_put", "content": "good one", "namespace": "n"}
    lines = [
        json.dumps(good),
        "{not json",
        "[1, 2]",
        json.dumps({"event": "frame_put", "content": "bad importance", "importance": 7}),
        "",
        json.dumps({"event": "teleport"}),
        json.dumps({"event": "frame_put", "content": "good two", "tags": ["t"]}),
        json.dumps({"event": "record", "record_type": 9, "seq": 1, "payload_base64": ""}),
        json.dumps({"event": "frame_put", "content": "  "}),
        json.dumps({"event": "frame_put", "id": "f" * 32, "content": "wrong id given"}),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    run = memoryd("import", str(path), socket=daemon.socket_path)
    assert run.code == 1
    assert "Traceback" not in run.err
    reported = [line for line in run.err.splitlines() if line.startswith("memoryd: import:")]
    numbers = [int(line.split(": line ")[1].split(":")[0]) for line in reported]
    assert numbers == [2, 3, 4, 6, 9, 10], run.err
    assert "importance must be between 0 and 1" in reported[2]
    assert "imported jsonl: 3 new, 0 already stored, 0 deleted, 1 skipped, 6 failed" in run.out
    with Client(daemon.socket_path) as client:
        contents = {frame["content"] for frame in live_frames(client).values()}
    assert contents == {"good one", "good two", "wrong id given"}


def test_export_pages_and_refuses_bad_arguments(daemon: DaemonProcess) -> None:
    with Client(daemon.socket_path) as client:
        client.put_batch([{"content": f"frame {n}"} for n in range(5)])
        page = client.export_page(0, limit=2)
        assert [e["content"] for e in page.events] == ["frame 0", "frame 1"]
        assert (page.next_after_seq, page.last_seq, page.done) == (2, 5, False)
        page = client.export_page(page.next_after_seq, limit=1000)
        assert [e["seq"] for e in page.events] == [3, 4, 5] and page.done
        assert len(list(client.export_events())) == 5
        assert client.export_page(5).events == () and client.export_page(99).done
        with pytest.raises(errors.RequestError) as caught:
            client.call("export", {"limit": 1001})
        assert caught.value.code == errors.LIMIT_EXCEEDED
        assert "export_records_max" in caught.value.message
        with pytest.raises(errors.RequestError) as caught:
            client.call("export", {"after_seq": -1})
        assert caught.value.code == errors.BAD_REQUEST
        with pytest.raises(errors.RequestError) as caught:
            client.call("export", {"since": 3})
        assert caught.value.code == errors.BAD_REQUEST
        with pytest.raises(errors.UnavailableError) as unavailable:
            client.call("export", {"decrypt": True})
        assert unavailable.value.code == errors.LOCKED


def test_export_of_many_large_frames_splits_pages_under_the_message_limit(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    big = "x" * (200 * 1024)
    with Client(daemon.socket_path) as client:
        for start in range(0, 40, 10):
            client.put_batch([{"content": f"{n} {big}"} for n in range(start, start + 10)])
        first = client.export_page(0)
        assert 0 < len(first.events) < 40 and not first.done
    exported = tmp_path / "big.jsonl"
    assert memoryd("export", "-o", str(exported), socket=daemon.socket_path).code == 0
    assert len(exported.read_text().splitlines()) == 40


def test_import_refuses_unknown_formats_and_missing_files(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    odd = tmp_path / "odd.txt"
    odd.write_text("just some words\n")
    run = memoryd("import", str(odd), socket=daemon.socket_path)
    assert run.code == 2
    assert "cannot tell the format" in run.one_error_line("usage")
    run = memoryd("import", str(tmp_path / "missing.jsonl"), socket=daemon.socket_path)
    assert run.code == 2
    assert "cannot read" in run.one_error_line("usage")


def test_import_m8_then_again_and_a_damaged_m8_changes_nothing(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    blocks = [
        {"content": f"wave memory {n}", "timestamp_us": 1_700_000_000_000_000 + n * 1000,
         "importance": n / 4, "token_id": n}
        for n in range(5)
    ]  # fmt: skip
    good = tmp_path / "memory.m8"
    good.write_bytes(encode_m8(blocks, identity_frequency=42.73))
    run = memoryd("import", str(good), "--namespace", "waves", "--json", socket=daemon.socket_path)
    assert run.json()["stored"] == 5
    with Client(daemon.socket_path) as client:
        frames = sorted(live_frames(client).values(), key=lambda f: f["timestamp_ms"])
        assert [f["content"] for f in frames] == [b["content"] for b in blocks]
        assert [f["importance"] for f in frames] == [round(n / 4 * 65535) / 65535 for n in range(5)]
        assert frames[1]["timestamp_ms"] == 1_700_000_000_001
        assert {f["namespace"] for f in frames} == {"waves"}
        assert frames[3]["metadata"]["mem8"]["token_id"] == 3
        last_seq = client.stats()["last_seq"]
    again = memoryd(
        "import", str(good), "--namespace", "waves", "--json", socket=daemon.socket_path
    )
    assert (again.json()["stored"], again.json()["existing"]) == (0, 5)

    truncated = tmp_path / "truncated.m8"
    truncated.write_bytes(encode_m8([*blocks, {"content": "the sixth"}])[:-100])
    run = memoryd("import", str(truncated), socket=daemon.socket_path)
    assert run.code == 2
    assert "nothing imported" in run.one_error_line("usage")
    assert "truncated block 6 of 6" in run.err
    bad_magic = tmp_path / "bad.m8"
    bad_magic.write_bytes(b"MEMX" + encode_m8([{"content": "never stored"}])[4:])
    run = memoryd("import", str(bad_magic), "--format", "m8", socket=daemon.socket_path)
    assert run.code == 2 and "bad magic" in run.err
    with Client(daemon.socket_path) as client:
        assert client.stats()["last_seq"] == last_seq


def test_import_mem8_json_compressed_and_mem0_with_a_bad_element(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    contexts = {"contexts": [
        {"content": "ctx one", "score": 0.9, "timestamp": "2024-01-02T03:04:05Z"},
        {"content": "ctx two", "score": 0.1},
    ]}  # fmt: skip
    packed = tmp_path / "contexts.bin"
    packed.write_bytes(zlib.compress(json.dumps(contexts).encode()))
    summary = memoryd("import", str(packed), "--json", socket=daemon.socket_path).json()
    assert (summary["format"], summary["stored"]) == ("mem8-json", 2)
    mem0 = [
        {"memory": "Prefers green tea", "user_id": "alice", "created_at": "2024-07-20T10:00:00Z"},
        {"memory": ""},
        {"memory": "Lives in Lisbon", "user_id": "bob", "metadata": {"confidence": 0.7}},
    ]
    path = tmp_path / "mem0.json"
    path.write_text(json.dumps(mem0))
    run = memoryd("import", str(path), socket=daemon.socket_path)
    assert run.code == 1
    assert "line 2: bad_request: content must not be empty" in run.err
    assert "2 new" in run.out
    with Client(daemon.socket_path) as client:
        frames = {f["content"]: f for f in live_frames(client).values()}
    assert frames["ctx one"]["importance"] == 0.9
    assert frames["ctx one"]["timestamp_ms"] == 1_704_164_645_000
    assert frames["Prefers green tea"]["namespace"] == "alice"
    assert frames["Prefers green tea"]["kind"] == "fact"
    assert frames["Lives in Lisbon"]["metadata"] == {"confidence": 0.7}
