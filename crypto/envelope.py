"""The sealed envelope: AES-256-GCM with a header naming the key (FORMAT.md section 4).

``seal_envelope`` (with its batch forms ``seal_envelopes`` and
``seal_under_data_keys``) and ``open_envelope`` are the only code that
encrypts or decrypts in memoryd.  The header (magic, version, algorithm, key
kind, key id) is authenticated together with the caller's AAD, so neither can
be changed without ``open_envelope`` raising ``TamperedError``; that error
carries the key id and a reason, never any content.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from memoryd.crypto.aad import Aad
from memoryd.crypto.errors import LimitError, TamperedError
from memoryd.crypto.keys import SecretKey
from memoryd.crypto.nonces import NONCE_BYTES, new_nonce, new_nonces

MAGIC = b"MDE\x01"
FORMAT_VERSION = 1
TAG_BYTES = 16
KEY_ID_MAX = 2**64 - 1
PLAINTEXT_BYTES_MAX = 4 * 1024 * 1024  # 16x content_bytes_max: room for any frame, bounded

_HEADER = struct.Struct("<4sBBBQ")  # magic, version, algorithm, key kind, key id
HEADER_BYTES = _HEADER.size
OVERHEAD_BYTES = HEADER_BYTES + NONCE_BYTES + TAG_BYTES
ENVELOPE_BYTES_MAX = OVERHEAD_BYTES + PLAINTEXT_BYTES_MAX

# A sealed frame travels inside a log record's payload (perhaps as base64 in
# JSON); storage's record payload limit is 16 MiB.  Repeated here, not imported:
# crypto never imports storage.
_RECORD_PAYLOAD_BYTES_MAX = 16 * 1024 * 1024
assert HEADER_BYTES == 15 and OVERHEAD_BYTES == 43
assert (ENVELOPE_BYTES_MAX + 2) // 3 * 4 < _RECORD_PAYLOAD_BYTES_MAX


class Algorithm(IntEnum):
    AES_256_GCM = 1


class KeyKind(IntEnum):
    """What kind of key an envelope is sealed under (its key id's namespace)."""

    MASTER = 1  # the vault wrapping key derived from the master key; key id 0
    VAULT = 2  # a vault key; key id = vault key id
    DATA = 3  # a data key; key id = data key id


# Lookups by the stored byte (calling the enum is several times slower, on every open).
_ALGORITHMS = {int(a): a for a in Algorithm}
_KEY_KINDS = {int(k): k for k in KeyKind}


@dataclass(frozen=True, slots=True)
class EnvelopeHeader:
    """The public part of an envelope: which key opens it."""

    version: int
    algorithm: Algorithm
    key_kind: KeyKind
    key_id: int


class EnvelopeKey:
    """A key ready to seal and open envelopes: its kind, its id and its cipher.

    The cipher keeps its own copy of the key (see keys.py): drop the
    EnvelopeKey to drop that copy.  The repr shows the kind and id only.
    """

    __slots__ = ("_aead", "key_id", "kind")

    def __init__(self, kind: KeyKind, key_id: int, key: SecretKey) -> None:
        assert 0 <= key_id <= KEY_ID_MAX
        self.kind = kind
        self.key_id = key_id
        self._aead = AESGCM(key.buffer)

    def __repr__(self) -> str:
        return f"EnvelopeKey({self.kind.name}, id {self.key_id})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("envelope keys cannot be pickled")


def read_header(blob: bytes, *, what: str = "envelope") -> EnvelopeHeader:
    """Parse and check an envelope's header (not its tag); TamperedError if malformed."""
    if len(blob) < OVERHEAD_BYTES:
        raise TamperedError(what, "truncated", detail=f"{len(blob)} bytes")
    if len(blob) > ENVELOPE_BYTES_MAX:
        raise TamperedError(what, "too_long", detail=f"{len(blob)} bytes")
    magic, version, algorithm, kind, key_id = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise TamperedError(what, "bad_magic")
    if version != FORMAT_VERSION:
        raise TamperedError(what, "bad_version", detail=f"version {version}")
    if algorithm not in _ALGORITHMS:
        raise TamperedError(what, "bad_algorithm", key_id=key_id)
    if kind not in _KEY_KINDS:
        raise TamperedError(what, "bad_key_kind", key_id=key_id)
    return EnvelopeHeader(version, _ALGORITHMS[algorithm], _KEY_KINDS[kind], key_id)


def seal_envelope(key: EnvelopeKey, plaintext: bytes | bytearray, aad: Aad) -> bytes:
    """Encrypt ``plaintext`` under ``key`` with a fresh nonce, bound to ``aad``."""
    if len(plaintext) > PLAINTEXT_BYTES_MAX:
        raise LimitError("plaintext_bytes_max", len(plaintext), PLAINTEXT_BYTES_MAX)
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, Algorithm.AES_256_GCM, key.kind, key.key_id)
    nonce = new_nonce()
    sealed = key._aead.encrypt(nonce, plaintext, header + aad.encode())
    return header + nonce + sealed


def seal_envelopes(
    key: EnvelopeKey, plaintexts: Sequence[bytes | bytearray], aads: Sequence[bytes]
) -> list[bytes]:
    """``seal_envelope`` of each plaintext under ``key``, bound to its AAD, in one pass
    (a pool of wrapped data keys).

    ``aads`` are encoded AADs (``Aad.encode()``, or a fast path a test holds equal
    to it): a batch skips making an ``Aad`` each.  Each envelope gets its own fresh
    nonce; the output is what ``seal_envelope`` would give, byte for byte, for those
    nonces.
    """
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, Algorithm.AES_256_GCM, key.kind, key.key_id)
    return _seal_each(itertools.repeat((header, key._aead), len(plaintexts)), plaintexts, aads)


def seal_under_data_keys(
    keys: Sequence[tuple[int, SecretKey]],
    plaintexts: Sequence[bytes | bytearray],
    aads: Sequence[bytes],
) -> list[bytes]:
    """``seal_envelopes`` with each plaintext under its own data key ``(id, key)``,
    without an ``EnvelopeKey`` each (a batch of private frames, one key a frame)."""
    if len(keys) != len(plaintexts):
        raise ValueError("seal_under_data_keys needs one key per plaintext")
    assert all(0 <= key_id <= KEY_ID_MAX for key_id, _ in keys)
    pack = _HEADER.pack
    version, algorithm, kind = FORMAT_VERSION, int(Algorithm.AES_256_GCM), int(KeyKind.DATA)
    ciphers = (
        (pack(MAGIC, version, algorithm, kind, key_id), AESGCM(key.buffer)) for key_id, key in keys
    )
    return _seal_each(ciphers, plaintexts, aads)


def _seal_each(
    ciphers: Iterable[tuple[bytes, AESGCM]],
    plaintexts: Sequence[bytes | bytearray],
    aads: Sequence[bytes],
) -> list[bytes]:
    """Each plaintext sealed by its (header, cipher), bound to header + its AAD, each
    with a fresh nonce (``ciphers`` yields one per plaintext)."""
    if len(plaintexts) != len(aads):
        raise ValueError("sealing a batch needs one AAD per plaintext")
    if any(len(plaintext) > PLAINTEXT_BYTES_MAX for plaintext in plaintexts):
        raise LimitError("plaintext_bytes_max", max(map(len, plaintexts)), PLAINTEXT_BYTES_MAX)
    return [
        header + nonce + aead.encrypt(nonce, plaintext, header + aad)
        for (header, aead), nonce, plaintext, aad in zip(
            ciphers, new_nonces(len(plaintexts)), plaintexts, aads, strict=True
        )
    ]


def open_envelope(key: EnvelopeKey, blob: bytes, aad: Aad) -> bytes:
    """The plaintext sealed in ``blob``; TamperedError unless key, header and AAD all match."""
    what = _what(aad)
    nonce, body, associated = _checked_parts(key, blob, aad, what)
    try:
        return key._aead.decrypt(nonce, body, associated)
    except InvalidTag:
        raise TamperedError(what, "auth_failed", key_id=key.key_id) from None


def open_envelope_into(key: EnvelopeKey, blob: bytes, aad: Aad, out: bytearray) -> None:
    """Like ``open_envelope``, writing the plaintext into ``out`` (sized exactly for it).

    For secrets (wrapped keys): the plaintext never exists as immutable bytes.
    """
    what = _what(aad)
    nonce, body, associated = _checked_parts(key, blob, aad, what)
    if len(out) != len(body) - TAG_BYTES:
        raise TamperedError(what, "bad_length", key_id=key.key_id, detail=f"{len(blob)} bytes")
    try:
        key._aead.decrypt_into(nonce, body, associated, out)
    except InvalidTag:
        out[:] = bytes(len(out))  # decrypt_into may have written unverified bytes
        raise TamperedError(what, "auth_failed", key_id=key.key_id) from None


def _checked_parts(
    key: EnvelopeKey, blob: bytes, aad: Aad, what: str
) -> tuple[bytes, bytes, bytes]:
    header = read_header(blob, what=what)
    if header.key_kind != key.kind or header.key_id != key.key_id:
        raise TamperedError(
            what,
            "wrong_key",
            key_id=key.key_id,
            detail=f"sealed under {header.key_kind.name.lower()} key {header.key_id}",
        )
    nonce = blob[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
    body = blob[HEADER_BYTES + NONCE_BYTES :]
    return nonce, body, blob[:HEADER_BYTES] + aad.encode()


def _what(aad: Aad) -> str:
    # "memoryd.data-key" -> "data key": errors name the object, taken from its AAD.
    return aad.purpose.rpartition(".")[2].replace("-", " ")
