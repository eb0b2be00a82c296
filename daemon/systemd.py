"""systemd integration in pure Python: readiness notification, socket activation, watchdog.

Everything here does nothing outside systemd: without ``NOTIFY_SOCKET`` a
``Notifier`` sends nothing, without ``LISTEN_FDS`` (or with a ``LISTEN_PID``
that is not ours) no socket is adopted, and without ``WATCHDOG_USEC`` there is
no watchdog.  No libsystemd: the notify protocol is one datagram of
newline-separated ``KEY=VALUE`` assignments to an ``AF_UNIX`` socket
(sd_notify(3)), and passed sockets start at file descriptor 3
(sd_listen_fds(3)).

A notification that cannot be sent is dropped (and logged, once until one
succeeds again): the daemon must never fail, nor block its event loop,
because its supervisor is slow or went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import time
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping
from dataclasses import dataclass

log = logging.getLogger("memoryd.systemd")

LISTEN_FDS_START = 3  # SD_LISTEN_FDS_START: the first passed file descriptor
LISTEN_FDS_MAX = 64  # we expect one or two; more is a misconfigured unit
NOTIFY_MESSAGE_BYTES_MAX = 4096  # one datagram; ours are a few dozen bytes
STATUS_CHARS_MAX = 200  # a status line is for `systemctl status`, one short line
WATCHDOG_PINGS_PER_TIMEOUT = 2  # sd_watchdog_enabled(3): ping at half the timeout or more often
# Names under which a socket unit may pass memoryd's listening socket
# (FileDescriptorName=; systemd's default name is the socket unit's name).
SERVICE_FD_NAMES = ("memoryd", "memoryd.socket")
METRICS_FD_NAME = "metrics"


class Notifier:
    """Sends sd_notify messages to ``NOTIFY_SOCKET``; a no-op when it is not set."""

    def __init__(self, address: str | None) -> None:
        self._address = _socket_address(address) if address else None
        self._sock: socket.socket | None = None
        self._failing = False
        self.dropped = 0
        self.sent: list[str] = []  # what was sent, oldest first (bounded, for tests and stats)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments in one datagram; True if it was sent."""
        if self._address is None:
            return False
        message = "\n".join(assignments)
        data = message.encode("utf-8", "replace")[:NOTIFY_MESSAGE_BYTES_MAX]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(data, self._address)
        except OSError as exc:
            # A full queue (EAGAIN) or systemd gone: drop this message, keep running.
            self.dropped += 1
            if not self._failing:
                log.warning("cannot notify systemd at %s: %s", self._address, exc)
                self._failing = True
            return False
        self._failing = False
        if len(self.sent) < 1000:
            self.sent.append(message)
        return True

    def ready(self, status: str) -> None:
        self.send("READY=1", status_line(status))

    def status(self, status: str) -> None:
        self.send(status_line(status))

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", status_line(status))

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd >= 253 tell this reload from an earlier one.
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={now_usec}")

    def extend_timeout(self, seconds: float, status: str) -> None:
        """Ask for ``seconds`` more before systemd's start or stop timeout fires."""
        self.send(f"EXTEND_TIMEOUT_USEC={max(1, int(seconds * 1_000_000))}", status_line(status))

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def status_line(text: str) -> str:
    """``STATUS=`` with one short line (a newline would end the assignment)."""
    line = " ".join(text.split())
    return "STATUS=" + line[:STATUS_CHARS_MAX]


def _socket_address(value: str) -> str | bytes:
    """``@name`` is an abstract socket (a leading NUL byte); anything else a path."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


# -- socket activation ------------------------------------------------------------


@dataclass(slots=True)
class PassedSockets:
    """Sockets handed over by systemd (or systemd-socket-activate)."""

    service: socket.socket | None = None
    metrics: socket.socket | None = None

    def close(self) -> None:
        for sock in (self.service, self.metrics):
            if sock is not None:
                sock.close()


class ActivationError(Exception):
    """Sockets were passed but none can be used; the message says which and why."""


def passed_sockets(
    environ: MutableMapping[str, str] | None = None,
    *,
    pid: int | None = None,
    fds_start: int = LISTEN_FDS_START,
) -> PassedSockets:
    """Adopt the listening sockets of ``LISTEN_FDS``, but only when ``LISTEN_PID`` is ours.

    The variables are removed from ``environ`` (as sd_listen_fds(1) does) so
    that nothing started later believes the sockets are its own.  The
    service socket is the one named ``memoryd`` or ``memoryd.socket`` in
    ``LISTEN_FDNAMES``, else the first listening Unix stream socket; one named
    ``metrics`` is the metrics endpoint's TCP socket.  Every other passed
    descriptor is closed.
    """
    env = os.environ if environ is None else environ
    count_text = env.get("LISTEN_FDS")
    pid_text = env.get("LISTEN_PID")
    names_text = env.get("LISTEN_FDNAMES")
    for key in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        env.pop(key, None)
    if not count_text or not pid_text:
        return PassedSockets()
    own_pid = os.getpid() if pid is None else pid
    if not pid_text.isdigit() or int(pid_text) != own_pid:
        log.info("ignoring LISTEN_FDS: meant for pid %s, not for us (%d)", pid_text, own_pid)
        return PassedSockets()
    if not count_text.isdigit() or not 1 <= int(count_text) <= LISTEN_FDS_MAX:
        raise ActivationError(f"LISTEN_FDS must be 1..{LISTEN_FDS_MAX}, got {count_text!r}")
    count = int(count_text)
    names = names_text.split(":") if names_text else []
    fds = list(range(fds_start, fds_start + count))
    named = dict(zip(fds, names, strict=False))
    passed = PassedSockets()
    try:
        for fd in fds:
            os.set_inheritable(fd, False)
            name = named.get(fd, "")
            if name == METRICS_FD_NAME and passed.metrics is None:
                passed.metrics = _adopt(fd, name, socket.AF_INET, socket.AF_INET6)
            elif passed.service is None and (name in SERVICE_FD_NAMES or _is_unix_listener(fd)):
                passed.service = _adopt(fd, name, socket.AF_UNIX)
            else:
                log.warning("closing passed fd %d (%s): not a socket memoryd uses", fd, name or "?")
                os.close(fd)
    except BaseException:
        passed.close()
        raise
    if passed.service is None:
        passed.close()
        raise ActivationError(
            f"LISTEN_FDS passed {count} descriptor(s) but none is a listening Unix stream socket"
        )
    return passed


def _is_unix_listener(fd: int) -> bool:
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return False
        with socket.socket(fileno=os.dup(fd)) as probe:
            return (
                probe.family == socket.AF_UNIX
                and probe.type == socket.SOCK_STREAM
                and probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
            )
    except OSError:
        return False


def _adopt(fd: int, name: str, *families: socket.AddressFamily) -> socket.socket:
    """A socket object for ``fd`` after checking that it is a listening stream socket."""
    what = f"passed fd {fd} ({name or 'unnamed'})"
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        raise ActivationError(f"{what} is not a socket")
    sock = socket.socket(fileno=fd)
    try:
        if sock.family not in families or sock.type != socket.SOCK_STREAM:
            raise ActivationError(f"{what} is a {sock.family.name} {sock.type.name} socket")
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 1:
            raise ActivationError(f"{what} is not listening")
    except BaseException:
        sock.detach()  # the caller closes fd with the others
        raise
    sock.setblocking(False)
    return sock


# -- watchdog ---------------------------------------------------------------------


def watchdog_interval_s(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float:
    """How often to ping the watchdog, in seconds; 0 when there is none for us."""
    env = os.environ if environ is None else environ
    usec_text = env.get("WATCHDOG_USEC", "")
    pid_text = env.get("WATCHDOG_PID", "")
    if not usec_text.isdigit() or int(usec_text) == 0:
        return 0.0
    own_pid = os.getpid() if pid is None else pid
    if pid_text and (not pid_text.isdigit() or int(pid_text) != own_pid):
        return 0.0
    return int(usec_text) / 1_000_000 / WATCHDOG_PINGS_PER_TIMEOUT


async def run_watchdog(
    notifier: Notifier, interval_s: float, healthy: Callable[[], str | None]
) -> None:
    """Ping every ``interval_s`` while ``healthy()`` returns None (else it says what is wrong).

    Runs on the event loop, so a blocked loop stops the pings too; a stalled
    builder or a dead writer withholds them, and systemd restarts us.
    """
    withheld: str | None = None
    while True:
        await asyncio.sleep(interval_s)
        problem = healthy()
        if problem is None:
            if withheld is not None:
                log.info("healthy again; resuming watchdog pings")
            withheld = None
            notifier.watchdog()
        elif problem != withheld:
            log.error("withholding the watchdog ping: %s", problem)
            withheld = problem


async def report_progress(
    notifier: Notifier,
    interval_s: float,
    describe: Callable[[], str],
    extend_s: float,
) -> None:
    """Every ``interval_s``: a STATUS line from ``describe()`` and more time (EXTEND_TIMEOUT_USEC).

    For work of unknown length (recovery, a drain) that systemd's start or stop
    timeout would otherwise cut short while it is still making progress.
    Cancel it when the work is done.
    """
    while True:
        await asyncio.sleep(interval_s)
        notifier.extend_timeout(extend_s, describe())


@contextlib.asynccontextmanager
async def progress_reports(
    notifier: Notifier, interval_s: float, describe: Callable[[], str], extend_s: float
) -> AsyncIterator[None]:
    """``report_progress`` for the duration of a ``async with`` block."""
    task = asyncio.create_task(
        report_progress(notifier, interval_s, describe, extend_s), name="memoryd-progress"
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
