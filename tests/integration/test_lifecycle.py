"""The daemon's life as a process: its socket's permissions, one daemon per data directory,
stale sockets, unsafe folders, and clean stops on SIGTERM and SIGINT.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from memoryd.client import Client, DaemonConnectionError, protocol
from tests.integration.daemon_process import DaemonProcess

WINDOW = 32


def run_to_exit(data_dir: Path, socket_path: Path) -> subprocess.CompletedProcess[str]:
    """``memoryd serve`` expected to refuse to start: its exit code and output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    return subprocess.run(
        DaemonProcess(data_dir, socket_path).command(),
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def assert_one_clear_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], result.stderr


def assert_serving(socket_path: Path, content: str) -> None:
    with Client(socket_path, timeout=10) as memory:
        put = memory.put(content)
        assert memory.get(put.id).content == content


def test_socket_is_0600_in_a_0700_folder_it_creates(tmp_path: Path, socket_dir: Path) -> None:
    folder = socket_dir / "run" / "memoryd"  # neither exists yet
    daemon = DaemonProcess(tmp_path / "data", folder / "memoryd.sock").start()
    try:
        info = daemon.socket_path.lstat()
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert info.st_uid == os.getuid()
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE(daemon.data_dir.stat().st_mode) == 0o700
        assert_serving(daemon.socket_path, "served through a private socket")
    finally:
        assert daemon.terminate() == 0, daemon.stderr()


def test_second_daemon_on_the_same_data_dir_is_refused(daemon: DaemonProcess) -> None:
    assert daemon.process is not None
    with Client(daemon.socket_path) as memory:
        first = memory.put("written by the first daemon")
        result = run_to_exit(daemon.data_dir, daemon.socket_path)
        assert_one_clear_error(result, "in use", str(daemon.data_dir), str(daemon.process.pid))
        # The first daemon kept its socket and its data, and serves on the same connection.
        assert daemon.process.poll() is None
        assert stat.S_ISSOCK(daemon.socket_path.lstat().st_mode)
        assert memory.get(first.id).content == "written by the first daemon"
    assert_serving(daemon.socket_path, "and still serves new connections")


def test_second_daemon_on_the_same_socket_is_refused(daemon: DaemonProcess, tmp_path: Path) -> None:
    result = run_to_exit(tmp_path / "other-data", daemon.socket_path)
    assert_one_clear_error(result, "already serving", str(daemon.socket_path))
    assert_serving(daemon.socket_path, "the socket still belongs to the first daemon")


def test_stale_socket_after_sigkill_is_replaced(daemon: DaemonProcess) -> None:
    with Client(daemon.socket_path) as memory:
        put = memory.put("survives a SIGKILL")
    daemon.kill()
    assert stat.S_ISSOCK(daemon.socket_path.lstat().st_mode)  # left behind
    with pytest.raises(DaemonConnectionError), Client(daemon.socket_path, timeout=5):
        pass
    restarted = DaemonProcess(daemon.data_dir, daemon.socket_path).start()
    try:
        assert "removing stale socket" in restarted.stderr()
        with Client(daemon.socket_path) as memory:
            assert memory.get(put.id).content == "survives a SIGKILL"
    finally:
        assert restarted.terminate() == 0, restarted.stderr()


def test_socket_folder_open_to_others_is_refused(tmp_path: Path, socket_dir: Path) -> None:
    folder = socket_dir / "shared"
    folder.mkdir()
    folder.chmod(0o755)
    result = run_to_exit(tmp_path / "data", folder / "memoryd.sock")
    assert_one_clear_error(result, str(folder), "open to other users", "755", "0700")
    assert list(folder.iterdir()) == []  # no socket was created
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755  # and the folder was left alone


def test_a_file_in_the_socket_path_is_never_replaced(tmp_path: Path, socket_dir: Path) -> None:
    path = socket_dir / "memoryd.sock"
    path.write_text("not a socket")
    result = run_to_exit(tmp_path / "data", path)
    assert_one_clear_error(result, str(path), "not a socket")
    assert path.read_text() == "not a socket"


class PutRecorder(threading.Thread):
    """Pipelines puts on one raw connection until the daemon closes it; records the outcome.

    ``acked`` holds (id, seq, content) of every put acknowledged; ``refused``
    the contents of puts answered with an error, by code.
    """

    def __init__(self, socket_path: Path, name: str) -> None:
        super().__init__(daemon=True)
        self.socket_path = socket_path
        self.label = name
        self.acked: list[tuple[str, int, str]] = []
        self.refused: dict[str, list[str]] = {}

    def run(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(20)
        decoder = protocol.MessageDecoder()
        contents: dict[int, str] = {}
        try:
            sock.connect(str(self.socket_path))
            sock.sendall(protocol.encode_request(0, "hello", {"protocol": 1}))
            in_flight = next_id = 0
            while True:
                batch = []
                while in_flight < WINDOW:
                    next_id += 1
                    contents[next_id] = f"{self.label} put {next_id} ✓"
                    batch.append(
                        protocol.encode_request(next_id, "put", {"content": contents[next_id]})
                    )
                    in_flight += 1
                sock.sendall(b"".join(batch))
                data = sock.recv(1 << 16)
                if not data:
                    return
                for body in decoder.feed(data):
                    response: dict[str, Any] = protocol.parse_response(body)
                    if not response["id"]:
                        continue
                    in_flight -= 1
                    content = contents.pop(response["id"])
                    if response["ok"]:
                        result = response["result"]
                        self.acked.append((result["id"], result["seq"], content))
                    else:
                        self.refused.setdefault(response["error"]["code"], []).append(content)
        except OSError:
            return
        finally:
            sock.close()


def test_sigterm_during_pipelined_puts_loses_nothing_acknowledged(daemon: DaemonProcess) -> None:
    assert daemon.process is not None
    recorders = [PutRecorder(daemon.socket_path, f"client {n}") for n in range(4)]
    for recorder in recorders:
        recorder.start()
    deadline = time.monotonic() + 20
    while not all(recorder.acked for recorder in recorders):  # puts flowing from every client
        assert time.monotonic() < deadline, "no acknowledgements before SIGTERM"
        time.sleep(0.01)
    time.sleep(0.2)
    code = daemon.terminate()
    for recorder in recorders:
        recorder.join(timeout=30)
        assert not recorder.is_alive()
    assert code == 0, daemon.stderr()
    assert not daemon.socket_path.exists()
    assert "stopped cleanly" in daemon.stderr()

    acked = [ack for recorder in recorders for ack in recorder.acked]
    assert all(recorder.acked for recorder in recorders)
    refused = [c for recorder in recorders for cs in recorder.refused.values() for c in cs]
    assert {c for r in recorders for c in r.refused} <= {"shutting_down"}

    restarted = DaemonProcess(daemon.data_dir, daemon.socket_path).start()
    try:
        with Client(daemon.socket_path, timeout=30) as memory:
            assert memory.stats()["frames_live"] >= len(acked)
            stored = {f.id: f for f in _every_frame(memory)}
        for frame_id, seq, content in acked:
            assert frame_id in stored, f"acknowledged {content!r} was lost"
            assert stored[frame_id].seq == seq and stored[frame_id].content == content
        # A put refused with shutting_down was not stored.
        stored_contents = {f.content for f in stored.values()}
        assert not stored_contents.intersection(refused)
    finally:
        assert restarted.terminate() == 0, restarted.stderr()


def _every_frame(memory: Client) -> list[Any]:
    frames: list[Any] = []
    cursor = None
    while True:
        page = memory.range(limit=1000, cursor=cursor)
        frames += page.frames
        if (cursor := page.next_cursor) is None:
            return frames


def test_sigint_stops_cleanly_with_a_client_connected(daemon: DaemonProcess) -> None:
    assert daemon.process is not None
    memory = Client(daemon.socket_path, timeout=10)
    try:
        put = memory.put("written before SIGINT")
        started = time.monotonic()
        daemon.process.send_signal(signal.SIGINT)
        code = daemon.process.wait(timeout=30)
        daemon.stderr_file.close()
        # An idle connection does not hold the stop up until the shutdown deadline.
        assert time.monotonic() - started < 10
        assert code == 0, daemon.stderr()
        assert not daemon.socket_path.exists()
        assert "stopped cleanly" in daemon.stderr()
        assert "Traceback" not in daemon.stderr()
        with pytest.raises(DaemonConnectionError):
            memory.ping()
    finally:
        memory.close()
    restarted = DaemonProcess(daemon.data_dir, daemon.socket_path).start()
    try:
        with Client(daemon.socket_path) as again:
            assert again.get(put.id).content == "written before SIGINT"
    finally:
        assert restarted.terminate() == 0, restarted.stderr()
