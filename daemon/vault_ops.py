"""The vault's ops: ``unlock``, ``lock``, ``rotate_key``, ``vault_status`` and ``change_master``.

``unlock`` takes the secret over the socket, which only the daemon's own user
(or root, or ``allowed_uids``) can reach (SO_PEERCRED)::

    {"passphrase": str}             a passphrase (NFC-normalised), at most 4 KiB
    {"key": str}                    a 32-byte key: 64 hex digits or base64
    "create": bool                  make the vault if there is none (default false)

A wrong secret answers ``wrong_key`` and changes nothing.  The secret is never
logged nor echoed in an error.  Every op answers the vault's status.
"""

from __future__ import annotations

import asyncio
from typing import Any

from memoryd.crypto import KeyFileError, MasterKey, MasterKind
from memoryd.crypto.keyfile import parse_key_material
from memoryd.daemon import validation
from memoryd.daemon.service import Handler, Result
from memoryd.daemon.vault import Vault, kdf_params

PASSPHRASE_BYTES_MAX = 4096
KEY_TEXT_BYTES_MAX = 256  # hex (64) or base64 (44) with room for whitespace
_UNLOCK_FIELDS = frozenset(("passphrase", "key", "create"))


def _master(args: dict[str, Any], kdf: str) -> MasterKey:
    unknown = set(args) - _UNLOCK_FIELDS
    if unknown:
        raise validation.bad_request(f"unknown field(s): {', '.join(sorted(unknown))}")
    passphrase, key = args.get("passphrase"), args.get("key")
    if (passphrase is None) == (key is None):
        raise validation.bad_request("give one of passphrase or key")
    if passphrase is not None:
        if not isinstance(passphrase, str) or not passphrase:
            raise validation.bad_request("passphrase must be a non-empty string")
        size = validation.utf8_length(passphrase, "passphrase")
        if size > PASSPHRASE_BYTES_MAX:
            raise validation.limit_exceeded(
                "passphrase_bytes_max", PASSPHRASE_BYTES_MAX, size, "passphrase size in bytes"
            )
        return MasterKey.from_passphrase(passphrase, kdf_params=kdf_params(kdf))
    if not isinstance(key, str) or not key:
        raise validation.bad_request("key must be a non-empty string (hex or base64)")
    raw = bytearray(key.encode("utf-8", "surrogatepass"))
    if len(raw) > KEY_TEXT_BYTES_MAX:
        raise validation.limit_exceeded(
            "key_text_bytes_max", KEY_TEXT_BYTES_MAX, len(raw), "key size in bytes"
        )
    if len(raw) == 32:  # 32 characters would be taken as raw key bytes: not a text form
        raise validation.bad_request("key must be 64 hex digits or base64 of 32 bytes")
    try:
        return MasterKey(MasterKind.KEY, "key", key=parse_key_material(raw, "key"))
    except KeyFileError as exc:
        raise validation.bad_request(str(exc)) from None


class VaultOps:
    """The handlers over one ``Vault``."""

    def __init__(self, vault: Vault, kdf: str) -> None:
        self._vault = vault
        self._kdf = kdf

    def handlers(self) -> dict[str, Handler]:
        return {
            "unlock": self.unlock,
            "lock": self.lock,
            "rotate_key": self.rotate_key,
            "vault_status": self.vault_status,
            "change_master": self.change_master,
        }

    def unlock(self, args: dict[str, Any]) -> Result:
        create = args.get("create", False)
        if not isinstance(create, bool):
            raise validation.bad_request("create must be true or false")
        master = _master(args, self._kdf)
        return asyncio.ensure_future(self._vault.unlock(master, create=create))

    def lock(self, args: dict[str, Any]) -> Result:
        _no_args(args, "lock")
        return asyncio.ensure_future(self._vault.lock())

    def change_master(self, args: dict[str, Any]) -> Result:
        """The new master: ``passphrase`` or ``key`` (as for ``unlock``); the vault
        must be unlocked, which the current master already proved."""
        if "create" in args:
            raise validation.bad_request("unknown field(s): create")
        master = _master(args, self._kdf)
        return asyncio.ensure_future(self._vault.change_master(master))

    def rotate_key(self, args: dict[str, Any]) -> Result:
        _no_args(args, "rotate_key")
        return asyncio.ensure_future(self._vault.rotate())

    def vault_status(self, args: dict[str, Any]) -> Result:
        _no_args(args, "vault_status")
        return self._vault.status()


def _no_args(args: dict[str, Any], op: str) -> None:
    if args:
        raise validation.bad_request(f"{op} takes no arguments, got {', '.join(sorted(args))}")
