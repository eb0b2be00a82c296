"""A backlog is built several chunks a step, and still stored as chunks of at most
chunk_frames_max frames each, in log order."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoryd.client import Client
from memoryd.storage.chunks import iter_chunk_paths, read_chunk
from tests.integration.builder_support import wait_built
from tests.integration.daemon_process import DaemonProcess

CHUNK_FRAMES = 10
STEP_CHUNKS = 3
BACKLOG = 95  # one put_batch: 3 steps of 30 records, then one of 5


@pytest.fixture
def daemon(tmp_path: Path, socket_dir: Path) -> Iterator[DaemonProcess]:
    config = tmp_path / "memoryd.toml"
    config.write_text(f"chunk_frames_max = {CHUNK_FRAMES}\nbuild_step_chunks_max = {STEP_CHUNKS}\n")
    process = DaemonProcess(
        tmp_path / "data", socket_dir / "memoryd.sock", "--config", str(config)
    ).start()
    yield process
    assert process.terminate() == 0, process.stderr()


def test_a_backlog_is_built_in_steps_of_several_chunks(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    frames = [{"content": f"backlog frame {i} tagword{i}"} for i in range(BACKLOG)]
    with Client(daemon.socket_path) as client:
        before = client.stats()
        results = client.put_batch(frames)
        wait_built(client)
        after = client.stats()
        # Committed together and built with no put waiting: 30 records a step.
        step_records = CHUNK_FRAMES * STEP_CHUNKS
        assert after["builder_steps"] - before["builder_steps"] == -(-BACKLOG // step_records)
        # Chunk files are written after their step is applied: counted once written.
        chunks = -(-BACKLOG // CHUNK_FRAMES)
        deadline = time.monotonic() + 30
        while client.stats()["chunks_written"] - before["chunks_written"] < chunks:
            assert time.monotonic() < deadline, "chunk files not written"
            time.sleep(0.02)
        assert client.stats()["chunks_written"] - before["chunks_written"] == chunks
        hit = client.search("tagword57", k=1, mode="keyword").hits
        assert [h.frame.content for h in hit] == ["backlog frame 57 tagword57"]
    # Every chunk file holds at most chunk_frames_max frames; together, every frame
    # once, in log order.
    chunks = [read_chunk(path) for path in iter_chunk_paths(tmp_path / "data" / "chunks")]
    assert chunks and all(1 <= len(chunk) <= CHUNK_FRAMES for chunk in chunks)
    seqs = sorted(frame.seq for chunk in chunks for frame in chunk)
    assert seqs == [result.seq for result in results]
    by_first_seq = sorted(chunks, key=lambda chunk: chunk[0].seq)
    flat = [frame.seq for chunk in by_first_seq for frame in chunk]
    assert flat == seqs
