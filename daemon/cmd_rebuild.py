"""``memoryd rebuild``: make every piece of derived state again from the log alone (offline)."""

from __future__ import annotations

import argparse
import sys

import orjson

from memoryd.client.cli import global_options_parent
from memoryd.daemon.cmd_serve import add_data_dir_options, config_or_report
from memoryd.daemon.server import make_embedder
from memoryd.storage import DataDirLockedError, LogCorruptionError
from memoryd.storage.rebuild import rebuild_data_dir
from memoryd.storage.search import EmbedderUnavailableError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_rebuild_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "rebuild",
        parents=[global_options_parent()],
        help="rebuild chunks, indexes and the checkpoint from the log (daemon must be stopped)",
        description="Remove the checkpoint and every chunk file, fold the whole log into fresh "
        "derived state (catalog, keyword and vector indexes, significance, chunks) exactly as "
        "the daemon's builder does, and write a new checkpoint. The log is only read. The "
        "daemon must be stopped.",
    )
    add_data_dir_options(parser)
    parser.set_defaults(func=run_rebuild)


def run_rebuild(args: argparse.Namespace) -> int:
    config = config_or_report(args)
    if config is None:
        return EXIT_USAGE
    try:
        report = rebuild_data_dir(
            config.data_dir,
            make_embedder(config.embedder),
            config.chunk_frames_max,
            config.build_step_chunks_max,
        )
    except DataDirLockedError as exc:
        print(f"memoryd: {exc}; stop it before rebuilding", file=sys.stderr)
        return EXIT_FAILED
    except (LogCorruptionError, EmbedderUnavailableError) as exc:
        print(f"memoryd: cannot rebuild: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(report.summary())
    return EXIT_OK
