"""``memoryd status`` (is it well?) and ``memoryd stats --prometheus`` (the metrics)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import orjson

from memoryd.client import errors
from memoryd.client.cli import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, global_options_parent
from memoryd.client.sync_client import Client

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def add_status_command(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "status",
        parents=[global_options_parent()],
        help="print the daemon's state, uptime, frames, builder lag, vault and free disk",
        description="Ask the running daemon how it is. Exit 0 when it answers, "
        f"{EXIT_UNREACHABLE} when it cannot be reached.",
    )
    parser.set_defaults(func=run_status)


def add_prometheus_option(subparsers: Subparsers) -> None:
    """Give the client's ``stats`` command ``--prometheus`` (the daemon's ``metrics`` op)."""
    stats = subparsers.choices["stats"]
    plain: Callable[[argparse.Namespace], int] = stats.get_default("func")
    stats.add_argument(
        "--prometheus",
        action="store_true",
        help="print Prometheus text exposition: request counters and latency histograms per op",
    )

    def run(args: argparse.Namespace) -> int:
        return run_prometheus(args) if args.prometheus else plain(args)

    stats.set_defaults(func=run)


def call(args: argparse.Namespace, op: str) -> tuple[int, dict[str, Any] | None]:
    """Run one op; on failure print one line and return the exit code."""
    client = Client(args.socket, timeout=args.timeout)
    try:
        return EXIT_OK, client.call(op)
    except (errors.DaemonConnectionError, errors.ClientTimeoutError) as exc:
        print(f"memoryd: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_UNREACHABLE, None
    except errors.MemorydError as exc:
        print(f"memoryd: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED, None
    finally:
        client.close()


def run_status(args: argparse.Namespace) -> int:
    code, status = call(args, "status")
    if status is None:
        if code == EXIT_UNREACHABLE and not args.json:
            print(f"state            not running (nothing answers at {args.socket})")
        return code
    if args.json:
        print(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_status(status))
    return EXIT_OK


def run_prometheus(args: argparse.Namespace) -> int:
    code, result = call(args, "metrics")
    if result is None:
        return code
    sys.stdout.write(str(result["text"]))
    return EXIT_OK


def format_status(status: dict[str, Any]) -> str:
    free, total = status.get("disk_free_bytes"), status.get("disk_total_bytes")
    disk = "unknown" if free is None else f"{format_bytes(free)} of {format_bytes(total or 0)}"
    last = status.get("last_checkpoint")
    checkpoint = (
        f"seq {last.get('seq')}, {format_bytes(int(last.get('bytes') or 0))}, "
        f"{format_duration(float(last.get('age_s') or 0))} ago"
        if isinstance(last, dict)
        else "none yet (a start replays the whole log)"
    )
    progressing = "" if status.get("builder_progressing", True) else " (not progressing)"
    activated = " (socket activated)" if status.get("socket_activated") else ""
    rows = [
        ("state", status.get("state")),
        ("problem", status.get("problem")),
        ("uptime", format_duration(float(status.get("uptime_s") or 0))),
        ("frames", f"{status.get('frames_live')} live (last seq {status.get('last_seq')})"),
        ("builder lag", f"{status.get('builder_lag')} records{progressing}"),
        ("last checkpoint", checkpoint),
        ("vault", status.get("vault")),
        ("free disk", f"{disk} (data in {status.get('data_dir')})"),
        ("socket", f"{status.get('socket')}{activated}"),
        ("metrics", status.get("metrics_url") or "off (set metrics_address)"),
        ("pid", status.get("pid")),
        ("version", status.get("version")),
    ]
    return "\n".join(f"{name:<16} {value}" for name, value in rows if value is not None)


def format_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s" if minutes else f"{seconds:.1f}s"
