"""A daemon holds each frame id once: the catalog keeps the frame table's strings."""

from __future__ import annotations

from pathlib import Path

from memoryd.storage import FileLog
from memoryd.storage.derived import DerivedState
from memoryd.storage.events import Frame, encode_frame_put, frame_id
from memoryd.storage.projection import Projection
from memoryd.storage.record import RecordType


def built(tmp_path: Path, shared: bool) -> tuple[DerivedState, Projection]:
    log, _ = FileLog.open(tmp_path / "log")
    for n in range(30):
        content = f"memory number {n}"
        frame = Frame(frame_id("ns", "note", content), 0, 1000 + n, "ns", "note", content)
        log.append([(int(RecordType.FRAME_PUT), frame.timestamp_ms, encode_frame_put(frame))])
    projection = Projection()
    projection.replay(log.read_from(1))  # decodes its own id strings, as a daemon's puts are
    derived = DerivedState(tmp_path / "chunks")
    if shared:
        derived.shared_id = projection.table.stored_id
    derived.build(list(log.read_from(1)))  # decodes them again
    log.close()
    return derived, projection


def test_the_catalog_keeps_the_frame_tables_id_strings(tmp_path: Path) -> None:
    derived, projection = built(tmp_path, shared=True)
    catalog, table = derived.catalog, projection.table
    assert len(catalog.ids) == 30
    assert all(fid is table.stored_id(fid) for fid in catalog.ids)
    assert all(catalog.ids[doc] is fid for fid, doc in catalog.doc_of.items())


def test_without_a_shared_source_each_decode_holds_its_own(tmp_path: Path) -> None:
    derived, projection = built(tmp_path, shared=False)
    table = projection.table
    assert not any(fid is table.stored_id(fid) for fid in derived.catalog.ids)
