"""memoryd.crypto: private memories' keys and sealed envelopes.

The byte formats are specified in FORMAT.md.  In short::

    master key  (passphrase -> Argon2id/scrypt, key file, or systemd credential; never stored)
      wraps vault keys  (versioned, in keys/keyring; rotated by re-wrapping every data key)
        wrap data keys  (one per private frame, in keys/datakeys; destroyed to forget a frame)
          seal frames   (AES-256-GCM envelopes bound to frame id, namespace and seq)

Typical use::

    keyring = Keyring.open(data_dir / KEYS_DIR_NAME)        # locked: no key in memory
    with MasterKey.from_passphrase(passphrase) as master:
        vault = keyring.unlock(master)                      # WrongKeyError changes nothing
    blob = vault.seal_frame(content, frame_aad(frame_id, namespace, seq))
    content = vault.open_frame(blob, frame_aad(frame_id, namespace, seq))
    keyring.forget([frame_key_id(blob)])                    # crypto-shredding, locked or not
    vault.lock()

Synchronous; imports neither asyncio nor any other memoryd package.
"""

from memoryd.crypto.aad import Aad, encode_frame_aad, frame_aad
from memoryd.crypto.blinding import BLIND_TERM_BYTES
from memoryd.crypto.envelope import PLAINTEXT_BYTES_MAX
from memoryd.crypto.errors import (
    CryptoError,
    ForgottenError,
    KeyFileError,
    KeyringError,
    LimitError,
    LockedError,
    RotationError,
    TamperedError,
    WrongKeyError,
)
from memoryd.crypto.kdf import (
    ARGON2ID_DEFAULT,
    SCRYPT_DEFAULT,
    TEST_ARGON2ID,
    TEST_SCRYPT,
    Argon2idParams,
    KdfParams,
    ScryptParams,
    argon2id_available,
    default_kdf_params,
)
from memoryd.crypto.keyring import KEYS_DIR_NAME, Keyring, KeyringInfo, frame_key_id
from memoryd.crypto.keystore import CompactionReport, StoreCounts
from memoryd.crypto.master import MasterKey, MasterKind
from memoryd.crypto.unlocked import (
    DATA_KEY_POOL_KEYS,
    ROTATION_STEP_KEYS_MAX,
    RotationProgress,
    UnlockedKeyring,
)

__all__ = [
    "ARGON2ID_DEFAULT",
    "BLIND_TERM_BYTES",
    "DATA_KEY_POOL_KEYS",
    "KEYS_DIR_NAME",
    "PLAINTEXT_BYTES_MAX",
    "ROTATION_STEP_KEYS_MAX",
    "SCRYPT_DEFAULT",
    "TEST_ARGON2ID",
    "TEST_SCRYPT",
    "Aad",
    "Argon2idParams",
    "CompactionReport",
    "CryptoError",
    "ForgottenError",
    "KdfParams",
    "KeyFileError",
    "Keyring",
    "KeyringError",
    "KeyringInfo",
    "LimitError",
    "LockedError",
    "MasterKey",
    "MasterKind",
    "RotationError",
    "RotationProgress",
    "ScryptParams",
    "StoreCounts",
    "TamperedError",
    "UnlockedKeyring",
    "WrongKeyError",
    "argon2id_available",
    "default_kdf_params",
    "encode_frame_aad",
    "frame_aad",
    "frame_key_id",
]
