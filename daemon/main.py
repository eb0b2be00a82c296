"""The ``memoryd`` command: client commands from memoryd.client.cli plus the daemon's own.

The client package cannot import the daemon, so the one console script lives
here: it builds the client's parser and adds ``serve``, ``check`` and
``repair``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from memoryd.client.cli import add_client_commands, build_parser
from memoryd.daemon.cmd_check import add_check_command
from memoryd.daemon.cmd_repair import add_repair_command
from memoryd.daemon.cmd_serve import add_serve_command

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser, subparsers = build_parser(prog="memoryd")
    add_serve_command(subparsers)
    add_client_commands(subparsers)
    add_check_command(subparsers)
    add_repair_command(subparsers)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(func(args))
    except KeyboardInterrupt:
        return 130
