"""``memoryd backup`` while the daemon writes, ``memoryd restore`` into a fresh daemon."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from memoryd.client import Client
from memoryd.daemon.main import main
from tests.integration.daemon_process import DaemonProcess


@pytest.fixture(autouse=True)
def no_inherited_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("MEMORYD_SOCKET", "MEMORYD_DATA_DIR", "MEMORYD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def every_frame(client: Client) -> list[dict[str, Any]]:
    """Every live frame, oldest first, as the wire carries it."""
    frames: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.call("range", {"limit": 1000, "cursor": cursor})
        frames.extend(page["frames"])
        cursor = page["next_cursor"]
        if cursor is None:
            return frames


def test_backup_while_writing_then_restore_into_a_fresh_daemon(
    tmp_path: Path, socket_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = DaemonProcess(
        tmp_path / "source", socket_dir / "source.sock", "--durability", "relaxed"
    ).start()
    dest = tmp_path / "backup"
    stop_writing = threading.Event()
    written: list[int] = []

    def keep_writing() -> None:
        with Client(source.socket_path, timeout=30) as writer:
            batch = 0
            while not stop_writing.is_set():
                frames = [{"content": f"during backup {batch}-{n}"} for n in range(50)]
                writer.pipeline_put(frames)
                written.append(batch)
                batch += 1

    try:
        with Client(source.socket_path, timeout=30) as client:
            results = client.pipeline_put(
                [
                    {"content": f"before {n}", "tags": [f"t{n % 3}"], "metadata": {"n": n}}
                    for n in range(500)
                ]
            )
            for result in results[:25]:
                client.delete(result.id)
        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            while len(written) < 3:  # the backup starts with puts in full flow
                threading.Event().wait(0.01)
            code, out, err = run(capsys, "--socket", str(source.socket_path), "backup", str(dest))
        finally:
            stop_writing.set()
            writer.join(timeout=30)
        assert code == 0, err
        assert out.startswith("backed up ")
        manifest = json.loads((dest / "BACKUP.json").read_text())
        last_seq = manifest["last_seq"]
        with Client(source.socket_path, timeout=30) as client:
            source_frames = every_frame(client)
            total_seq = client.stats()["last_seq"]
        assert total_seq > last_seq, "puts went on after the backup's instant"
        expected = [frame for frame in source_frames if frame["seq"] <= last_seq]
        assert len(expected) >= 475

        # The source is in use: restoring over it is refused.
        code, _, err = run(capsys, "restore", str(dest), "--data-dir", str(source.data_dir))
        assert code == 1 and "in use" in err
    finally:
        assert source.terminate() == 0

    restored_dir = tmp_path / "restored"
    code, out, err = run(capsys, "restore", str(dest), "--data-dir", str(restored_dir))
    assert code == 0, err
    assert f"up to seq {last_seq}" in out
    restored = DaemonProcess(restored_dir, socket_dir / "restored.sock").start()
    try:
        with Client(restored.socket_path, timeout=30) as client:
            assert every_frame(client) == expected
            assert client.stats()["last_seq"] == last_seq
    finally:
        assert restored.terminate() == 0


def test_offline_backup_and_restore_checks(
    tmp_path: Path, socket_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    daemon = DaemonProcess(data_dir, socket_dir / "memoryd.sock").start()
    try:
        with Client(daemon.socket_path) as client:
            client.put_batch([{"content": f"offline {n}"} for n in range(10)])
    finally:
        assert daemon.terminate() == 0
    sock = str(socket_dir / "memoryd.sock")  # nothing answers there now
    dest = tmp_path / "backup"
    code, out, err = run(capsys, "--socket", sock, "backup", str(dest), "--data-dir", str(data_dir))
    assert code == 0, err
    assert "backed up 10 records" in out

    code, _, err = run(capsys, "--socket", sock, "backup", str(dest), "--data-dir", str(data_dir))
    assert code == 1 and "not an empty folder" in err

    code, _, err = run(capsys, "restore", str(dest), "--data-dir", str(data_dir))
    assert code == 1 and "already holds a log" in err
    code, out, err = run(capsys, "restore", str(dest), "--data-dir", str(data_dir), "--replace")
    assert code == 0, err
    assert "the log that was there is in" in out
    assert len(list(data_dir.glob("log.before-restore-*"))) == 1

    segment = next((dest / "log").iterdir())
    raw = bytearray(segment.read_bytes())
    raw[100] ^= 0x01
    segment.write_bytes(bytes(raw))
    code, _, err = run(capsys, "restore", str(dest), "--data-dir", str(tmp_path / "other"))
    assert code == 1 and "does not match the manifest" in err
    assert not (tmp_path / "other" / "log").exists()

    (dest / "BACKUP.json").unlink()
    code, _, err = run(capsys, "restore", str(dest), "--data-dir", str(tmp_path / "other"))
    assert code == 1 and "not a complete backup" in err
