"""The ``memoryd`` command line's client commands (put, get, recent, range, delete, stats, ping).

The top-level program lives in ``memoryd.daemon.main``: it calls
``build_parser()`` for the parser with the global options (``--socket``,
``--json``, ``--timeout``), ``add_client_commands(subparsers)`` for these
commands, adds its own (serve, check, repair), then runs
``sys.exit(args.func(args))``.  Each command's ``func`` takes the parsed
namespace and returns the exit code; it never raises and never prints a
traceback.

Exit codes:
    0  success
    1  the request failed: the daemon answered with an error, or broke the protocol
    2  usage error: bad arguments or unreadable input (argparse exits with 2 too)
    3  the daemon could not be reached: not running, refused, connection broke, timed out
    4  not found: no live frame has that id

Errors are one line on stderr, ``memoryd: <code>: <message>``.  Output is
readable text by default and one JSON document (the op's result object) with
``--json``.  Content is sent and printed exactly as given, never trimmed or
re-encoded, with one exception: the single line ending that ends stdin (what
``echo`` adds) is dropped, so that ``echo x | memoryd put`` stores the same
frame as ``memoryd put x``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import orjson

from . import errors, protocol
from .models import Frame, Page
from .paths import default_socket_path
from .sync_client import Client

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3
EXIT_NOT_FOUND: Final = 4
EXIT_INTERRUPTED: Final = 130

EPILOG: Final = """\
exit codes:
  0  success
  1  the request failed (the daemon answered with an error)
  2  usage error (bad arguments or unreadable input)
  3  the daemon could not be reached (not running, refused, broken, timed out)
  4  not found (no live frame has that id)"""

DEFAULT_TIMEOUT_S: Final = 30.0
ID_PREFIX_CHARS: Final = 12
SNIPPET_CHARS: Final = 72

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
Command: TypeAlias = Callable[[argparse.Namespace], int]


class CommandUsageError(Exception):
    """Input that argparse could not check (e.g. stdin that is not UTF-8): exit code 2."""


# --- parsers -----------------------------------------------------------------


def _add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """--socket, --json and --timeout; ``suppress`` for the copies on each subcommand."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--socket",
        type=Path,
        default=default(default_socket_path()),
        metavar="PATH",
        help="the daemon's Unix socket (default: $MEMORYD_SOCKET, else "
        "$XDG_RUNTIME_DIR/memoryd/memoryd.sock, else /tmp/memoryd-$UID/memoryd.sock)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print one JSON document (the op's result) instead of text",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=default(DEFAULT_TIMEOUT_S),
        metavar="SECONDS",
        help=f"give up on a request after this long (default: {DEFAULT_TIMEOUT_S:g})",
    )


def global_options_parent() -> argparse.ArgumentParser:
    """A parent parser so the global options may also follow any subcommand.

    ``memoryd get ID --json`` works like ``memoryd --json get ID``; the
    daemon's own subcommands can pass it in ``parents=[...]`` too.
    """
    parent = argparse.ArgumentParser(add_help=False)
    _add_global_options(parent, suppress=True)
    return parent


def build_parser(prog: str = "memoryd") -> tuple[argparse.ArgumentParser, Subparsers]:
    """The top-level parser with the global options, and its (empty) subcommand set."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="memoryd: a local, durable memory daemon for AI agents.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_global_options(parser, suppress=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    return parser, subparsers


def add_client_commands(subparsers: Subparsers) -> None:
    """Add put, get, recent, range, delete, search, stats and ping; each sets ``func``."""
    parent = global_options_parent()

    def add(name: str, help_text: str, func: Command) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = subparsers.add_parser(
            name,
            help=help_text,
            description=help_text,
            parents=[parent],
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(func=func)
        return sub

    put = add("put", "store a memory", _put)
    put.add_argument(
        "text",
        nargs="?",
        default=None,
        help="the content; read from stdin when absent or '-' (put `--` before text "
        "that starts with '-')",
    )
    put.add_argument("--kind", default=protocol.DEFAULT_KIND, help="default: %(default)s")
    put.add_argument("--namespace", default=protocol.DEFAULT_NAMESPACE, help="default: %(default)s")
    put.add_argument("--tag", dest="tags", action="append", default=[], help="a tag (repeatable)")
    put.add_argument(
        "--importance",
        type=float,
        default=protocol.DEFAULT_IMPORTANCE,
        help="from 0 to 1 (default: %(default)s)",
    )
    put.add_argument(
        "--meta",
        dest="metadata",
        type=_meta_item,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a metadata entry (repeatable); VALUE is parsed as JSON when it parses, "
        "else taken as a string",
    )
    put.add_argument("--private", action="store_true", help="store as a private memory")
    put.add_argument("--source", default="", help="where the memory comes from")
    put.add_argument(
        "--timestamp-ms",
        type=int,
        default=None,
        metavar="MS",
        help="its time in ms since the epoch (default: now; for imports)",
    )
    put.add_argument(
        "--ttl",
        dest="ttl_s",
        type=_positive_int,
        default=None,
        metavar="SECONDS",
        help="forget it this long after now (default: never)",
    )

    get = add("get", "print one memory in full", _get)
    get.add_argument("id", help="the frame id")

    recent = add("recent", "list memories, newest first", _recent)
    _add_page_options(recent, default_limit=20)

    range_ = add("range", "list memories in a time range, oldest first", _range)
    range_.add_argument(
        "--since",
        type=_time_ms,
        default=None,
        metavar="TIME",
        help="inclusive; ISO-8601 datetime (local time unless it has an offset) or ms",
    )
    range_.add_argument(
        "--until", type=_time_ms, default=None, metavar="TIME", help="exclusive; like --since"
    )
    _add_page_options(range_, default_limit=100)

    delete = add("delete", "delete a memory (deleting a missing one is not an error)", _delete)
    delete.add_argument("id", help="the frame id")

    search = add("search", "find the memories most relevant to a query", _search)
    search.add_argument("query", help="what to look for")
    search.add_argument("-k", type=_positive_int, default=10, help="how many (default: 10)")
    search.add_argument(
        "--mode",
        choices=("hybrid", "keyword", "semantic", "classic"),
        default="hybrid",
        help="how to rank (default: %(default)s)",
    )
    search.add_argument("--namespace", default=None, help="only this namespace")
    search.add_argument(
        "--kind",
        dest="kinds",
        action="append",
        default=None,
        help="only this kind (repeatable: any of them)",
    )
    search.add_argument(
        "--tag",
        dest="tags",
        action="append",
        default=None,
        help="only memories with this tag (repeatable: all of them)",
    )
    search.add_argument(
        "--since",
        type=_time_ms,
        default=None,
        metavar="TIME",
        help="inclusive; ISO-8601 datetime or ms",
    )
    search.add_argument(
        "--until",
        type=_time_ms,
        default=None,
        metavar="TIME",
        help="exclusive; ISO-8601 datetime or ms",
    )
    search.add_argument("--min-importance", type=float, default=None, metavar="X")
    search.add_argument("--explain", action="store_true", help="show each part of each score")

    add("stats", "print the daemon's counters", _stats)
    add("ping", "check that the daemon answers, and how fast", _ping)
    from .cli_derived import add_derived_commands  # it imports this module's helpers

    add_derived_commands(add)


def _add_page_options(parser: argparse.ArgumentParser, *, default_limit: int) -> None:
    parser.add_argument("--namespace", default=None, help="only this namespace")
    parser.add_argument("--kind", default=None, help="only this kind")
    parser.add_argument(
        "--limit",
        type=_positive_int,
        default=default_limit,
        help=f"at most this many (1..{protocol.PAGE_FRAMES_MAX}, default: %(default)s)",
    )
    parser.add_argument("--cursor", default=None, help="continue from a previous page")


# --- argument types (argparse turns their errors into exit code 2) ---------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _meta_item(text: str) -> tuple[str, Any]:
    """KEY=VALUE; VALUE as JSON if it parses (1, true, "x", {...}), else the string itself."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def _time_ms(text: str) -> int:
    """Milliseconds since the epoch, from an integer or an ISO-8601 date or datetime."""
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO-8601 datetime or milliseconds: {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # naive means local time
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


# --- commands ----------------------------------------------------------------


def _command(action: Callable[[Client, argparse.Namespace], None]) -> Command:
    """Wrap an action into a ``func``: one client, errors mapped to exit codes and one line."""

    def run(args: argparse.Namespace) -> int:
        client = Client(args.socket, timeout=args.timeout)
        try:
            action(client, args)
        except errors.NotFoundError as exc:
            return _fail(exc.code, exc.message, EXIT_NOT_FOUND)
        except (errors.DaemonConnectionError, errors.ClientTimeoutError) as exc:
            return _fail(exc.code, exc.message, EXIT_UNREACHABLE)
        except errors.MemorydError as exc:
            return _fail(exc.code, exc.message, EXIT_FAILED)
        except CommandUsageError as exc:
            return _fail("usage", str(exc), EXIT_USAGE)
        except BrokenPipeError:
            _silence_stdout()  # the reader went away (e.g. `| head`): not our failure
            return EXIT_OK
        except KeyboardInterrupt:
            return _fail("interrupted", "stopped by the user", EXIT_INTERRUPTED)
        finally:
            client.close()
        return EXIT_OK

    run.__name__ = action.__name__
    run.__doc__ = action.__doc__
    return run


@_command
def _put(client: Client, args: argparse.Namespace) -> None:
    content = _read_stdin() if args.text in (None, "-") else args.text
    _check_text(content, "the content")
    result = client.put(
        content,
        kind=args.kind,
        namespace=args.namespace,
        tags=args.tags,
        importance=args.importance,
        metadata=dict(args.metadata) or None,
        private=args.private,
        source=args.source,
        timestamp_ms=args.timestamp_ms,
        ttl_s=args.ttl_s,
    )
    if args.json:
        _emit_json(dataclasses.asdict(result))
    else:
        state = "stored" if result.is_new else "already stored"
        _emit(f"{state} {result.id} (seq {result.seq})")


@_command
def _get(client: Client, args: argparse.Namespace) -> None:
    frame = client.get(args.id)
    if args.json:
        _emit_json({"frame": dataclasses.asdict(frame)})
    else:
        _emit(format_frame(frame))


@_command
def _recent(client: Client, args: argparse.Namespace) -> None:
    page = client.recent(
        namespace=args.namespace, kind=args.kind, limit=args.limit, cursor=args.cursor
    )
    _emit_page(page, args)


@_command
def _range(client: Client, args: argparse.Namespace) -> None:
    page = client.range(
        since_ms=args.since,
        until_ms=args.until,
        namespace=args.namespace,
        kind=args.kind,
        limit=args.limit,
        cursor=args.cursor,
    )
    _emit_page(page, args)


@_command
def _delete(client: Client, args: argparse.Namespace) -> None:
    result = client.delete(args.id)
    if args.json:
        _emit_json(dataclasses.asdict(result))
    elif result.deleted:
        _emit(f"deleted {result.id} (seq {result.seq})")
    else:
        _emit(f"nothing to delete: no live frame has id {result.id}")


@_command
def _search(client: Client, args: argparse.Namespace) -> None:
    _check_text(args.query, "the query")
    result = client.search(
        args.query,
        k=args.k,
        mode=args.mode,
        namespace=args.namespace,
        kinds=args.kinds,
        tags=args.tags,
        since_ms=args.since,
        until_ms=args.until,
        min_importance=args.min_importance,
        explain=args.explain,
    )
    if args.json:
        _emit_json(dataclasses.asdict(result))
        return
    for hit in result.hits:
        _emit(f"{hit.score:8.4f}  {format_frame_line(hit.frame)}")
        if hit.explain:
            parts = ", ".join(
                f"{name} {value:.3f}"
                for name, value in hit.explain.items()
                if isinstance(value, float)
            )
            _emit(f"          {parts}")


@_command
def _stats(client: Client, args: argparse.Namespace) -> None:
    counters = client.stats()
    if args.json:
        _emit_json(counters)
        return
    width = max((len(name) for name in counters), default=0)
    for name in sorted(counters):
        value = counters[name]
        shown = value if isinstance(value, str | int | float) else orjson.dumps(value).decode()
        _emit(f"{name.ljust(width)}  {shown}")


@_command
def _ping(client: Client, args: argparse.Namespace) -> None:
    rtt_s = client.ping()
    info = client.server_info
    version = info.version if info is not None else "?"
    if args.json:
        _emit_json({"pong": True, "rtt_ms": rtt_s * 1000, "version": version})
    else:
        _emit(f"pong from memoryd {version} at {client.socket_path} in {rtt_s * 1000:.3f} ms")


# --- input -------------------------------------------------------------------


def _read_stdin() -> str:
    """All of stdin, decoded as strict UTF-8, less the one line ending that ends it."""
    stream = sys.stdin
    raw = stream.buffer.read() if hasattr(stream, "buffer") else stream.read().encode()
    if raw.endswith(b"\r\n"):
        raw = raw[:-2]
    elif raw.endswith(b"\n"):
        raw = raw[:-1]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandUsageError(
            f"stdin is not valid UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None


def _check_text(text: str, what: str) -> None:
    """Text from argv may carry lone surrogates (undecodable bytes); those cannot be sent."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise CommandUsageError(f"{what} is not valid UTF-8 text") from None


# --- output ------------------------------------------------------------------


def format_time(timestamp_ms: int) -> str:
    """Local time to the second, for listings."""
    return datetime.fromtimestamp(timestamp_ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def snippet(content: str, width: int = SNIPPET_CHARS) -> str:
    """One display line of content: whitespace runs become one space, control characters
    become U+FFFD, and text beyond ``width`` characters ends in an ellipsis.  Display only:
    the stored content is never changed."""
    line = " ".join(content.split())
    line = "".join("\ufffd" if unicodedata.category(ch) == "Cc" else ch for ch in line)
    return line if len(line) <= width else line[: width - 1] + "…"


def format_frame_line(frame: Frame) -> str:
    """time, id prefix, kind, namespace, content snippet."""
    return (
        f"{format_time(frame.timestamp_ms)}  {frame.id[:ID_PREFIX_CHARS]}  "
        f"{frame.kind}  {frame.namespace}  {snippet(frame.content)}"
    )


def format_frame(frame: Frame) -> str:
    """Every field, then a blank line, then the full content exactly as stored."""
    when = datetime.fromtimestamp(frame.timestamp_ms / 1000).astimezone()
    fields = [
        ("id", frame.id),
        ("seq", str(frame.seq)),
        ("time", when.isoformat(timespec="milliseconds")),
        ("namespace", frame.namespace),
        ("kind", frame.kind),
        ("importance", f"{frame.importance:g}"),
        ("tags", ", ".join(frame.tags)),
        ("source", frame.source),
        ("private", "true" if frame.private else "false"),
        ("metadata", orjson.dumps(frame.metadata).decode() if frame.metadata else ""),
    ]
    header = "\n".join(f"{name:<11}{value}".rstrip() for name, value in fields)
    return f"{header}\n\n{frame.content}"


def _emit_page(page: Page, args: argparse.Namespace) -> None:
    if args.json:
        _emit_json(dataclasses.asdict(page))
        return
    for frame in page.frames:
        _emit(format_frame_line(frame))
    if not page.frames:
        print("no frames", file=sys.stderr)
    if page.next_cursor is not None:
        print(f"more: --cursor {page.next_cursor}", file=sys.stderr)


def _emit(text: str) -> None:
    """Print a line; if stdout cannot encode it, write the UTF-8 bytes instead."""
    end = "" if text.endswith("\n") else "\n"
    try:
        sys.stdout.write(text + end)
    except UnicodeEncodeError:
        sys.stdout.flush()
        sys.stdout.buffer.write((text + end).encode("utf-8"))
    sys.stdout.flush()


def _emit_json(document: Any) -> None:
    _emit(orjson.dumps(document).decode())


def _fail(code: str, message: str, exit_code: int) -> int:
    line = " ".join(f"memoryd: {code}: {message}".split())  # always exactly one line
    try:
        print(line, file=sys.stderr)
    except UnicodeEncodeError:
        print(line.encode("ascii", "backslashreplace").decode(), file=sys.stderr)
    return exit_code


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
