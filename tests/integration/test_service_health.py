"""``memoryd status``, ``memoryd stats --prometheus``, the HTTP metrics port and ``doctor``."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest

from memoryd.client import Client
from memoryd.daemon.main import main
from memoryd.storage.layout import segment_file_name
from tests.integration.daemon_process import DaemonProcess
from tests.integration.systemd_helpers import write_frames


@pytest.fixture(autouse=True)
def no_inherited_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("MEMORYD_SOCKET", "MEMORYD_DATA_DIR", "MEMORYD_CONFIG", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_status_and_metrics_of_a_running_daemon(
    tmp_path: Path, socket_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = DaemonProcess(
        tmp_path / "data", socket_dir / "memoryd.sock", "--metrics-address", "127.0.0.1:0"
    ).start()
    sock = str(daemon.socket_path)
    try:
        with Client(daemon.socket_path) as client:
            first = client.put("one")
            client.put("two")
            client.delete(first.id)
            with pytest.raises(Exception, match="not_found"):
                client.get(first.id)

        code, out, _ = run(capsys, "--socket", sock, "status", "--json")
        assert code == 0
        status = json.loads(out)
        assert status["state"] == "serving"
        assert status["frames_live"] == 1 and status["last_seq"] == 3
        assert status["builder_lag"] >= 0 and status["builder_progressing"] is True
        assert status["last_checkpoint"] is None
        assert status["vault"] == "no vault"
        assert status["disk_free_bytes"] > 0
        assert status["data_dir"] == str(daemon.data_dir)
        assert status["uptime_s"] > 0
        assert status["problem"] is None

        code, out, _ = run(capsys, "--socket", sock, "status")
        assert code == 0
        rows = [line.split("  ")[0] for line in out.splitlines()]
        assert rows[:3] == ["state", "uptime", "frames"]
        for expected in (
            "state            serving",
            "frames           1 live (last seq 3)",
            "last checkpoint  none",
            "vault            no vault",
            "free disk        ",
            f"socket           {sock}",
        ):
            assert expected in out, expected

        code, out, _ = run(capsys, "--socket", sock, "stats", "--prometheus")
        assert code == 0
        assert 'memoryd_requests_total{op="put",code="ok"} 2' in out
        assert 'memoryd_requests_total{op="delete",code="ok"} 1' in out
        assert 'memoryd_requests_total{op="get",code="not_found"} 1' in out
        assert 'memoryd_request_duration_seconds_count{op="put"} 2' in out
        assert "memoryd_frames_live 1" in out

        with urllib.request.urlopen(status["metrics_url"], timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            scraped = response.read().decode()
        assert 'memoryd_requests_total{op="status",code="ok"}' in scraped

        code, out, _ = run(capsys, "--socket", sock, "stats", "--json")
        assert code == 0 and json.loads(out)["frames_live"] == 1  # plain stats unchanged

        code, out, _ = run(capsys, "--socket", sock, "doctor", "--data-dir", str(daemon.data_dir))
        assert code == 0, out
        assert "ok    daemon: serving" in out
        assert "ok    log integrity: 1 segment, 3 records" in out
    finally:
        assert daemon.terminate() == 0


def test_status_without_a_daemon(socket_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = str(socket_dir / "nobody.sock")
    code, out, err = run(capsys, "--socket", sock, "status")
    assert code == 3
    assert "not running" in out and "connection_failed" in err


def test_doctor_says_what_to_fix(
    tmp_path: Path, socket_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    write_frames(data_dir, [f"frame {n}" for n in range(20)])
    segment = data_dir / "log" / segment_file_name(1)
    raw = bytearray(segment.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # damage in the middle: corruption, not a torn tail
    segment.write_bytes(bytes(raw))
    os.chmod(data_dir, 0o755)
    key = tmp_path / "master.key"
    key.write_bytes(os.urandom(32))
    os.chmod(key, 0o644)
    config = tmp_path / "memoryd.toml"
    config.write_text(f'master_key_file = "{key}"\n')
    sock = str(socket_dir / "memoryd.sock")
    code, out, _ = run(
        capsys, "--socket", sock, "doctor", "--config", str(config), "--data-dir", str(data_dir)
    )
    assert code == 1
    assert "warn  data directory" in out and f"fix: chmod 700 {data_dir}" in out
    assert "fail  log integrity" in out and "memoryd repair --data-dir" in out
    assert "warn  socket: no daemon" in out and "systemctl start memoryd.socket" in out
    assert "fail  keys: master_key_file" in out and f"fix: chmod 600 {key}" in out
    assert key.read_bytes().hex() not in out  # never the key itself

    os.chmod(key, 0o600)
    key.write_bytes(b"short")
    code, out, _ = run(
        capsys, "--socket", sock, "doctor", "--config", str(config), "--data-dir", str(data_dir)
    )
    assert "fewer than 32" in out
    key.unlink()
    code, out, _ = run(
        capsys,
        "--json",
        "--socket",
        sock,
        "doctor",
        "--config",
        str(config),
        "--data-dir",
        str(data_dir),
    )
    document = json.loads(out)
    assert document["ok"] is False
    keys = [c for c in document["checks"] if c["check"] == "keys"]
    assert keys[0]["level"] == "fail" and "does not exist" in keys[0]["message"]


def test_doctor_on_a_fresh_install(
    tmp_path: Path, socket_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys,
        "--socket",
        str(socket_dir / "memoryd.sock"),
        "doctor",
        "--data-dir",
        str(tmp_path / "not-yet"),
    )
    assert code == 0, out  # nothing fails: it just has not run yet
    assert "warn  data directory" in out and "does not exist yet" in out
    assert "ok    keys: no master key configured" in out
    shutil.rmtree(tmp_path / "not-yet", ignore_errors=True)
