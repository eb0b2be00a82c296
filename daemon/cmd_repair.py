"""``memoryd repair``: move damaged records aside into quarantine, keep every valid one."""

from __future__ import annotations

import argparse
import sys

import orjson

from memoryd.client.cli import global_options_parent
from memoryd.daemon.cmd_serve import add_data_dir_options, config_or_report
from memoryd.storage import DataDirLockedError, repair_data_dir

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_FAILED = 1


def add_repair_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "repair",
        parents=[global_options_parent()],  # `memoryd repair --json` as for every command
        help="quarantine damaged records and keep every valid one (daemon must be stopped)",
        description="Rewrite the log without its damaged records, which are moved into a "
        "quarantine file under DATA_DIR/quarantine/. Every record with a valid checksum is "
        "kept and the hash chain re-linked. The daemon must be stopped.",
    )
    add_data_dir_options(parser)
    parser.set_defaults(func=run_repair)


def run_repair(args: argparse.Namespace) -> int:
    config = config_or_report(args)  # the file, environment and flags, as serve
    if config is None:
        return EXIT_USAGE
    data_dir = config.data_dir
    try:
        report = repair_data_dir(data_dir)
    except DataDirLockedError as exc:
        print(f"memoryd: {exc}; stop it before repairing", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(report.summary())
    return EXIT_OK
