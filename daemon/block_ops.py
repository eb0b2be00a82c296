"""The core memory block ops: block_get, block_set, block_append, block_replace,
block_delete, blocks_render and block_history.

Writes follow the request path (validate, append durably, fold, answer), with
one addition: a write's outcome depends on the block's current state (an
append must fit the limit, a replace must find its text), so writes to the
same block run one at a time, each validated against the state the previous
one committed.  Nothing is half-applied: a write either commits one
BLOCK_UPDATE record holding the block's whole new state, or changes nothing
and answers with an error that names what was wrong.

Sizes are Unicode characters (code points), as ``chars_current`` and
``chars_limit`` show them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from memoryd.client import errors, protocol
from memoryd.client.errors import MemorydError
from memoryd.daemon import validation
from memoryd.daemon.writer import CommitWriter
from memoryd.storage import AppendedRecord, EventLog
from memoryd.storage.blocks import Block, BlockKey, render_blocks
from memoryd.storage.events import BLOCK_TYPES, BlockChange, encode_block_update
from memoryd.storage.projection import Projection, block_change_at
from memoryd.storage.record import RecordType

# Block writes waiting behind another write to the same block, across all
# blocks: beyond it, a write gets ``busy``.
BLOCK_WRITES_WAITING_MAX = 1024
HISTORY_DEFAULT = 20

Result = dict[str, Any] | asyncio.Future[Any]
Compute = Callable[[Block | None], BlockChange | None]


def _fields(args: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(args) - allowed
    if unknown:
        raise validation.bad_request(f"unknown field(s): {', '.join(sorted(unknown))}")


def _key(args: dict[str, Any]) -> BlockKey:
    block_type = args.get("type")
    if not isinstance(block_type, str) or block_type not in BLOCK_TYPES:
        shown = repr(block_type)[:40]
        raise validation.bad_request(
            f"unknown block type {shown}; the types are {', '.join(BLOCK_TYPES)}"
        )
    namespace = validation.optional_str(
        args, "namespace", "namespace_bytes_max", protocol.NAMESPACE_BYTES_MAX
    )
    return (namespace or protocol.DEFAULT_NAMESPACE, block_type)


def _text(args: dict[str, Any], name: str, *, required: bool, empty_ok: bool) -> str | None:
    value = args.get(name)
    if value is None:
        if required:
            raise validation.bad_request(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise validation.bad_request(f"{name} must be a string, got {type(value).__name__}")
    if len(value) > protocol.BLOCK_CHARS_MAX:
        raise validation.limit_exceeded(
            "block_chars_max", protocol.BLOCK_CHARS_MAX, len(value), f"{name} in characters"
        )
    validation.utf8_length(value, name)  # lone surrogates are a bad request, not a crash
    if not empty_ok and not value:
        raise validation.bad_request(f"{name} must not be empty")
    return value


def _bounded(args: dict[str, Any], name: str, limit_name: str, limit: int) -> str | None:
    value = args.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise validation.bad_request(f"{name} must be a string, got {type(value).__name__}")
    size = validation.utf8_length(value, name)
    if size > limit:
        raise validation.limit_exceeded(limit_name, limit, size, f"{name} size in bytes")
    return value


def _flag(args: dict[str, Any], name: str) -> bool | None:
    value = args.get(name)
    if value is not None and not isinstance(value, bool):
        raise validation.bad_request(f"{name} must be true or false, got {type(value).__name__}")
    return value


def _name(key: BlockKey) -> str:
    return f"{key[1]} block of namespace {key[0]!r}"


def _fits(key: BlockKey, content: str, chars_limit: int) -> None:
    if len(content) > chars_limit:
        raise MemorydError(
            errors.LIMIT_EXCEEDED,
            f"the {_name(key)} would hold {len(content)} characters, over its "
            f"chars_limit={chars_limit}; nothing was changed",
            {"limit": "chars_limit", "max": chars_limit, "got": len(content)},
        )


def _writable(key: BlockKey, block: Block | None, force: bool) -> None:
    if block is not None and block.read_only and not force:
        raise MemorydError(
            errors.READ_ONLY,
            f"the {_name(key)} is read-only; nothing was changed (force overrides)",
        )


def _after(block: Block, op: str, content: str) -> BlockChange:
    """The change that leaves ``block`` as it is but for ``content``."""
    return BlockChange(
        block.namespace,
        block.block_type,
        op,
        content,
        block.label,
        block.description,
        block.chars_limit,
        block.read_only,
    )


class BlockOps:
    """The block handlers over one projection, log and commit writer."""

    # timestamp_ms: the change's time, for imports (default: now).
    _SET = frozenset(
        "namespace type content label description chars_limit read_only force timestamp_ms".split()
    )
    _APPEND = frozenset(("namespace", "type", "text", "force"))
    _REPLACE = frozenset(("namespace", "type", "old", "new", "force"))
    _KEY = frozenset(("namespace", "type"))

    def __init__(
        self,
        event_log: EventLog,
        projection: Projection,
        writer: CommitWriter,
        block_chars_default: int,
    ) -> None:
        self._log = event_log
        self._projection = projection
        self._writer = writer
        self._chars_default = block_chars_default
        # Per block being written: the futures of its writes, in order (the tail is
        # the newest); a write starts once the one before it has finished.
        self._queues: dict[BlockKey, list[asyncio.Future[Any]]] = {}
        self._waiting = 0

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], Result]]:
        return {
            "block_get": self.block_get,
            "block_set": self.block_set,
            "block_append": self.block_append,
            "block_replace": self.block_replace,
            "block_delete": self.block_delete,
            "blocks_render": self.blocks_render,
            "block_history": self.block_history,
        }

    # -- reads -----------------------------------------------------------------------

    def block_get(self, args: dict[str, Any]) -> Result:
        _fields(args, self._KEY)
        key = _key(args)
        block = self._projection.blocks.get(*key)
        if block is None:
            raise MemorydError(errors.NOT_FOUND, f"there is no {_name(key)}")
        return {"block": block.to_dict()}

    def blocks_render(self, args: dict[str, Any]) -> Result:
        _fields(args, frozenset(("namespace",)))
        namespace = validation.optional_str(
            args, "namespace", "namespace_bytes_max", protocol.NAMESPACE_BYTES_MAX
        )
        return self.render(namespace or protocol.DEFAULT_NAMESPACE)

    def render(self, namespace: str) -> dict[str, Any]:
        """The namespace's blocks, in render order, as one text and as block objects."""
        blocks = self._projection.blocks.in_namespace(namespace)
        return {
            "namespace": namespace,
            "text": render_blocks(blocks),
            "blocks": [block.to_dict() for block in blocks],
        }

    def block_history(self, args: dict[str, Any]) -> Result:
        _fields(args, self._KEY | {"limit", "before_seq"})
        key = _key(args)
        limit = validation.page_limit(args, HISTORY_DEFAULT)
        before = validation.optional_int(args, "before_seq", minimum=1)
        changes = self._projection.blocks.history(*key)
        if before is not None:
            changes = [change for change in changes if change[0] < before]
        page = changes[::-1][:limit]
        out = []
        for _seq, location in page:
            seq, timestamp_ms, change = block_change_at(self._log, location)
            entry: dict[str, Any] = {"seq": seq, "timestamp_ms": timestamp_ms, "op": change.op}
            if change.op != "delete":
                entry.update(
                    content=change.content,
                    chars_current=len(change.content),
                    label=change.label,
                    description=change.description,
                    chars_limit=change.chars_limit,
                    read_only=change.read_only,
                )
            out.append(entry)
        more = len(changes) > limit
        return {
            "namespace": key[0],
            "type": key[1],
            "changes": out,
            "next_before_seq": page[-1][0] if more and page else None,
        }

    # -- writes ----------------------------------------------------------------------

    def block_set(self, args: dict[str, Any]) -> Result:
        _fields(args, self._SET)
        key = _key(args)
        content = _text(args, "content", required=True, empty_ok=True)
        assert content is not None
        label = _bounded(args, "label", "block_label_bytes_max", protocol.BLOCK_LABEL_BYTES_MAX)
        description = _bounded(
            args,
            "description",
            "block_description_bytes_max",
            protocol.BLOCK_DESCRIPTION_BYTES_MAX,
        )
        chars_limit = validation.optional_int(args, "chars_limit", minimum=1)
        if chars_limit is not None and chars_limit > protocol.BLOCK_CHARS_MAX:
            raise validation.limit_exceeded(
                "block_chars_max", protocol.BLOCK_CHARS_MAX, chars_limit, "chars_limit"
            )
        read_only = _flag(args, "read_only")
        force = bool(_flag(args, "force"))
        when = validation.optional_timestamp(args, "timestamp_ms")

        def compute(block: Block | None) -> BlockChange:
            _writable(key, block, force)
            limit = chars_limit or (block.chars_limit if block else self._chars_default)
            _fits(key, content, limit)
            return BlockChange(
                key[0],
                key[1],
                "set",
                content,
                label if label is not None else (block.label if block else ""),
                description if description is not None else (block.description if block else ""),
                limit,
                read_only if read_only is not None else (block.read_only if block else False),
            )

        return self._write(key, compute, when_ms=when)

    def block_append(self, args: dict[str, Any]) -> Result:
        _fields(args, self._APPEND)
        key = _key(args)
        text = _text(args, "text", required=True, empty_ok=False)
        assert text is not None
        force = bool(_flag(args, "force"))

        def compute(block: Block | None) -> BlockChange:
            _writable(key, block, force)
            if block is None:
                _fits(key, text, self._chars_default)
                return BlockChange(key[0], key[1], "append", text, "", "", self._chars_default)
            content = f"{block.content}\n{text}" if block.content else text
            _fits(key, content, block.chars_limit)
            return _after(block, "append", content)

        return self._write(key, compute)

    def block_replace(self, args: dict[str, Any]) -> Result:
        _fields(args, self._REPLACE)
        key = _key(args)
        old = _text(args, "old", required=True, empty_ok=False)
        new = _text(args, "new", required=True, empty_ok=True)
        assert old is not None and new is not None
        force = bool(_flag(args, "force"))
        counted: list[int] = []

        def compute(block: Block | None) -> BlockChange:
            if block is None:
                raise MemorydError(errors.NOT_FOUND, f"there is no {_name(key)}")
            _writable(key, block, force)
            count = block.content.count(old)
            if not count:
                # The text is not echoed back: it may be long, and errors reach logs.
                raise MemorydError(
                    errors.NOT_FOUND,
                    f"the {_name(key)} does not contain the text to replace; nothing was changed",
                )
            content = block.content.replace(old, new)
            _fits(key, content, block.chars_limit)
            counted.append(count)
            return _after(block, "replace", content)

        def with_count(result: dict[str, Any]) -> dict[str, Any]:
            return {**result, "replaced": counted[-1]}

        return self._write(key, compute, with_count)

    def block_delete(self, args: dict[str, Any]) -> Result:
        _fields(args, self._KEY | {"force", "timestamp_ms"})
        key = _key(args)
        force = bool(_flag(args, "force"))
        when = validation.optional_timestamp(args, "timestamp_ms")

        def compute(block: Block | None) -> BlockChange | None:
            if block is None:
                return None  # deleting is idempotent
            _writable(key, block, force)
            return BlockChange(key[0], key[1], "delete")

        return self._write(key, compute, when_ms=when)

    # -- one write at a time per block -----------------------------------------------

    def _write(
        self,
        key: BlockKey,
        compute: Compute,
        finish: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        when_ms: int | None = None,
    ) -> Result:
        """Run ``compute`` on the block's committed state and commit its change
        (dated ``when_ms``, an import's time, else now).

        At once when no other write of this block is pending; else after the
        last one pending has finished, whatever its outcome.
        """
        queue = self._queues.get(key)
        if not queue:
            result = self._commit(key, compute, when_ms)
            if isinstance(result, dict):
                return finish(result) if finish else result
            return self._track(key, result, finish)
        if self._waiting >= BLOCK_WRITES_WAITING_MAX:
            raise MemorydError(
                errors.BUSY,
                f"too many block writes waiting (block_writes_waiting_max="
                f"{BLOCK_WRITES_WAITING_MAX}); retry later",
            )
        self._waiting += 1
        previous = queue[-1]
        out: asyncio.Future[Any] = previous.get_loop().create_future()

        def start(_previous: object) -> None:
            self._waiting -= 1
            if out.cancelled():
                return
            try:
                result = self._commit(key, compute, when_ms)
            except Exception as exc:  # answered as this request's error
                out.set_exception(exc)
                return
            if isinstance(result, dict):
                out.set_result(result)
            else:
                result.add_done_callback(lambda done: _relay(done, out))

        previous.add_done_callback(start)
        return self._track(key, out, finish)

    def _track(
        self,
        key: BlockKey,
        future: asyncio.Future[Any],
        finish: Callable[[dict[str, Any]], dict[str, Any]] | None,
    ) -> asyncio.Future[Any]:
        queue = self._queues.setdefault(key, [])
        queue.append(future)

        def done(_future: object) -> None:
            queue.remove(future)
            if not queue and self._queues.get(key) is queue:
                del self._queues[key]

        future.add_done_callback(done)
        if finish is None:
            return future
        answered: asyncio.Future[Any] = future.get_loop().create_future()
        future.add_done_callback(lambda source: _relay(source, answered, finish))
        return answered

    def _commit(self, key: BlockKey, compute: Compute, when_ms: int | None = None) -> Result:
        block = self._projection.blocks.get(*key)
        change = compute(block)
        if change is None:
            return {"block": None, "seq": None, "changed": False}
        stamp_ms = time.time_ns() // 1_000_000 if when_ms is None else when_ms
        event = (int(RecordType.BLOCK_UPDATE), stamp_ms, encode_block_update(change))

        def apply(appended: Sequence[AppendedRecord]) -> dict[str, Any]:
            record = appended[0]
            after = self._projection.apply_block(change, record.seq, record.timestamp_ms, record)
            return {
                "block": after.to_dict() if after is not None else None,
                "seq": record.seq,
                "changed": True,
            }

        return self._writer.submit([event], apply)


def _relay(
    source: asyncio.Future[Any],
    target: asyncio.Future[Any],
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> None:
    """Settle ``target`` as ``source`` settled (through ``transform`` when given)."""
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (exc := source.exception()) is not None:
        target.set_exception(exc)
    else:
        value = source.result()
        target.set_result(transform(value) if transform else value)
