"""Socket activation: which passed descriptors are adopted, and when none are.

Real sockets are moved onto consecutive descriptor numbers, as systemd lays
them out from fd 3 (here from a high number, not to disturb pytest's own).
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoryd.daemon.systemd import ActivationError, passed_sockets

FDS_START = 700
PID = 4242


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="md-fd-", dir="/tmp"))
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def place(*objects: socket.socket | int) -> list[int]:
    """Move each socket (or raw fd) to FDS_START, FDS_START + 1, ...; returns those numbers."""
    fds = []
    for index, obj in enumerate(objects):
        target = FDS_START + index
        source = obj.fileno() if isinstance(obj, socket.socket) else obj
        os.dup2(source, target)
        if isinstance(obj, socket.socket):
            obj.close()
        else:
            os.close(obj)
        fds.append(target)
    return fds


def close_quietly(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def unix_listener(folder: Path, name: str = "s.sock") -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(folder / name))
    sock.listen(8)
    return sock


def environ(count: int, pid: int = PID, names: str | None = None) -> dict[str, str]:
    env = {"LISTEN_FDS": str(count), "LISTEN_PID": str(pid), "OTHER": "kept"}
    if names is not None:
        env["LISTEN_FDNAMES"] = names
    return env


def test_nothing_passed_means_nothing_adopted() -> None:
    env = {"OTHER": "kept"}
    passed = passed_sockets(env, pid=PID, fds_start=FDS_START)
    assert passed.service is None and passed.metrics is None
    assert env == {"OTHER": "kept"}


def test_sockets_meant_for_another_pid_are_left_alone(folder: Path) -> None:
    fds = place(unix_listener(folder))
    try:
        env = environ(1, pid=PID + 1)
        passed = passed_sockets(env, pid=PID, fds_start=FDS_START)
        assert passed.service is None
        os.fstat(fds[0])  # not closed: it is not ours to touch
        assert env == {"OTHER": "kept"}  # but the variables are not passed on
    finally:
        close_quietly(fds)


def test_the_one_passed_listening_socket_is_adopted(folder: Path) -> None:
    fds = place(unix_listener(folder))
    env = environ(1)
    passed = passed_sockets(env, pid=PID, fds_start=FDS_START)
    try:
        assert passed.service is not None
        assert passed.service.fileno() == fds[0]
        assert passed.service.getsockname() == str(folder / "s.sock")
        assert not os.get_inheritable(fds[0])
        assert "LISTEN_FDS" not in env and "LISTEN_PID" not in env
    finally:
        passed.close()


def test_named_sockets_service_and_metrics(folder: Path) -> None:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(4)
    port = tcp.getsockname()[1]
    fds = place(tcp, unix_listener(folder))
    env = environ(2, names="metrics:memoryd")
    passed = passed_sockets(env, pid=PID, fds_start=FDS_START)
    try:
        assert passed.metrics is not None and passed.metrics.getsockname()[1] == port
        assert passed.service is not None and passed.service.fileno() == fds[1]
        assert "LISTEN_FDNAMES" not in env
    finally:
        passed.close()


def test_an_unusable_extra_descriptor_is_closed(folder: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(write_end)
    fds = place(read_end, unix_listener(folder))
    passed = passed_sockets(environ(2, names="stray:memoryd.socket"), pid=PID, fds_start=FDS_START)
    try:
        assert passed.service is not None and passed.service.fileno() == fds[1]
        with pytest.raises(OSError):
            os.fstat(fds[0])
    finally:
        passed.close()


def test_a_socket_that_is_not_listening_is_refused(folder: Path) -> None:
    unbound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fds = place(unbound)
    try:
        with pytest.raises(ActivationError, match="none is a listening Unix stream socket"):
            passed_sockets(environ(1), pid=PID, fds_start=FDS_START)
    finally:
        close_quietly(fds)


def test_a_named_service_fd_of_the_wrong_kind_is_refused(folder: Path) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fds = place(udp)
    try:
        with pytest.raises(ActivationError, match=f"passed fd {FDS_START} \\(memoryd\\)"):
            passed_sockets(environ(1, names="memoryd"), pid=PID, fds_start=FDS_START)
    finally:
        close_quietly(fds)


@pytest.mark.parametrize("count", ["0", "-1", "many", "65"])
def test_a_nonsense_count_is_refused(count: str) -> None:
    env = {"LISTEN_FDS": count, "LISTEN_PID": str(PID)}
    with pytest.raises(ActivationError, match="LISTEN_FDS"):
        passed_sockets(env, pid=PID, fds_start=FDS_START)
