"""The keyring file's bytes: encode, decode and verify (FORMAT.md section 5).

Pure: no I/O and no key derivation.  ``decode_keyring_file`` checks the SHA-256
(accidental damage) and every field's structure and limits, and raises
``TamperedError`` for a file it cannot trust; the HMAC, which needs the master
key, is checked by the caller with ``mac_matches``.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from memoryd.crypto.errors import KeyringError, TamperedError
from memoryd.crypto.kdf import KdfParams, params_from_numbers
from memoryd.crypto.keys import SecretKey
from memoryd.crypto.keywrap import WRAPPED_KEY_BYTES
from memoryd.crypto.master import MasterKind
from memoryd.crypto.nonces import KEYRING_ID_BYTES, SALT_BYTES

MAGIC = b"MDK\x01"
FORMAT_VERSION = 1
VAULT_KEYS_MAX = 2  # the current one, and during a rotation the one being rotated away
VAULT_KEY_ID_MAX = 2**32 - 1
MAC_BYTES = 32
DIGEST_BYTES = 32
KDF_NONE = 0

# magic, version, master kind, flags, keyring id, KDF algorithm, salt, three KDF
# numbers, current vault key id, rotating-from id, vault key count
_FIXED = struct.Struct("<4sBBH16sB16sIIIIIB")
_VAULT = struct.Struct(f"<I{WRAPPED_KEY_BYTES}s")
FIXED_BYTES = _FIXED.size
VAULT_ENTRY_BYTES = _VAULT.size
TRAILER_BYTES = MAC_BYTES + DIGEST_BYTES
KEYRING_FILE_BYTES_MIN = FIXED_BYTES + VAULT_ENTRY_BYTES + TRAILER_BYTES
KEYRING_FILE_BYTES_MAX = FIXED_BYTES + VAULT_KEYS_MAX * VAULT_ENTRY_BYTES + TRAILER_BYTES
assert FIXED_BYTES == 62 and VAULT_ENTRY_BYTES == 79
assert (KEYRING_FILE_BYTES_MIN, KEYRING_FILE_BYTES_MAX) == (205, 284)
assert SALT_BYTES == 16 and KEYRING_ID_BYTES == 16  # as _FIXED spells them


@dataclass(frozen=True, slots=True)
class KeyringFile:
    """What a keyring file says.  Nothing here is secret: the vault keys are wrapped."""

    keyring_id: bytes
    master_kind: MasterKind
    kdf_salt: bytes | None  # None exactly when master_kind is KEY
    kdf_params: KdfParams | None
    current_vault_key_id: int
    rotating_from: int | None  # the vault key id a rotation is moving away from
    wrapped_vault_keys: tuple[tuple[int, bytes], ...] = field(repr=False)  # ascending ids

    def vault_key_ids(self) -> tuple[int, ...]:
        return tuple(key_id for key_id, _ in self.wrapped_vault_keys)

    def problem(self) -> str | None:
        """None if the fields are consistent and within limits, else what is wrong."""
        if len(self.keyring_id) != KEYRING_ID_BYTES:
            return "keyring id length"
        if (self.master_kind == MasterKind.PASSPHRASE) != (self.kdf_params is not None):
            return "master kind and KDF disagree"
        if (self.kdf_salt is None) != (self.kdf_params is None):
            return "KDF salt and parameters disagree"
        if self.kdf_salt is not None and len(self.kdf_salt) != SALT_BYTES:
            return "KDF salt length"
        if self.kdf_params is not None and (kdf := self.kdf_params.check()) is not None:
            return f"KDF parameters: {kdf}"
        return self._vault_problem()

    def _vault_problem(self) -> str | None:
        ids = self.vault_key_ids()
        if not 1 <= len(ids) <= VAULT_KEYS_MAX:
            return f"{len(ids)} vault keys"
        if list(ids) != sorted(set(ids)) or not all(1 <= i <= VAULT_KEY_ID_MAX for i in ids):
            return "vault key ids not ascending, unique and >= 1"
        if any(len(wrapped) != WRAPPED_KEY_BYTES for _, wrapped in self.wrapped_vault_keys):
            return "wrapped vault key length"
        if self.current_vault_key_id != ids[-1]:
            return "the current vault key is not the newest"
        expected = (ids[0],) if len(ids) == 2 else ()  # rotating away from the older one
        if (() if self.rotating_from is None else (self.rotating_from,)) != expected:
            return "rotation record and vault keys disagree"
        return None

    def body(self) -> bytes:
        """The bytes the HMAC covers: everything before it."""
        assert self.problem() is None, self.problem()
        numbers = (0, 0, 0) if self.kdf_params is None else self.kdf_params.numbers()
        algorithm = KDF_NONE if self.kdf_params is None else int(self.kdf_params.algorithm)
        fixed = _FIXED.pack(
            MAGIC,
            FORMAT_VERSION,
            self.master_kind,
            0,
            self.keyring_id,
            algorithm,
            self.kdf_salt or bytes(SALT_BYTES),
            *numbers,
            self.current_vault_key_id,
            self.rotating_from or 0,
            len(self.wrapped_vault_keys),
        )
        return fixed + b"".join(_VAULT.pack(i, w) for i, w in self.wrapped_vault_keys)


def encode_keyring_file(keyring: KeyringFile, mac_key: SecretKey) -> bytes:
    """The file's bytes: body, HMAC under ``mac_key``, SHA-256 of both."""
    body = keyring.body()
    signed = body + _mac(mac_key, body).finalize()
    return signed + hashlib.sha256(signed).digest()


def mac_matches(keyring_bytes: bytes, mac_key: SecretKey) -> bool:
    """Whether the file's HMAC verifies under ``mac_key`` (constant time)."""
    body_end = len(keyring_bytes) - TRAILER_BYTES
    try:
        _mac(mac_key, keyring_bytes[:body_end]).verify(
            keyring_bytes[body_end : body_end + MAC_BYTES]
        )
    except InvalidSignature:
        return False
    return True


def decode_keyring_file(data: bytes) -> KeyringFile:
    """What ``data`` says; TamperedError if damaged or inconsistent (the HMAC is not checked)."""
    what = "keyring file"
    if len(data) < KEYRING_FILE_BYTES_MIN:
        raise TamperedError(what, "truncated", detail=f"{len(data)} bytes")
    if len(data) > KEYRING_FILE_BYTES_MAX:
        raise TamperedError(what, "too_long", detail=f"{len(data)} bytes")
    if hashlib.sha256(data[:-DIGEST_BYTES]).digest() != data[-DIGEST_BYTES:]:
        raise TamperedError(what, "bad_digest", detail="the file is damaged")
    fields = _FIXED.unpack_from(data)
    magic, version, kind, flags, keyring_id, algorithm, salt = fields[:7]
    numbers, (current, rotating_from, count) = fields[7:10], fields[10:]
    if magic != MAGIC:
        raise TamperedError(what, "bad_magic")
    if version != FORMAT_VERSION:
        raise KeyringError(f"keyring file version {version} is not supported (newer memoryd?)")
    if len(data) != FIXED_BYTES + count * VAULT_ENTRY_BYTES + TRAILER_BYTES:
        raise TamperedError(what, "bad_length", detail=f"{count} vault keys, {len(data)} bytes")
    if flags != 0 or kind not in (MasterKind.PASSPHRASE, MasterKind.KEY):
        raise TamperedError(what, "bad_field", detail="flags or master kind")
    params = params_from_numbers(algorithm, numbers)
    if params is None and (algorithm != KDF_NONE or any(numbers) or any(salt)):
        raise TamperedError(what, "bad_field", detail="KDF algorithm")
    vaults = tuple(
        _VAULT.unpack_from(data, FIXED_BYTES + i * VAULT_ENTRY_BYTES) for i in range(count)
    )
    keyring = KeyringFile(
        keyring_id=keyring_id,
        master_kind=MasterKind(kind),
        kdf_salt=None if params is None else salt,
        kdf_params=params,
        current_vault_key_id=current,
        rotating_from=rotating_from or None,
        wrapped_vault_keys=vaults,
    )
    problem = keyring.problem()
    if problem is not None:
        raise TamperedError(what, "bad_field", detail=problem)
    return keyring


def _mac(mac_key: SecretKey, body: bytes) -> hmac.HMAC:
    mac = hmac.HMAC(mac_key.buffer, hashes.SHA256())
    mac.update(body)
    return mac
