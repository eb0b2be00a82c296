"""Configuration: defaults < TOML file < environment < flags, each value with its source."""

from __future__ import annotations

from pathlib import Path

import pytest

from memoryd.daemon.config import Config, ConfigError
from memoryd.daemon.config_file import Flag, env_name, load_config, toml_value
from memoryd.storage import Durability


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def base_env(tmp_path: Path) -> dict[str, str]:
    """An environment without MEMORYD_*: XDG folders under tmp_path, no config file there."""
    return {
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
    }


def test_defaults_only(tmp_path: Path) -> None:
    loaded = load_config(environ=base_env(tmp_path))
    assert loaded.file is None
    assert set(loaded.sources.values()) == {"default"}
    assert loaded.config.data_dir == tmp_path / "xdg-data" / "memoryd"
    assert loaded.config.socket_path == tmp_path / "run" / "memoryd" / "memoryd.sock"
    assert loaded.config.connections_max == Config().connections_max


def test_each_layer_overrides_the_one_before(tmp_path: Path) -> None:
    config_file = write(
        tmp_path / "memoryd.toml",
        'log_level = "warning"\nconnections_max = 10\nshutdown_deadline_s = 5\n'
        'durability = "relaxed"\n',
    )
    env = {
        **base_env(tmp_path),
        "MEMORYD_CONNECTIONS_MAX": "20",
        "MEMORYD_DURABILITY": "fsync",
        "MEMORYD_DATA_DIR": str(tmp_path / "from-env"),
    }
    flags = {"durability": Flag("relaxed", "--durability")}
    loaded = load_config(flags, config_file=config_file, environ=env)
    config = loaded.config
    assert config.log_level == "warning"
    assert config.shutdown_deadline_s == 5.0
    assert config.connections_max == 20
    assert config.durability is Durability.RELAXED
    assert config.data_dir == tmp_path / "from-env"
    assert loaded.sources["log_level"] == f"file {config_file}"
    assert loaded.sources["connections_max"] == "environment MEMORYD_CONNECTIONS_MAX"
    assert loaded.sources["durability"] == "flag --durability"
    assert loaded.sources["data_dir"] == "environment MEMORYD_DATA_DIR"
    assert loaded.sources["segment_bytes_max"] == "default"
    assert [row[0] for row in loaded.rows()] == list(Config().as_dict())


def test_the_default_file_is_read_when_it_exists(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    path = tmp_path / "xdg-config" / "memoryd" / "memoryd.toml"
    path.parent.mkdir(parents=True)
    write(path, "build_idle_ms = 3\n")
    loaded = load_config(environ=env)
    assert loaded.file == path
    assert loaded.config.build_idle_ms == 3


def test_memoryd_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "other.toml", "allowed_uids = [1000, 1001]\n")
    loaded = load_config(environ={**base_env(tmp_path), "MEMORYD_CONFIG": str(path)})
    assert loaded.config.allowed_uids == (1000, 1001)


def test_a_named_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(config_file=tmp_path / "nope.toml", environ=base_env(tmp_path))


def test_an_unknown_key_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path / "memoryd.toml", "conections_max = 5\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config_file=path, environ=base_env(tmp_path))
    assert "conections_max: unknown key" in str(caught.value)
    assert "did you mean 'connections_max'" in str(caught.value)


def test_a_table_is_an_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path / "memoryd.toml", "[limits]\nconnections_max = 5\n")
    with pytest.raises(ConfigError, match="limits: unknown key"):
        load_config(config_file=path, environ=base_env(tmp_path))


def test_bad_toml_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "memoryd.toml", "connections_max = = 5\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(config_file=path, environ=base_env(tmp_path))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('connections_max = "many"', "connections_max: must be an integer"),
        ("connections_max = true", "connections_max: must be an integer"),
        ('durability = "sometimes"', "durability: must be one of fsync, relaxed"),
        ("data_dir = 3", "data_dir: must be a string"),
        ('allowed_uids = ["x"]', "allowed_uids: must be an integer"),
        ("shutdown_deadline_s = [1]", "shutdown_deadline_s: must be a number"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_key_and_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path / "memoryd.toml", text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config_file=path, environ=base_env(tmp_path))
    assert message in str(caught.value)
    assert f"file {path}" in str(caught.value)


def test_an_invalid_value_names_the_key_and_where_it_was_set(tmp_path: Path) -> None:
    path = write(tmp_path / "memoryd.toml", "connections_max = 0\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config_file=path, environ=base_env(tmp_path))
    assert "connections_max must be a positive integer" in str(caught.value)
    assert f"(set by file {path})" in str(caught.value)


def test_an_invalid_environment_value_names_the_variable(tmp_path: Path) -> None:
    env = {**base_env(tmp_path), "MEMORYD_SEGMENT_BYTES_MAX": "12"}
    with pytest.raises(ConfigError) as caught:
        load_config(environ=env)
    assert "segment_bytes_max must be at least 1 MiB" in str(caught.value)
    assert "environment MEMORYD_SEGMENT_BYTES_MAX" in str(caught.value)


def test_environment_spellings(tmp_path: Path) -> None:
    env = {
        **base_env(tmp_path),
        "MEMORYD_ALLOWED_UIDS": "1000, 1_001",
        "MEMORYD_LOG_LEVEL": "DEBUG",
        "MEMORYD_SOCKET": str(tmp_path / "s.sock"),
        "MEMORYD_METRICS_ADDRESS": "",  # empty: not set
    }
    config = load_config(environ=env).config
    assert config.allowed_uids == (1000, 1001)
    assert config.log_level == "debug"
    assert config.socket_path == tmp_path / "s.sock"
    assert config.metrics_address is None
    assert env_name("socket_path") == "MEMORYD_SOCKET"
    assert env_name("connections_max") == "MEMORYD_CONNECTIONS_MAX"


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("127.0.0.1:9464", True),
        ("localhost:0", True),
        ("[::1]:9464", True),
        ("0.0.0.0:9464", False),
        ("10.1.2.3:9464", False),
        ("127.0.0.1", False),
        ("127.0.0.1:99999", False),
    ],
)
def test_metrics_address_must_be_loopback(tmp_path: Path, address: str, ok: bool) -> None:
    flags = {"metrics_address": Flag(address, "--metrics-address")}
    if ok:
        assert load_config(flags, environ=base_env(tmp_path)).config.metrics_address == address
    else:
        with pytest.raises(ConfigError, match="metrics_address"):
            load_config(flags, environ=base_env(tmp_path))


def test_the_master_key_credential_is_used_unless_configured(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "master.key").write_bytes(b"k" * 32)
    env = {**base_env(tmp_path), "CREDENTIALS_DIRECTORY": str(credentials)}
    loaded = load_config(environ=env)
    assert loaded.config.master_key_file == credentials / "master.key"
    assert loaded.sources["master_key_file"] == "credential master.key"
    mine = tmp_path / "mine.key"
    env["MEMORYD_MASTER_KEY_FILE"] = str(mine)
    assert load_config(environ=env).config.master_key_file == mine


def test_no_credential_no_master_key(tmp_path: Path) -> None:
    env = {**base_env(tmp_path), "CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert load_config(environ=env).config.master_key_file is None


def test_toml_values_round_trip(tmp_path: Path) -> None:
    loaded = load_config(environ=base_env(tmp_path))
    text = "\n".join(
        f"{key} = {toml_value(value)}" for key, value, _ in loaded.rows() if value is not None
    )
    path = write(tmp_path / "round.toml", text + "\n")
    again = load_config(config_file=path, environ=base_env(tmp_path))
    assert again.config == loaded.config


@pytest.mark.parametrize("quiet_ms", [-1, 1001])
def test_a_build_quiet_time_out_of_range_is_refused(tmp_path: Path, quiet_ms: int) -> None:
    path = write(tmp_path / "memoryd.toml", f"build_quiet_ms = {quiet_ms}\n")
    with pytest.raises(ConfigError, match="build_quiet_ms must be between 0 and 1000"):
        load_config(config_file=path, environ=base_env(tmp_path))
    path = write(tmp_path / "memoryd.toml", "build_quiet_ms = 0\n")
    assert load_config(config_file=path, environ=base_env(tmp_path)).config.build_quiet_ms == 0


@pytest.mark.parametrize("value", [0, 65])
def test_a_build_step_of_chunks_out_of_range_is_refused(tmp_path: Path, value: int) -> None:
    path = write(tmp_path / "memoryd.toml", f"build_step_chunks_max = {value}\n")
    with pytest.raises(ConfigError, match="build_step_chunks_max must be between 1 and 64"):
        load_config(config_file=path, environ=base_env(tmp_path))


def test_a_build_step_of_chunks_is_the_policy_s_records_per_step(tmp_path: Path) -> None:
    path = write(tmp_path / "memoryd.toml", "build_step_chunks_max = 3\nchunk_frames_max = 7\n")
    policy = load_config(config_file=path, environ=base_env(tmp_path)).config.build_policy()
    assert (policy.step_chunks_max, policy.step_records_max) == (3, 21)
