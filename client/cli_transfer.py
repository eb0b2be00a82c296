"""``memoryd export``, ``memoryd import FILE`` and ``memoryd tail [-f]``.

``export`` writes the log's events as JSON Lines (PROTOCOL.md, "export") to
stdout or ``--output``; ``import`` reads them back, or a MEM8 or mem0 file
(client/import_formats.py), and ends with a summary; every line it could not
import is reported on stderr with its number.  Exit codes as every command;
``import`` exits 1 when some lines failed (the others are imported) and 2
when the file is refused as a whole (nothing imported).  Both draw a
progress bar on stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

import orjson

from . import protocol
from .cli import (
    EPILOG,
    CommandUsageError,
    _command,
    _emit,
    _emit_json,
    format_frame_line,
    global_options_parent,
)
from .import_formats import FORMATS, open_source
from .import_source import ImportFormatError
from .importer import Importer
from .models import Frame
from .progress import Progress
from .sync_client import Client

if TYPE_CHECKING:
    from .cli import Subparsers

ERRORS_SHOWN_MAX: Final = 1000  # lines listed on stderr; the summary counts them all
TAIL_LINES_MAX: Final = 10_000


class ImportFailedError(Exception):
    """Some lines were not imported (already reported): exit code 1."""


def add_transfer_commands(subparsers: Subparsers) -> None:
    parent = global_options_parent()
    export = subparsers.add_parser(
        "export",
        parents=[parent],
        help="write every event of the log as JSON Lines",
        description="Write every event of the log (frames put and deleted, with every field) "
        "as JSON Lines, in seq order, to stdout or --output. Private frames are written "
        "sealed, as the log holds them, unless --decrypt.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("--output", "-o", type=Path, metavar="FILE", help="write here")
    export.add_argument(
        "--after-seq", type=int, default=0, metavar="SEQ", help="only events after this seq"
    )
    export.add_argument(
        "--decrypt",
        action="store_true",
        help="write private frames opened (the vault must be unlocked); the file then "
        "holds their plaintext",
    )
    export.set_defaults(func=_export)
    formats = "\n".join(f"  {name:<10} {text}" for name, text in FORMATS.items())
    imp = subparsers.add_parser(
        "import",
        parents=[parent],
        help="import a memoryd export, MEM8 (JSON or .m8) or mem0 file",
        description="Import FILE idempotently (importing it again adds nothing). Lines that "
        "cannot be imported are reported with their number; the rest is imported.",
        epilog=f"formats (--format; auto-detected by default):\n{formats}\n\n{EPILOG}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.add_argument(
        "--format", default="auto", choices=["auto", *FORMATS], help="the file's format"
    )
    imp.add_argument(
        "--namespace",
        metavar="NS",
        help="namespace for MEM8 and mem0 memories that name none (default: mem8, mem0)",
    )
    imp.set_defaults(func=_run_import)
    tail = subparsers.add_parser(
        "tail",
        parents=[parent],
        help="show the latest frames; with -f, follow new ones as they commit",
        description="Print the last N live frames, oldest first; with -f, then every new frame "
        "as it commits, until interrupted. A follower that falls too far behind is dropped "
        "by the daemon (exit 1).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tail.add_argument("-f", "--follow", action="store_true", help="follow new frames")
    tail.add_argument(
        "-n", "--lines", type=int, default=10, metavar="N", help="frames shown first (default 10)"
    )
    tail.add_argument("--namespace", metavar="NS", help="only this namespace")
    tail.add_argument(
        "--kind", dest="kinds", action="append", metavar="KIND", help="only these kinds"
    )
    tail.add_argument("--tag", dest="tags", action="append", metavar="TAG", help="only with tag")
    tail.set_defaults(func=_tail)


@_command
def _export(client: Client, args: argparse.Namespace) -> None:
    if args.after_seq < 0:
        raise CommandUsageError("--after-seq must be at least 0")
    if args.output is None:
        _export_to(client, args.after_seq, sys.stdout.buffer, args.decrypt)
        return
    try:
        # 0600: an export may hold private frames (opened, with --decrypt).
        descriptor = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(descriptor, "wb") as out:
            count = _export_to(client, args.after_seq, out, args.decrypt)
    except OSError as exc:
        raise CommandUsageError(f"cannot write {args.output}: {exc.strerror}") from None
    print(f"exported {count} events to {args.output}", file=sys.stderr)


def _export_to(client: Client, after_seq: int, out: IO[bytes], decrypt: bool = False) -> int:
    progress = Progress("export", 0, " seq")
    count = 0
    try:
        while True:
            page = client.export_page(after_seq, decrypt=decrypt)
            out.write(b"".join(orjson.dumps(event) + b"\n" for event in page.events))
            count += len(page.events)
            progress.update(page.next_after_seq, page.last_seq)
            if page.done or page.next_after_seq <= after_seq:
                break
            after_seq = page.next_after_seq
        out.flush()
    finally:
        progress.finish()
    return count


@_command
def _tail(client: Client, args: argparse.Namespace) -> None:
    if not 0 <= args.lines <= TAIL_LINES_MAX:
        raise CommandUsageError(f"-n must be from 0 to {TAIL_LINES_MAX}")
    subscription = (
        client.subscribe(namespace=args.namespace, kinds=args.kinds, tags=args.tags)
        if args.follow
        else None
    )
    try:
        after_seq = subscription.after_seq if subscription is not None else None
        for frame in reversed(_latest(client, args, after_seq)):
            _show(frame, args.json)
        if subscription is not None:
            for frame in subscription:
                _show(frame, args.json)
    finally:
        if subscription is not None:
            subscription.close()


def _latest(client: Client, args: argparse.Namespace, after_seq: int | None) -> list[Frame]:
    """The last ``args.lines`` live frames passing the filters (up to ``after_seq``), newest
    first: the ones a follower would not be pushed."""
    kinds = set(args.kinds or ())
    tags = args.tags or ()
    wanted: list[Frame] = []
    cursor = None
    while len(wanted) < args.lines:
        page = client.recent(
            namespace=args.namespace,
            kind=args.kinds[0] if len(kinds) == 1 else None,
            limit=protocol.PAGE_FRAMES_MAX,
            cursor=cursor,
        )
        wanted += [
            frame
            for frame in page.frames
            if (after_seq is None or frame.seq <= after_seq)
            and (not kinds or frame.kind in kinds)
            and all(tag in frame.tags for tag in tags)
        ]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return wanted[: args.lines]


def _show(frame: Frame, as_json: bool) -> None:
    if as_json:
        _emit_json(dataclasses.asdict(frame))
    else:
        _emit(format_frame_line(frame))


def _run_import(args: argparse.Namespace) -> int:
    try:
        return int(_import(args))
    except ImportFailedError:
        return 1


@_command
def _import(client: Client, args: argparse.Namespace) -> None:
    try:
        source = open_source(args.file, args.format, args.namespace)
    except OSError as exc:
        raise CommandUsageError(f"cannot read {args.file}: {exc.strerror}") from None
    except ImportFormatError as exc:
        raise CommandUsageError(str(exc)) from None
    progress = Progress("import", source.total_bytes, " bytes")
    try:
        summary = Importer(client, source, progress.update).run()
    except ImportFormatError as exc:
        raise CommandUsageError(f"nothing imported: {exc}") from None
    except OSError as exc:
        raise CommandUsageError(f"cannot read {args.file}: {exc.strerror}") from None
    finally:
        progress.finish()
    if args.json:
        _emit_json(summary.as_dict())
    else:
        for error in summary.errors[:ERRORS_SHOWN_MAX]:
            print(f"memoryd: import: {args.file}: {error}", file=sys.stderr)
        if len(summary.errors) > ERRORS_SHOWN_MAX:
            more = len(summary.errors) - ERRORS_SHOWN_MAX
            print(f"memoryd: import: ... and {more} more", file=sys.stderr)
        _emit(summary.describe())
    if summary.errors:
        raise ImportFailedError
