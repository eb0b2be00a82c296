"""check and repair find the data directory as serve does: file, environment, flags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from memoryd.storage import FileLog
from memoryd.storage.events import Frame, encode_frame_put
from memoryd.storage.record import RecordType


def write_log(data_dir: Path, frames: int) -> None:
    log, _ = FileLog.open(data_dir / "log")
    for i in range(frames):
        frame = Frame(f"id{i}", 0, 1000 + i, "ns", "note", f"memory {i}")
        log.append([(int(RecordType.FRAME_PUT), frame.timestamp_ms, encode_frame_put(frame))])
    log.close()


def run(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "memoryd.daemon", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_check_reads_data_dir_from_the_configuration_file(tmp_path: Path) -> None:
    write_log(tmp_path / "data", 3)
    config = tmp_path / "memoryd.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    done = run("check", "--json", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert '"records": 3' in done.stdout
    via_env = run("check", "--json", env_extra={"MEMORYD_DATA_DIR": str(tmp_path / "data")})
    assert via_env.returncode == 0 and '"records": 3' in via_env.stdout


def test_invalid_configuration_is_a_clear_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "memoryd.toml"
    config.write_text("durability = 7\n")
    for command in ("check", "repair"):
        done = run(command, "--config", str(config))
        assert done.returncode == 2
        assert "durability" in done.stderr and "Traceback" not in done.stderr
