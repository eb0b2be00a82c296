"""Secret keys in memory: a wipeable container, generation, and derivation.

A ``SecretKey`` keeps its 32 bytes in a ``bytearray`` so that ``wipe`` can
overwrite them, and refuses to be printed or pickled (equality is identity: keys are
never compared by value).
This is best effort, and only that: Python cannot promise that no other copy
exists.  The operating system's random bytes arrive as an immutable ``bytes``
object before they are copied here; the ``cryptography`` package keeps its own
copy of a key inside each cipher object (freed, and cleansed by OpenSSL, when
the object is); the garbage collector and swap may leave traces.  Wiping
shortens how long keys sit in memory; it does not make a memory dump safe.
"""

from __future__ import annotations

import os
from typing import NoReturn

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from memoryd.crypto.errors import LockedError

KEY_BYTES = 32  # AES-256, HMAC-SHA-256 and HKDF-SHA-256 keys alike
GENERATE_KEYS_MAX = 4096  # one batch of keys (the data key pool is far smaller)


class SecretKey:
    """32 secret bytes that can be wiped.  ``buffer`` raises LockedError once wiped."""

    __slots__ = ("_buffer", "_wiped")

    def __init__(self, buffer: bytearray) -> None:
        """Take ownership of ``buffer`` (the caller must not keep or reuse it)."""
        assert isinstance(buffer, bytearray) and len(buffer) == KEY_BYTES
        self._buffer = buffer
        self._wiped = False

    @property
    def buffer(self) -> bytearray:
        """The key's bytes, for handing to a cipher or a KDF; never store or convert them."""
        if self._wiped:
            raise LockedError("this key was wiped (the keyring was locked)")
        return self._buffer

    @property
    def wiped(self) -> bool:
        return self._wiped

    def wipe(self) -> None:
        """Overwrite the key with zeros; any later use raises LockedError."""
        self._buffer[:] = bytes(KEY_BYTES)
        self._wiped = True

    def copy(self) -> SecretKey:
        """An independent copy, to be wiped on its own."""
        return SecretKey(bytearray(self.buffer))

    def __repr__(self) -> str:
        return "SecretKey(<wiped>)" if self._wiped else "SecretKey(<redacted>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("secret keys cannot be pickled or copied with copy.copy")


def generate_keys(count: int) -> list[SecretKey]:
    """``count`` fresh random keys: the package's only source of secret randomness."""
    assert 1 <= count <= GENERATE_KEYS_MAX
    pool = bytearray(os.urandom(KEY_BYTES * count))
    keys = [SecretKey(pool[i * KEY_BYTES : (i + 1) * KEY_BYTES]) for i in range(count)]
    pool[:] = bytes(len(pool))
    return keys


def generate_key() -> SecretKey:
    """One fresh random key."""
    return generate_keys(1)[0]


def derive_key(key: SecretKey, *, salt: bytes, label: bytes) -> SecretKey:
    """A subkey of ``key`` for one purpose: HKDF-SHA-256 with ``salt`` and ``label`` as info.

    Every purpose has its own label, so no two uses ever share a key.
    """
    out = bytearray(KEY_BYTES)
    HKDF(hashes.SHA256(), KEY_BYTES, salt, label).derive_into(key.buffer, out)
    return SecretKey(out)
