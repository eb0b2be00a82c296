"""``memoryd backup DEST`` and ``memoryd restore SRC``.

A backup is a copy of the log, which is all the state there is (everything
else is rebuilt from it at start).  The log is append-only and a segment is
never rewritten in place, so a consistent copy needs no pause: the daemon's
``backup_info`` op names the committed size of every segment at one instant
(its last record's end in the segment being written), and exactly those
bytes are copied.  Records committed later are simply not in this backup.
With no daemon answering, the data directory's lock is taken instead and the
whole (verified) log is copied.

A backup folder::

    DEST/
        log/<segments>        the copied bytes
        BACKUP.json           written last: size and SHA-256 of every segment

A backup without BACKUP.json is incomplete and ``restore`` refuses it.
``restore`` verifies every segment against the manifest and the whole log
(CRCs, hash chain) before it writes anything, needs the data directory not
in use (its lock), and swaps the log in with one rename.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from memoryd.client import errors
from memoryd.client.cli import global_options_parent
from memoryd.client.sync_client import Client
from memoryd.daemon.cmd_serve import loaded_config_from_args
from memoryd.daemon.config import ConfigError
from memoryd.daemon.service import VERSION
from memoryd.storage import DataDirLock, DataDirLockedError, check_log
from memoryd.storage.fsio import fsync_dir, pread_exact, pwrite_all
from memoryd.storage.layout import LOG_DIR_NAME, unused_path
from memoryd.storage.segment import list_segments

EXIT_OK = 0
EXIT_FAILED = 1
MANIFEST_NAME = "BACKUP.json"
MANIFEST_FORMAT = 1
COPY_CHUNK_BYTES = 1024 * 1024
RESTORE_TMP_NAME = "log.restore-tmp"
BACKUP_TIMEOUT_S = 60.0  # backup_info reads the active segment once


class BackupError(Exception):
    """A backup or restore cannot go on; the message says why and what to do."""


def add_backup_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parent = global_options_parent()
    backup = subparsers.add_parser(
        "backup",
        parents=[parent],
        help="copy the log consistently into DEST, while the daemon runs",
        description="Copy every committed record into DEST (a new or empty folder), while "
        "the daemon keeps serving; with no daemon answering, copy the data directory "
        "offline (holding its lock). Verified (CRCs, hash chain) before it is called done.",
    )
    backup.add_argument("dest", type=Path, metavar="DEST")
    _add_location_options(backup)
    backup.set_defaults(func=run_backup)
    restore = subparsers.add_parser(
        "restore",
        parents=[parent],
        help="bring a backup back into a data directory that is not in use",
        description="Verify the backup in SRC, then make it the log of the data directory "
        "(which no daemon may be using). A data directory that already holds a log is "
        "refused unless --replace, which moves the old log aside (log.before-restore-<time>).",
    )
    restore.add_argument("src", type=Path, metavar="SRC")
    _add_location_options(restore)
    restore.add_argument(
        "--replace", action="store_true", help="move an existing log aside instead of refusing"
    )
    restore.set_defaults(func=run_restore)


def _add_location_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="default: the configured data directory")
    parser.add_argument("--config", type=Path, metavar="PATH", help="the configuration file")


def run_backup(args: argparse.Namespace) -> int:
    try:
        manifest = backup(args)
    except (BackupError, ConfigError) as exc:
        print(f"memoryd: backup failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(orjson.dumps(manifest, option=orjson.OPT_INDENT_2).decode())
    else:
        size = sum(segment["bytes"] for segment in manifest["segments"])
        print(
            f"backed up {manifest['records']} records (up to seq {manifest['last_seq']}, "
            f"{len(manifest['segments'])} segments, {size} bytes) to {args.dest}"
        )
    return EXIT_OK


def run_restore(args: argparse.Namespace) -> int:
    try:
        data_dir = _data_dir(args)
        result = restore(args.src, data_dir, replace=args.replace)
    except (BackupError, ConfigError) as exc:
        print(f"memoryd: restore failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    else:
        moved = result["moved_aside"]
        print(
            f"restored {result['records']} records (up to seq {result['last_seq']}) into "
            f"{data_dir}" + (f"; the log that was there is in {moved}" if moved else "")
        )
    return EXIT_OK


def _data_dir(args: argparse.Namespace) -> Path:
    if args.data_dir is not None:
        return Path(args.data_dir)
    return loaded_config_from_args(args).config.data_dir


# -- backup -----------------------------------------------------------------------


def backup(args: argparse.Namespace) -> dict[str, Any]:
    dest: Path = args.dest
    _prepare_dest(dest)
    info = _ask_daemon(args)
    if info is not None:
        return write_backup(Path(info["log_dir"]), info["segments"], info["last_seq"], dest)
    data_dir = _data_dir(args)
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except DataDirLockedError as exc:
        raise BackupError(
            f"{exc}, but nothing answers at {args.socket}: pass its --socket"
        ) from None
    except FileNotFoundError:
        raise BackupError(f"no data directory at {data_dir}") from None
    try:
        return _backup_offline(data_dir, dest)
    finally:
        lock.release()


def _ask_daemon(args: argparse.Namespace) -> dict[str, Any] | None:
    """The running daemon's committed segments, or None when no daemon answers."""
    client = Client(args.socket, timeout=max(args.timeout, BACKUP_TIMEOUT_S))
    try:
        return client.call("backup_info")
    except errors.DaemonConnectionError:
        return None
    except errors.MemorydError as exc:
        raise BackupError(f"the daemon answered {exc.code}: {exc.message}") from None
    finally:
        client.close()


def _backup_offline(data_dir: Path, dest: Path) -> dict[str, Any]:
    log_dir = data_dir / LOG_DIR_NAME
    report = check_log(log_dir)
    if not report.ok or report.torn_tail is not None:
        raise BackupError(
            f"the log in {data_dir} is not intact (`memoryd check --data-dir {data_dir}` says "
            "what is wrong); start the daemon once (it cuts a torn tail) or repair it first"
        )
    segments, _others = list_segments(log_dir) if log_dir.is_dir() else ([], [])
    listed = [{"name": s.path.name, "first_seq": s.first_seq, "bytes": s.size} for s in segments]
    return write_backup(log_dir, listed, report.last_seq or 0, dest)


def _prepare_dest(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} exists and is not an empty folder; choose a new one")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)


def write_backup(
    log_dir: Path, segments: list[dict[str, Any]], last_seq: int, dest: Path
) -> dict[str, Any]:
    """Copy the first ``bytes`` bytes of each segment into ``dest``, verify, then write the
    manifest (last, so that a backup with a manifest is complete)."""
    out_dir = dest / LOG_DIR_NAME
    out_dir.mkdir(mode=0o700)
    copied = []
    for segment in segments:
        name, size = str(segment["name"]), int(segment["bytes"])
        digest = copy_prefix(log_dir / name, out_dir / name, size)
        copied.append({"name": name, "bytes": size, "sha256": digest})
    fsync_dir(out_dir)
    records = _verify_log(out_dir, last_seq)
    manifest = {
        "format": MANIFEST_FORMAT,
        "memoryd_version": VERSION,
        "created_ms": time.time_ns() // 1_000_000,
        "source_log_dir": str(log_dir),
        "last_seq": last_seq,
        "records": records,
        "segments": copied,
    }
    _write_manifest(dest, manifest)
    return manifest


def copy_prefix(source: Path, target: Path, size: int) -> str:
    """Copy exactly the first ``size`` bytes of ``source`` into a new ``target``, synced.

    Returns their SHA-256.  A source shorter than ``size`` means the log was
    changed under us (a repair), which a backup must not paper over.
    """
    digest = hashlib.sha256()
    src = os.open(source, os.O_RDONLY)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            offset = 0
            while offset < size:
                chunk = pread_exact(src, min(COPY_CHUNK_BYTES, size - offset), offset)
                if not chunk:
                    raise BackupError(
                        f"{source} ends at {offset} bytes, before its committed {size}: "
                        "the log changed during the backup; try again"
                    )
                pwrite_all(dst, chunk, offset)
                digest.update(chunk)
                offset += len(chunk)
            os.fsync(dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return digest.hexdigest()


def _verify_log(log_dir: Path, last_seq: int) -> int:
    """Check the copied log; returns its record count."""
    report = check_log(log_dir)
    if not report.ok or report.torn_tail is not None:
        problem = report.problems[0] if report.problems else report.torn_tail
        detail = problem.describe() if problem is not None else "unknown"
        raise BackupError(f"the copy in {log_dir} does not verify: {detail}")
    if (report.last_seq or 0) != last_seq:
        raise BackupError(f"the copy ends at seq {report.last_seq}, not at {last_seq}")
    return report.records


def _write_manifest(dest: Path, manifest: dict[str, Any]) -> None:
    tmp = dest / (MANIFEST_NAME + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        pwrite_all(fd, orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n", 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, dest / MANIFEST_NAME)
    fsync_dir(dest)


# -- restore ----------------------------------------------------------------------


def read_manifest(src: Path) -> dict[str, Any]:
    path = src / MANIFEST_NAME
    try:
        manifest = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise BackupError(f"{src} is not a complete backup: it has no {MANIFEST_NAME}") from None
    except orjson.JSONDecodeError as exc:
        raise BackupError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise BackupError(f"{path} is not a backup manifest of format {MANIFEST_FORMAT}")
    return manifest


def verify_backup(src: Path) -> dict[str, Any]:
    """The manifest, after checking every segment's size and SHA-256 and the whole log."""
    manifest = read_manifest(src)
    log_dir = src / LOG_DIR_NAME
    listed = {str(s["name"]) for s in manifest["segments"]}
    found, others = list_segments(log_dir) if log_dir.is_dir() else ([], [])
    extra = sorted({s.path.name for s in found} - listed) + others
    if extra:
        raise BackupError(f"{log_dir} holds files the manifest does not list: {extra}")
    for segment in manifest["segments"]:
        path = log_dir / str(segment["name"])
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                while chunk := f.read(COPY_CHUNK_BYTES):
                    digest.update(chunk)
                size = f.tell()
        except FileNotFoundError:
            raise BackupError(f"{path} is missing") from None
        if size != segment["bytes"] or digest.hexdigest() != segment["sha256"]:
            raise BackupError(f"{path} does not match the manifest (size or SHA-256)")
    _verify_log(log_dir, int(manifest["last_seq"]))
    return manifest


def restore(src: Path, data_dir: Path, *, replace: bool) -> dict[str, Any]:
    manifest = verify_backup(src)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except DataDirLockedError as exc:
        raise BackupError(f"{exc}; stop it before restoring into it") from None
    try:
        moved = _restore_locked(src, data_dir, manifest, replace=replace)
    finally:
        lock.release()
    return {
        "data_dir": str(data_dir),
        "last_seq": manifest["last_seq"],
        "records": manifest["records"],
        "moved_aside": None if moved is None else str(moved),
    }


def _restore_locked(
    src: Path, data_dir: Path, manifest: dict[str, Any], *, replace: bool
) -> Path | None:
    log_dir = data_dir / LOG_DIR_NAME
    moved: Path | None = None
    if log_dir.exists() and any(log_dir.iterdir()):
        if not replace:
            raise BackupError(
                f"{data_dir} already holds a log; restore into an empty data directory, "
                "or pass --replace to move that log aside"
            )
        moved = unused_path(data_dir / f"{LOG_DIR_NAME}.before-restore-{int(time.time())}")
    tmp = data_dir / RESTORE_TMP_NAME
    if tmp.exists():
        shutil.rmtree(tmp)  # left by an interrupted restore; never read by anything
    tmp.mkdir(mode=0o700)
    for segment in manifest["segments"]:
        name = str(segment["name"])
        digest = copy_prefix(src / LOG_DIR_NAME / name, tmp / name, int(segment["bytes"]))
        if digest != segment["sha256"]:
            raise BackupError(f"{src / LOG_DIR_NAME / name} changed while it was restored")
    fsync_dir(tmp)
    _verify_log(tmp, int(manifest["last_seq"]))
    if moved is not None:
        log_dir.rename(moved)
    elif log_dir.exists():
        log_dir.rmdir()  # empty
    tmp.rename(log_dir)
    fsync_dir(data_dir)
    return moved
