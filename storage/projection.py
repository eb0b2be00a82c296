"""The projection: folds committed log records into derived state.

Everything the daemon answers from memory is a fold of the log, in log order.
The same ``apply_*`` functions run for a record just committed by the writer
and for a record replayed at start, so live state and rebuilt state cannot
drift apart.  Reading a frame back goes through the log (``frame_at``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from memoryd.storage.blocks import Block, BlockTable
from memoryd.storage.events import (
    BlockChange,
    EventError,
    Frame,
    decode_block_update,
    decode_frame_delete,
    decode_frame_put,
)
from memoryd.storage.expiry import ExpiryIndex
from memoryd.storage.frame_table import SEQ_SPACE, FrameSlot, FrameTable
from memoryd.storage.log import AppendedRecord, EventLog, LogEntry, RecordLocation
from memoryd.storage.record import RecordType


@dataclass(slots=True)
class UnreadableRecord:
    """A record whose CRC is good but whose payload is not a valid event: kept, reported."""

    seq: int
    location: RecordLocation
    reason: str


@dataclass(slots=True)
class Projection:
    """Derived state over one log: the frame table, frame expiry and core memory blocks."""

    table: FrameTable = field(default_factory=FrameTable)
    expiry: ExpiryIndex = field(default_factory=ExpiryIndex)
    blocks: BlockTable = field(default_factory=BlockTable)
    records_applied: int = 0
    last_seq: int = 0
    unreadable: list[UnreadableRecord] = field(default_factory=list)

    def apply_put(self, frame: Frame, location: RecordLocation | AppendedRecord) -> bool:
        """Fold a committed FRAME_PUT.  Returns False when the id was already live."""
        self._advance(frame.seq)
        added = self.table.apply_put(
            frame.id,
            frame.seq,
            frame.timestamp_ms,
            frame.namespace,
            frame.kind,
            location.segment,
            location.offset,
            location.length,
        )
        if added and frame.expires_at_ms is not None:
            self.expiry.add(frame.id, frame.expires_at_ms)
        return added

    def apply_delete(self, seq: int, target_id: str) -> bool:
        """Fold a committed FRAME_DELETE.  Returns whether a live frame went away."""
        self._advance(seq)
        deleted = self.table.apply_delete(target_id)
        if deleted:
            self.expiry.remove(target_id)
        return deleted

    def apply_block(
        self,
        change: BlockChange,
        seq: int,
        timestamp_ms: int,
        location: RecordLocation | AppendedRecord,
    ) -> Block | None:
        """Fold a committed BLOCK_UPDATE; returns the block after it (None once deleted)."""
        self._advance(seq)
        where = RecordLocation(location.segment, location.offset, location.length)
        return self.blocks.apply(change, seq, timestamp_ms, where)

    def apply_entry(self, entry: LogEntry) -> None:
        """Fold one record read back from the log (replay)."""
        record = entry.record
        try:
            if record.record_type == RecordType.FRAME_PUT:
                frame = decode_frame_put(record.payload, record.seq, record.timestamp_ms)
                self.apply_put(frame, entry.location)
            elif record.record_type == RecordType.FRAME_DELETE:
                self.apply_delete(record.seq, decode_frame_delete(record.payload))
            elif record.record_type == RecordType.BLOCK_UPDATE:
                change = decode_block_update(record.payload)
                self.apply_block(change, record.seq, record.timestamp_ms, entry.location)
            else:
                self._advance(record.seq)  # reserved types: nothing to fold yet
        except EventError as exc:
            self._advance(record.seq)
            self.unreadable.append(UnreadableRecord(record.seq, entry.location, str(exc)))

    def replay(self, entries: Iterable[LogEntry]) -> int:
        """Fold every entry; returns how many were applied."""
        before = self.records_applied
        for entry in entries:
            self.apply_entry(entry)
        return self.records_applied - before

    def _advance(self, seq: int) -> None:
        self.records_applied += 1
        if seq > self.last_seq:
            self.last_seq = seq


def frame_at(log: EventLog, slot: FrameSlot) -> Frame:
    """Read a live frame's record back from the log and decode it."""
    record = log.read_at(RecordLocation(slot.segment, slot.offset, slot.length))
    return decode_frame_put(record.payload, record.seq, slot.key // SEQ_SPACE)


def block_change_at(log: EventLog, location: RecordLocation) -> tuple[int, int, BlockChange]:
    """Read one block change back from the log: its seq, time and the change."""
    record = log.read_at(location)
    return record.seq, record.timestamp_ms, decode_block_update(record.payload)
