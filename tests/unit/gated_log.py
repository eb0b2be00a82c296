"""A real FileLog whose appends wait for a gate: holds a commit mid-write in writer tests."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from memoryd.daemon.writer import Event
from memoryd.storage import AppendedRecord, FileLog


class GatedLog:
    """``log`` with appends that wait for ``gate`` (set: open), and may be told to fail.

    Counts what the writer did (events per append, syncs, the threads that
    appended); every other attribute reads through to the real log.
    """

    def __init__(self, log: FileLog) -> None:
        self.log = log
        self.gate = threading.Event()
        self.gate.set()
        self.fail_with: Exception | None = None
        self.appends: list[int] = []  # events per append
        self.syncs = 0
        self.threads: set[str] = set()

    @property
    def last_seq(self) -> int:
        return self.log.last_seq

    def append(self, events: Sequence[Event]) -> list[AppendedRecord]:
        self.threads.add(threading.current_thread().name)
        self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        self.appends.append(len(events))
        return self.log.append(events)

    def sync(self) -> None:
        self.syncs += 1
        self.log.sync()

    def __getattr__(self, name: str) -> Any:  # reads go to the real log
        return getattr(self.log, name)
