"""The ``memoryd`` command: client commands from memoryd.client.cli plus the daemon's own.

The client package cannot import the daemon, so the one console script lives
here: it builds the client's parser and adds ``serve``, ``check``,
``repair``, ``rebuild`` and the others.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from memoryd.client.cli import add_client_commands, build_parser
from memoryd.client.cli_memory import add_memory_commands
from memoryd.client.cli_transfer import add_transfer_commands
from memoryd.client.cli_vault import add_vault_commands
from memoryd.daemon.cmd_backup import add_backup_commands
from memoryd.daemon.cmd_check import add_check_command
from memoryd.daemon.cmd_compact import add_compact_command
from memoryd.daemon.cmd_config import add_config_command
from memoryd.daemon.cmd_doctor import add_doctor_command
from memoryd.daemon.cmd_rebuild import add_rebuild_command
from memoryd.daemon.cmd_repair import add_repair_command
from memoryd.daemon.cmd_serve import add_serve_command
from memoryd.daemon.cmd_status import add_prometheus_option, add_status_command

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser, subparsers = build_parser(prog="memoryd")
    add_serve_command(subparsers)
    add_client_commands(subparsers)
    add_check_command(subparsers)
    add_repair_command(subparsers)
    add_rebuild_command(subparsers)
    add_config_command(subparsers)
    add_status_command(subparsers)
    add_prometheus_option(subparsers)
    add_doctor_command(subparsers)
    add_backup_commands(subparsers)
    add_vault_commands(subparsers)
    add_memory_commands(subparsers)
    add_transfer_commands(subparsers)
    add_compact_command(subparsers)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code = int(func(args))
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`memoryd check | head`): not a failure of ours.
        # Point stdout at /dev/null so that the interpreter's final flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
