"""The ``memoryd`` commands for agent memory: block, blocks, context, namespaces, forget, mcp.

Same conventions as ``cli`` (exit codes, one-line errors, ``--json`` prints
the op's result object):

    memoryd block get TYPE                      print a core memory block
    memoryd block set TYPE [TEXT]               set it (TEXT from stdin when absent or '-')
    memoryd block append TYPE TEXT              append a line
    memoryd block replace TYPE OLD NEW          replace every OLD by NEW
    memoryd block delete TYPE                   delete it (its history stays)
    memoryd block history TYPE                  every change, newest first
    memoryd blocks                              the namespace's blocks, rendered
    memoryd context [QUERY] --budget N          a prompt context within N tokens
    memoryd namespaces                          namespaces with their counts
    memoryd forget (--id ID ... | filters)      delete by id or filter; --dry-run counts
    memoryd mcp                                 serve MCP over stdio (memoryd.client.mcp_server)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TYPE_CHECKING

from . import protocol
from .cli import (
    EPILOG,
    EXIT_USAGE,
    Command,
    CommandUsageError,
    _check_text,
    _command,
    _emit,
    _emit_json,
    _fail,
    _positive_int,
    _read_stdin,
    _time_ms,
    format_time,
    global_options_parent,
    snippet,
)
from .memory_models import Block, BlockWriteResult
from .sync_client import Client

if TYPE_CHECKING:
    from .cli import Subparsers

BLOCK_TYPES = ("system", "persona", "human", "facts", "goals", "scratch")


def add_memory_commands(subparsers: Subparsers) -> None:
    """Add block, blocks, context, namespaces, forget and mcp; each sets ``func``."""
    parent = global_options_parent()

    def add(
        parsers: Subparsers, name: str, help_text: str, func: Command | None
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = parsers.add_parser(
            name,
            help=help_text,
            description=help_text,
            parents=[parent],
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if func is not None:
            sub.set_defaults(func=func)
        return sub

    def block_command(
        parsers: Subparsers, name: str, help_text: str, func: Command
    ) -> argparse.ArgumentParser:
        sub = add(parsers, name, help_text, func)
        sub.add_argument("type", choices=BLOCK_TYPES, help="the block type")
        sub.add_argument("--namespace", default=None, help="default: default")
        return sub

    block = add(subparsers, "block", "read and change core memory blocks", None)
    actions = block.add_subparsers(dest="block_command", metavar="ACTION", required=True)
    block_command(actions, "get", "print a core memory block", _block_get)
    set_ = block_command(actions, "set", "set a block's content (creating it)", _block_set)
    set_.add_argument("text", nargs="?", default=None, help="the content; stdin when absent or '-'")
    set_.add_argument("--label", default=None, help="a short label")
    set_.add_argument("--description", default=None, help="what the block is for")
    set_.add_argument(
        "--limit",
        dest="chars_limit",
        type=_positive_int,
        default=None,
        metavar="CHARS",
        help=f"its size limit in characters (at most {protocol.BLOCK_CHARS_MAX})",
    )
    set_.add_argument(
        "--read-only",
        dest="read_only",
        action="store_const",
        const=True,
        default=None,
        help="make it read-only (writes then need --force)",
    )
    set_.add_argument(
        "--writable", dest="read_only", action="store_const", const=False, help="undo --read-only"
    )
    append = block_command(actions, "append", "append a line to a block", _block_append)
    append.add_argument("text", help="the text to append")
    replace = block_command(actions, "replace", "replace text inside a block", _block_replace)
    replace.add_argument("old", help="the text to find (every occurrence)")
    replace.add_argument("new", help="what to put instead (may be empty)")
    block_command(actions, "delete", "delete a block (its history stays)", _block_delete)
    history = block_command(actions, "history", "every change of a block", _block_history)
    history.add_argument("--limit", type=_positive_int, default=20, help="default: 20")
    for name in ("set", "append", "replace", "delete"):
        actions.choices[name].add_argument(
            "--force", action="store_true", help="write even if the block is read-only"
        )

    blocks = add(subparsers, "blocks", "print a namespace's core memory blocks", _blocks)
    blocks.add_argument("--namespace", default=None, help="default: default")

    context = add(subparsers, "context", "a prompt context within a token budget", _context)
    context.add_argument("query", nargs="?", default=None, help="what the context is for")
    context.add_argument(
        "--budget", type=_positive_int, default=2000, metavar="TOKENS", help="default: 2000"
    )
    context.add_argument("--namespace", default=None, help="default: default")
    context.add_argument("-k", type=int, default=10, help="relevant memories (default: 10)")
    context.add_argument("--recent", type=int, default=10, help="recent memories (default: 10)")

    add(subparsers, "namespaces", "list namespaces with their counts", _namespaces)

    forget = add(subparsers, "forget", "delete memories by id or by filter", _forget)
    forget.add_argument("--id", dest="ids", action="append", default=None, help="(repeatable)")
    forget.add_argument("--namespace", default=None, help="every memory of this namespace...")
    forget.add_argument("--kind", default=None, help="... of this kind")
    forget.add_argument("--tag", dest="tags", action="append", default=None, help="... with it")
    forget.add_argument("--since", type=_time_ms, default=None, metavar="TIME", help="inclusive")
    forget.add_argument("--until", type=_time_ms, default=None, metavar="TIME", help="exclusive")
    forget.add_argument("--dry-run", action="store_true", help="only count what would go")

    add(subparsers, "mcp", "serve MCP over stdio (for MCP hosts), through the daemon", _mcp)


# --- block commands -------------------------------------------------------------


def _print_write(result: BlockWriteResult, args: argparse.Namespace, verb: str) -> None:
    if args.json:
        _emit_json(dataclasses.asdict(result))
    elif result.block is None:
        state = "deleted" if result.changed else "nothing to delete: no such block"
        _emit(f"{state} ({args.type})" + (f" (seq {result.seq})" if result.seq else ""))
    else:
        b = result.block
        _emit(f"{verb} {b.type} block: {b.chars_current}/{b.chars_limit} chars (seq {result.seq})")


def format_block(block: Block) -> str:
    """Its attributes, a blank line, then its content exactly as stored."""
    fields = [
        ("type", block.type),
        ("namespace", block.namespace),
        ("label", block.label),
        ("description", block.description),
        ("chars", f"{block.chars_current}/{block.chars_limit}"),
        ("read_only", "true" if block.read_only else "false"),
        ("created", format_time(block.created_ms)),
        ("modified", format_time(block.modified_ms)),
        ("version", str(block.version)),
    ]
    header = "\n".join(f"{name:<12}{value}".rstrip() for name, value in fields)
    return f"{header}\n\n{block.content}"


@_command
def _block_get(client: Client, args: argparse.Namespace) -> None:
    block = client.block_get(args.type, namespace=args.namespace)
    if args.json:
        _emit_json({"block": dataclasses.asdict(block)})
    else:
        _emit(format_block(block))


@_command
def _block_set(client: Client, args: argparse.Namespace) -> None:
    content = _read_stdin() if args.text in (None, "-") else args.text
    _check_text(content, "the content")
    result = client.block_set(
        args.type,
        content,
        namespace=args.namespace,
        label=args.label,
        description=args.description,
        chars_limit=args.chars_limit,
        read_only=args.read_only,
        force=args.force,
    )
    _print_write(result, args, "set")


@_command
def _block_append(client: Client, args: argparse.Namespace) -> None:
    _check_text(args.text, "the text")
    result = client.block_append(args.type, args.text, namespace=args.namespace, force=args.force)
    _print_write(result, args, "appended to")


@_command
def _block_replace(client: Client, args: argparse.Namespace) -> None:
    _check_text(args.old + args.new, "the text")
    result = client.block_replace(
        args.type, args.old, args.new, namespace=args.namespace, force=args.force
    )
    _print_write(result, args, f"replaced {result.replaced} in")


@_command
def _block_delete(client: Client, args: argparse.Namespace) -> None:
    result = client.block_delete(args.type, namespace=args.namespace, force=args.force)
    _print_write(result, args, "deleted")


@_command
def _block_history(client: Client, args: argparse.Namespace) -> None:
    history = client.block_history(args.type, namespace=args.namespace, limit=args.limit)
    if args.json:
        _emit_json(dataclasses.asdict(history))
        return
    for change in history.changes:
        shown = "" if change.content is None else snippet(change.content)
        _emit(f"{format_time(change.timestamp_ms)}  seq {change.seq}  {change.op:<8} {shown}")
    if not history.changes:
        print("no changes", file=sys.stderr)


@_command
def _blocks(client: Client, args: argparse.Namespace) -> None:
    rendered = client.blocks_render(namespace=args.namespace)
    if args.json:
        _emit_json(dataclasses.asdict(rendered))
    elif rendered.blocks:
        _emit(rendered.text)
    else:
        print(f"no blocks in namespace {rendered.namespace}", file=sys.stderr)


# --- context, namespaces, forget, mcp ---------------------------------------------


@_command
def _context(client: Client, args: argparse.Namespace) -> None:
    if args.query is not None:
        _check_text(args.query, "the query")
    result = client.context(
        args.query,
        budget_tokens=args.budget,
        namespace=args.namespace,
        k=args.k,
        recent=args.recent,
    )
    if args.json:
        _emit_json(dataclasses.asdict(result))
        return
    _emit(result.text)
    print(
        f"{result.tokens}/{result.budget_tokens} tokens ({result.tokenizer}), "
        f"{len(result.included)} items, {result.omitted} left out",
        file=sys.stderr,
    )


@_command
def _namespaces(client: Client, args: argparse.Namespace) -> None:
    found = client.namespaces()
    if args.json:
        _emit_json({"namespaces": [dataclasses.asdict(n) for n in found]})
        return
    for item in found:
        _emit(f"{item.namespace}  {item.frames} frames  {item.blocks} blocks")
    if not found:
        print("no namespaces", file=sys.stderr)


@_command
def _forget(client: Client, args: argparse.Namespace) -> None:
    filters = {
        "namespace": args.namespace,
        "kind": args.kind,
        "tags": args.tags,
        "since_ms": args.since,
        "until_ms": args.until,
    }
    if args.ids and any(value is not None for value in filters.values()):
        raise CommandUsageError("give --id or filters, not both")
    if not args.ids and all(value is None for value in filters.values()):
        raise CommandUsageError(
            "give --id, or at least one of --namespace, --kind, --tag, --since, --until"
        )
    matched = deleted = 0
    while True:  # a request deletes at most forget_frames_max; go on while more match
        result = client.forget(ids=args.ids, dry_run=args.dry_run, **filters)
        matched += result.matched
        deleted += result.deleted
        if not result.more or result.deleted == 0:
            break
    if args.json:
        _emit_json({**dataclasses.asdict(result), "matched": matched, "deleted": deleted})
    elif args.dry_run:
        _emit(f"would forget {matched} memories (dry run: nothing deleted)")
    else:
        _emit(f"forgot {deleted} memories")


def _mcp(args: argparse.Namespace) -> int:
    """Serve MCP over stdio until stdin closes; the daemon is reached through the client."""
    try:
        from .mcp_server import serve
    except ImportError as exc:
        return _fail(
            "missing_dependency",
            f"the MCP server needs the mcp package ({exc.name}): pip install 'memoryd[mcp]'",
            EXIT_USAGE,
        )
    return serve(args.socket, timeout=args.timeout)
