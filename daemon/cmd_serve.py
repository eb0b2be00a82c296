"""``memoryd serve``: run the daemon in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import uvloop

from memoryd.daemon.config import Config, ConfigError, config_from_environment, parse_durability
from memoryd.daemon.logs import configure_logging
from memoryd.daemon.server import Daemon, StartupError
from memoryd.storage import DataDirLockedError, LogCorruptionError

EXIT_STARTUP_FAILED = 1

log = logging.getLogger("memoryd.serve")


def add_serve_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the daemon in the foreground",
        description="Run memoryd in the foreground until SIGTERM or SIGINT.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where the log lives (default $MEMORYD_DATA_DIR, else $XDG_DATA_HOME/memoryd)",
    )
    parser.add_argument(
        "--durability",
        help="fsync (default: acknowledge after fsync) or "
        "relaxed (fsync at most every --relaxed-sync-interval-ms)",
    )
    parser.add_argument("--relaxed-sync-interval-ms", type=int)
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    parser.set_defaults(func=run_serve)


def config_from_args(args: argparse.Namespace) -> Config:
    """Embedded defaults, then the environment, then flags."""
    config = config_from_environment()
    changes: dict[str, object] = {}
    if getattr(args, "socket", None):
        changes["socket_path"] = Path(args.socket)
    if args.data_dir is not None:
        changes["data_dir"] = args.data_dir
    if args.durability is not None:
        changes["durability"] = parse_durability(args.durability, "--durability")
    if args.relaxed_sync_interval_ms is not None:
        changes["relaxed_sync_interval_ms"] = args.relaxed_sync_interval_ms
    if args.log_level is not None:
        changes["log_level"] = args.log_level
    return config.replace(**changes).validate()


def run_serve(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"memoryd: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_STARTUP_FAILED
    configure_logging(config.log_level)
    daemon = Daemon(config)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(daemon.run())
    except (StartupError, DataDirLockedError, LogCorruptionError) as exc:
        log.error("cannot start: %s", exc)
        return EXIT_STARTUP_FAILED
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_STARTUP_FAILED
