"""Wrapped keys: a 32-byte key sealed in an envelope under another key (FORMAT.md 4).

A wrapped key is an ordinary envelope, so it has the same header, the same
tamper checks and the same AAD binding; unwrapping writes the key straight into
a fresh ``SecretKey`` buffer, never into immutable bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from memoryd.crypto.aad import (
    DATA_KEY_PURPOSE,
    VAULT_KEY_PURPOSE,
    Aad,
    key_aad,
    key_aad_frame,
)
from memoryd.crypto.envelope import (
    OVERHEAD_BYTES,
    EnvelopeKey,
    open_envelope_into,
    seal_envelope,
    seal_envelopes,
)
from memoryd.crypto.keys import KEY_BYTES, SecretKey

WRAPPED_KEY_BYTES = OVERHEAD_BYTES + KEY_BYTES
_U64 = struct.Struct("<Q")
assert WRAPPED_KEY_BYTES == 75


def wrap_key(wrapping: EnvelopeKey, key: SecretKey, aad: Aad) -> bytes:
    """``key`` sealed under ``wrapping``, bound to ``aad``: always WRAPPED_KEY_BYTES long."""
    wrapped = seal_envelope(wrapping, key.buffer, aad)
    assert len(wrapped) == WRAPPED_KEY_BYTES
    return wrapped


def wrap_data_keys(
    wrapping: EnvelopeKey, keyring_id: bytes, keys: Sequence[tuple[int, SecretKey]]
) -> list[bytes]:
    """Each ``(data key id, key)`` wrapped under ``wrapping`` as ``wrap_key`` would with
    ``data_key_aad``, in one pass: the AAD of each is encoded by filling its id into the
    fixed bytes around it (a pool of thousands is made at a time)."""
    before, after = data_key_aad_frame(keyring_id)
    pack = _U64.pack
    aads = [before + pack(key_id) + after for key_id, _ in keys]
    wrapped = seal_envelopes(wrapping, [key.buffer for _, key in keys], aads)
    assert all(len(blob) == WRAPPED_KEY_BYTES for blob in wrapped)
    return wrapped


def unwrap_key(wrapping: EnvelopeKey, wrapped: bytes, aad: Aad) -> SecretKey:
    """The key sealed in ``wrapped``; TamperedError if it does not open under ``aad``."""
    out = bytearray(KEY_BYTES)
    open_envelope_into(wrapping, wrapped, aad, out)
    return SecretKey(out)


def vault_key_aad(keyring_id: bytes, vault_key_id: int) -> Aad:
    """What a wrapped vault key is bound to: its keyring and its id."""
    return key_aad(VAULT_KEY_PURPOSE, keyring_id, "vault_key_id", vault_key_id)


def data_key_aad(keyring_id: bytes, data_key_id: int) -> Aad:
    """What a wrapped data key is bound to: its keyring and its id."""
    return key_aad(DATA_KEY_PURPOSE, keyring_id, "data_key_id", data_key_id)


def data_key_aad_frame(keyring_id: bytes) -> tuple[bytes, bytes]:
    """The encoding of ``data_key_aad`` before and after its 8-byte little-endian id."""
    return key_aad_frame(DATA_KEY_PURPOSE, keyring_id, "data_key_id")
