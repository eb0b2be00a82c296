"""DataDirLock: one holder per data directory, across processes and within one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from memoryd.storage import DataDirLock, DataDirLockedError

HOLD_LOCK = """
import sys
from pathlib import Path
from memoryd.storage import DataDirLock
lock = DataDirLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""


def test_acquire_writes_our_pid_and_release_lets_another_take_it(tmp_path: Path) -> None:
    lock = DataDirLock(tmp_path)
    lock.acquire()
    assert lock.held
    assert (tmp_path / "LOCK").read_text() == f"{os.getpid()}\n"
    lock.release()
    lock.release()  # idempotent
    assert not lock.held
    with DataDirLock(tmp_path) as again:
        assert again.held
    assert not again.held
    assert (tmp_path / "LOCK").exists()  # never removed: removing would race


def test_a_second_holder_in_the_same_process_is_refused(tmp_path: Path) -> None:
    with DataDirLock(tmp_path), pytest.raises(DataDirLockedError) as caught:
        DataDirLock(tmp_path).acquire()
    assert (
        str(caught.value)
        == f"data directory {tmp_path} is in use by another memoryd (pid {os.getpid()})"
    )
    assert caught.value.pid == os.getpid()


def test_a_lock_held_by_another_process_names_its_pid_and_is_freed_when_it_exits(
    tmp_path: Path,
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(DataDirLockedError) as caught:
            DataDirLock(tmp_path).acquire()
        assert caught.value.pid == holder.pid
        assert f"(pid {holder.pid})" in str(caught.value)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
        assert holder.stdout is not None
        holder.stdout.close()
    with DataDirLock(tmp_path) as lock:  # the kernel dropped the flock with the process
        assert lock.held


def test_an_unreadable_pid_is_reported_as_unknown(tmp_path: Path) -> None:
    with DataDirLock(tmp_path):
        (tmp_path / "LOCK").write_text("")  # the holder has not written its pid yet
        with pytest.raises(DataDirLockedError, match=r"\(pid unknown\)"):
            DataDirLock(tmp_path).acquire()
