"""``memoryd config``: the effective configuration, each key with its source."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from memoryd.daemon.main import main


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("MEMORYD_SOCKET", "MEMORYD_DATA_DIR", "MEMORYD_CONFIG", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def test_prints_every_key_with_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "memoryd.toml"
    config_file.write_text('log_level = "warning"\nconnections_max = 7\n')
    monkeypatch.setenv("MEMORYD_CONNECTIONS_MAX", "9")
    code = main(["config", "--config", str(config_file), "--durability", "relaxed"])
    out = capsys.readouterr().out
    assert code == 0
    lines = {line.split(" =")[0]: line for line in out.splitlines() if " = " in line}
    assert lines["log_level"].startswith('log_level = "warning" ')
    assert lines["log_level"].endswith(f"# file {config_file}")
    assert lines["connections_max"].startswith("connections_max = 9 ")
    assert "# environment MEMORYD_CONNECTIONS_MAX" in lines["connections_max"]
    assert "# flag --durability" in lines["durability"]
    assert "# default" in lines["segment_bytes_max"]
    assert out.splitlines()[0] == f"# configuration file: {config_file}"
    tomllib.loads(out)  # the output is itself a valid configuration file


def test_the_socket_flag_counts_only_when_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "--json"]) == 0
    settings = json.loads(capsys.readouterr().out)["settings"]
    assert settings["socket_path"]["source"] == "default"
    assert main(["--socket", str(tmp_path / "x.sock"), "config", "--json"]) == 0
    settings = json.loads(capsys.readouterr().out)["settings"]
    assert settings["socket_path"] == {"value": str(tmp_path / "x.sock"), "source": "flag --socket"}


def test_an_invalid_value_is_refused_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "memoryd.toml"
    config_file.write_text("commit_queue_events_max = -3\n")
    assert main(["config", "--config", str(config_file)]) == 1
    err = capsys.readouterr().err
    assert "commit_queue_events_max must be a positive integer" in err
    assert f"set by file {config_file}" in err
