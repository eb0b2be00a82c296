"""At start, chunk files past the checkpoint and leftover temporary files are removed."""

from __future__ import annotations

from pathlib import Path

from memoryd.storage.chunks import chunk_path, remove_chunks_after


def test_removes_chunks_after_the_built_seq_and_temporaries_only(tmp_path: Path) -> None:
    chunks = tmp_path / "chunks"
    made = {}
    months = [(1, 0), (51, 2_000_000_000), (101, 1_700_000_000_000)]
    months += [(151, 1_700_000_000_000), (201, 1_800_000_000_000)]
    for first_seq, timestamp_ms in months:
        path = chunk_path(chunks, first_seq, timestamp_ms)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"c")
        made[first_seq] = path
    leftover = made[151].with_suffix(".tmp")
    leftover.write_bytes(b"t")
    other = made[1].parent / "notes.txt"
    other.write_bytes(b"kept")
    assert remove_chunks_after(chunks, 150) == 2
    assert sorted(p.name for p in chunks.rglob("*") if p.is_file()) == sorted(
        [made[1].name, made[51].name, made[101].name, "notes.txt"]
    )
    assert not leftover.exists() and not made[151].exists() and not made[201].exists()
    assert remove_chunks_after(chunks, 150) == 0
    assert remove_chunks_after(tmp_path / "fresh", 0) == 0 and (tmp_path / "fresh").is_dir()
