"""What the systemd-facing integration tests share: a notify socket and a log to start from."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

from memoryd.storage import FileLog
from memoryd.storage.events import Frame, encode_frame_put, frame_id
from memoryd.storage.record import RecordType


class NotifyListener:
    """A real AF_UNIX datagram socket where the daemon sends its sd_notify messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def wait_for(self, predicate: str, timeout_s: float = 20.0) -> list[str]:
        """Receive until a message starts with ``predicate``; returns all received so far."""
        deadline = time.monotonic() + timeout_s
        while not any(m.startswith(predicate) for m in self.messages):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {predicate!r} message; got {self.messages}")
            self.sock.settimeout(remaining)
            self.messages.append(self.sock.recv(4096).decode())
        return self.messages

    def drain(self, quiet_s: float = 0.2) -> list[str]:
        """Receive until nothing more comes for ``quiet_s``."""
        self.sock.settimeout(quiet_s)
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
        except TimeoutError:
            return self.messages

    def collect_for(self, seconds: float) -> list[str]:
        """Receive whatever comes during ``seconds``."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self.sock.settimeout(remaining)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                break
        return self.messages

    def collect_until(self, stop: threading.Event) -> None:
        """Receive until ``stop`` is set and nothing more is queued (run on a thread)."""
        self.sock.settimeout(0.05)
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                if stop.is_set():
                    return

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


def write_frames(data_dir: Path, contents: list[str]) -> list[str]:
    """Append FRAME_PUT records straight to a data directory's log; returns their ids."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    event_log, _report = FileLog.open(data_dir / "log")
    ids = []
    try:
        events = []
        for n, content in enumerate(contents):
            fid = frame_id("default", "note", content)
            frame = Frame(
                id=fid,
                seq=0,
                timestamp_ms=1_700_000_000_000 + n,
                namespace="default",
                kind="note",
                content=content,
                tags=[],
                importance=0.5,
                metadata={},
                private=False,
                source="",
            )
            events.append((int(RecordType.FRAME_PUT), frame.timestamp_ms, encode_frame_put(frame)))
            ids.append(fid)
        event_log.append(events)
    finally:
        event_log.close()
    return ids


def environment(**extra: str) -> dict[str, str]:
    """The test's environment without MEMORYD_* and systemd's variables, plus ``extra``."""
    dropped = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_") and k not in dropped}
    env.update(extra)
    return env
