"""``memoryd important`` and ``memoryd related``: reads of derived state from the shell."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

from . import cli
from .models import RankedPage
from .sync_client import Client

AddCommand = Callable[[str, str, cli.Command], argparse.ArgumentParser]


def add_derived_commands(add: AddCommand) -> None:
    important = add(
        "important", "memories most important first (optionally with keywords)", _important
    )
    important.add_argument("keywords", nargs="?", default=None, help="only memories with all")
    important.add_argument("--namespace", default=None, help="only this namespace")
    important.add_argument(
        "--kind", dest="kinds", action="append", default=None, help="only this kind (repeatable)"
    )
    important.add_argument(
        "--by", default="importance", help="importance (default) or a significance dimension"
    )
    important.add_argument("--limit", type=cli._positive_int, default=20, help="page size")
    important.add_argument("--cursor", default=None, help="continue after a previous page")
    related = add("related", "the memories most similar to one memory", _related)
    related.add_argument("id", help="the frame id")
    related.add_argument("-k", type=cli._positive_int, default=10, help="how many (default: 10)")
    related.add_argument("--namespace", default=None, help="default: the memory's own")


@cli._command
def _important(client: Client, args: argparse.Namespace) -> None:
    page = client.important(
        keywords=args.keywords,
        namespace=args.namespace,
        kinds=args.kinds,
        by=args.by,
        limit=args.limit,
        cursor=args.cursor,
    )
    _emit_ranked(page, args)


@cli._command
def _related(client: Client, args: argparse.Namespace) -> None:
    _emit_ranked(client.related(args.id, k=args.k, namespace=args.namespace), args)


def _emit_ranked(page: RankedPage, args: argparse.Namespace) -> None:
    if args.json:
        cli._emit_json(dataclasses.asdict(page))
        return
    for hit in page.hits:
        kind = f" [{hit.fact_kind}]" if hit.fact_kind else ""
        cli._emit(f"{hit.score:8.4f}  {cli.format_frame_line(hit.frame)}{kind}")
    if page.next_cursor:
        cli._emit(f"next: --cursor {page.next_cursor}")
