"""The one place memoryd.crypto draws public random values: nonces, salts, keyring ids.

Nonces must never repeat under one key; drawing them in one place, from the
operating system's CSPRNG, makes that reviewable at a glance.  Secret random
values (keys) come from ``keys.generate_keys``, the package's only other random
source; a test reads the package's source and fails if ``urandom`` (or any other
random source) appears anywhere else.
"""

from __future__ import annotations

import os

NONCE_BYTES = 12  # AES-GCM's native nonce size: used as is, with no GHASH pre-processing
SALT_BYTES = 16  # RFC 9106 recommends 16 bytes of salt for Argon2
KEYRING_ID_BYTES = 16


def new_nonce() -> bytes:
    """A fresh random 12-byte AES-GCM nonce."""
    return os.urandom(NONCE_BYTES)


def new_nonces(count: int) -> list[bytes]:
    """``count`` fresh random 12-byte nonces from one read of the CSPRNG (a batch of seals)."""
    pool = os.urandom(NONCE_BYTES * count)
    return [pool[i : i + NONCE_BYTES] for i in range(0, len(pool), NONCE_BYTES)]


def new_salt() -> bytes:
    """A fresh random KDF salt."""
    return os.urandom(SALT_BYTES)


def new_keyring_id() -> bytes:
    """A fresh random keyring id (public: it salts and binds, it does not hide)."""
    return os.urandom(KEYRING_ID_BYTES)
