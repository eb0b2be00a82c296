"""The keyring: create, unlock, wrong keys, tampering with the keyring file, lock, change_master."""

from __future__ import annotations

import dataclasses
import hashlib
import stat
from pathlib import Path

import pytest

from memoryd.crypto import (
    TEST_SCRYPT,
    KeyringError,
    LockedError,
    MasterKey,
    RotationError,
    TamperedError,
    WrongKeyError,
)
from memoryd.crypto.keyring import Keyring
from memoryd.crypto.keyring_file import decode_keyring_file, encode_keyring_file
from tests.unit.crypto_support import (
    CANARY,
    OTHER_PASSPHRASE,
    WRONG_PASSPHRASE,
    Audit,
    aad_for,
    crypto_audit,
    key_secrets,
    passphrase_master,
    plaintext_for,
    raises,
    snapshot,
)

__all__ = ["crypto_audit"]
pytestmark = pytest.mark.usefixtures("crypto_audit")

RAW_KEY = bytes(range(100, 132))


@pytest.fixture
def keys_dir(tmp_path: Path, crypto_audit: Audit) -> Path:
    """A keyring (passphrase, test KDF) holding three sealed frames, locked and closed."""
    directory = tmp_path / "data" / "keys"
    directory.parent.mkdir()
    with passphrase_master() as master:
        vault = Keyring.create(directory, master)
    crypto_audit.add_keys(vault)
    crypto_audit.add(RAW_KEY)
    blobs = [vault.seal_frame(plaintext_for(i), aad_for(i)) for i in range(3)]
    for i, blob in enumerate(blobs):
        (tmp_path / f"blob{i}").write_bytes(blob)
    vault.keyring.close()
    return directory


def blobs(keys_dir: Path) -> list[bytes]:
    return [(keys_dir.parent.parent / f"blob{i}").read_bytes() for i in range(3)]


def assert_frames_readable(keyring: Keyring, master: MasterKey, keys_dir: Path) -> None:
    vault = keyring.unlock(master)
    for i, blob in enumerate(blobs(keys_dir)):
        assert vault.open_frame(blob, aad_for(i)) == plaintext_for(i)
    keyring._check()
    vault.lock()


def test_create_makes_private_files_and_reports_itself(keys_dir: Path) -> None:
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    for name in ("keyring", "datakeys"):
        assert stat.S_IMODE((keys_dir / name).stat().st_mode) == 0o600
    assert sorted(p.name for p in keys_dir.iterdir()) == ["datakeys", "keyring"]
    keyring = Keyring.open(keys_dir)
    info = keyring.info()
    assert info.master_kind == "passphrase" and info.kdf_params is not None
    assert info.vault_key_ids == (1,) and info.current_vault_key_id == 1
    assert info.rotating_from is None and not info.unlocked
    assert info.data_keys.live == 3  # the unused pool keys were destroyed at lock
    for name in ("keyring", "datakeys"):
        assert CANARY.encode() not in (keys_dir / name).read_bytes()
    assert_frames_readable(keyring, passphrase_master(), keys_dir)
    keyring.close()


def test_create_refuses_to_overwrite(keys_dir: Path) -> None:
    with raises(KeyringError) as info:
        Keyring.create(keys_dir, passphrase_master())
    assert "already exists" in str(info.value)
    (keys_dir / "keyring").unlink()  # a store with keys and no keyring: keep the keys
    with raises(KeyringError) as info:
        Keyring.create(keys_dir, passphrase_master())
    assert "holds data keys" in str(info.value)


def test_create_replaces_an_empty_store_left_by_a_crash(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    Keyring.create(directory, passphrase_master()).keyring.close()
    (directory / "keyring").unlink()
    header_only = (directory / "datakeys").read_bytes()[:96]
    (directory / "datakeys").write_bytes(header_only)
    Keyring.create(directory, passphrase_master()).keyring.close()


def test_a_wrong_passphrase_is_refused_and_changes_nothing(keys_dir: Path) -> None:
    before = snapshot(keys_dir)
    keyring = Keyring.open(keys_dir)
    for master in (passphrase_master(WRONG_PASSPHRASE), MasterKey.from_bytes(RAW_KEY)):
        with raises(WrongKeyError) as info:
            keyring.unlock(master)
        assert "nothing was changed" in str(info.value) or "not a key" in str(info.value)
    assert keyring.unlocked is None
    keyring.close()
    assert snapshot(keys_dir) == before
    assert_frames_readable(Keyring.open(keys_dir), passphrase_master(), keys_dir)


def test_missing_files_are_clear_errors(tmp_path: Path, keys_dir: Path) -> None:
    with raises(KeyringError) as info:
        Keyring.open(tmp_path / "nowhere")
    assert "no keyring" in str(info.value)
    (keys_dir / "datakeys").unlink()
    with raises(KeyringError) as info:
        Keyring.open(keys_dir)
    assert "data key store" in str(info.value) and "missing" in str(info.value)


def test_a_store_from_another_keyring_is_refused(tmp_path: Path, keys_dir: Path) -> None:
    other = tmp_path / "other"
    Keyring.create(other, passphrase_master()).keyring.close()
    (keys_dir / "datakeys").write_bytes((other / "datakeys").read_bytes())
    with raises(TamperedError) as info:
        Keyring.open(keys_dir)
    assert isinstance(info.value, TamperedError) and info.value.reason == "keyring_mismatch"


def flipped(data: bytes, i: int) -> bytes:
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


def redigest(data: bytes) -> bytes:
    """``data`` with its SHA-256 trailer recomputed, as an editor of the file would."""
    return data[:-32] + hashlib.sha256(data[:-32]).digest()


def test_every_byte_of_the_keyring_file_is_checked(keys_dir: Path) -> None:
    original = (keys_dir / "keyring").read_bytes()
    before = snapshot(keys_dir)
    outcomes: dict[str, int] = {}
    for i in range(len(original)):
        variants = [flipped(original, i)]
        if i < len(original) - 32:  # (re-digesting a flipped digest byte restores the file)
            variants.append(redigest(flipped(original, i)))
        for data in variants:
            (keys_dir / "keyring").write_bytes(data)
            try:
                keyring = Keyring.open(keys_dir)
            except (TamperedError, KeyringError) as exc:
                outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
                continue
            with raises((WrongKeyError, TamperedError)) as info:
                keyring.unlock(passphrase_master())
            outcomes[info.type.__name__] = outcomes.get(info.type.__name__, 0) + 1
            keyring.close()
    # Plain flips fail the digest; with the digest fixed up, the HMAC (or a field check) fails.
    assert outcomes["TamperedError"] >= len(original)
    assert outcomes["WrongKeyError"] > 0
    (keys_dir / "keyring").write_bytes(original)
    assert snapshot(keys_dir) == before
    assert_frames_readable(Keyring.open(keys_dir), passphrase_master(), keys_dir)


def test_a_re_signed_keyring_with_a_damaged_vault_key_is_still_caught(keys_dir: Path) -> None:
    # Someone holding the MAC key (not the wrapping key) re-signs an edited file:
    # the vault key's own authentication catches it.
    keyring = Keyring.open(keys_dir)
    vault = keyring.unlock(passphrase_master())
    assert vault._mac_key is not None
    mac_key = vault._mac_key.copy()
    original = (keys_dir / "keyring").read_bytes()
    file = decode_keyring_file(original)
    keyring.close()
    ((_, wrapped),) = file.wrapped_vault_keys
    for i in range(len(wrapped)):
        edited = dataclasses.replace(file, wrapped_vault_keys=((1, flipped(wrapped, i)),))
        (keys_dir / "keyring").write_bytes(encode_keyring_file(edited, mac_key))
        again = Keyring.open(keys_dir)
        with raises(TamperedError) as info:
            again.unlock(passphrase_master())
        assert isinstance(info.value, TamperedError) and info.value.what == "vault key"
        again.close()


def test_a_truncated_or_padded_keyring_file_is_refused(keys_dir: Path) -> None:
    original = (keys_dir / "keyring").read_bytes()
    for data in (b"", original[:100], original[:-1], original + b"\x00", original * 2):
        (keys_dir / "keyring").write_bytes(data)
        with raises(TamperedError):
            Keyring.open(keys_dir)


def test_lock_wipes_keys_and_refuses_further_use(keys_dir: Path) -> None:
    keyring = Keyring.open(keys_dir)
    vault = keyring.unlock(passphrase_master())
    blob = blobs(keys_dir)[0]
    vault.seal_frame(b"x", aad_for(9))  # fills the pool
    held = [h.secret for h in vault._vaults.values()] + [k for _, k in vault._pool]
    assert vault._mac_key is not None and vault._wrap is not None
    held += [vault._mac_key, vault._wrap.secret]
    vault.lock()
    assert all(key.wiped and key._buffer == bytearray(32) for key in held)
    assert vault.locked and keyring.unlocked is None
    for call in (
        lambda: vault.seal_frame(b"x", aad_for(0)),
        lambda: vault.open_frame(blob, aad_for(0)),
        lambda: vault.blind_term("quokka"),
        lambda: vault.index_key_id,
        vault.begin_rotation,
        vault.rotation_progress,
        lambda: vault.change_master(passphrase_master()),
    ):
        with raises(LockedError):
            call()
    vault.lock()  # idempotent
    keyring._check()
    # Locking leaves the keyring usable: unlock again.
    assert_frames_readable(keyring, passphrase_master(), keys_dir)
    keyring.close()


def test_only_one_unlocked_keyring_at_a_time(keys_dir: Path) -> None:
    keyring = Keyring.open(keys_dir)
    keyring.unlock(passphrase_master())
    with raises(KeyringError):
        keyring.unlock(passphrase_master())
    keyring.close()
    assert keyring.unlocked is None


def test_change_master_keeps_every_frame_and_retires_the_old_passphrase(keys_dir: Path) -> None:
    keyring = Keyring.open(keys_dir)
    vault = keyring.unlock(passphrase_master())
    salt_before = decode_keyring_file((keys_dir / "keyring").read_bytes()).kdf_salt
    store_before = (keys_dir / "datakeys").read_bytes()
    vault.change_master(passphrase_master(OTHER_PASSPHRASE))
    for i, blob in enumerate(blobs(keys_dir)):  # still unlocked, still readable
        assert vault.open_frame(blob, aad_for(i)) == plaintext_for(i)
    keyring._check()
    keyring.close()
    assert (keys_dir / "datakeys").read_bytes() == store_before  # no data key touched
    assert decode_keyring_file((keys_dir / "keyring").read_bytes()).kdf_salt != salt_before
    keyring = Keyring.open(keys_dir)
    with raises(WrongKeyError):
        keyring.unlock(passphrase_master())
    assert_frames_readable(keyring, passphrase_master(OTHER_PASSPHRASE), keys_dir)
    keyring.close()


def test_change_master_between_passphrase_key_and_scrypt(keys_dir: Path) -> None:
    keyring = Keyring.open(keys_dir)
    vault = keyring.unlock(passphrase_master())
    vault.change_master(MasterKey.from_bytes(RAW_KEY))
    assert keyring.info().master_kind == "key" and keyring.info().kdf_params is None
    vault.lock()
    with raises(WrongKeyError) as info:
        keyring.unlock(passphrase_master())
    assert "unlocked with a key, not a passphrase" in str(info.value)
    vault = keyring.unlock(MasterKey.from_bytes(RAW_KEY))
    vault.change_master(MasterKey.from_passphrase(OTHER_PASSPHRASE, kdf_params=TEST_SCRYPT))
    assert keyring.info().kdf_params == TEST_SCRYPT
    keyring.close()
    keyring = Keyring.open(keys_dir)
    with raises(WrongKeyError):
        keyring.unlock(MasterKey.from_bytes(RAW_KEY))
    assert_frames_readable(
        keyring, MasterKey.from_passphrase(OTHER_PASSPHRASE, kdf_params=TEST_SCRYPT), keys_dir
    )
    keyring.close()


def test_a_leftover_temp_file_is_ignored_and_replaced(keys_dir: Path) -> None:
    (keys_dir / "keyring.tmp").write_bytes(b"half a keyring")
    (keys_dir / "datakeys.tmp").write_bytes(b"half a store")
    keyring = Keyring.open(keys_dir)
    vault = keyring.unlock(passphrase_master())
    vault.change_master(passphrase_master(OTHER_PASSPHRASE))  # replaces keyring.tmp on its way
    assert not (keys_dir / "keyring.tmp").exists()
    keyring.compact()
    assert not (keys_dir / "datakeys.tmp").exists()
    keyring.close()
    assert_frames_readable(Keyring.open(keys_dir), passphrase_master(OTHER_PASSPHRASE), keys_dir)


def test_read_only_keyrings_report_and_open_but_never_write(keys_dir: Path) -> None:
    before = snapshot(keys_dir)
    keyring = Keyring.open(keys_dir, read_only=True)
    assert keyring.info().data_keys.live == 3
    vault = keyring.unlock(passphrase_master())
    assert vault.open_frame(blobs(keys_dir)[1], aad_for(1)) == plaintext_for(1)
    with raises(KeyringError):
        vault.seal_frame(b"x", aad_for(5))
    with raises(KeyringError):
        vault.begin_rotation()
    with raises(KeyringError):
        keyring.forget([1])
    keyring.close()
    assert snapshot(keys_dir) == before


def test_rotation_calls_in_the_wrong_state_are_refused(keys_dir: Path) -> None:
    keyring = Keyring.open(keys_dir)
    vault = keyring.unlock(passphrase_master())
    assert vault.rotation_progress() is None
    for call in (vault.rotate_step, vault.finish_rotation):
        with raises(RotationError):
            call()
    vault.begin_rotation()
    with raises(RotationError):
        vault.begin_rotation()
    with raises(RotationError) as info:
        vault.finish_rotation()
    assert "still wrapped by vault key 1" in str(info.value)
    keyring.close()


def test_reprs_hold_no_secret(keys_dir: Path, crypto_audit: Audit) -> None:
    keyring = Keyring.open(keys_dir)
    master = passphrase_master()
    vault = keyring.unlock(master)
    vault.seal_frame(CANARY.encode(), aad_for(7))
    secrets = key_secrets(vault)
    texts = [repr(x) for x in (keyring, vault, master, keyring.info(), *vault._vaults.values())]
    texts += [repr(vault._wrap), repr(vault._mac_key), repr(vault._blinder)]
    texts += [repr(key) for _, key in vault._pool]
    for text in texts:
        for secret in [*secrets, CANARY.encode()]:
            assert secret.hex() not in text and repr(secret)[2:-1] not in text
        assert "correct horse" not in text
    keyring.close()
