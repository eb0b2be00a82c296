"""Derived state depends only on the log: any batching of the same records builds the same."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from memoryd.storage import FileLog
from memoryd.storage.catalog import Filters
from memoryd.storage.chunks import iter_chunk_paths, read_chunk
from memoryd.storage.derived import DerivedState
from memoryd.storage.events import Frame, encode_frame_delete, encode_frame_put, frame_id
from memoryd.storage.record import RecordType

operations = st.lists(
    st.tuples(st.sampled_from(["put", "put", "delete"]), st.integers(0, 12)), max_size=40
)


def write_log(log_dir: Path, ops: list[tuple[str, int]]) -> set[str]:
    log, _ = FileLog.open(log_dir)
    live: set[str] = set()
    for seq_hint, (op, which) in enumerate(ops, start=1):
        content = f"memory number {which}"
        fid = frame_id("ns", "note", content)
        if op == "put" and fid not in live:
            frame = Frame(fid, 0, 1000 + seq_hint, "ns", "note", content, tags=[f"t{which % 3}"])
            log.append([(int(RecordType.FRAME_PUT), frame.timestamp_ms, encode_frame_put(frame))])
            live.add(fid)
        elif op == "delete" and fid in live:
            log.append([(int(RecordType.FRAME_DELETE), 5000, encode_frame_delete(fid))])
            live.discard(fid)
    log.close()
    return live


def build(log_dir: Path, chunks_dir: Path, batch: int) -> DerivedState:
    log, _ = FileLog.open(log_dir)
    derived = DerivedState(chunks_dir)
    while True:
        entries = list(
            itertools.islice(log.read_from(derived.built_seq + 1, derived.resume_at), batch)
        )
        if not entries:
            break
        derived.build(entries)
        derived.catalog._check()
    log.close()
    return derived


@settings(max_examples=40, deadline=None)
@given(operations, st.integers(1, 7))
def test_any_batching_builds_the_same_state(ops: list[tuple[str, int]], batch: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        live = write_log(root / "log", ops)
        whole = build(root / "log", root / "chunks-whole", 10_000)
        batched = build(root / "log", root / "chunks-batched", batch)
        for derived in (whole, batched):
            alive = {
                derived.catalog.ids[d] for d in np.flatnonzero(derived.catalog.mask(Filters()))
            }
            assert alive == live  # a deleted frame never comes back
        assert whole.catalog.ids == batched.catalog.ids
        for tag in ("t0", "t1", "t2"):
            assert np.array_equal(
                whole.catalog.mask(Filters(tags=(tag,))), batched.catalog.mask(Filters(tags=(tag,)))
            )
        chunked = [f.id for p in iter_chunk_paths(root / "chunks-batched") for f in read_chunk(p)]
        assert chunked == batched.catalog.ids  # every built frame is in exactly one chunk


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["put", "delete"]), st.integers(0, 5)), max_size=30),
    st.integers(1, 7),
)
def test_duplicate_puts_in_any_batching_build_once(ops: list[tuple[str, int]], batch: int) -> None:
    # The writer may let a duplicate put through: it is built once, whatever the batching.
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        log, _ = FileLog.open(root / "log")
        for seq_hint, (op, which) in enumerate(ops, start=1):
            content = f"memory number {which}"
            fid = frame_id("ns", "note", content)
            if op == "put":
                frame = Frame(fid, 0, 1000 + seq_hint, "ns", "note", content)
                payload = encode_frame_put(frame)
                log.append([(int(RecordType.FRAME_PUT), frame.timestamp_ms, payload)])
            else:
                log.append([(int(RecordType.FRAME_DELETE), 5000, encode_frame_delete(fid))])
        log.close()
        whole = build(root / "log", root / "chunks-whole", 10_000)
        batched = build(root / "log", root / "chunks-batched", batch)
        assert whole.catalog.ids == batched.catalog.ids
        assert whole.catalog.doc_of == batched.catalog.doc_of
        assert len(set(whole.catalog.doc_of)) == len(whole.catalog.doc_of)
        assert np.array_equal(whole.catalog.alive.view(), batched.catalog.alive.view())
        assert sorted(zip(*whole.near.to_arrays(), strict=True)) == sorted(
            zip(*batched.near.to_arrays(), strict=True)
        )
