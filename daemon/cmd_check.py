"""``memoryd check``: verify every record's CRC, sequence and the hash chain, offline."""

from __future__ import annotations

import argparse

import orjson

from memoryd.client.cli import global_options_parent
from memoryd.daemon.cmd_serve import add_data_dir_options, config_or_report
from memoryd.storage import check_data_dir

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_CORRUPT = 5


def add_check_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "check",
        parents=[global_options_parent()],  # `memoryd check --json` as for every command
        help="verify the log offline (CRCs, sequence, hash chain)",
        description="Read every record of the log and verify its CRC, its sequence number and "
        "the hash chain. Read-only; safe while the daemon runs. Exit 0 when intact, "
        f"{EXIT_CORRUPT} when problems were found.",
    )
    add_data_dir_options(parser)
    parser.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    config = config_or_report(args)  # the file, environment and flags, as serve
    if config is None:
        return EXIT_USAGE
    data_dir = config.data_dir
    report = check_data_dir(data_dir)
    if args.json:
        print(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(report.summary())
    return EXIT_OK if report.ok else EXIT_CORRUPT
