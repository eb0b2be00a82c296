"""The compaction marker: the record that says how a compacted segment's chain continues.

Compaction (compaction.py) rewrites a sealed segment without its dead
records.  The records it keeps are re-chained among themselves, so the
record after the segment, which still holds the hash of the segment's
original last record, cannot link to the new last record.  Each compacted
segment therefore holds exactly one COMPACTION record, placed at the seq of
the first record it dropped (so seqs stay unique and strictly increasing,
and the segment keeps its first seq and its name), whose payload is::

    {"end_hash": hex SHA-256, "last_seq": int, "records_dropped": int, "bytes_before": int}

``end_hash`` is the hash the next segment's first record links to (that of
the original last record, carried over when a compacted segment is compacted
again) and ``last_seq`` the seq of the segment's original last record, so
that the next seq and the chain are exactly what they were.  Readers
(``scan.Link``) apply both at the end of the segment that holds the marker;
inside the segment, records link to the record before them as always, and
gaps after the marker are expected.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from memoryd.storage.record import HASH_BYTES


class MarkerError(ValueError):
    """A COMPACTION record whose payload is not a valid marker."""


@dataclass(frozen=True, slots=True)
class CompactionMarker:
    end_hash: bytes
    last_seq: int
    records_dropped: int
    bytes_before: int

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "end_hash": self.end_hash.hex(),
                "last_seq": self.last_seq,
                "records_dropped": self.records_dropped,
                "bytes_before": self.bytes_before,
            }
        )

    @classmethod
    def decode(cls, payload: bytes) -> CompactionMarker:
        try:
            obj = orjson.loads(payload)
            end_hash = bytes.fromhex(obj["end_hash"])
            last_seq, dropped = int(obj["last_seq"]), int(obj["records_dropped"])
            marker = cls(end_hash, last_seq, dropped, int(obj["bytes_before"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise MarkerError(f"compaction marker is malformed: {exc}") from None
        if len(end_hash) != HASH_BYTES:
            raise MarkerError(f"compaction marker end_hash of {len(end_hash)} bytes")
        return marker
