"""``memoryd compact``: reclaim the space of deleted frames (offline: the daemon is stopped).

Expired private frames it drops are crypto-shredded as well: their data keys
are destroyed (the vault may be locked: destroying needs no key), so that no
old segment or backup can reveal them, as after ``forget``.  The keys go even
when the rewrite itself fails: an expired frame is gone from every query
already.

Online compaction (an op while the writer appends) is not offered: the frame
table and the builder hold record locations that a rewrite moves, and the
segment swap would race with readers; see storage/compaction.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson

from memoryd.client.cli import global_options_parent
from memoryd.daemon.cmd_serve import add_data_dir_options, config_or_report
from memoryd.daemon.vault import Vault
from memoryd.storage import DataDirLock, DataDirLockedError, LogCorruptionError
from memoryd.storage.compaction import CompactionFailedError, compact_log, expired_by
from memoryd.storage.events import Frame
from memoryd.storage.layout import LOG_DIR_NAME

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_compact_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "compact",
        parents=[global_options_parent()],
        help="reclaim the space of deleted and expired frames (daemon must be stopped)",
        description="Rewrite the log's sealed segments without the records of deleted and "
        "expired frames and the deletions, then swap the new log in atomically (safe "
        "against a crash at any point: the log is then the old one or the new one). Every "
        "live frame keeps its id, seq and time; `memoryd check` proves the hash chain as "
        "before. Expired private frames it drops are crypto-shredded (their data keys "
        "destroyed). The daemon must be stopped.",
    )
    add_data_dir_options(parser)
    parser.set_defaults(func=run_compact)


def run_compact(args: argparse.Namespace) -> int:
    config = config_or_report(args)
    if config is None:
        return EXIT_USAGE
    expired = expired_by(time.time_ns() // 1_000_000)
    sealed: list[Frame] = []

    def dead(frame: Frame) -> bool:
        # Expired frames left every query when they expired; now their records go too.
        if not expired(frame):
            return False
        if frame.sealed is not None:
            sealed.append(frame)
        return True

    try:
        with DataDirLock(config.data_dir):
            try:
                report = compact_log(config.data_dir / LOG_DIR_NAME, frame_dead=dead)
            finally:
                shredded = _shred(config.data_dir, sealed)
    except DataDirLockedError as exc:
        print(f"memoryd: {exc}; stop it before compacting", file=sys.stderr)
        return EXIT_FAILED
    except (LogCorruptionError, CompactionFailedError) as exc:
        print(f"memoryd: nothing compacted: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        out = {**report.to_dict(), "expired_private_frames_shredded": shredded}
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    else:
        print(report.summary())
        if shredded:
            print(f"destroyed the data keys of {shredded} expired private frames")
    return EXIT_OK


def _shred(data_dir: Path, frames: list[Frame]) -> int:
    """Destroy the data keys of sealed ``frames`` in the vault of ``data_dir`` (it stays
    locked); how many were live."""
    if not frames:
        return 0
    vault = Vault(data_dir)
    try:
        return vault.forget_frames(frames)
    finally:
        vault.close()
