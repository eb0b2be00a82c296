"""Passphrase KDF: Argon2id (or scrypt), stored parameters, named limits, explicit test profile."""

from __future__ import annotations

import unicodedata

import pytest

from memoryd.crypto import (
    ARGON2ID_DEFAULT,
    SCRYPT_DEFAULT,
    TEST_ARGON2ID,
    TEST_SCRYPT,
    Argon2idParams,
    LimitError,
    MasterKey,
    ScryptParams,
    argon2id_available,
    default_kdf_params,
)
from memoryd.crypto.kdf import (
    KDF_MEMORY_BYTES_MAX,
    PASSPHRASE_BYTES_MAX,
    derive_master_key,
    params_from_numbers,
    passphrase_bytes,
)
from tests.unit.crypto_support import PASSPHRASE, crypto_audit, raises

__all__ = ["crypto_audit"]
pytestmark = pytest.mark.usefixtures("crypto_audit")

SALT = bytes(range(16))


def derive(passphrase: str, salt: bytes = SALT, params: object = TEST_ARGON2ID) -> bytes:
    assert isinstance(params, Argon2idParams | ScryptParams)
    return bytes(derive_master_key(passphrase_bytes(passphrase), salt, params).buffer)


def test_argon2id_is_offered_by_the_installed_cryptography() -> None:
    # The brief's v48 has it; the scrypt fallback is tested below all the same.
    assert argon2id_available()
    assert default_kdf_params() == ARGON2ID_DEFAULT
    assert (ARGON2ID_DEFAULT.memory_kib, ARGON2ID_DEFAULT.iterations, ARGON2ID_DEFAULT.lanes) == (
        65536,
        3,
        1,
    )
    assert (SCRYPT_DEFAULT.log2_n, SCRYPT_DEFAULT.r, SCRYPT_DEFAULT.p) == (16, 8, 1)


@pytest.mark.parametrize("params", [TEST_ARGON2ID, TEST_SCRYPT])
def test_a_passphrase_derives_one_key_per_salt_and_params(params: object) -> None:
    key = derive(PASSPHRASE, params=params)
    assert len(key) == 32
    assert derive(PASSPHRASE, params=params) == key
    assert derive(PASSPHRASE + "!", params=params) != key
    assert derive(PASSPHRASE, salt=bytes(16), params=params) != key


def test_params_change_the_key() -> None:
    stronger = Argon2idParams(memory_kib=16, iterations=2, lanes=1)
    assert derive(PASSPHRASE) != derive(PASSPHRASE, params=stronger)
    assert derive(PASSPHRASE) != derive(PASSPHRASE, params=TEST_SCRYPT)


def test_text_passphrases_are_nfc_normalised() -> None:
    composed = "caf\u00e9 au lait"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    assert derive(composed) == derive(decomposed)
    assert passphrase_bytes(composed) == bytearray(composed.encode())


def test_default_argon2id_parameters_derive() -> None:
    # The real cost (about a third of a second here): the defaults must be valid.
    key = derive_master_key(passphrase_bytes(PASSPHRASE), SALT, ARGON2ID_DEFAULT)
    assert len(key.buffer) == 32


@pytest.mark.parametrize(
    "params",
    [
        Argon2idParams(memory_kib=7, iterations=1, lanes=1),
        Argon2idParams(memory_kib=8, iterations=1, lanes=2),  # below 8 KiB per lane
        Argon2idParams(memory_kib=KDF_MEMORY_BYTES_MAX // 1024 + 1, iterations=1, lanes=1),
        Argon2idParams(memory_kib=64, iterations=0, lanes=1),
        Argon2idParams(memory_kib=64, iterations=65, lanes=1),
        Argon2idParams(memory_kib=1024, iterations=1, lanes=17),
        ScryptParams(log2_n=0, r=8, p=1),
        ScryptParams(log2_n=23, r=8, p=1),  # 8 GiB
        ScryptParams(log2_n=10, r=0, p=1),
        ScryptParams(log2_n=10, r=8, p=17),
    ],
)
def test_parameters_out_of_limits_are_refused(params: Argon2idParams | ScryptParams) -> None:
    assert params.check() is not None
    with raises(ValueError):
        MasterKey.from_passphrase(PASSPHRASE, kdf_params=params)


def test_stored_numbers_map_back_to_parameters() -> None:
    for params in (TEST_ARGON2ID, TEST_SCRYPT, ARGON2ID_DEFAULT, SCRYPT_DEFAULT):
        assert params_from_numbers(params.algorithm, params.numbers()) == params
    assert params_from_numbers(0, (0, 0, 0)) is None
    assert params_from_numbers(3, (1, 1, 1)) is None


def test_passphrase_length_limits() -> None:
    with raises(LimitError) as info:
        passphrase_bytes("")
    assert isinstance(info.value, LimitError) and info.value.limit == "passphrase_bytes_min"
    passphrase_bytes("x" * PASSPHRASE_BYTES_MAX)
    with raises(LimitError) as info:
        passphrase_bytes("x" * (PASSPHRASE_BYTES_MAX + 1))
    assert isinstance(info.value, LimitError) and info.value.limit == "passphrase_bytes_max"


def test_a_master_key_uses_default_params_unless_told() -> None:
    assert MasterKey.from_passphrase(PASSPHRASE).kdf_params == default_kdf_params()
    fast = MasterKey.from_passphrase(PASSPHRASE, kdf_params=TEST_SCRYPT)
    assert fast.kdf_params == TEST_SCRYPT
