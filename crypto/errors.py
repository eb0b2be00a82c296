"""The errors memoryd.crypto raises.

Every message names what failed and why, with ids, paths and sizes, and never
holds a secret, a key, a passphrase or any plaintext: messages end up in logs
and in answers to clients.  Errors from the ``cryptography`` package are never
chained (``raise ... from None``), so their text does not leak either.
"""

from __future__ import annotations


class CryptoError(Exception):
    """The base of every error this package raises on purpose."""


class TamperedError(CryptoError):
    """Sealed or stored bytes failed verification: damaged, edited, or not ours.

    ``what`` names the object (``frame``, ``data key``, ``vault key``,
    ``keyring file``, ``data key store``), ``reason`` is a short stable code
    (``auth_failed``, ``bad_magic``, ``truncated``, ...) and ``key_id`` the key
    it was to be opened with, when there is one.
    """

    def __init__(self, what: str, reason: str, key_id: int | None = None, detail: str = "") -> None:
        where = "" if key_id is None else f" (key id {key_id})"
        more = f": {detail}" if detail else ""
        super().__init__(f"{what}{where} failed verification: {reason}{more}")
        self.what = what
        self.reason = reason
        self.key_id = key_id


class WrongKeyError(CryptoError):
    """The passphrase or master key does not unlock this keyring.  Nothing was changed."""


class KeyFileError(CryptoError):
    """A key file, passphrase file or credential is missing, unsafe or malformed."""


class ForgottenError(CryptoError):
    """The data key was destroyed: the frame was forgotten and cannot be read again."""

    def __init__(self, key_id: int) -> None:
        super().__init__(f"data key {key_id} was destroyed: its frame was forgotten")
        self.key_id = key_id


class LockedError(CryptoError):
    """The keyring is locked (or this key was wiped): no key is in memory."""


class RotationError(CryptoError):
    """A vault key rotation step was asked for in the wrong state."""


class KeyringError(CryptoError):
    """The key files are missing, already exist, or cannot be used as asked."""


class LimitError(CryptoError, ValueError):
    """An input exceeds a named limit; ``limit`` is its name (``plaintext_bytes_max``, ...)."""

    def __init__(self, limit: str, value: int, bound: int) -> None:
        super().__init__(f"{limit} is {bound}, got {value}")
        self.limit = limit
        self.value = value
        self.bound = bound
