"""Shared helpers for the crypto tests: canaries, keyrings, and the exception audit.

The ``crypto_audit`` fixture records every ``CryptoError`` constructed while a
test runs (raised to the test or caught inside the package) and, at teardown,
scans ``str``, ``repr`` and ``args`` of each, and of its cause and context, for
the canary plaintext, the passphrases and every key the test registered, in
raw, hex and base64 form.  ``raises`` does the same for any exception a test
expects, crypto's or not.  Test modules opt in with
``pytestmark = pytest.mark.usefixtures("crypto_audit")`` after importing it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from memoryd.crypto import (
    TEST_ARGON2ID,
    Aad,
    MasterKey,
    UnlockedKeyring,
    frame_aad,
)
from memoryd.crypto.errors import CryptoError

CANARY = "zanzibar quokka xylophonist: a private note nobody else may read"
CANARY_WORDS = ["zanzibar", "quokka", "xylophonist"]
PASSPHRASE = "correct horse battery staple"
OTHER_PASSPHRASE = "tr0ub4dor&3 is not a passphrase"
WRONG_PASSPHRASE = "incorrect horse battery staple"
ALWAYS_SECRET = (CANARY, PASSPHRASE, OTHER_PASSPHRASE, WRONG_PASSPHRASE, *CANARY_WORDS)


def passphrase_master(passphrase: str = PASSPHRASE) -> MasterKey:
    """A passphrase master with the fast test KDF parameters."""
    return MasterKey.from_passphrase(passphrase, kdf_params=TEST_ARGON2ID)


def aad_for(i: int, namespace: str = "default") -> Aad:
    """The AAD of test frame ``i``."""
    return frame_aad(f"{i:032x}", namespace, 1000 + i)


def plaintext_for(i: int) -> bytes:
    return f"{CANARY} #{i}".encode()


def key_secrets(vault: UnlockedKeyring) -> list[bytes]:
    """Copies of every key an unlocked keyring holds (read through its internals)."""
    found = [bytes(held.secret.buffer) for held in vault._vaults.values()]
    assert vault._mac_key is not None and vault._wrap is not None
    found += [bytes(vault._mac_key.buffer), bytes(vault._wrap.secret.buffer)]
    found += [bytes(key.buffer) for _, key in vault._pool]
    return found


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file's bytes under ``directory``, by relative path."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _forms(secret: bytes | str) -> list[str]:
    if not secret:
        return []
    if isinstance(secret, str):
        return [secret]
    forms = [secret.hex(), base64.b64encode(secret).decode(), repr(secret)[2:-1]]
    if len(secret) >= 8:
        forms.append(secret.hex()[:16])  # even part of a key must not show
    return forms


def exception_texts(exc: BaseException) -> Iterator[str]:
    """Everything printable about ``exc`` and the exceptions chained to it."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield repr(current.args)
        yield repr(vars(current)) if hasattr(current, "__dict__") else ""
        todo += [current.__cause__, current.__context__]


@dataclass
class Audit:
    """Secrets that must not appear in any exception, and the crypto errors seen."""

    secrets: list[bytes | str] = field(
        default_factory=lambda: [
            CANARY,
            PASSPHRASE,
            OTHER_PASSPHRASE,
            WRONG_PASSPHRASE,
            *CANARY_WORDS,
        ]
    )
    errors: list[BaseException] = field(default_factory=list)

    def add(self, *secrets: bytes | str) -> None:
        self.secrets.extend(secrets)

    def add_keys(self, vault: UnlockedKeyring) -> None:
        self.secrets.extend(key_secrets(vault))

    def check(self, exc: BaseException) -> None:
        for text in exception_texts(exc):
            for secret in self.secrets:
                for form in _forms(secret):
                    assert form not in text, f"a secret appears in {type(exc).__name__}: {text!r}"


_current: list[Audit] = []


@pytest.fixture
def crypto_audit(monkeypatch: pytest.MonkeyPatch) -> Iterator[Audit]:
    audit = Audit()
    original = CryptoError.__init__

    def recording_init(self: CryptoError, *args: Any) -> None:
        original(self, *args)
        audit.errors.append(self)

    monkeypatch.setattr(CryptoError, "__init__", recording_init)
    _current.append(audit)
    try:
        yield audit
    finally:
        _current.pop()
    for exc in audit.errors:
        audit.check(exc)


def current_audit() -> Audit:
    """The running test's audit (``raises`` reports to it); a fresh one outside the fixture."""
    return _current[-1] if _current else Audit()


@contextmanager
def raises(
    expected: type[BaseException] | tuple[type[BaseException], ...], *secrets: bytes | str
) -> Iterator[pytest.ExceptionInfo[BaseException]]:
    """``pytest.raises``, then the exception (and its chain) is checked for secrets."""
    with pytest.raises(expected) as info:
        yield info
    audit = current_audit()
    audit.add(*secrets)
    audit.check(info.value)
