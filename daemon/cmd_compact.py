"""``memoryd compact``: reclaim the space of deleted frames (offline: the daemon is stopped).

Online compaction (an op while the writer appends) is not offered: the frame
table and the builder hold record locations that a rewrite moves, and the
segment swap would race with readers; see storage/compaction.py.
"""

from __future__ import annotations

import argparse
import sys
import time

import orjson

from memoryd.client.cli import global_options_parent
from memoryd.daemon.cmd_serve import add_data_dir_options, config_or_report
from memoryd.storage import DataDirLockedError, LogCorruptionError
from memoryd.storage.compaction import CompactionFailedError, compact_data_dir, expired_by

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
        "before. The daemon must be stopped.",
    )
    add_data_dir_options(parser)
    parser.set_defaults(func=run_compact)


def run_compact(args: argparse.Namespace) -> int:
    config = config_or_report(args)
    if config is None:
        return EXIT_USAGE
    try:
        # Expired frames left every query when they expired; now their records go too.
        now_ms = time.time_ns() // 1_000_000
        report = compact_data_dir(config.data_dir, frame_dead=expired_by(now_ms))
    except DataDirLockedError as exc:
        print(f"memoryd: {exc}; stop it before compacting", file=sys.stderr)
        return EXIT_FAILED
    except (LogCorruptionError, CompactionFailedError) as exc:
        print(f"memoryd: nothing compacted: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(report.summary())
    return EXIT_OK
