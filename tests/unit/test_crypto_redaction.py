"""No secret or plaintext in any repr, message or pickle: the audit itself, and each error kind."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest

from memoryd.crypto import (
    CryptoError,
    ForgottenError,
    KeyFileError,
    Keyring,
    LimitError,
    LockedError,
    MasterKey,
    RotationError,
    TamperedError,
    WrongKeyError,
    frame_key_id,
)
from memoryd.crypto.envelope import EnvelopeKey, KeyKind
from memoryd.crypto.keyfile import read_key_file
from memoryd.crypto.keys import SecretKey, generate_key
from tests.unit.crypto_support import (
    CANARY,
    PASSPHRASE,
    WRONG_PASSPHRASE,
    Audit,
    aad_for,
    crypto_audit,
    key_secrets,
    passphrase_master,
)

__all__ = ["crypto_audit"]
pytestmark = pytest.mark.usefixtures("crypto_audit")


def test_the_audit_catches_a_planted_leak(crypto_audit: Audit) -> None:
    audit = Audit()
    key = bytes(range(32))
    audit.add(key)
    for leaky in (
        TamperedError("frame", "auth_failed", detail=CANARY),
        CryptoError(f"key {key.hex()}"),
        CryptoError(repr(key)),
        ValueError("wrapped").with_traceback(None),
    ):
        if isinstance(leaky, ValueError):
            try:
                raise leaky from CryptoError(PASSPHRASE)  # a leak in the chained cause
            except ValueError as exc:
                leaky = exc
        with pytest.raises(AssertionError):
            audit.check(leaky)
    # The running test's own audit recorded the planted leaks too: they were the point.
    assert len(crypto_audit.errors) == 4
    crypto_audit.errors.clear()


def test_the_audit_records_errors_raised_inside_the_package(crypto_audit: Audit) -> None:
    before = len(crypto_audit.errors)
    with pytest.raises(TamperedError):
        EnvelopeKey(KeyKind.DATA, 1, generate_key())  # builds fine
        from memoryd.crypto.envelope import read_header

        read_header(b"short")
    assert len(crypto_audit.errors) == before + 1


def test_every_error_kind_keeps_secrets_out(tmp_path: Path, crypto_audit: Audit) -> None:
    """Provoke each error with secrets at hand; the audit scans them all at teardown."""
    vault = Keyring.create(tmp_path / "keys", passphrase_master())
    blob = vault.seal_frame(CANARY.encode(), aad_for(1))
    crypto_audit.add_keys(vault)
    keyring = vault.keyring
    provocations: list[tuple[type[CryptoError], Callable[[], object]]] = [
        (TamperedError, lambda: vault.open_frame(blob, aad_for(2))),
        (TamperedError, lambda: vault.open_frame(blob[:-1] + b"\x00", aad_for(1))),
        (LimitError, lambda: vault.seal_frame(CANARY.encode() * 200_000, aad_for(1))),
        (LimitError, lambda: vault.blind_term(CANARY * 40)),
        (RotationError, vault.finish_rotation),
        (LimitError, lambda: vault.rotate_step(keys_max=0)),
    ]
    for expected, call in provocations:
        with pytest.raises(expected):
            call()
    keyring.forget([frame_key_id(blob)])
    with pytest.raises(ForgottenError):
        vault.open_frame(blob, aad_for(1))
    vault.lock()
    with pytest.raises(LockedError):
        vault.seal_frame(CANARY.encode(), aad_for(1))
    with pytest.raises(WrongKeyError):
        keyring.unlock(passphrase_master(WRONG_PASSPHRASE))
    keyring.close()
    secret_file = tmp_path / "key"
    secret_file.write_bytes(CANARY.encode())
    secret_file.chmod(0o600)
    with pytest.raises(KeyFileError):
        read_key_file(secret_file)
    secret_file.chmod(0o644)
    with pytest.raises(KeyFileError):
        read_key_file(secret_file)
    assert {type(e) for e in crypto_audit.errors} >= {
        TamperedError,
        LimitError,
        RotationError,
        ForgottenError,
        LockedError,
        WrongKeyError,
        KeyFileError,
    }


def test_secret_holders_refuse_to_be_pickled_or_copied(tmp_path: Path) -> None:
    vault = Keyring.create(tmp_path / "keys", passphrase_master())
    holders: list[object] = [
        generate_key(),
        passphrase_master(),
        MasterKey.from_bytes(bytes(32)),
        EnvelopeKey(KeyKind.VAULT, 1, generate_key()),
        vault,
        vault._blinder,
    ]
    for holder in holders:
        with pytest.raises(TypeError):
            pickle.dumps(holder)
        with pytest.raises(TypeError):
            copy.copy(holder)
    vault.keyring.close()


def test_reprs_show_kinds_and_ids_only(tmp_path: Path) -> None:
    vault = Keyring.create(tmp_path / "keys", passphrase_master())
    vault.seal_frame(CANARY.encode(), aad_for(3))
    secrets = key_secrets(vault)
    texts = {
        "secret": repr(generate_key()),
        "master": repr(passphrase_master()),
        "vault": repr(vault),
        "held": repr(vault._vaults[1]),
        "blinder": repr(vault._blinder),
    }
    assert texts["secret"] == "SecretKey(<redacted>)"
    assert texts["master"] == "MasterKey(passphrase, from passphrase)"
    assert texts["held"] == "HeldKey(kind=<KeyKind.VAULT: 2>, key_id=1)"
    for text in texts.values():
        for secret in secrets:
            assert secret.hex() not in text and repr(secret)[2:-1] not in text
        assert PASSPHRASE not in text and CANARY not in text
    vault.keyring.close()


def test_a_wiped_key_cannot_be_used() -> None:
    key = generate_key()
    key.wipe()
    assert key._buffer == bytearray(32) and repr(key) == "SecretKey(<wiped>)"
    with pytest.raises(LockedError):
        _ = key.buffer
    master = passphrase_master()
    master.wipe()
    with pytest.raises(LockedError):
        master.derive(bytes(16), None)
    assert isinstance(SecretKey(bytearray(32)), SecretKey)
