"""The unit files in systemd/: ``systemd-analyze verify`` on each, and the settings they promise.

verify refuses an ExecStart= whose program does not exist, and the units name
where memoryd is installed (/usr/local/bin, ~/.local/bin), not this checkout;
so each unit is verified as a copy whose program is this interpreter running
memoryd, everything else unchanged.  Any warning verify prints (an unknown or
misspelt setting is only a warning) fails the test.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoryd.daemon.config_file import load_config
from memoryd.daemon.health import open_files_needed

SYSTEMD_DIR = Path(__file__).resolve().parents[2] / "systemd"
ANALYZE = shutil.which("systemd-analyze")
SYSTEM_UNITS = SYSTEMD_DIR / "system"
USER_UNITS = SYSTEMD_DIR / "user"
INSTALLED_PROGRAMS = ("/usr/local/bin/memoryd", "%h/.local/bin/memoryd")

needs_analyze = pytest.mark.skipif(
    ANALYZE is None,
    reason="systemd-analyze is not installed (Debian package systemd; .ci/run installs it)",
)


def runnable_copy(unit: Path, folder: Path) -> Path:
    text = unit.read_text()
    for program in INSTALLED_PROGRAMS:
        text = text.replace(program, f"{sys.executable} -m memoryd.daemon")
    copy = folder / unit.name
    copy.write_text(text)
    return copy


def verify(units: list[Path], *, user: bool) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    with tempfile.TemporaryDirectory(prefix="md-units-") as folder:
        runtime = Path(folder) / "runtime"
        runtime.mkdir(mode=0o700)
        copies = [runnable_copy(unit, Path(folder)) for unit in units]
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"}
        scope = ["--user"] if user else []
        return subprocess.run(
            [ANALYZE, *scope, "verify", "--man=no", *map(str, copies)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )


@needs_analyze
@pytest.mark.parametrize(("folder", "user"), [(SYSTEM_UNITS, False), (USER_UNITS, True)])
def test_units_verify_cleanly(folder: Path, user: bool) -> None:
    units = [folder / "memoryd.socket", folder / "memoryd.service"]
    result = verify(units, user=user)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == "", "verify warned"


@needs_analyze
def test_verify_catches_a_misspelt_setting(tmp_path: Path) -> None:
    """The check above is not vacuous: a typo makes verify speak."""
    broken = tmp_path / "system"
    broken.mkdir()
    for unit in ("memoryd.socket", "memoryd.service"):
        text = (SYSTEM_UNITS / unit).read_text()
        (broken / unit).write_text(text.replace("ProtectSystem=strict", "ProtectSystm=strict"))
    result = verify([broken / "memoryd.socket", broken / "memoryd.service"], user=False)
    assert "ProtectSystm" in result.stdout + result.stderr


def settings(unit: Path) -> dict[str, list[str]]:
    """Every KEY=VALUE of a unit, by key (a key may repeat)."""
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        match = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if match:
            out.setdefault(match.group(1), []).append(match.group(2))
    return out


def test_the_system_service_is_notify_and_hardened() -> None:
    service = settings(SYSTEM_UNITS / "memoryd.service")
    expected = {
        "Type": "notify",
        "User": "memoryd",
        "StateDirectory": "memoryd",
        "RuntimeDirectory": "memoryd",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "UMask": "0077",
        "LoadCredential": "master.key:/etc/memoryd/master.key",
    }
    for key, value in expected.items():
        assert service.get(key) == [value], key
    assert service["SystemCallFilter"][0] == "@system-service"
    assert service["SystemCallFilter"][1].startswith("~@privileged @resources")
    assert "WatchdogSec" in service and "ExecReload" in service
    # LimitNOFILE covers connections_max plus what the daemon keeps open besides.
    defaults = load_config(environ={}).config
    assert int(service["LimitNOFILE"][0]) >= open_files_needed(defaults)
    # The stop timeout leaves room for the drain deadline.
    assert float(service["TimeoutStopSec"][0].rstrip("s")) > defaults.shutdown_deadline_s


def test_sockets_pass_the_name_memoryd_looks_for() -> None:
    for folder in (SYSTEM_UNITS, USER_UNITS):
        socket_unit = settings(folder / "memoryd.socket")
        assert socket_unit["FileDescriptorName"] == ["memoryd"]
    assert settings(USER_UNITS / "memoryd.socket")["ListenStream"] == [
        "%t/memoryd/memoryd.sock"  # the clients' default path: $XDG_RUNTIME_DIR/memoryd/...
    ]
    assert settings(USER_UNITS / "memoryd.socket")["SocketMode"] == ["0600"]


def test_units_parse_as_ini_and_name_each_other() -> None:
    for folder in (SYSTEM_UNITS, USER_UNITS):
        service = configparser.ConfigParser(strict=False, interpolation=None)
        service.optionxform = str  # type: ignore[assignment,method-assign]
        service.read(folder / "memoryd.service")
        assert service["Unit"]["Requires"] == "memoryd.socket"
        assert service["Install"]["Also"] == "memoryd.socket"


@pytest.fixture
def example_config() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="md-conf-"))
    yield folder
    shutil.rmtree(folder)


def test_the_example_configuration_is_valid_commented_and_uncommented(
    example_config: Path,
) -> None:
    text = (SYSTEMD_DIR / "memoryd.toml").read_text()
    commented = example_config / "commented.toml"
    commented.write_text(text)
    assert load_config(config_file=commented, environ={}).file == commented
    uncommented = example_config / "uncommented.toml"
    uncommented.write_text(re.sub(r"(?m)^# (\w+ = )", r"\1", text))
    config = load_config(config_file=uncommented, environ={}).config
    assert config.metrics_address == "127.0.0.1:9464"
