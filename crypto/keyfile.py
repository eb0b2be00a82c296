"""Reading secrets from files: key files, passphrase files, systemd credentials.

A secret file must be a regular file owned by us; a key or passphrase file
must also be closed to group and others (mode 0600 or stricter), as ssh
insists for private keys.  A systemd credential's mode is systemd's business
(it makes them readable by the unit's user only), and it may be owned by root
(root can read everything anyway).  Every check is made on the opened file
descriptor, so the file cannot be swapped between check and read; a FIFO or
device is refused without blocking.  Errors name the path and the problem,
never the content.
"""

from __future__ import annotations

import binascii
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from memoryd.crypto.errors import KeyFileError
from memoryd.crypto.keys import KEY_BYTES, SecretKey

SECRET_FILE_BYTES_MAX = 8192  # a key is 32 bytes and a passphrase at most 4 KiB
CREDENTIALS_DIRECTORY_ENV = "CREDENTIALS_DIRECTORY"
_HEX_CHARS = 2 * KEY_BYTES
_BASE64_CHARS = 4 * ((KEY_BYTES + 2) // 3)
_WHITESPACE = b" \t\r\n"


def read_secret_file(path: Path, *, what: str = "key file", credential: bool = False) -> bytearray:
    """The bytes of a secret file after the ownership (and, unless a credential, mode) checks.

    ``what`` names the file in errors ("key file", "passphrase file").
    """
    if credential:
        what = "credential"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise KeyFileError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot open {what} {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        _check_file(path, info, what, credential=credential)
        return _read_all(fd, path, what)
    finally:
        os.close(fd)


def read_key_file(path: Path) -> SecretKey:
    """A 32-byte key from a key file: 32 raw bytes, 64 hex digits or 44 base64 characters."""
    return parse_key_material(read_secret_file(path), f"key file {path}")


def credential_path(name: str, environ: Mapping[str, str] | None = None) -> Path:
    """Where systemd put the credential ``name`` ($CREDENTIALS_DIRECTORY/name)."""
    env = os.environ if environ is None else environ
    directory = env.get(CREDENTIALS_DIRECTORY_ENV)
    if not directory:
        raise KeyFileError(
            f"credential {name!r} asked for, but ${CREDENTIALS_DIRECTORY_ENV} is not set "
            "(not started by systemd with LoadCredential=)"
        )
    if not name or "/" in name or name in (".", ".."):
        raise KeyFileError(f"{name!r} is not a credential name")
    return Path(directory) / name


def read_credential(name: str, environ: Mapping[str, str] | None = None) -> SecretKey:
    """A 32-byte key from the systemd credential ``name`` (formats as for key files)."""
    path = credential_path(name, environ)
    return parse_key_material(read_secret_file(path, credential=True), f"credential {path}")


def parse_key_material(raw: bytearray, source: str) -> SecretKey:
    """A key from a file's bytes; ``raw`` is wiped.  Exactly 32 bytes are taken as raw.

    Otherwise, after trimming whitespace: 64 hex digits or base64 of 32 bytes.
    A raw key is never trimmed (its last byte may well be a newline).
    """
    try:
        if len(raw) == KEY_BYTES:
            return SecretKey(bytearray(raw))
        text = raw.strip(_WHITESPACE)
        try:
            key = _decode_text(text)
        finally:
            text[:] = bytes(len(text))
        if key is None:
            raise KeyFileError(
                f"{source} holds {len(raw)} bytes: expected {KEY_BYTES} raw bytes, "
                f"{_HEX_CHARS} hex digits or {_BASE64_CHARS} base64 characters"
            )
        return key
    finally:
        raw[:] = bytes(len(raw))


def _decode_text(text: bytearray) -> SecretKey | None:
    if len(text) == _HEX_CHARS:
        return _decode_hex(text)
    if len(text) == _BASE64_CHARS:
        try:
            decoded = bytearray(binascii.a2b_base64(text, strict_mode=True))
        except binascii.Error:
            return None
        if len(decoded) == KEY_BYTES:
            return SecretKey(decoded)
        decoded[:] = bytes(len(decoded))
    return None


def _decode_hex(text: bytearray) -> SecretKey | None:
    # By hand, byte by byte, so that the key never exists as an immutable object.
    out = bytearray(KEY_BYTES)
    for i in range(KEY_BYTES):
        high, low = _nibble(text[2 * i]), _nibble(text[2 * i + 1])
        if high < 0 or low < 0:
            out[:] = bytes(KEY_BYTES)
            return None
        out[i] = high << 4 | low
    return SecretKey(out)


def _nibble(char: int) -> int:
    if 0x30 <= char <= 0x39:
        return char - 0x30
    if 0x61 <= char <= 0x66 or 0x41 <= char <= 0x46:
        return (char | 0x20) - 0x61 + 10
    return -1


def _check_file(path: Path, info: os.stat_result, what: str, *, credential: bool) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"{what} {path} is not a regular file")
    owners = (os.geteuid(), 0) if credential else (os.geteuid(),)
    if info.st_uid not in owners:
        raise KeyFileError(
            f"{what} {path} is owned by uid {info.st_uid}, not by this user (uid {os.geteuid()})"
        )
    mode = stat.S_IMODE(info.st_mode)
    if not credential and mode & 0o077:
        raise KeyFileError(
            f"{what} {path} is open to group or others (mode {mode:04o}); chmod 600 {path}"
        )
    if info.st_size > SECRET_FILE_BYTES_MAX:
        raise KeyFileError(
            f"{what} {path} holds {info.st_size} bytes, more than {SECRET_FILE_BYTES_MAX}"
        )


def _read_all(fd: int, path: Path, what: str) -> bytearray:
    buffer = bytearray(SECRET_FILE_BYTES_MAX + 1)
    view = memoryview(buffer)
    got = 0
    while got < len(buffer):
        n = os.readv(fd, [view[got:]])
        if n == 0:
            break
        got += n
    view.release()
    if got > SECRET_FILE_BYTES_MAX:  # it grew after fstat
        buffer[:] = bytes(len(buffer))
        raise KeyFileError(f"{what} {path} is larger than {SECRET_FILE_BYTES_MAX}")
    secret = buffer[:got]
    buffer[:] = bytes(len(buffer))
    return secret
