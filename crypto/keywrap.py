"""Wrapped keys: a 32-byte key sealed in an envelope under another key (FORMAT.md 4).

A wrapped key is an ordinary envelope, so it has the same header, the same
tamper checks and the same AAD binding; unwrapping writes the key straight into
a fresh ``SecretKey`` buffer, never into immutable bytes.
"""

from __future__ import annotations

from memoryd.crypto.aad import DATA_KEY_PURPOSE, VAULT_KEY_PURPOSE, Aad, key_aad
from memoryd.crypto.envelope import (
    OVERHEAD_BYTES,
    EnvelopeKey,
    open_envelope_into,
    seal_envelope,
)
from memoryd.crypto.keys import KEY_BYTES, SecretKey

WRAPPED_KEY_BYTES = OVERHEAD_BYTES + KEY_BYTES
assert WRAPPED_KEY_BYTES == 75


def wrap_key(wrapping: EnvelopeKey, key: SecretKey, aad: Aad) -> bytes:
    """``key`` sealed under ``wrapping``, bound to ``aad``: always WRAPPED_KEY_BYTES long."""
    wrapped = seal_envelope(wrapping, key.buffer, aad)
    assert len(wrapped) == WRAPPED_KEY_BYTES
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
