"""Array files and checkpoints: round trips, damage refused, private vectors withheld."""

from __future__ import annotations

import itertools
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memoryd.daemon.important_op import top_page
from memoryd.storage import FileLog
from memoryd.storage import arrayfile as arrayfile_module
from memoryd.storage.arrayfile import (
    ArrayFileError,
    WriteCancelledError,
    array_to_strings,
    read_array_file,
    start_reading_array_file,
    strings_to_array,
    write_array_file,
)
from memoryd.storage.checkpoint import (
    CheckpointError,
    capture,
    checkpoint_path,
    load_checkpoint,
    write_checkpoint,
)
from memoryd.storage.derived import DerivedState, SearchFrames
from memoryd.storage.events import Frame, encode_frame_delete, encode_frame_put, frame_id
from memoryd.storage.projection import Projection
from memoryd.storage.record import RecordType
from memoryd.storage.search import HashingEmbedder, HashingSettings, SearchIndex
from memoryd.storage.search.simhash import NearDuplicateIndex


def test_array_file_round_trip(tmp_path: Path) -> None:
    arrays = {
        "a": np.arange(10, dtype=np.int64),
        "b": np.ones((3, 4), dtype=np.float32),
        "c": np.array([True, False]),
        "empty": np.zeros(0, dtype=np.uint8),
        "s": strings_to_array(["", "héllo", "x"]),
    }
    path = tmp_path / "f"
    write_array_file(path, {"k": [1, "two"]}, arrays)
    meta, back = read_array_file(path)
    assert meta == {"k": [1, "two"]}
    for name, array in arrays.items():
        assert np.array_equal(back[name], array) and back[name].dtype == array.dtype
    assert array_to_strings(back["s"]) == ["", "héllo", "x"]
    back["a"][0] = 7  # writable: indexes append and flip liveness in place
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("where", ["magic", "version", "body", "header", "truncated", "longer"])
def test_array_file_damage_is_refused(tmp_path: Path, where: str) -> None:
    path = tmp_path / "f"
    write_array_file(path, {"m": 1}, {"a": np.arange(1000, dtype=np.int32)})
    data = bytearray(path.read_bytes())
    if where == "magic":
        data[0] ^= 1
    elif where == "version":
        data[4] = 9
    elif where == "body":
        data[-5] ^= 0x40
    elif where == "header":
        data[40] ^= 0x01
    elif where == "truncated":
        data = data[:-1]
    else:
        data += b"\0"
    path.write_bytes(bytes(data))
    with pytest.raises(ArrayFileError):
        read_array_file(path)


def test_arrays_read_back_own_their_memory_and_padding_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(arrayfile_module, "READ_PIECE_BYTES", 64)  # arrays in several pieces
    arrays = {name: np.arange(n, dtype=np.int16) for name, n in (("a", 3), ("b", 100), ("c", 7))}
    path = tmp_path / "f"
    write_array_file(path, {}, arrays)
    _, back = read_array_file(path)
    # One buffer each: an array dropped, or replaced by a grown copy, is freed alone.
    for x, y in itertools.combinations(back.values(), 2):
        assert not np.shares_memory(x, y)
    assert all(np.array_equal(back[name], a) for name, a in arrays.items())
    data = bytearray(path.read_bytes())
    data[len(data) - arrays["c"].nbytes - 10] ^= 0x01  # a padding byte before "c"
    path.write_bytes(bytes(data))
    with pytest.raises(ArrayFileError, match="checksum"):
        read_array_file(path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [("overlap", "overlap"), ("gap", "no array claims")],
)
def test_array_file_whose_arrays_do_not_tile_the_body_is_refused(
    tmp_path: Path, damage: str, message: str
) -> None:
    path = tmp_path / "f"
    write_array_file(path, {}, {"a": np.arange(16, dtype=np.int64), "b": np.arange(4)})
    data = path.read_bytes()
    prefix = arrayfile_module.ARRAY_FILE_HEADER
    magic, version, header_len, body_len, _, _ = prefix.unpack_from(data)
    parsed = json.loads(data[prefix.size : prefix.size + header_len])
    if damage == "overlap":
        parsed["arrays"][1][3] = parsed["arrays"][0][3] + 8  # "b" starts inside "a"
    else:
        parsed["arrays"][0][2] = [4]  # "a" claims 32 of its 128 bytes: 96 unclaimed
    header = json.dumps(parsed).encode()
    body = data[prefix.size + header_len :]
    crc = zlib.crc32(body, zlib.crc32(header))
    path.write_bytes(
        prefix.pack(magic, version, len(header), body_len, crc, zlib.crc32(header)) + header + body
    )
    with pytest.raises(ArrayFileError, match=message):
        read_array_file(path)


def test_array_file_refuses_objects_and_cancels_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "f"
    with pytest.raises(ValueError, match="plain number"):
        write_array_file(path, {}, {"o": np.array([object()], dtype=object)})
    write_array_file(path, {"v": 1}, {"a": np.arange(3)})
    with pytest.raises(WriteCancelledError):
        write_array_file(path, {"v": 2}, {"a": np.arange(3)}, cancelled=lambda: True)
    assert read_array_file(path)[0] == {"v": 1}  # the old file stands
    assert not list(tmp_path.glob("*.tmp"))


def test_reading_in_the_background_gives_the_front_early_and_verifies_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(arrayfile_module, "READ_PIECE_BYTES", 4096)  # many pieces
    arrays = {
        "front.a": np.arange(3000, dtype=np.int64),
        "front.b": np.arange(5, dtype=np.uint8),
        "back": np.arange(200_000, dtype=np.int32),
    }
    path = tmp_path / "f"
    write_array_file(path, {"m": 1}, arrays)
    reading = start_reading_array_file(path)
    try:
        assert reading.meta == {"m": 1}
        front = reading.arrays_named("front.")
        assert sorted(front) == ["front.a", "front.b"]
        assert np.array_equal(front["front.a"], arrays["front.a"])
        every = reading.verified()
        assert all(np.array_equal(every[name], a) for name, a in arrays.items())
    finally:
        reading.close()

    data = bytearray(path.read_bytes())
    data[-7] ^= 0x10  # damage far behind the front
    path.write_bytes(bytes(data))
    reading = start_reading_array_file(path)
    try:
        # The front reads fine; only verification tells, and it must.
        assert np.array_equal(reading.arrays_named("front.")["front.a"], arrays["front.a"])
        with pytest.raises(ArrayFileError, match="checksum"):
            reading.verified()
    finally:
        reading.close()

    path.write_bytes(bytes(data[: len(data) // 2]))  # shorter than its header says
    with pytest.raises(ArrayFileError, match="lengths"):
        start_reading_array_file(path)


def test_a_reading_closed_early_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arrayfile_module, "READ_PIECE_BYTES", 4096)
    path = tmp_path / "f"
    write_array_file(path, {}, {"a": np.arange(1_000_000, dtype=np.int64)})
    reading = start_reading_array_file(path)
    reading.close()  # returns only once the helper thread is gone
    assert reading._thread is not None and not reading._thread.is_alive()
    try:
        got = reading.verified()
    except ArrayFileError as exc:  # stopped part way, as it nearly always is
        assert "stopped" in str(exc)
    else:  # it had finished first: then whole and verified, never half-read
        assert np.array_equal(got["a"], np.arange(1_000_000, dtype=np.int64))


def _log_with_frames(
    tmp_path: Path, count: int, private_every: int = 0, word: str = "memory"
) -> FileLog:
    log, _ = FileLog.open(tmp_path / "log")
    events = []
    for i in range(count):
        content = f"{word} {i} about " + " ".join(f"w{(i * j) % 17}" for j in range(8))
        frame = Frame(
            frame_id("ns", "note", content),
            0,
            1_700_000_000_000 + i,
            ("ns", "other")[i % 2],
            "note",
            content,
            tags=[f"t{i % 3}"],
            importance=(i % 5) / 5,
            private=bool(private_every) and i % private_every == 0,
        )
        events.append((int(RecordType.FRAME_PUT), frame.timestamp_ms, encode_frame_put(frame)))
        if i % 7 == 6:
            target = frame_id(
                "ns",
                "note",
                f"memory {i - 3} about " + " ".join(f"w{((i - 3) * j) % 17}" for j in range(8)),
            )
            events.append((int(RecordType.FRAME_DELETE), 0, encode_frame_delete(target)))
    log.append(events)
    return log


def _built(log: FileLog, chunks: Path) -> tuple[DerivedState, SearchIndex]:
    index = SearchIndex(HashingEmbedder())
    derived = DerivedState(chunks)
    derived.indexes.append(SearchFrames(index))
    entries = log.read_from(1)
    while batch := list(itertools.islice(entries, 13)):
        derived.build(batch)
    return derived, index


def test_checkpoint_restores_state_that_answers_identically(tmp_path: Path) -> None:
    log = _log_with_frames(tmp_path, 120)
    chunks = tmp_path / "chunks"
    chunks.mkdir()
    derived, index = _built(log, chunks)
    write_checkpoint(tmp_path, capture(derived, index), log)
    restored = load_checkpoint(tmp_path, log, HashingEmbedder(), chunks)
    restored.index._check()
    restored.derived.catalog._check()
    restored.derived.near._check()
    restored.projection.table._check()
    replayed = Projection()
    replayed.replay(log.read_from(1))
    assert restored.projection.table.slots() == replayed.table.slots()
    for query in ("memory w3", "w5 w9 about", "memory 17"):
        for mode in ("hybrid", "keyword", "semantic", "classic"):
            a = index.search(query, 10, mode=mode, now_ms=1_800_000_000_000)  # type: ignore[arg-type]
            b = restored.index.search(query, 10, mode=mode, now_ms=1_800_000_000_000)  # type: ignore[arg-type]
            assert a.docs.tolist() == b.docs.tolist() and a.scores.tolist() == b.scores.tolist()
    assert restored.derived.built_seq == derived.built_seq
    assert restored.derived.resume_at == derived.resume_at

    def counts(state: DerivedState) -> dict[str, float]:
        return {k: v for k, v in state.stats().items() if not k.endswith("_bytes")}

    assert counts(restored.derived) == counts(derived)
    log.close()


def test_checkpoint_of_another_embedder_or_another_log_is_refused(tmp_path: Path) -> None:
    log = _log_with_frames(tmp_path, 30)
    chunks = tmp_path / "chunks"
    chunks.mkdir()
    derived, index = _built(log, chunks)
    write_checkpoint(tmp_path, capture(derived, index), log)
    other = HashingEmbedder(HashingSettings(dim=128))
    with pytest.raises(CheckpointError, match="embedder"):
        load_checkpoint(tmp_path, log, other, chunks)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other_log = _log_with_frames(other_dir, 31, word="recollection")
    with pytest.raises(CheckpointError, match="does not hold"):
        load_checkpoint(tmp_path, other_log, HashingEmbedder(), chunks)
    checkpoint_path(tmp_path).unlink()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path, log, HashingEmbedder(), chunks)
    log.close()
    other_log.close()


def test_private_vectors_are_never_written_and_the_hook_puts_them_back(tmp_path: Path) -> None:
    log = _log_with_frames(tmp_path, 40, private_every=4)
    chunks = tmp_path / "chunks"
    chunks.mkdir()
    derived, index = _built(log, chunks)
    private = np.flatnonzero(derived.catalog.private.view())
    assert private.shape[0] == 10
    snapshot = capture(derived, index)
    assert not snapshot.arrays["vectors.rows"][private].any()
    assert np.array_equal(snapshot.arrays["vectors.withheld"], private)
    assert index.vectors._rows[private].any()  # the live index is untouched
    assert not snapshot.arrays["catalog.simhash"][private].any()  # nor a SimHash of them
    write_checkpoint(tmp_path, snapshot, log)
    asked: list[list[int]] = []

    def restore(docs: np.ndarray) -> np.ndarray:
        asked.append(docs.tolist())
        return np.stack([index.vectors.vector(int(d)) for d in docs]).astype(np.float32)

    restored = load_checkpoint(tmp_path, log, HashingEmbedder(), chunks, restore)
    assert asked == [private.tolist()]
    assert np.allclose(restored.index.vectors._rows[private], index.vectors._rows[private], atol=1)
    without = load_checkpoint(tmp_path, log, HashingEmbedder(), chunks)
    assert not without.index.vectors._rows[private].any()
    log.close()


def test_bounded_near_duplicate_index_forgets_the_oldest() -> None:
    index = NearDuplicateIndex(docs_max=3000)
    rng = np.random.default_rng(1)
    hashes = rng.integers(0, 2**63, size=5000, dtype=np.int64).astype(np.uint64).tolist()
    for doc, h in enumerate(hashes):
        index.add(doc, h)
    index._check()
    assert len(index) == 3000
    assert index.nearest(hashes[100]) is None  # forgotten
    assert index.nearest(hashes[4500]) == (4500, 0)
    assert index.nearest(hashes[4500] ^ 0b101) == (4500, 2)
    assert index.nearest(hashes[4500], accept=lambda d: d != 4500) is None
    docs, hs = index.to_arrays()
    again = NearDuplicateIndex.from_arrays(docs, hs, docs_max=3000)
    again._check()
    assert again.nearest(hashes[4999] ^ 1) == (4999, 1)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=0, max_size=60),
    limit=st.integers(1, 9),
    seed=st.integers(0, 100),
)
def test_important_pages_follow_one_total_order(values: list[float], limit: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = len(values)
    v = np.array(values, dtype=np.float32)
    t = rng.integers(0, 4, size=n).astype(np.int64)
    docs = np.flatnonzero(rng.random(n) < 0.8).astype(np.int64)
    expected = sorted(docs.tolist(), key=lambda d: (-v[d], -t[d], -d))
    seen: list[int] = []
    after = None
    while True:
        page, more = top_page(v, t, docs, limit, after)
        seen += page.tolist()
        if not more:
            break
        last = int(page[-1])
        after = (int(v[last : last + 1].view(np.uint32)[0]), int(t[last]), last)
    assert seen == expected
