"""``memoryd config``: print the effective configuration and where each value came from."""

from __future__ import annotations

import argparse
import sys

import orjson

from memoryd.client.cli import global_options_parent
from memoryd.daemon.cmd_serve import add_config_options, loaded_config_from_args
from memoryd.daemon.config import ConfigError
from memoryd.daemon.config_file import LoadedConfig, default_config_path, toml_value

EXIT_OK = 0
EXIT_INVALID = 1


def add_config_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "config",
        parents=[global_options_parent()],
        help="print the effective configuration and where each value comes from",
        description="Print the configuration `memoryd serve` would run with, given the same "
        "file, environment and flags: each key with its value and its source (default, "
        f"file, environment or flag). Exit {EXIT_INVALID} (naming the key) if a value is "
        "invalid. The output is valid TOML.",
    )
    add_config_options(parser)
    parser.set_defaults(func=run_config)


def run_config(args: argparse.Namespace) -> int:
    try:
        loaded = loaded_config_from_args(args)
    except ConfigError as exc:
        print(f"memoryd: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        print(orjson.dumps(as_json(loaded), option=orjson.OPT_INDENT_2).decode())
    else:
        print(as_text(loaded))
    return EXIT_OK


def as_json(loaded: LoadedConfig) -> dict[str, object]:
    return {
        "file": None if loaded.file is None else str(loaded.file),
        "settings": {
            key: {"value": value, "source": source} for key, value, source in loaded.rows()
        },
    }


def as_text(loaded: LoadedConfig) -> str:
    """TOML with each key's source as a trailing comment, aligned."""
    if loaded.file is not None:
        header = f"# configuration file: {loaded.file}"
    else:
        header = f"# configuration file: none ({default_config_path()} does not exist)"
    rows = [(f"{key} = {toml_value(value)}", source) for key, value, source in loaded.rows()]
    width = max(len(setting) for setting, _ in rows)
    lines = [header, "# precedence: default < file < environment < flag"]
    for setting, source in rows:
        if setting.endswith("# not set"):
            key = setting.split(" ", 1)[0]
            setting = f"# {key} is not set"
        lines.append(f"{setting.ljust(width)}  # {source}")
    return "\n".join(lines)
