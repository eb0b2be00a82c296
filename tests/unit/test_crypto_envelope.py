"""The envelope: round trips, AAD binding, and every byte of envelopes and wrapped keys."""

from __future__ import annotations

import pytest

from memoryd.crypto import Aad, LimitError, TamperedError, frame_aad
from memoryd.crypto.envelope import (
    ENVELOPE_BYTES_MAX,
    HEADER_BYTES,
    MAGIC,
    OVERHEAD_BYTES,
    PLAINTEXT_BYTES_MAX,
    EnvelopeKey,
    KeyKind,
    open_envelope,
    open_envelope_into,
    read_header,
    seal_envelope,
)
from memoryd.crypto.keys import KEY_BYTES, generate_key
from memoryd.crypto.keywrap import (
    WRAPPED_KEY_BYTES,
    data_key_aad,
    unwrap_key,
    vault_key_aad,
    wrap_key,
)
from memoryd.crypto.nonces import NONCE_BYTES
from tests.unit.crypto_support import CANARY, Audit, crypto_audit, raises

__all__ = ["crypto_audit"]
pytestmark = pytest.mark.usefixtures("crypto_audit")

AAD = frame_aad("0123456789abcdef0123456789abcdef", "default", 42)


@pytest.fixture
def key(crypto_audit: Audit) -> EnvelopeKey:
    secret = generate_key()
    crypto_audit.add(bytes(secret.buffer))
    return EnvelopeKey(KeyKind.DATA, 7, secret)


def flip(blob: bytes, i: int, mask: int = 0x01) -> bytes:
    return blob[:i] + bytes([blob[i] ^ mask]) + blob[i + 1 :]


def test_round_trip_and_layout(key: EnvelopeKey) -> None:
    plaintext = CANARY.encode()
    blob = seal_envelope(key, plaintext, AAD)
    assert len(blob) == OVERHEAD_BYTES + len(plaintext)
    assert blob[:4] == MAGIC and blob[4] == 1 and blob[5] == 1 and blob[6] == KeyKind.DATA
    assert int.from_bytes(blob[7:15], "little") == 7
    assert plaintext not in blob
    assert open_envelope(key, blob, AAD) == plaintext
    header = read_header(blob)
    assert (header.key_kind, header.key_id) == (KeyKind.DATA, 7)


def test_empty_and_largest_plaintexts(key: EnvelopeKey) -> None:
    assert open_envelope(key, seal_envelope(key, b"", AAD), AAD) == b""
    big = bytes(PLAINTEXT_BYTES_MAX)
    blob = seal_envelope(key, big, AAD)
    assert len(blob) == ENVELOPE_BYTES_MAX
    assert open_envelope(key, blob, AAD) == big
    with raises(LimitError) as info:
        seal_envelope(key, bytes(PLAINTEXT_BYTES_MAX + 1), AAD)
    assert isinstance(info.value, LimitError) and info.value.limit == "plaintext_bytes_max"


def test_every_seal_uses_a_new_nonce(key: EnvelopeKey) -> None:
    blobs = {seal_envelope(key, b"same", AAD) for _ in range(100)}
    nonces = {b[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES] for b in blobs}
    assert len(nonces) == 100


@pytest.mark.parametrize(
    "other",
    [
        frame_aad("0123456789abcdef0123456789abcdef", "default", 43),  # replayed at another seq
        frame_aad("0123456789abcdef0123456789abcdee", "default", 42),  # moved to another frame
        frame_aad("0123456789abcdef0123456789abcdef", "work", 42),  # another namespace
        Aad.of("memoryd.other", id="0123456789abcdef0123456789abcdef", ns="default", seq=42),
    ],
)
def test_a_blob_opens_only_in_its_own_context(key: EnvelopeKey, other: Aad) -> None:
    blob = seal_envelope(key, CANARY.encode(), AAD)
    with raises(TamperedError) as info:
        open_envelope(key, blob, other)
    assert isinstance(info.value, TamperedError)
    assert (info.value.reason, info.value.key_id) == ("auth_failed", 7)


def test_another_key_with_the_same_id_fails(key: EnvelopeKey) -> None:
    blob = seal_envelope(key, CANARY.encode(), AAD)
    impostor = EnvelopeKey(KeyKind.DATA, 7, generate_key())
    with raises(TamperedError):
        open_envelope(impostor, blob, AAD)


def test_a_blob_names_its_key_and_another_is_refused(key: EnvelopeKey) -> None:
    blob = seal_envelope(key, CANARY.encode(), AAD)
    for kind, key_id in [(KeyKind.DATA, 8), (KeyKind.VAULT, 7)]:
        with raises(TamperedError) as info:
            open_envelope(EnvelopeKey(kind, key_id, generate_key()), blob, AAD)
        assert isinstance(info.value, TamperedError) and info.value.reason == "wrong_key"


EXPECTED_REASON = {
    **dict.fromkeys(range(0, 4), "bad_magic"),
    4: "bad_version",
    5: "bad_algorithm",
    6: "bad_key_kind",
    **dict.fromkeys(range(7, 15), "wrong_key"),
}


def test_flipping_any_bit_of_any_byte_is_detected(key: EnvelopeKey) -> None:
    plaintext = CANARY.encode()
    blob = seal_envelope(key, plaintext, AAD)
    for i in range(len(blob)):
        for mask in (0x01, 0x80, 0xFF):
            with raises(TamperedError) as info:
                open_envelope(key, flip(blob, i, mask), AAD)
            error = info.value
            assert isinstance(error, TamperedError)
            expected = EXPECTED_REASON.get(i, "auth_failed")
            if i == 6 and blob[6] ^ mask in (1, 2):  # another valid kind: the wrong key
                expected = "wrong_key"
            assert error.reason == expected, (i, mask)


def test_truncated_or_extended_blobs_are_refused(key: EnvelopeKey) -> None:
    blob = seal_envelope(key, CANARY.encode(), AAD)
    for n in range(len(blob)):
        with raises(TamperedError) as info:
            open_envelope(key, blob[:n], AAD)
        assert isinstance(info.value, TamperedError)
        assert info.value.reason == ("truncated" if n < OVERHEAD_BYTES else "auth_failed")
    for extra in (b"\x00", b"junk" * 10):
        with raises(TamperedError):
            open_envelope(key, blob + extra, AAD)
    with raises(TamperedError) as info:
        read_header(MAGIC + bytes(ENVELOPE_BYTES_MAX))
    assert isinstance(info.value, TamperedError) and info.value.reason == "too_long"


def test_wrapped_keys_round_trip_into_a_fresh_buffer(crypto_audit: Audit) -> None:
    wrapping = EnvelopeKey(KeyKind.VAULT, 3, generate_key())
    inner = generate_key()
    crypto_audit.add(bytes(inner.buffer))
    aad = data_key_aad(b"k" * 16, 99)
    wrapped = wrap_key(wrapping, inner, aad)
    assert len(wrapped) == WRAPPED_KEY_BYTES
    assert bytes(inner.buffer) not in wrapped
    unwrapped = unwrap_key(wrapping, wrapped, aad)
    assert unwrapped.buffer == inner.buffer and unwrapped.buffer is not inner.buffer
    with raises(TamperedError):
        unwrap_key(wrapping, wrapped, data_key_aad(b"k" * 16, 98))  # another data key's slot
    with raises(TamperedError):
        unwrap_key(wrapping, wrapped, data_key_aad(b"j" * 16, 99))  # another keyring
    with raises(TamperedError):
        unwrap_key(wrapping, wrapped, vault_key_aad(b"k" * 16, 99))  # another purpose


def test_every_byte_of_a_wrapped_key_is_checked(crypto_audit: Audit) -> None:
    wrapping = EnvelopeKey(KeyKind.VAULT, 3, generate_key())
    inner = generate_key()
    crypto_audit.add(bytes(inner.buffer))
    aad = data_key_aad(b"k" * 16, 99)
    wrapped = wrap_key(wrapping, inner, aad)
    for i in range(len(wrapped)):
        with raises(TamperedError):
            unwrap_key(wrapping, flip(wrapped, i), aad)


def test_a_failed_unwrap_leaves_no_unverified_bytes(key: EnvelopeKey) -> None:
    wrapped = seal_envelope(key, bytes(range(KEY_BYTES)), AAD)
    out = bytearray(KEY_BYTES)
    with raises(TamperedError):
        open_envelope_into(key, flip(wrapped, len(wrapped) - 1), AAD, out)
    assert out == bytearray(KEY_BYTES)
    with raises(TamperedError) as info:
        open_envelope_into(key, wrapped, AAD, bytearray(KEY_BYTES - 1))
    assert isinstance(info.value, TamperedError) and info.value.reason == "bad_length"


def test_errors_name_the_object_from_its_aad(key: EnvelopeKey) -> None:
    blob = seal_envelope(key, CANARY.encode(), AAD)
    with raises(TamperedError) as info:
        open_envelope(key, flip(blob, len(blob) - 1), AAD)
    assert str(info.value) == "frame (key id 7) failed verification: auth_failed"
