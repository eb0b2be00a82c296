"""The effective configuration and where each value came from.

Sources, each overriding the one before (README, "Paths and configuration"):

1. the embedded defaults (``Config``);
2. one TOML file: ``--config PATH``, else ``$MEMORYD_CONFIG``, else
   ``$XDG_CONFIG_HOME/memoryd/memoryd.toml`` (``~/.config/...``) if it exists.
   Flat ``key = value`` lines with the names of ``Config``; an unknown key is
   refused, so that a typo never silently means a default;
3. the environment: ``MEMORYD_<KEY>`` for every key (``MEMORYD_SOCKET`` for
   ``socket_path``); lists are comma-separated;
4. the command line's flags.

Under systemd, a ``master.key`` credential (``LoadCredential=``) is the
master key file unless one of the above names another.  ``load_config``
checks every value and raises ConfigError naming the key and its source.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memoryd.client.paths import SOCKET_NAME
from memoryd.daemon.config import Config, ConfigError
from memoryd.storage import Durability

CONFIG_ENV = "MEMORYD_CONFIG"
CONFIG_FILE_BYTES_MAX = 1024 * 1024  # a configuration, not a data file
MASTER_KEY_CREDENTIAL = "master.key"
DEFAULT = "default"

# Environment variable names that are not simply MEMORYD_<KEY>.
_ENV_NAME_EXCEPTIONS = {"socket_path": "MEMORYD_SOCKET"}


def env_name(key: str) -> str:
    return _ENV_NAME_EXCEPTIONS.get(key, "MEMORYD_" + key.upper())


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg else Path.home() / ".config"
    return base / "memoryd" / "memoryd.toml"


@dataclass(frozen=True, slots=True)
class Flag:
    """A value given on the command line, and the flag that gave it."""

    value: Any
    name: str


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """The effective configuration, each key's source, and the file that was read."""

    config: Config
    sources: dict[str, str]
    file: Path | None

    def rows(self) -> list[tuple[str, Any, str]]:
        """(key, value as TOML would spell it, source) for every key, in declaration order."""
        values = self.config.as_dict()
        return [(key, values[key], self.sources[key]) for key in values]


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


FIELD_TYPES = _field_types()


def load_config(
    flags: Mapping[str, Flag] | None = None,
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Defaults, then the file, then the environment, then ``flags``; validated."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources = {key: DEFAULT for key in FIELD_TYPES}
    path, explicit = _config_path(config_file, env)
    if path is not None:
        for key, raw in _read_file(path, explicit).items():
            values[key] = coerce(key, raw, f"file {path}")
            sources[key] = f"file {path}"
    for key in FIELD_TYPES:
        name = env_name(key)
        text = env.get(name)
        if text:  # an empty variable means "not set", as for MEMORYD_SOCKET in the clients
            values[key] = coerce(key, text, f"environment {name}")
            sources[key] = f"environment {name}"
    for key, flag in (flags or {}).items():
        if key not in FIELD_TYPES:
            raise ValueError(f"no configuration key {key!r} for flag {flag.name}")
        values[key] = coerce(key, flag.value, f"flag {flag.name}")
        sources[key] = f"flag {flag.name}"
    if "master_key_file" not in values:
        credential = _master_key_credential(env)
        if credential is not None:
            values["master_key_file"] = credential
            sources["master_key_file"] = f"credential {MASTER_KEY_CREDENTIAL}"
    config = _with_defaults(values, env)
    try:
        config.validate()
    except ConfigError as exc:
        raise ConfigError(_with_source(str(exc), sources)) from None
    return LoadedConfig(config, sources, path)


def _config_path(config_file: Path | None, env: Mapping[str, str]) -> tuple[Path | None, bool]:
    """The file to read and whether it was named explicitly (then it must exist)."""
    if config_file is not None:
        return config_file, True
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]), True
    path = default_config_path(env)
    return (path, False) if path.is_file() else (None, False)


def _read_file(path: Path, explicit: bool) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read(CONFIG_FILE_BYTES_MAX + 1)
    except FileNotFoundError:
        if not explicit:
            return {}
        raise ConfigError(f"configuration file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    if len(data) > CONFIG_FILE_BYTES_MAX:
        raise ConfigError(f"configuration file {path} is larger than {CONFIG_FILE_BYTES_MAX} bytes")
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"configuration file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
    for key in table:
        if key not in FIELD_TYPES:
            close = difflib.get_close_matches(key, FIELD_TYPES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{key}: unknown key in configuration file {path}{hint}")
    return table


def coerce(key: str, raw: Any, origin: str) -> Any:
    """``raw`` (a TOML value, an environment string or a flag's value) as ``key``'s type."""
    kind = FIELD_TYPES[key]
    try:
        value = _coerce(kind, raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: {exc}, got {raw!r} (from {origin})") from None
    return value.lower() if key == "log_level" else value


def _coerce(kind: Any, raw: Any) -> Any:
    args = typing.get_args(kind)
    if type(None) in args:  # X | None: "" or "none" in text means None
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none")):
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _coerce(inner, raw)
    if kind is bool:
        raise TypeError("no boolean settings")
    if kind is int:
        return _integer(raw)
    if kind is float:
        if isinstance(raw, bool):
            raise ValueError("must be a number")
        if isinstance(raw, int | float):
            return float(raw)
        if isinstance(raw, str):
            try:
                return float(raw)
            except ValueError:
                raise ValueError("must be a number") from None
        raise ValueError("must be a number")
    if kind is Path:
        return Path(_string(raw))
    if kind is str:
        return _string(raw)
    if kind is Durability:
        choices = ", ".join(d.value for d in Durability)
        try:
            return Durability(_string(raw))
        except ValueError:
            raise ValueError(f"must be one of {choices}") from None
    if typing.get_origin(kind) is tuple and args[0] is int:
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple):
            raise ValueError("must be a list of integers")
        return tuple(_integer(item.strip() if isinstance(item, str) else item) for item in items)
    raise TypeError(f"unsupported setting type {kind}")  # a programmer error in Config


def _integer(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError("must be an integer")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"[+-]?\d+", raw.strip().replace("_", "")):
        return int(raw.strip().replace("_", ""))
    raise ValueError("must be an integer")


def _string(raw: Any) -> str:
    if isinstance(raw, str | Path):
        return str(raw)
    raise ValueError("must be a string")


def _master_key_credential(env: Mapping[str, str]) -> Path | None:
    directory = env.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / MASTER_KEY_CREDENTIAL
    return path if path.exists() else None


def _with_defaults(values: dict[str, Any], env: Mapping[str, str]) -> Config:
    """A Config of ``values`` over the defaults, whose own defaults ignore the environment.

    ``Config()``'s path defaults read ``MEMORYD_*`` themselves; here the
    environment was already applied (with its source), so they must not.
    """
    config = Config(
        socket_path=values.get("socket_path") or _default_without_env("socket_path", env),
        data_dir=values.get("data_dir") or _default_without_env("data_dir", env),
    )
    rest = {k: v for k, v in values.items() if k not in ("socket_path", "data_dir")}
    return config.replace(**rest)


def _default_without_env(key: str, env: Mapping[str, str]) -> Path:
    if key == "socket_path":
        runtime = env.get("XDG_RUNTIME_DIR")
        if runtime:
            return Path(runtime) / "memoryd" / SOCKET_NAME
        return Path("/tmp") / f"memoryd-{os.getuid()}" / SOCKET_NAME
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "memoryd"


def _with_source(message: str, sources: Mapping[str, str]) -> str:
    """Append the source of the first key that ``message`` names."""
    named = [key for key in sources if re.search(rf"\b{re.escape(key)}\b", message)]
    if not named:
        return message
    key = min(named, key=lambda k: message.index(k))
    return f"{message} (set by {sources[key]})"


def toml_value(value: Any) -> str:
    """``value`` spelled as in a TOML file (None, which TOML cannot spell, as a comment)."""
    if value is None:
        return "# not set"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
