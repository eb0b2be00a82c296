"""``memoryd doctor``: check the installation and say what to fix.

Each check gives ``ok``, ``warn`` (works, but look at it) or ``fail`` (will
not work, or data is at risk) and, unless ok, one line saying what to do.
Read-only: it never changes a file, and is safe while the daemon runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from memoryd.client import errors
from memoryd.client.cli import global_options_parent
from memoryd.client.sync_client import Client
from memoryd.daemon.cmd_serve import add_config_options, loaded_config_from_args
from memoryd.daemon.cmd_status import format_bytes
from memoryd.daemon.config import Config, ConfigError
from memoryd.daemon.health import disk_space, open_files_needed
from memoryd.storage import check_data_dir
from memoryd.storage.layout import LOG_DIR_NAME

EXIT_OK = 0
EXIT_PROBLEMS = 1
OK, WARN, FAIL = "ok", "warn", "fail"
MASTER_KEY_BYTES_MIN = 32  # 256 bits
DISK_WARN_SEGMENTS = 4  # warn when fewer than this many new segments fit
DOCTOR_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    level: str
    message: str
    fix: str | None = None


def add_doctor_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor",
        parents=[global_options_parent()],
        help="check paths, permissions, the socket, free disk, the log and the keys",
        description="Check the configuration, the data directory and its permissions, free "
        "disk, the log's integrity, the socket and the daemon behind it, the master key and "
        "the open files limit; say what to fix. Read-only. Exit 0 when nothing failed, "
        f"{EXIT_PROBLEMS} otherwise.",
    )
    add_config_options(parser)
    parser.set_defaults(func=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    findings = list(diagnose(args))
    if args.json:
        document = {"ok": all(f.level != FAIL for f in findings), "checks": findings}
        print(orjson.dumps(document, default=asdict, option=orjson.OPT_INDENT_2).decode())
    else:
        for finding in findings:
            print(f"{finding.level:<5} {finding.check}: {finding.message}")
            if finding.fix:
                print(f"      fix: {finding.fix}")
    return EXIT_PROBLEMS if any(f.level == FAIL for f in findings) else EXIT_OK


def diagnose(args: argparse.Namespace) -> Iterator[Finding]:
    try:
        loaded = loaded_config_from_args(args)
    except ConfigError as exc:
        yield Finding("configuration", FAIL, str(exc), "correct that key; `memoryd config` shows")
        return
    config = loaded.config
    source = f"file {loaded.file}" if loaded.file else "no configuration file"
    yield Finding("configuration", OK, f"valid ({source})")
    yield from check_data_directory(config.data_dir)
    yield from check_disk(config)
    yield from check_log(config.data_dir)
    yield from check_socket(config.socket_path, config.data_dir)
    yield from check_master_key(config.master_key_file)
    yield from check_open_files_limit(config)


def check_data_directory(data_dir: Path) -> Iterator[Finding]:
    name = "data directory"
    if not data_dir.exists():
        yield Finding(name, WARN, f"{data_dir} does not exist yet", "`memoryd serve` creates it")
        return
    if not data_dir.is_dir():
        yield Finding(name, FAIL, f"{data_dir} is not a directory", "point data_dir elsewhere")
        return
    info = data_dir.stat()
    mode = stat.S_IMODE(info.st_mode)
    uid = os.getuid()
    if uid != 0 and info.st_uid != uid:
        yield Finding(
            name,
            FAIL,
            f"{data_dir} belongs to uid {info.st_uid}, not to you (uid {uid})",
            f"run memoryd as uid {info.st_uid}, or chown -R {uid} {data_dir}",
        )
    elif not os.access(data_dir, os.W_OK | os.X_OK):
        yield Finding(name, FAIL, f"{data_dir} is not writable", f"chmod u+rwx {data_dir}")
    elif mode & 0o077:
        yield Finding(
            name,
            WARN,
            f"{data_dir} is open to other users (mode {mode:04o}); memories are private",
            f"chmod 700 {data_dir}",
        )
    else:
        yield Finding(name, OK, f"{data_dir} (mode {mode:04o}, uid {info.st_uid})")


def check_disk(config: Config) -> Iterator[Finding]:
    probe = config.data_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    space = disk_space(probe)
    if space is None:
        yield Finding("free disk", WARN, f"cannot tell the free space at {probe}")
        return
    text = f"{format_bytes(space.free_bytes)} free of {format_bytes(space.total_bytes)}"
    segment = config.segment_bytes_max
    if space.free_bytes < segment:
        yield Finding(
            "free disk",
            FAIL,
            f"{text}: less than one log segment ({format_bytes(segment)}); puts will fail "
            "with disk_full",
            "free space on that filesystem (reads keep working; writes resume by themselves)",
        )
    elif space.free_bytes < DISK_WARN_SEGMENTS * segment:
        yield Finding("free disk", WARN, f"{text}: little room left", "free some space soon")
    else:
        yield Finding("free disk", OK, text)


def check_log(data_dir: Path) -> Iterator[Finding]:
    name = "log integrity"
    if not (data_dir / LOG_DIR_NAME).is_dir():
        yield Finding(name, OK, "no log yet (an empty memory)")
        return
    try:
        report = check_data_dir(data_dir)
    except OSError as exc:
        yield Finding(name, FAIL, f"cannot read the log: {exc}", "check its permissions")
        return
    seqs = f"seq {report.first_seq}..{report.last_seq}" if report.records else "no records"
    summary = f"{_count(report.segments, 'segment')}, {_count(report.records, 'record')} ({seqs})"
    if not report.ok:
        first = report.problems[0].describe()
        yield Finding(
            name,
            FAIL,
            f"{summary}; {len(report.problems)} problems, the first: {first}",
            f"stop the daemon, then `memoryd repair --data-dir {data_dir}` moves damaged "
            "records aside and keeps every valid one",
        )
    elif report.torn_tail is not None:
        yield Finding(
            name,
            WARN,
            f"{summary}; a torn tail at the end ({report.torn_tail.describe()})",
            "nothing to do if the daemon is running (an append in progress looks like this); "
            "otherwise the next start moves it to quarantine",
        )
    else:
        yield Finding(name, OK, f"{summary}; every CRC and the hash chain intact")


def check_socket(socket_path: Path, data_dir: Path) -> Iterator[Finding]:
    name = "socket"
    folder = socket_path.parent
    if folder.exists():
        info = folder.stat()
        if info.st_mode & 0o077 and info.st_uid == os.getuid():
            yield Finding(
                name,
                WARN,
                f"its folder {folder} is open to other users (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); the daemon refuses to bind there",
                f"chmod 700 {folder}, or use the default socket path",
            )
    if not socket_path.exists():
        yield Finding(
            name,
            WARN,
            f"no daemon: {socket_path} does not exist",
            "start it: `memoryd serve`, or `systemctl start memoryd.socket`",
        )
        return
    if not stat.S_ISSOCK(socket_path.lstat().st_mode):
        yield Finding(
            name, FAIL, f"{socket_path} is not a socket", "remove it or choose another socket_path"
        )
        return
    client = Client(socket_path, timeout=DOCTOR_TIMEOUT_S, client_name="memoryd-doctor")
    try:
        status = client.call("status")
    except (errors.DaemonConnectionError, errors.ClientTimeoutError) as exc:
        yield Finding(
            name,
            WARN,
            f"nothing answers at {socket_path} ({exc.message})",
            "start the daemon; a stale socket file is replaced safely at start",
        )
        return
    except errors.MemorydError as exc:
        yield Finding(name, FAIL, f"the daemon answered {exc.code}: {exc.message}")
        return
    finally:
        client.close()
    yield from _daemon_findings(status, socket_path, data_dir)


def _daemon_findings(
    status: dict[str, Any], socket_path: Path, data_dir: Path
) -> Iterator[Finding]:
    yield Finding(
        "daemon",
        OK if status.get("state") == "serving" else WARN,
        f"{status.get('state')} at {socket_path}, pid {status.get('pid')}, "
        f"{status.get('frames_live')} frames",
    )
    if status.get("problem"):
        yield Finding(
            "daemon",
            FAIL,
            str(status["problem"]),
            "see the daemon's log (journalctl -u memoryd); a restart rebuilds derived state",
        )
    served = status.get("data_dir")
    if served and Path(served) != data_dir.absolute():
        yield Finding(
            "daemon",
            WARN,
            f"the daemon serves {served}, but this configuration names {data_dir.absolute()}",
            "run doctor with the daemon's configuration (--config, or --data-dir)",
        )


def check_master_key(path: Path | None) -> Iterator[Finding]:
    name = "keys"
    if path is None:
        yield Finding(
            name, OK, "no master key configured: no vault, private memories are refused (locked)"
        )
        return
    try:
        info = path.stat()
    except FileNotFoundError:
        yield Finding(
            name,
            FAIL,
            f"master_key_file {path} does not exist",
            "create it (head -c 32 /dev/urandom > FILE; chmod 600 FILE) or unset master_key_file",
        )
        return
    except OSError as exc:
        yield Finding(name, FAIL, f"cannot reach master_key_file {path}: {exc.strerror}")
        return
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISREG(info.st_mode):
        yield Finding(name, FAIL, f"master_key_file {path} is not a regular file")
    elif mode & 0o077:
        yield Finding(
            name,
            FAIL,
            f"master_key_file {path} is readable by others (mode {mode:04o})",
            f"chmod 600 {path}",
        )
    elif not os.access(path, os.R_OK):
        yield Finding(name, FAIL, f"master_key_file {path} is not readable by you")
    elif info.st_size < MASTER_KEY_BYTES_MIN:
        yield Finding(
            name,
            FAIL,
            f"master_key_file {path} holds {info.st_size} bytes, fewer than {MASTER_KEY_BYTES_MIN}",
            "write a key of 32 random bytes (head -c 32 /dev/urandom)",
        )
    else:
        # The key itself is never read here, let alone printed.
        yield Finding(name, OK, f"master key {path} present, private (mode {mode:04o})")


def check_open_files_limit(config: Config) -> Iterator[Finding]:
    needed = open_files_needed(config)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        yield Finding("open files", OK, f"limit {soft}, connections_max needs {needed}")
    elif hard == resource.RLIM_INFINITY or hard >= needed:
        yield Finding(
            "open files",
            OK,
            f"soft limit {soft}, raised at start to the {needed} connections_max needs",
        )
    else:
        yield Finding(
            "open files",
            WARN,
            f"limit {hard} is below the {needed} that connections_max="
            f"{config.connections_max} needs",
            f"LimitNOFILE={needed} in the unit (or ulimit -n), or lower connections_max",
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
