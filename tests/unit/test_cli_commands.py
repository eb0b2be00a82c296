"""The CLI's client commands: parsing, output, exit codes, against a real socket server."""

from __future__ import annotations

import argparse
import io
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from memoryd.client import cli

from .test_client_server import ProtocolServer, running_server, short_tmpdir


@pytest.fixture
def server() -> Iterator[ProtocolServer]:
    with running_server() as srv:
        yield srv


def make_parser() -> argparse.ArgumentParser:
    parser, subparsers = cli.build_parser()
    cli.add_client_commands(subparsers)
    return parser


def run(argv: list[str]) -> int:
    args = make_parser().parse_args(argv)
    code: int = args.func(args)
    return code


class Runner:
    """Runs commands against one server and returns (exit code, stdout, stderr)."""

    def __init__(self, server: ProtocolServer, capsys: pytest.CaptureFixture[str]) -> None:
        self.server = server
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        code = run(["--socket", str(self.server.path), *argv])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *argv: str) -> Any:
        code, out, err = self("--json", *argv)
        assert (code, err) == (0, "")
        assert out.endswith("\n") and out.count("\n") == 1
        return json.loads(out)


@pytest.fixture
def memoryd(server: ProtocolServer, capsys: pytest.CaptureFixture[str]) -> Runner:
    return Runner(server, capsys)


def set_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


# --- parsing --------------------------------------------------------------------


def test_every_command_sets_func_and_global_options_go_anywhere(tmp_path: Path) -> None:
    parser = make_parser()
    for argv in (["put", "x"], ["get", "i"], ["recent"], ["range"], ["delete", "i"], ["stats"]):
        args = parser.parse_args(argv)
        assert callable(args.func)
        assert args.json is False and args.timeout == cli.DEFAULT_TIMEOUT_S
    before = parser.parse_args(["--json", "--socket", str(tmp_path), "ping"])
    after = parser.parse_args(["ping", "--json", "--socket", str(tmp_path), "--timeout", "2"])
    assert (before.json, before.socket) == (True, tmp_path)
    assert (after.json, after.socket, after.timeout) == (True, tmp_path, 2.0)


def test_socket_default_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORYD_SOCKET", "/run/x.sock")
    assert make_parser().parse_args(["stats"]).socket == Path("/run/x.sock")


def test_put_options_parse(tmp_path: Path) -> None:
    args = make_parser().parse_args(
        [
            "put",
            "text",
            "--kind=fact",
            "--tag",
            "a",
            "--tag",
            "b",
            "--importance",
            "0.8",
            "--namespace",
            "ns",
            "--private",
            "--meta",
            "n=1",
            "--meta",
            "s=hello=world",
            "--meta",
            'q="1"',
            "--meta",
            'o={"k": [true]}',
            "--source",
            "cli",
            "--timestamp-ms",
            "5",
        ]
    )
    assert (args.text, args.kind, args.tags, args.importance) == ("text", "fact", ["a", "b"], 0.8)
    assert (args.namespace, args.private, args.source, args.timestamp_ms) == ("ns", True, "cli", 5)
    assert dict(args.metadata) == {"n": 1, "s": "hello=world", "q": "1", "o": {"k": [True]}}


def test_times_parse_as_ms_or_iso_8601() -> None:
    parser = make_parser()
    args = parser.parse_args(
        ["range", "--since", "1700000000000", "--until", "2024-01-02T03:04:05Z"]
    )
    assert args.since == 1_700_000_000_000
    assert args.until == int(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp() * 1000)
    local = parser.parse_args(["range", "--since", "2024-01-02"]).since
    assert local == int(datetime(2024, 1, 2).timestamp() * 1000)  # naive: local time
    offset = parser.parse_args(["range", "--since", "2024-01-02T00:00:00.250+02:00"]).since
    assert offset == int(datetime(2024, 1, 1, 22, 0, 0, tzinfo=UTC).timestamp() * 1000) + 250


@pytest.mark.parametrize(
    "argv",
    [
        ["range", "--since", "yesterday"],
        ["recent", "--limit", "0"],
        ["recent", "--limit", "many"],
        ["put", "x", "--meta", "novalue"],
        ["put", "x", "--meta", "=1"],
        ["put", "x", "--importance", "high"],
        ["stats", "--timeout", "0"],
        ["nonsense"],
        [],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        make_parser().parse_args(argv)
    assert info.value.code == cli.EXIT_USAGE
    assert "usage:" in capsys.readouterr().err


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["put", "--help"]):
        with pytest.raises(SystemExit):
            make_parser().parse_args(argv)
        out = capsys.readouterr().out
        assert "exit codes:" in out
        assert "3  the daemon could not be reached" in out
        assert "4  not found" in out


# --- commands against a server --------------------------------------------------


def test_put_from_argument_and_get_prints_full_content(
    memoryd: Runner, server: ProtocolServer
) -> None:
    content = "multi\nline 🧠 naïve — ✓\n\nend"
    code, out, err = memoryd("put", content, "--kind", "fact", "--tag", "x", "--meta", "n=2")
    assert (code, err) == (0, "")
    (frame_id,) = server.frames
    assert out == f"stored {frame_id} (seq 1)\n"
    assert server.frames[frame_id]["content"] == content
    assert server.frames[frame_id]["metadata"] == {"n": 2}
    code, out, err = memoryd("put", content, "--kind", "fact")
    assert out == f"already stored {frame_id} (seq 1)\n"
    code, out, err = memoryd("get", frame_id)
    assert code == 0
    header, body = out.split("\n\n", 1)
    assert body == content + "\n"
    assert f"id         {frame_id}" in header
    assert "kind       fact" in header and "tags       x" in header
    assert 'metadata   {"n":2}' in header


def test_put_reads_stdin_exactly_less_its_final_line_ending(
    memoryd: Runner, server: ProtocolServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_stdin(monkeypatch, "from stdin ✨\r\nsecond line\n\n".encode())
    assert memoryd("put")[0] == 0
    set_stdin(monkeypatch, "dash 🚀".encode())
    assert memoryd("put", "-", "--namespace", "n2")[0] == 0
    set_stdin(monkeypatch, b"windows line\r\n")
    assert memoryd("put", "--namespace", "n3")[0] == 0
    contents = sorted(f["content"] for f in server.frames.values())
    # Only the one line ending that ends the input goes (what `echo` adds).
    assert contents == ["dash 🚀", "from stdin ✨\r\nsecond line\n", "windows line"]


def test_stdin_that_is_not_utf8_is_a_usage_error(
    memoryd: Runner, server: ProtocolServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_stdin(monkeypatch, b"\xff\xfe bad")
    code, out, err = memoryd("put")
    assert (code, out) == (cli.EXIT_USAGE, "")
    assert err == "memoryd: usage: stdin is not valid UTF-8 (invalid start byte at byte 0)\n"
    assert server.connections_accepted == 0  # nothing was sent


def test_json_output_is_the_result_object(memoryd: Runner, server: ProtocolServer) -> None:
    put = memoryd.json("put", "jsonable 🧾", "--timestamp-ms", "1000")
    assert put["is_new"] is True and put["timestamp_ms"] == 1000
    got = memoryd.json("get", put["id"])
    assert got["frame"]["content"] == "jsonable 🧾"
    assert got["frame"] == server.frames[put["id"]]
    page = memoryd.json("recent")
    assert [f["id"] for f in page["frames"]] == [put["id"]] and page["next_cursor"] is None
    assert memoryd.json("stats")["frames_live"] == 1
    assert memoryd.json("ping")["pong"] is True
    assert memoryd.json("delete", put["id"]) == {"id": put["id"], "deleted": True, "seq": 2}


def test_recent_lists_one_line_per_frame_and_hints_the_cursor(memoryd: Runner) -> None:
    for i in range(3):
        memoryd("put", f"note {i}\nwith\tcontrol \x1b[31m chars", "--timestamp-ms", str(i * 1000))
    code, out, err = memoryd("recent", "--limit", "2")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    when = datetime.fromtimestamp(2).strftime("%Y-%m-%d %H:%M:%S")
    assert lines[0].startswith(when + "  ")
    assert lines[0].endswith("  note  default  note 2 with control \ufffd[31m chars")
    assert err == "more: --cursor 2\n"
    code, out, err = memoryd("recent", "--cursor", "2")
    assert len(out.splitlines()) == 1 and err == ""


def test_long_content_is_cut_in_listings_only(memoryd: Runner, server: ProtocolServer) -> None:
    long = "word " * 100
    memoryd("put", long)
    code, out, _ = memoryd("recent")
    assert code == 0 and out.rstrip("\n").endswith("…")
    assert len(out.split("  ", 4)[-1].rstrip("\n")) == cli.SNIPPET_CHARS
    assert next(iter(server.frames.values()))["content"] == long


def test_range_filters_by_time(memoryd: Runner) -> None:
    for i in range(4):
        memoryd("put", f"t{i}", "--timestamp-ms", str(i * 1000))
    code, out, err = memoryd("range", "--since", "1000", "--until", "3000")
    assert code == 0
    assert [line.rsplit("  ", 1)[-1] for line in out.splitlines()] == ["t1", "t2"]
    code, out, err = memoryd("range", "--since", "5", "--until", "1")
    assert code == cli.EXIT_FAILED
    assert err == "memoryd: bad_request: since_ms is after until_ms\n"


def test_empty_listing_says_so_on_stderr(memoryd: Runner) -> None:
    assert memoryd("recent") == (0, "", "no frames\n")


def test_delete_stats_ping_text(memoryd: Runner) -> None:
    code, out, _ = memoryd("put", "bye")
    frame_id = out.split()[1]
    assert memoryd("delete", frame_id) == (0, f"deleted {frame_id} (seq 2)\n", "")
    assert memoryd("delete", frame_id) == (
        0,
        f"nothing to delete: no live frame has id {frame_id}\n",
        "",
    )
    code, out, _ = memoryd("stats")
    assert "frames_deleted  1\n" in out and "server          test\n" in out
    code, out, _ = memoryd("ping")
    assert code == 0 and out.startswith("pong from memoryd 0.0-test at ")


# --- failures -------------------------------------------------------------------


def test_not_found_exits_4(memoryd: Runner) -> None:
    code, out, err = memoryd("get", "f" * 32)
    assert (code, out) == (cli.EXIT_NOT_FOUND, "")
    assert err == f"memoryd: not_found: no frame {'f' * 32}\n"


def test_server_error_exits_1(memoryd: Runner) -> None:
    code, out, err = memoryd("put", "secret", "--private")
    assert (code, out) == (cli.EXIT_FAILED, "")
    assert err == "memoryd: locked: private memories are locked\n"


def test_missing_daemon_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    with short_tmpdir() as tmp:
        path = tmp / "absent.sock"
        code = run(["--socket", str(path), "stats"])
    out, err = capsys.readouterr()
    assert (code, out) == (cli.EXIT_UNREACHABLE, "")
    assert err == (
        f"memoryd: connection_failed: memoryd is not running at {path} (no such socket); "
        "start it with `memoryd serve`\n"
    )


def test_timeout_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    # A daemon that never answers: a listening socket that nobody accepts from.
    with short_tmpdir() as tmp, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(str(tmp / "silent.sock"))
        silent.listen(1)
        code = run(["--socket", str(tmp / "silent.sock"), "--timeout", "0.1", "stats"])
    out, err = capsys.readouterr()
    assert (code, out) == (cli.EXIT_UNREACHABLE, "")
    assert err == "memoryd: timeout: no response to hello within 0.1 s\n"


def test_errors_are_always_one_line(memoryd: Runner) -> None:
    code, out, err = memoryd("get", "line1\nline2")
    assert (code, out) == (cli.EXIT_NOT_FOUND, "")
    assert err.count("\n") == 1
