"""SIGTERM in the middle of pipelined puts: every acknowledged frame survives the restart."""

from __future__ import annotations

import socket
import threading
import time

from memoryd.client import Client, protocol
from tests.integration.daemon_process import DaemonProcess

PUTS = 20_000  # far more than are answered before the signal lands
SIGNAL_AFTER_ACKS = 1_500


def test_sigterm_during_pipelined_puts_keeps_every_acknowledged_frame(
    daemon: DaemonProcess,
) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(daemon.socket_path))
    sock.sendall(protocol.encode_request(0, "hello", {"protocol": 1}))
    contents = {n: f"pipelined frame {n}" for n in range(1, PUTS + 1)}
    acknowledged: dict[int, str] = {}  # request id -> frame id
    refusals: list[str] = []
    unexpected: list[dict[str, object]] = []
    enough = threading.Event()

    def write() -> None:
        try:
            for n, content in contents.items():
                sock.sendall(protocol.encode_request(n, "put", {"content": content}))
        except OSError:
            pass  # the daemon stopped reading and closed: expected

    def read() -> None:
        decoder = protocol.MessageDecoder()
        while True:
            try:
                data = sock.recv(1 << 16)
            except OSError:
                break
            if not data:
                break
            for body in decoder.feed(data):
                response = protocol.parse_response(body)
                request_id = response.get("id")
                if request_id == 0:
                    continue  # hello
                if response["ok"]:
                    assert isinstance(request_id, int)
                    acknowledged[request_id] = response["result"]["id"]
                    if len(acknowledged) >= SIGNAL_AFTER_ACKS:
                        enough.set()
                elif response["error"]["code"] == "shutting_down":
                    refusals.append(str(request_id))
                else:
                    unexpected.append(response)
        enough.set()

    writer = threading.Thread(target=write)
    reader = threading.Thread(target=read)
    writer.start()
    reader.start()
    try:
        assert enough.wait(timeout=30)
        code = daemon.terminate()
        reader.join(timeout=30)
        sock.shutdown(socket.SHUT_RDWR)
        writer.join(timeout=30)
    finally:
        sock.close()
    assert code == 0, daemon.stderr()
    assert not reader.is_alive() and not writer.is_alive()
    assert unexpected == []
    assert SIGNAL_AFTER_ACKS <= len(acknowledged) < PUTS, "the signal came mid-stream"
    assert "stopped cleanly" in daemon.stderr()

    restarted = DaemonProcess(daemon.data_dir, daemon.socket_path).start()
    try:
        with Client(restarted.socket_path, timeout=30) as client:
            stats = client.stats()
            assert stats["frames_live"] >= len(acknowledged)
            started = time.monotonic()
            for request_id, frame_id in acknowledged.items():
                frame = client.get(frame_id)
                assert frame.content == contents[request_id]
            assert time.monotonic() - started < 30
    finally:
        assert restarted.terminate() == 0
