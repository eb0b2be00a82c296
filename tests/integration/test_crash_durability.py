"""Nothing acknowledged is ever lost: SIGKILL at random moments during pipelined puts.

A writer thread keeps a window of puts in flight on one connection and
records every acknowledgement.  The daemon is killed with SIGKILL at a random
moment, restarted on the same data directory, and every acknowledged frame
must be there, intact, with the sequence number it was acknowledged with.
Rounds accumulate in one data directory, so later rounds also recover logs
written (and torn) by earlier ones.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

from memoryd.client import protocol
from tests.integration.daemon_process import DaemonProcess

ROUNDS = 24
WINDOW = 64


class AckRecorder(threading.Thread):
    """Pipelines puts until the connection dies; records (id, seq, content) of each ack."""

    def __init__(self, socket_path: Path, round_no: int) -> None:
        super().__init__(daemon=True)
        self.socket_path = socket_path
        self.round_no = round_no
        self.acked: list[tuple[str, int, str]] = []
        self.sent = 0

    def run(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        decoder = protocol.MessageDecoder()
        contents: dict[int, str] = {}
        try:
            sock.connect(str(self.socket_path))
            sock.sendall(protocol.encode_request(0, "hello", {"protocol": 1}))
            in_flight = 0
            next_id = 1
            while True:
                batch = b""
                while in_flight < WINDOW:
                    content = f"round {self.round_no} frame {next_id} ✓ {random.random()}"
                    contents[next_id] = content
                    batch += protocol.encode_request(next_id, "put", {"content": content})
                    next_id += 1
                    in_flight += 1
                sock.sendall(batch)
                data = sock.recv(1 << 16)
                if not data:
                    return
                for body in decoder.feed(data):
                    response = protocol.parse_response(body)
                    if response["id"] == 0:
                        continue
                    in_flight -= 1
                    if response["ok"]:
                        result: dict[str, Any] = response["result"]
                        self.acked.append(
                            (result["id"], result["seq"], contents.pop(response["id"]))
                        )
        except OSError:
            return
        finally:
            sock.close()


def fetch(socket_path: Path, frame_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Get every id, a window at a time (a client must read as it writes)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(str(socket_path))
    decoder = protocol.MessageDecoder()
    found: dict[str, dict[str, Any]] = {}

    def exchange(requests: list[bytes]) -> None:
        sock.sendall(b"".join(requests))
        pending = len(requests)
        while pending:
            for body in decoder.feed(sock.recv(1 << 20)):
                pending -= 1
                response = protocol.parse_response(body)
                if response["id"] and response["ok"]:
                    frame = response["result"]["frame"]
                    found[frame["id"]] = frame

    exchange([protocol.encode_request(0, "hello", {"protocol": 1})])
    for start in range(0, len(frame_ids), WINDOW):
        window = frame_ids[start : start + WINDOW]
        exchange([protocol.encode_request(i + 1, "get", {"id": f}) for i, f in enumerate(window)])
    sock.close()
    return found


def test_every_acknowledged_put_survives_sigkill(tmp_path: Path, socket_dir: Path) -> None:
    rng = random.Random(20261121)
    data_dir = tmp_path / "data"
    socket_path = socket_dir / "memoryd.sock"
    all_acked: list[tuple[str, int, str]] = []
    for round_no in range(ROUNDS):
        daemon = DaemonProcess(data_dir, socket_path).start()
        try:
            recorder = AckRecorder(socket_path, round_no)
            recorder.start()
            time.sleep(rng.uniform(0.02, 0.4))
            daemon.kill()
            recorder.join(timeout=30)
            assert not recorder.is_alive()
        finally:
            daemon.ensure_stopped()
        all_acked += recorder.acked
        # This round's acknowledgements in full, a sample of earlier rounds'
        # (they were checked in full in their own round), everything at the end.
        last_round = round_no == ROUNDS - 1
        earlier = all_acked[: len(all_acked) - len(recorder.acked)]
        to_check = (
            all_acked
            if last_round
            else recorder.acked + rng.sample(earlier, min(len(earlier), 500))
        )
        survivor = DaemonProcess(data_dir, socket_path).start()
        try:
            found = fetch(socket_path, [frame_id for frame_id, _, _ in to_check])
            missing = [f for f, _, _ in to_check if f not in found]
            assert not missing, f"round {round_no}: {len(missing)} acknowledged frames lost"
            for frame_id, seq, content in to_check:
                assert found[frame_id]["content"] == content
                assert found[frame_id]["seq"] == seq
        finally:
            assert survivor.terminate() == 0, survivor.stderr()
    assert len(all_acked) > ROUNDS  # the writer really got acknowledgements in
