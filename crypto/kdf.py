"""A master key from a passphrase, through a memory-hard KDF (FORMAT.md section 5).

Argon2id where the installed ``cryptography`` offers it, scrypt otherwise.  The
parameters and the salt are stored in the keyring file, so they can be raised
later without breaking older files, and are checked against named limits
before use: a damaged or hostile file cannot make the KDF allocate without
bound.  Tests pass ``TEST_ARGON2ID`` or ``TEST_SCRYPT`` explicitly; nothing here
reads the environment.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from enum import IntEnum
from typing import cast

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from memoryd.crypto.errors import LimitError
from memoryd.crypto.keys import KEY_BYTES, SecretKey
from memoryd.crypto.nonces import SALT_BYTES

KIB = 1024
KDF_MEMORY_BYTES_MAX = 4 * 1024**3  # a stored parameter never makes us allocate more
ARGON2ID_ITERATIONS_MAX = 64
ARGON2ID_LANES_MAX = 16
SCRYPT_LOG2_N_MAX = 32
SCRYPT_R_MAX = 32
SCRYPT_P_MAX = 16
PASSPHRASE_BYTES_MIN = 1
PASSPHRASE_BYTES_MAX = 4096


class KdfAlgorithm(IntEnum):
    ARGON2ID = 1
    SCRYPT = 2


@dataclass(frozen=True, slots=True)
class Argon2idParams:
    """Argon2id (RFC 9106): memory in KiB, passes over it, parallel lanes."""

    memory_kib: int
    iterations: int
    lanes: int

    algorithm = KdfAlgorithm.ARGON2ID

    def check(self) -> str | None:
        """None if the parameters are within limits, else what is wrong."""
        if not 1 <= self.lanes <= ARGON2ID_LANES_MAX:
            return f"lanes {self.lanes} not in 1..{ARGON2ID_LANES_MAX}"
        if not 1 <= self.iterations <= ARGON2ID_ITERATIONS_MAX:
            return f"iterations {self.iterations} not in 1..{ARGON2ID_ITERATIONS_MAX}"
        if not 8 * self.lanes <= self.memory_kib <= KDF_MEMORY_BYTES_MAX // KIB:
            return f"memory {self.memory_kib} KiB not in {8 * self.lanes}..4 GiB"
        return None

    def numbers(self) -> tuple[int, int, int]:
        """The three stored u32s."""
        return self.memory_kib, self.iterations, self.lanes


@dataclass(frozen=True, slots=True)
class ScryptParams:
    """scrypt (RFC 7914): cost N = 2**log2_n, block size r, parallelism p."""

    log2_n: int
    r: int
    p: int

    algorithm = KdfAlgorithm.SCRYPT

    def check(self) -> str | None:
        """None if the parameters are within limits, else what is wrong."""
        if not 1 <= self.log2_n <= SCRYPT_LOG2_N_MAX:
            return f"log2 N {self.log2_n} not in 1..{SCRYPT_LOG2_N_MAX}"
        if not (1 <= self.r <= SCRYPT_R_MAX and 1 <= self.p <= SCRYPT_P_MAX):
            return f"r {self.r} or p {self.p} out of range"
        if 128 * self.r * (1 << self.log2_n) > KDF_MEMORY_BYTES_MAX:
            return "memory (128 r N) above 4 GiB"
        return None

    def numbers(self) -> tuple[int, int, int]:
        """The three stored u32s."""
        return self.log2_n, self.r, self.p


KdfParams = Argon2idParams | ScryptParams

ARGON2ID_DEFAULT = Argon2idParams(memory_kib=64 * 1024, iterations=3, lanes=1)
SCRYPT_DEFAULT = ScryptParams(log2_n=16, r=8, p=1)  # 64 MiB, like the Argon2id default
# Fast and weak: for tests only, which must ask for them by name.
TEST_ARGON2ID = Argon2idParams(memory_kib=8, iterations=1, lanes=1)
TEST_SCRYPT = ScryptParams(log2_n=4, r=1, p=1)
assert ARGON2ID_DEFAULT.check() is None and SCRYPT_DEFAULT.check() is None
assert TEST_ARGON2ID.check() is None and TEST_SCRYPT.check() is None


@functools.cache
def argon2id_available() -> bool:
    """Whether the installed ``cryptography`` (and its OpenSSL) offers Argon2id."""
    try:
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
    except ImportError:
        return False
    try:
        Argon2id(salt=bytes(SALT_BYTES), length=KEY_BYTES, iterations=1, lanes=1, memory_cost=8)
    except UnsupportedAlgorithm:
        return False
    return True


def default_kdf_params() -> KdfParams:
    """Argon2id's defaults where it is available, else scrypt's."""
    return ARGON2ID_DEFAULT if argon2id_available() else SCRYPT_DEFAULT


def params_from_numbers(algorithm: int, numbers: tuple[int, int, int]) -> KdfParams | None:
    """Parameters as stored in a keyring file; None if the algorithm is unknown."""
    if algorithm == KdfAlgorithm.ARGON2ID:
        return Argon2idParams(*numbers)
    if algorithm == KdfAlgorithm.SCRYPT:
        return ScryptParams(*numbers)
    return None


def passphrase_bytes(passphrase: str | bytes | bytearray) -> bytearray:
    """The bytes a passphrase is derived from: text is NFC-normalised UTF-8.

    NFC, so that the same passphrase typed on systems that compose accents
    differently gives the same key.  Limits are checked here.
    """
    if isinstance(passphrase, str):
        raw = bytearray(unicodedata.normalize("NFC", passphrase).encode("utf-8"))
    else:
        raw = bytearray(passphrase)
    if len(raw) < PASSPHRASE_BYTES_MIN:
        raise LimitError("passphrase_bytes_min", len(raw), PASSPHRASE_BYTES_MIN)
    if len(raw) > PASSPHRASE_BYTES_MAX:
        size = len(raw)
        raw[:] = bytes(size)
        raise LimitError("passphrase_bytes_max", size, PASSPHRASE_BYTES_MAX)
    return raw


def derive_master_key(passphrase: bytearray, salt: bytes, params: KdfParams) -> SecretKey:
    """The 32-byte master key for ``passphrase`` under ``salt`` and ``params`` (checked)."""
    problem = params.check()
    assert problem is None, problem  # callers check stored parameters first
    assert len(salt) == SALT_BYTES
    out = bytearray(KEY_BYTES)
    if isinstance(params, Argon2idParams):
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        kdf = Argon2id(
            salt=salt,
            length=KEY_BYTES,
            iterations=params.iterations,
            lanes=params.lanes,
            memory_cost=params.memory_kib,
        )
        # The binding takes any buffer (its stub says bytes): no immutable copy of the passphrase.
        kdf.derive_into(cast(bytes, passphrase), out)
    else:
        Scrypt(salt, KEY_BYTES, 1 << params.log2_n, params.r, params.p).derive_into(passphrase, out)
    return SecretKey(out)
