"""Blinded index terms: keyed tokens for searching private frames (FORMAT.md section 8).

``blind(term)`` is the first 16 bytes of HMAC-SHA-256 under the index key, a
key derived from the current vault key.  The builder indexes private frames
under these tokens and looks queries up the same way, so keyword search works
with no plaintext term on disk.  What the tokens still reveal (equality and
frequency of terms) is written in FORMAT.md.
"""

from __future__ import annotations

from typing import NoReturn

from cryptography.hazmat.primitives import hashes, hmac

from memoryd.crypto.errors import LimitError, LockedError
from memoryd.crypto.keys import SecretKey, derive_key

BLIND_TERM_BYTES = 16  # 128 bits: accidental collisions are negligible
TERM_BYTES_MAX = 1024  # far beyond any token a tokenizer keeps
INDEX_KEY_LABEL = b"memoryd/v1/index"


class TermBlinder:
    """Blinds terms under the index key of one vault key (``index_key_id``)."""

    __slots__ = ("_mac", "index_key_id")

    def __init__(self, vault_key: SecretKey, keyring_id: bytes, vault_key_id: int) -> None:
        index_key = derive_key(vault_key, salt=keyring_id, label=INDEX_KEY_LABEL)
        try:
            # Keyed once; each term starts from a copy of this context (cheaper than re-keying).
            self._mac: hmac.HMAC | None = hmac.HMAC(index_key.buffer, hashes.SHA256())
        finally:
            index_key.wipe()
        self.index_key_id = vault_key_id

    def blind(self, term: str) -> bytes:
        """The 16-byte token of ``term`` (UTF-8; not normalised here: the tokenizer's job)."""
        raw = term.encode("utf-8", "surrogatepass")
        if len(raw) > TERM_BYTES_MAX:
            raise LimitError("term_bytes_max", len(raw), TERM_BYTES_MAX)
        if self._mac is None:
            raise LockedError("the keyring is locked: terms cannot be blinded")
        mac = self._mac.copy()
        mac.update(raw)
        return mac.finalize()[:BLIND_TERM_BYTES]

    def wipe(self) -> None:
        """Drop the keyed context (and with it the index key)."""
        self._mac = None

    def __repr__(self) -> str:
        return f"TermBlinder(index key id {self.index_key_id})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("term blinders cannot be pickled")
