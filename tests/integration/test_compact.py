"""``memoryd compact`` on a real daemon's data directory, between real runs and a kill -9."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from memoryd.client import Client
from tests.integration.daemon_process import DaemonProcess
from tests.integration.test_cli import memoryd


def small_segments_daemon(tmp_path: Path, socket_dir: Path) -> DaemonProcess:
    """A daemon (not started) whose log rolls over to a new segment at 1 MiB."""
    config = tmp_path / "memoryd.toml"
    config.write_text("segment_bytes_max = 1048576\n")
    return DaemonProcess(tmp_path / "data", socket_dir / "memoryd.sock", "--config", str(config))


def put_big_frames_and_delete_half(client: Client) -> None:
    """30 frames of 100 KiB (several sealed segments), every other one deleted."""
    big = "w" * (100 * 1024)
    stored = client.put_batch([{"content": f"{n} {big}", "tags": [str(n)]} for n in range(30)])
    for result in stored[::2]:
        client.delete(result.id)


def test_compact_between_runs_reclaims_space_and_keeps_every_live_frame(
    tmp_path: Path, socket_dir: Path
) -> None:
    daemon = small_segments_daemon(tmp_path, socket_dir).start()
    data_dir, socket_path = daemon.data_dir, daemon.socket_path
    try:
        with Client(socket_path) as client:
            put_big_frames_and_delete_half(client)
            before = {f.id: dataclasses.asdict(f) for f in client.recent(limit=1000).frames}
            refused = memoryd("compact", "--data-dir", str(data_dir))
            assert refused.code == 1 and "stop it before compacting" in refused.err
    finally:
        daemon.kill()  # kill -9: compaction must cope with what a crash leaves
    size_before = sum(p.stat().st_size for p in (data_dir / "log").iterdir())
    run = memoryd("compact", "--data-dir", str(data_dir), "--json")
    assert run.code == 0, run.err
    report = run.json()
    assert report["segments_rewritten"] >= 1 and report["bytes_reclaimed"] > 1_000_000
    assert sum(p.stat().st_size for p in (data_dir / "log").iterdir()) < size_before
    check = memoryd("check", "--data-dir", str(data_dir))
    assert check.code == 0, check.out + check.err

    daemon.start()
    try:
        with Client(socket_path) as client:
            after = {f.id: dataclasses.asdict(f) for f in client.recent(limit=1000).frames}
            assert after == before  # ids, seqs, times, contents, every field
            new = client.put("after compaction")
            assert new.seq > max(f["seq"] for f in before.values())
            hits = client.search("after compaction", min_seq=new.seq).hits
            assert hits and hits[0].frame.id == new.id
    finally:
        assert daemon.terminate() == 0
    assert memoryd("check", "--data-dir", str(data_dir)).code == 0


def test_a_checkpoint_made_before_a_compaction_is_not_trusted_after_it(
    tmp_path: Path, socket_dir: Path
) -> None:
    daemon = small_segments_daemon(tmp_path, socket_dir).start()
    data_dir, socket_path = daemon.data_dir, daemon.socket_path
    try:
        with Client(socket_path) as client:
            put_big_frames_and_delete_half(client)
            last = client.put("the last word before the stop")
            client.search("last word", min_seq=last.seq)
            before = {f.id: dataclasses.asdict(f) for f in client.recent(limit=1000).frames}
    finally:
        assert daemon.terminate() == 0  # a clean stop: a checkpoint of every location
    assert (data_dir / "checkpoint" / "derived.ckpt").is_file()
    run = memoryd("compact", "--data-dir", str(data_dir), "--json")
    assert run.code == 0 and run.json()["segments_rewritten"] >= 1, run.err

    daemon.start()
    try:
        with Client(socket_path) as client:
            # The frames moved: the checkpoint's locations are refused, not served.
            assert "changed" in str(client.stats()["start_checkpoint_problem"])
            after = {f.id: dataclasses.asdict(f) for f in client.recent(limit=1000).frames}
            assert after == before
            for frame_id, fields in before.items():
                assert client.get(frame_id).content == fields["content"]
            hits = client.search("last word", mode="keyword", min_seq=last.seq).hits
            assert hits[0].frame.id == last.id
    finally:
        assert daemon.terminate() == 0
