"""Where the master key comes from: a passphrase, a key file or a systemd credential.

A ``MasterKey`` holds the secret it was made from (the passphrase, or the 32
key bytes) until ``wipe``; the keyring derives the actual master key from it
with the salt and parameters stored in the keyring file.  The KDF parameters a
``MasterKey`` carries are used only when a keyring is created or its master is
changed: unlocking always uses the stored ones.  It never prints its secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from pathlib import Path
from types import TracebackType
from typing import NoReturn, Self

from memoryd.crypto.errors import LockedError
from memoryd.crypto.kdf import KdfParams, default_kdf_params, derive_master_key, passphrase_bytes
from memoryd.crypto.keyfile import read_credential, read_key_file, read_secret_file
from memoryd.crypto.keys import KEY_BYTES, SecretKey


class MasterKind(IntEnum):
    PASSPHRASE = 1
    KEY = 2  # 32 bytes from a key file, a credential or the caller


class MasterKey:
    """The secret a keyring is unlocked with.  Use as a context manager to wipe it after."""

    __slots__ = ("_kdf_params", "_key", "_passphrase", "_wiped", "kind", "source")

    def __init__(
        self,
        kind: MasterKind,
        source: str,
        *,
        passphrase: bytearray | None = None,
        key: SecretKey | None = None,
        kdf_params: KdfParams | None = None,
    ) -> None:
        """Prefer the ``from_*`` constructors; this one takes ownership of the secret given."""
        assert (passphrase is None) != (key is None)
        assert (kind == MasterKind.PASSPHRASE) == (passphrase is not None)
        self.kind = kind
        self.source = source  # for messages: "passphrase", "key file /path", ...
        self._passphrase = passphrase
        self._key = key
        self._kdf_params = kdf_params
        self._wiped = False

    @classmethod
    def from_passphrase(
        cls, passphrase: str | bytes | bytearray, *, kdf_params: KdfParams | None = None
    ) -> MasterKey:
        """From a passphrase (text is NFC-normalised), copied: the caller wipes its own
        bytearray (a str cannot be wiped at all).

        ``kdf_params`` apply when creating a keyring or changing its master
        (default: ``default_kdf_params()``).
        """
        params = default_kdf_params() if kdf_params is None else kdf_params
        problem = params.check()
        if problem is not None:
            raise ValueError(f"KDF parameters out of range: {problem}")
        return cls(
            MasterKind.PASSPHRASE,
            "passphrase",
            passphrase=passphrase_bytes(passphrase),
            kdf_params=params,
        )

    @classmethod
    def from_passphrase_file(cls, path: Path, *, kdf_params: KdfParams | None = None) -> MasterKey:
        """From a passphrase file (mode 0600, ours); one trailing newline is not part of it."""
        raw = read_secret_file(path, what="passphrase file")
        try:
            end = len(raw)
            if raw.endswith(b"\r\n"):
                end -= 2
            elif raw.endswith(b"\n"):
                end -= 1
            master = cls.from_passphrase(raw[:end], kdf_params=kdf_params)
        finally:
            raw[:] = bytes(len(raw))
        master.source = f"passphrase file {path}"
        return master

    @classmethod
    def from_key_file(cls, path: Path) -> MasterKey:
        """From a key file: mode 0600 or stricter, owned by us, holding a 32-byte key."""
        return cls(MasterKind.KEY, f"key file {path}", key=read_key_file(path))

    @classmethod
    def from_credential(cls, name: str, environ: Mapping[str, str] | None = None) -> MasterKey:
        """From the systemd credential ``name`` ($CREDENTIALS_DIRECTORY/name)."""
        return cls(MasterKind.KEY, f"credential {name}", key=read_credential(name, environ))

    @classmethod
    def from_bytes(cls, key: bytes | bytearray) -> MasterKey:
        """From 32 key bytes (copied: the caller wipes its own bytearray)."""
        if len(key) != KEY_BYTES:
            raise ValueError(f"a master key is {KEY_BYTES} bytes, got {len(key)}")
        return cls(MasterKind.KEY, "key", key=SecretKey(bytearray(key)))

    @property
    def kdf_params(self) -> KdfParams | None:
        """The parameters for a new keyring file (None for a key: no KDF)."""
        return self._kdf_params

    def derive(self, salt: bytes | None, params: KdfParams | None) -> SecretKey:
        """The master key: the KDF of the passphrase, or a copy of the key.  Wipe it after."""
        if self._wiped:
            raise LockedError("this master key was wiped")
        if self._passphrase is not None:
            assert salt is not None and params is not None
            return derive_master_key(self._passphrase, salt, params)
        assert self._key is not None
        return self._key.copy()

    def wipe(self) -> None:
        """Overwrite the secret; using this MasterKey afterwards raises LockedError."""
        if self._passphrase is not None:
            self._passphrase[:] = bytes(len(self._passphrase))
        if self._key is not None:
            self._key.wipe()
        self._wiped = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.wipe()

    def __repr__(self) -> str:
        return f"MasterKey({self.kind.name.lower()}, from {self.source})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("master keys cannot be pickled")
