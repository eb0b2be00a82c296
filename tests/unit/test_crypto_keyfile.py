"""Key files, passphrase files and systemd credentials: formats and the safety checks."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from memoryd.crypto import KeyFileError, Keyring, MasterKey, MasterKind
from memoryd.crypto.keyfile import (
    CREDENTIALS_DIRECTORY_ENV,
    SECRET_FILE_BYTES_MAX,
    read_credential,
    read_key_file,
)
from tests.unit.crypto_support import (
    PASSPHRASE,
    Audit,
    crypto_audit,
    passphrase_master,
    raises,
)

__all__ = ["crypto_audit"]
pytestmark = pytest.mark.usefixtures("crypto_audit")

KEY = bytes(range(200, 232))  # ends in a byte that is not whitespace
NEWLINE_KEY = bytes(range(31)) + b"\n"  # a raw key whose last byte is a newline
OTHER_UID = 54321
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@pytest.fixture(autouse=True)
def _register(crypto_audit: Audit) -> None:
    crypto_audit.add(KEY, NEWLINE_KEY)


def write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    "content",
    [
        KEY,
        KEY.hex().encode(),
        KEY.hex().upper().encode() + b"\n",
        b"  " + KEY.hex().encode() + b"\r\n",
        base64.b64encode(KEY),
        base64.b64encode(KEY) + b"\n",
    ],
    ids=["raw", "hex", "HEX-newline", "hex-spaces-crlf", "base64", "base64-newline"],
)
def test_key_file_formats(tmp_path: Path, content: bytes) -> None:
    key = read_key_file(write(tmp_path / "key", content))
    assert bytes(key.buffer) == KEY


def test_a_raw_key_is_never_trimmed(tmp_path: Path) -> None:
    key = read_key_file(write(tmp_path / "key", NEWLINE_KEY))
    assert bytes(key.buffer) == NEWLINE_KEY


@pytest.mark.parametrize(
    "content",
    [b"", b"short", KEY + b"\n", KEY[:31], b"z" * 64, b"!" * 44, base64.b64encode(KEY[:30])],
    ids=["empty", "short", "raw-newline", "31", "not-hex", "not-base64", "base64-30"],
)
def test_malformed_key_files_are_refused_without_showing_content(
    tmp_path: Path, content: bytes
) -> None:
    path = write(tmp_path / "key", content)
    with raises(KeyFileError, content.decode("latin-1") if len(content) > 5 else b"") as info:
        read_key_file(path)
    assert str(path) in str(info.value)
    assert "expected 32 raw bytes, 64 hex digits or 44 base64 characters" in str(info.value)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606, 0o620])
def test_key_files_open_to_others_are_refused(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path / "key", KEY, mode)
    with raises(KeyFileError) as info:
        read_key_file(path)
    assert f"mode {mode:04o}" in str(info.value) and f"chmod 600 {path}" in str(info.value)


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_owner_only_modes_are_accepted(tmp_path: Path, mode: int) -> None:
    assert bytes(read_key_file(write(tmp_path / "key", KEY, mode)).buffer) == KEY


@root_only
def test_a_key_file_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "key", KEY)
    os.chown(path, OTHER_UID, OTHER_UID)
    with raises(KeyFileError) as info:
        read_key_file(path)
    assert f"owned by uid {OTHER_UID}" in str(info.value)


def test_missing_directory_fifo_and_oversized_files_are_refused(tmp_path: Path) -> None:
    with raises(KeyFileError) as info:
        read_key_file(tmp_path / "absent")
    assert "does not exist" in str(info.value)
    (tmp_path / "dir").mkdir(mode=0o700)
    with raises(KeyFileError):
        read_key_file(tmp_path / "dir")
    os.mkfifo(tmp_path / "fifo", 0o600)
    with raises(KeyFileError) as info:  # refused at once, without blocking on the FIFO
        read_key_file(tmp_path / "fifo")
    assert "not a regular file" in str(info.value)
    big = write(tmp_path / "big", b"a" * (SECRET_FILE_BYTES_MAX + 1))
    with raises(KeyFileError):
        read_key_file(big)


def test_a_symlink_is_followed_and_its_target_checked(tmp_path: Path) -> None:
    target = write(tmp_path / "key", KEY, 0o644)
    (tmp_path / "link").symlink_to(target)
    with raises(KeyFileError):
        read_key_file(tmp_path / "link")
    target.chmod(0o600)
    assert bytes(read_key_file(tmp_path / "link").buffer) == KEY


# -- systemd credentials ---------------------------------------------------------------


def credentials(tmp_path: Path, content: bytes, mode: int = 0o444) -> dict[str, str]:
    directory = tmp_path / "credentials"
    directory.mkdir()
    write(directory / "master.key", content, mode)
    return {CREDENTIALS_DIRECTORY_ENV: str(directory)}


def test_a_credential_is_read_whatever_its_mode(tmp_path: Path) -> None:
    env = credentials(tmp_path, KEY.hex().encode(), 0o444)  # systemd's business, not ours
    assert bytes(read_credential("master.key", env).buffer) == KEY
    master = MasterKey.from_credential("master.key", env)
    assert master.kind == MasterKind.KEY and "credential master.key" in repr(master)


def test_credentials_need_the_directory_and_a_plain_name(tmp_path: Path) -> None:
    env = credentials(tmp_path, KEY)
    with raises(KeyFileError) as info:
        read_credential("master.key", {})
    assert CREDENTIALS_DIRECTORY_ENV in str(info.value)
    for name in ("", ".", "..", "../master.key", "a/b"):
        with raises(KeyFileError):
            read_credential(name, env)
    with raises(KeyFileError) as info:
        read_credential("absent", env)
    assert "does not exist" in str(info.value)


@root_only
def test_a_credential_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    env = credentials(tmp_path, KEY)
    os.chown(Path(env[CREDENTIALS_DIRECTORY_ENV]) / "master.key", OTHER_UID, OTHER_UID)
    with raises(KeyFileError) as info:
        read_credential("master.key", env)
    assert "owned by uid" in str(info.value)


# -- passphrase files and keyrings unlocked from files -----------------------------------


def test_passphrase_file_drops_one_trailing_newline(tmp_path: Path) -> None:
    Keyring.create(tmp_path / "keys", passphrase_master()).lock()
    keyring = Keyring.open(tmp_path / "keys")
    for ending in (b"\n", b"\r\n", b""):
        path = write(tmp_path / "pass", PASSPHRASE.encode() + ending)
        with MasterKey.from_passphrase_file(path) as master:
            keyring.unlock(master).lock()
    with raises(KeyFileError):
        MasterKey.from_passphrase_file(write(tmp_path / "open", PASSPHRASE.encode(), 0o644))
    keyring.close()


def test_a_keyring_made_with_a_key_file_unlocks_with_it(tmp_path: Path) -> None:
    path = write(tmp_path / "master.key", KEY.hex().encode() + b"\n")
    with MasterKey.from_key_file(path) as master:
        Keyring.create(tmp_path / "keys", master).lock()
    keyring = Keyring.open(tmp_path / "keys")
    assert keyring.info().master_kind == "key" and keyring.info().kdf_params is None
    env = credentials(tmp_path, KEY)
    keyring.unlock(MasterKey.from_credential("master.key", env)).lock()
    keyring.close()
