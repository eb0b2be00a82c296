"""The vault's commands: ``memoryd unlock``, ``memoryd lock``, ``memoryd rotate-key``.

``unlock`` reads the passphrase from the terminal without echo (``getpass``),
or from ``--passphrase-file`` / ``--key-file`` (each must be a regular file of
ours with mode 0600 or stricter, as ssh insists for private keys).  The secret
goes only over the daemon's socket and is never printed.  ``--create`` makes
the vault (the passphrase is asked twice).  Exit codes as the other commands.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cli import (
    EPILOG,
    CommandUsageError,
    _command,
    _emit,
    _emit_json,
    global_options_parent,
)
from .sync_client import Client

if TYPE_CHECKING:
    from .cli import Subparsers

SECRET_FILE_BYTES_MAX = 8192
KEY_BYTES = 32


def add_vault_commands(subparsers: Subparsers) -> None:
    """Add unlock, lock and rotate-key; each sets ``func``."""
    parent = global_options_parent()

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = subparsers.add_parser(
            name,
            help=help_text,
            description=help_text,
            parents=[parent],
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return sub

    unlock = add("unlock", "unlock private memories (the passphrase is read without echo)")
    source = unlock.add_mutually_exclusive_group()
    source.add_argument("--passphrase-file", type=Path, metavar="PATH", help="mode 0600")
    source.add_argument(
        "--key-file", type=Path, metavar="PATH", help="32 bytes raw, hex or base64; mode 0600"
    )
    unlock.add_argument("--create", action="store_true", help="make the vault (first use)")
    unlock.set_defaults(func=_unlock)
    add("lock", "lock private memories: the daemon drops their keys").set_defaults(func=_lock)
    add("rotate-key", "replace the vault key, in the background").set_defaults(func=_rotate)
    add("vault-status", "print the vault's state").set_defaults(func=_vault_status)
    change = add(
        "change-passphrase",
        "wrap the vault keys under a new passphrase or key (no memory is re-encrypted; "
        "the vault must be unlocked)",
    )
    new_source = change.add_mutually_exclusive_group()
    new_source.add_argument(
        "--passphrase-file", type=Path, metavar="PATH", help="the new passphrase; mode 0600"
    )
    new_source.add_argument(
        "--key-file", type=Path, metavar="PATH", help="the new key: 32 bytes raw, hex or base64"
    )
    change.set_defaults(func=_change_master, create=True)


def _read_secret(path: Path) -> bytes:
    """A secret file's bytes, refused unless a regular file of ours closed to others."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise CommandUsageError(f"cannot open {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CommandUsageError(f"{path} is not a regular file")
        if info.st_uid != os.getuid():
            raise CommandUsageError(f"{path} is not owned by you")
        if info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            raise CommandUsageError(f"{path} is open to others (mode {mode:04o}): chmod 600 {path}")
        data = os.read(fd, SECRET_FILE_BYTES_MAX + 1)
    finally:
        os.close(fd)
    if len(data) > SECRET_FILE_BYTES_MAX:
        raise CommandUsageError(f"{path} is over {SECRET_FILE_BYTES_MAX} bytes")
    return data


def _secret(args: argparse.Namespace) -> dict[str, Any]:
    if args.key_file is not None:
        raw = _read_secret(args.key_file)
        if len(raw) == KEY_BYTES:
            return {"key": base64.b64encode(raw).decode("ascii")}
        try:
            return {"key": raw.decode("ascii").strip()}
        except UnicodeDecodeError:
            raise CommandUsageError(f"{args.key_file} holds no key (hex or base64)") from None
    if args.passphrase_file is not None:
        raw = _read_secret(args.passphrase_file)
        raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1] if raw.endswith(b"\n") else raw
        try:
            return {"passphrase": raw.decode("utf-8")}
        except UnicodeDecodeError:
            raise CommandUsageError(f"{args.passphrase_file} is not UTF-8 text") from None
    passphrase = getpass.getpass("passphrase: ")
    if args.create and getpass.getpass("again: ") != passphrase:
        raise CommandUsageError("the passphrases differ; nothing was changed")
    if not passphrase:
        raise CommandUsageError("an empty passphrase")
    return {"passphrase": passphrase}


def _show(status: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        _emit_json(status)
        return
    line = f"vault: {status.get('state')}"
    if status.get("vault_key_id") is not None:
        line += f" (vault key {status['vault_key_id']}, {status.get('data_keys_live')} keys)"
    rotation = status.get("rotation")
    if rotation:
        line += (
            f"; rotating {rotation['from_vault_key_id']} -> {rotation['to_vault_key_id']}, "
            f"{rotation['remaining']} keys left"
        )
    if status.get("rotation_error"):
        line += f"; rotation stopped: {status['rotation_error']}"
    _emit(line)


@_command
def _unlock(client: Client, args: argparse.Namespace) -> None:
    secret = _secret(args)
    _show(client.unlock(**secret, create=args.create), args)


@_command
def _lock(client: Client, args: argparse.Namespace) -> None:
    _show(client.lock(), args)


@_command
def _rotate(client: Client, args: argparse.Namespace) -> None:
    _show(client.rotate_key(), args)


@_command
def _change_master(client: Client, args: argparse.Namespace) -> None:
    # ``create`` makes _secret ask for a typed passphrase twice.
    _show(client.change_master(**_secret(args)), args)


@_command
def _vault_status(client: Client, args: argparse.Namespace) -> None:
    _show(client.vault_status(), args)
