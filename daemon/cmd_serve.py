"""``memoryd serve``: run the daemon in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from pathlib import Path

import uvloop

from memoryd.client.paths import default_socket_path
from memoryd.daemon.config import Config, ConfigError
from memoryd.daemon.config_file import Flag, LoadedConfig, load_config
from memoryd.daemon.logs import configure_logging

EXIT_STARTUP_FAILED = 1
SWITCH_INTERVAL_S = 0.001  # see run_serve
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

log = logging.getLogger("memoryd.serve")


def add_serve_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the daemon in the foreground",
        description="Run memoryd in the foreground until SIGTERM or SIGINT "
        "(SIGHUP reloads the configuration file).",
    )
    add_config_options(parser)
    parser.set_defaults(func=run_serve)


def add_data_dir_options(parser: argparse.ArgumentParser) -> None:
    """--config and --data-dir: what offline commands (check, repair) need to find the data."""
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="the TOML configuration file (default $MEMORYD_CONFIG, else "
        "$XDG_CONFIG_HOME/memoryd/memoryd.toml if it exists)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where the log lives (default $MEMORYD_DATA_DIR, else $XDG_DATA_HOME/memoryd)",
    )


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """The flags that set configuration keys (serve, config and doctor share them)."""
    add_data_dir_options(parser)
    parser.add_argument(
        "--durability",
        help="fsync (default: acknowledge after fsync) or "
        "relaxed (fsync at most every --relaxed-sync-interval-ms)",
    )
    parser.add_argument("--relaxed-sync-interval-ms", type=int)
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    parser.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help="serve Prometheus metrics over HTTP on this loopback address",
    )


def config_flags(args: argparse.Namespace) -> dict[str, Flag]:
    """The configuration keys set on the command line."""
    flags: dict[str, Flag] = {}
    # The global --socket always has a value: it is a flag only when not the default.
    socket = getattr(args, "socket", None)
    if socket is not None and Path(socket) != default_socket_path():
        flags["socket_path"] = Flag(Path(socket), "--socket")
    for key, name in (
        ("data_dir", "--data-dir"),
        ("durability", "--durability"),
        ("relaxed_sync_interval_ms", "--relaxed-sync-interval-ms"),
        ("log_level", "--log-level"),
        ("metrics_address", "--metrics-address"),
    ):
        value = getattr(args, key, None)
        if value is not None:
            flags[key] = Flag(value, name)
    return flags


def loaded_config_from_args(args: argparse.Namespace) -> LoadedConfig:
    """Embedded defaults, then the configuration file, then the environment, then flags."""
    return load_config(config_flags(args), config_file=getattr(args, "config", None))


def config_from_args(args: argparse.Namespace) -> Config:
    return loaded_config_from_args(args).config


def config_or_report(args: argparse.Namespace) -> Config | None:
    """The effective configuration, or None after saying on stderr why it is invalid."""
    try:
        return config_from_args(args)
    except ConfigError as exc:
        print(f"memoryd: invalid configuration: {exc}", file=sys.stderr)
        return None


# The youngest generation is collected after this many net allocations instead
# of CPython's 700.  Every request allocates dozens of short-lived containers
# (the parsed request, its validated form, futures, results), so by default a
# collection ran every few dozen pipelined puts, each walking all young
# objects: about a quarter of a pipelined put's daemon CPU (32-37 -> 25-27 us).
# Cyclic garbage waits a little longer for it: a few MB at most.
GC_YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Once serving: keep what start-up built out of every later collection.

    The modules, the restored projection and the indexes live as long as the
    daemon; gc.freeze() moves them out of the generations the collector walks.
    No collection first: start-up makes next to no cyclic garbage (it runs with
    the collector paused and builds slots, ids and arrays), while a collection
    walks every object it made, which at 1M frames took seconds before the
    first request was answered.
    """
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def run_serve(args: argparse.Namespace) -> int:
    config = config_or_report(args)
    if config is None:
        return EXIT_STARTUP_FAILED
    configure_logging(config.log_level)
    # One BLAS thread unless told otherwise, set before numpy loads: the vector
    # passes are small products over cache-sized chunks, where OpenBLAS's threads
    # only fight the builder and the event loop for two cores (a 50k-row pass
    # measured 49 ms threaded against 26 ms on one thread here).
    for name in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    # Imported here: the server pulls in the indexes (numpy), which the other
    # commands never need and should not wait for.
    from memoryd.daemon.server import Daemon, StartupError
    from memoryd.storage import DataDirLockedError, LogCorruptionError

    daemon = Daemon(config, reload_config=lambda: config_from_args(args))
    # The builder's thread and the event loop share the interpreter lock; at the
    # default 5 ms switch interval a put could wait that long behind a build step.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(daemon.run(on_ready=settle_heap))
    except (StartupError, DataDirLockedError, LogCorruptionError) as exc:
        log.error("cannot start: %s", exc)
        return EXIT_STARTUP_FAILED
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_STARTUP_FAILED
