"""Keys an unlocked keyring holds, and how they are made from the master key.

A ``HeldKey`` pairs a wipeable ``SecretKey`` with the ``EnvelopeKey`` (cipher)
made from it: the secret is needed to wrap the key again or derive from it,
the cipher to seal and open.  ``wipe`` zeroes the one and drops the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memoryd.crypto.aad import Aad
from memoryd.crypto.envelope import EnvelopeKey, KeyKind
from memoryd.crypto.kdf import KdfParams
from memoryd.crypto.keys import SecretKey, derive_key
from memoryd.crypto.keywrap import unwrap_key, vault_key_aad, wrap_key
from memoryd.crypto.master import MasterKey

MAC_KEY_LABEL = b"memoryd/v1/keyring-mac"
WRAP_KEY_LABEL = b"memoryd/v1/vault-wrap"
MASTER_KEY_ID = 0  # the vault wrapping key has no versions: it changes with the master


@dataclass(slots=True)
class HeldKey:
    """A key in memory with its cipher.  Neither appears in the repr."""

    kind: KeyKind
    key_id: int
    secret: SecretKey = field(repr=False)
    _envelope: EnvelopeKey | None = field(repr=False)

    @classmethod
    def make(cls, kind: KeyKind, key_id: int, secret: SecretKey) -> HeldKey:
        """Take ownership of ``secret``."""
        return cls(kind, key_id, secret, EnvelopeKey(kind, key_id, secret))

    @classmethod
    def unwrap(
        cls, kind: KeyKind, key_id: int, wrapping: HeldKey, wrapped: bytes, aad: Aad
    ) -> HeldKey:
        """The key sealed in ``wrapped`` under ``wrapping``; TamperedError if it does not open."""
        return cls.make(kind, key_id, unwrap_key(wrapping.envelope, wrapped, aad))

    @property
    def envelope(self) -> EnvelopeKey:
        if self._envelope is None:
            self.secret.buffer  # noqa: B018 -- raises LockedError: the key was wiped
        assert self._envelope is not None
        return self._envelope

    def wipe(self) -> None:
        self.secret.wipe()
        self._envelope = None


def master_subkeys(
    master: MasterKey, keyring_id: bytes, salt: bytes | None, params: KdfParams | None
) -> tuple[SecretKey, HeldKey]:
    """The keyring MAC key and the vault wrapping key, derived from ``master``.

    Two labels, two keys: the MAC key never encrypts and the wrapping key never
    authenticates the file.  The master key itself is wiped at once.
    """
    master_key = master.derive(salt, params)
    try:
        mac_key = derive_key(master_key, salt=keyring_id, label=MAC_KEY_LABEL)
        wrap_secret = derive_key(master_key, salt=keyring_id, label=WRAP_KEY_LABEL)
    finally:
        master_key.wipe()
    return mac_key, HeldKey.make(KeyKind.MASTER, MASTER_KEY_ID, wrap_secret)


def wrap_vault_key(wrap: HeldKey, vault: HeldKey, keyring_id: bytes) -> bytes:
    """``vault`` wrapped under the vault wrapping key, bound to its keyring and id."""
    return wrap_key(wrap.envelope, vault.secret, vault_key_aad(keyring_id, vault.key_id))
