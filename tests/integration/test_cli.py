"""The ``memoryd`` command line, run as real subprocesses against a real daemon.

Every command is the installed console script (or ``python -m memoryd.daemon``
where that is the point), so argument parsing, exit codes, stdin, stdout and
stderr are exactly what a shell sees.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memoryd.client import Client
from tests.integration.daemon_process import DaemonProcess

SCRIPT = Path(sys.executable).parent / "memoryd"
MEMORYD = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "memoryd.daemon"]


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)

    def one_error_line(self, code: str) -> str:
        """The single stderr line ``memoryd: <code>: ...``, with nothing on stdout."""
        assert "Traceback" not in self.err
        lines = self.err.splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith(f"memoryd: {code}: "), self.err
        assert self.out == ""
        return lines[0]


def memoryd(
    *args: str,
    socket: Path | None = None,
    env_socket: Path | None = None,
    stdin: bytes = b"",
    command: list[str] = MEMORYD,
) -> Run:
    """Run ``memoryd [--socket S] ARGS``; ``env_socket`` sets MEMORYD_SOCKET instead."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    if env_socket is not None:
        env["MEMORYD_SOCKET"] = str(env_socket)
    prefix = ["--socket", str(socket)] if socket is not None else []
    done = subprocess.run(
        [*command, *prefix, *args], input=stdin, capture_output=True, timeout=60, env=env
    )
    return Run(done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8"))


def run_all(calls: list[tuple[tuple[str, ...], dict[str, Any]]]) -> list[Run]:
    """Independent invocations side by side (each one mostly waits on Python's start-up)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda call: memoryd(*call[0], **call[1]), calls))


def test_put_with_every_option_then_get(daemon: DaemonProcess) -> None:
    path = daemon.socket_path
    content = "Caroline went to the support group 🌈\n  second line, indented\tand tabbed"
    put = memoryd(
        "put",
        "--kind",
        "fact",
        "--tag",
        "caroline",
        "--tag",
        "support",
        "--importance",
        "0.8",
        "--namespace",
        "work",
        "--meta",
        "session=3",
        "--meta",
        "who=caroline",
        "--meta",
        'obj={"k": [1, 2]}',
        "--source",
        "chat",
        "--json",
        content,
        socket=path,
    ).json()
    assert put["is_new"] is True and put["seq"] == 1
    assert re.fullmatch(r"[0-9a-f]{32}", put["id"])

    frame = memoryd("get", put["id"], "--json", socket=path).json()["frame"]
    assert frame["content"] == content
    assert frame["kind"] == "fact" and frame["namespace"] == "work"
    assert frame["tags"] == ["caroline", "support"] and frame["importance"] == 0.8
    assert frame["metadata"] == {"session": 3, "who": "caroline", "obj": {"k": [1, 2]}}
    assert frame["source"] == "chat" and frame["private"] is False
    assert frame["id"] == put["id"] and frame["seq"] == 1

    again = memoryd("put", "--kind", "fact", "--namespace", "work", content, socket=path)
    assert again.code == 0 and again.out == f"already stored {put['id']} (seq 1)\n"

    # Text output: the fields, a blank line, then the whole content as stored
    # (listings shorten content, get never does).
    long_content = "\n".join(f"line {i} ✓ " + "é" * 100 for i in range(300))
    long_put = memoryd("put", "--tag", "long", long_content, socket=path)
    assert long_put.code == 0 and long_put.out.startswith("stored ")
    long_id = long_put.out.split()[1]
    text = memoryd("get", long_id, socket=path)
    assert text.code == 0 and text.err == ""
    assert text.out.endswith("\n\n" + long_content + "\n")
    assert f"id         {long_id}" in text.out and "tags       long" in text.out


def test_put_from_stdin_and_the_environment_socket(daemon: DaemonProcess) -> None:
    path = daemon.socket_path
    text = "from stdin 🦀\n  indented line\n\nafter a blank line"
    stdin_put = memoryd("put", "--json", env_socket=path, stdin=(text + "\n").encode()).json()
    dash = memoryd("put", "-", "--json", env_socket=path, stdin=b"two endings\n\n").json()
    with Client(path) as memory:
        # Only the one line ending that ends stdin is dropped.
        assert memory.get(stdin_put["id"]).content == text
        assert memory.get(dash["id"]).content == "two endings\n"
    # `echo x | memoryd put` and `memoryd put x` are the same frame.
    echoed = memoryd("put", "--json", env_socket=path, stdin=b"same either way\n").json()
    argued = memoryd("put", "--json", "same either way", env_socket=path).json()
    assert argued["id"] == echoed["id"] and argued["is_new"] is False

    # --socket wins over MEMORYD_SOCKET.
    wrong = path.parent / "elsewhere.sock"
    assert memoryd("ping", socket=path, env_socket=wrong).code == 0
    with Client(path) as memory:
        assert memory.stats()["frames_live"] == 3


def test_recent_and_range_listings(daemon: DaemonProcess) -> None:
    path = daemon.socket_path
    day_ms = 86_400_000
    base = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
    with Client(path) as memory:
        puts = memory.put_batch(
            [
                {
                    "content": f"day {d} note ✓",
                    "timestamp_ms": base + d * day_ms,
                    "kind": "task" if d % 2 else "note",
                    "namespace": "team" if d >= 4 else "default",
                }
                for d in range(6)
            ]
        )
    ids = [p.id for p in puts]

    first = memoryd("recent", "--limit", "4", "--json", socket=path).json()
    assert [f["id"] for f in first["frames"]] == ids[::-1][:4]
    assert first["next_cursor"] is not None
    rest = memoryd(
        "recent", "--limit", "4", "--cursor", first["next_cursor"], "--json", socket=path
    ).json()
    assert [f["id"] for f in rest["frames"]] == ids[::-1][4:] and rest["next_cursor"] is None

    listing = memoryd("recent", "--limit", "2", socket=path)
    assert listing.code == 0
    lines = listing.out.splitlines()
    assert len(lines) == 2 and ids[5][:12] in lines[0] and "day 5 note ✓" in lines[0]
    assert re.fullmatch(r"more: --cursor \d+\n", listing.err)

    # --since inclusive (an ISO date with an offset), --until exclusive (milliseconds).
    window = memoryd(
        "range",
        "--since",
        "2026-11-02T00:00:00+00:00",
        "--until",
        str(base + 4 * day_ms),
        "--json",
        socket=path,
    ).json()
    assert [f["content"] for f in window["frames"]] == [f"day {d} note ✓" for d in (1, 2, 3)]

    tasks = memoryd("recent", "--kind", "task", "--json", socket=path).json()["frames"]
    assert [f["content"] for f in tasks] == [f"day {d} note ✓" for d in (5, 3, 1)]
    team = memoryd("range", "--namespace", "team", "--json", socket=path).json()["frames"]
    assert [f["content"] for f in team] == ["day 4 note ✓", "day 5 note ✓"]

    empty = memoryd("range", "--since", str(base + 100 * day_ms), socket=path)
    assert empty.code == 0 and empty.out == "" and empty.err == "no frames\n"


def test_delete_then_get_is_not_found(daemon: DaemonProcess) -> None:
    path = daemon.socket_path
    with Client(path) as memory:
        frame_id = memory.put("forget me 🫥").id
    deleted = memoryd("delete", frame_id, socket=path)
    assert deleted.code == 0 and deleted.out.startswith(f"deleted {frame_id} (seq ")
    missing = memoryd("get", frame_id, socket=path)
    assert missing.code == 4
    assert frame_id in missing.one_error_line("not_found")
    again = memoryd("delete", frame_id, "--json", socket=path).json()
    assert again == {"id": frame_id, "deleted": False, "seq": None}
    with Client(path) as memory:
        assert memory.stats()["frames_live"] == 0


def test_stats_and_ping(daemon: DaemonProcess) -> None:
    assert daemon.process is not None
    path = daemon.socket_path
    with Client(path) as memory:
        memory.put("counted")
    stats = memoryd("--json", "stats", socket=path).json()  # --json before the command too
    assert stats["pid"] == daemon.process.pid
    assert stats["frames_live"] == 1 and stats["last_seq"] == 1
    text = memoryd("stats", socket=path)
    assert text.code == 0 and re.search(r"^frames_live\s+1$", text.out, re.M)
    pong = memoryd("ping", socket=path)
    assert pong.code == 0 and pong.out.startswith(f"pong from memoryd 0.1.0 at {path} in ")
    # The module entry point is the same program.
    module = memoryd(
        "ping", "--json", socket=path, command=[sys.executable, "-m", "memoryd.daemon"]
    )
    assert module.json()["pong"] is True


def test_private_put_is_locked(daemon: DaemonProcess) -> None:
    result = memoryd("put", "--private", "my secret canary", socket=daemon.socket_path)
    assert result.code == 1
    line = result.one_error_line("locked")
    assert "private" in line and "my secret canary" not in line
    with Client(daemon.socket_path) as memory:
        assert memory.stats()["frames_live"] == 0


def test_server_refusals_exit_1(daemon: DaemonProcess) -> None:
    path = daemon.socket_path
    tags = [arg for i in range(70) for arg in ("--tag", f"t{i}")]
    over = memoryd("put", *tags, "too many tags", socket=path)
    assert over.code == 1 and "tags_max" in over.one_error_line("limit_exceeded")
    bad = memoryd("range", "--since", "20", "--until", "10", socket=path)
    assert bad.code == 1
    bad.one_error_line("bad_request")


def test_daemon_not_running_exit_3(socket_dir: Path) -> None:
    path = socket_dir / "nobody-home.sock"
    calls = [("ping",), ("put", "lost?"), ("get", "0" * 32), ("stats", "--json")]
    runs = run_all([(args, {"socket": path}) for args in calls])
    runs.append(memoryd("recent", env_socket=path))  # the socket named by MEMORYD_SOCKET
    for args, result in zip([*calls, ("recent",)], runs, strict=True):
        assert result.code == 3, (args, result)
        line = result.one_error_line("connection_failed")
        assert str(path) in line and "not running" in line


def test_frozen_daemon_times_out_exit_3(daemon: DaemonProcess) -> None:
    assert daemon.process is not None
    os.kill(daemon.process.pid, signal.SIGSTOP)
    try:
        result = memoryd("--timeout", "0.5", "ping", socket=daemon.socket_path)
    finally:
        os.kill(daemon.process.pid, signal.SIGCONT)
    assert result.code == 3
    result.one_error_line("timeout")
    assert memoryd("ping", socket=daemon.socket_path).code == 0


USAGE_ERRORS: list[tuple[tuple[str, ...], bytes, str]] = [
    (("put", "--importance", "high", "x"), b"", "--importance"),
    (("put", "--meta", "novalue", "x"), b"", "KEY=VALUE"),
    (("range", "--since", "last tuesday"), b"", "ISO-8601"),
    (("recent", "--limit", "0"), b"", "--limit"),
    (("frobnicate",), b"", "invalid choice"),
    ((), b"", "COMMAND"),
    (("put",), b"caf\xe9\n", "not valid UTF-8"),
]


def test_usage_errors_exit_2(socket_dir: Path) -> None:
    # No daemon runs: a usage error is found before anything is sent.
    path = socket_dir / "unused.sock"
    runs = run_all([(args, {"socket": path, "stdin": stdin}) for args, stdin, _ in USAGE_ERRORS])
    for (args, _, needle), result in zip(USAGE_ERRORS, runs, strict=True):
        assert result.code == 2, (args, result)
        assert "Traceback" not in result.err
        assert needle in result.err and result.out == "", (args, result)
