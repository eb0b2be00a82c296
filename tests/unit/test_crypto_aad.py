"""Associated data: one encoding per value, none shared, limits named."""

from __future__ import annotations

import struct

import pytest

from memoryd.crypto import Aad, LimitError, encode_frame_aad, frame_aad
from memoryd.crypto.aad import (
    AAD_FIELDS_MAX,
    AAD_VALUE_BYTES_MAX,
    DATA_KEY_PURPOSE,
    FRAME_PURPOSE,
    VAULT_KEY_PURPOSE,
)
from memoryd.crypto.keywrap import data_key_aad, vault_key_aad
from tests.unit.crypto_support import crypto_audit, raises

__all__ = ["crypto_audit"]
pytestmark = pytest.mark.usefixtures("crypto_audit")


def test_field_order_does_not_matter() -> None:
    assert Aad.of("p", a=1, b="x").encode() == Aad.of("p", b="x", a=1).encode()


def test_frame_aad_encodes_exactly_as_the_spec_says() -> None:
    encoded = frame_aad("ab", "ns", 7).encode()
    purpose = FRAME_PURPOSE.encode()
    expected = (
        bytes([1, len(purpose)])
        + purpose
        + bytes([3])
        + b"\x02id\x02"
        + struct.pack("<I", 2)
        + b"ab"
        + b"\x02ns\x02"
        + struct.pack("<I", 2)
        + b"ns"
        + b"\x03seq\x03"
        + struct.pack("<I", 8)
        + struct.pack("<Q", 7)
    )
    assert encoded == expected


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (Aad.of("p", a="bc"), Aad.of("p", ab="c")),  # where a name ends
        (Aad.of("p", a="1"), Aad.of("p", a=1)),  # text and integer
        (Aad.of("p", a=b"x"), Aad.of("p", a="x")),  # bytes and text
        (Aad.of("p", a=""), Aad.of("p")),  # an empty value and no field
        (Aad.of("p.q", a=1), Aad.of("p", q_a=1)),
        (frame_aad("a", "b", 1), frame_aad("a", "b", 2)),
        (frame_aad("a", "b\x00", 1), frame_aad("a\x00", "b", 1)),
    ],
)
def test_different_values_encode_differently(left: Aad, right: Aad) -> None:
    assert left.encode() != right.encode()


def test_bad_fields_are_refused() -> None:
    with raises(ValueError):
        Aad.of("Bad Purpose")
    with raises(ValueError):
        Aad.of("p", **{"Bad-Name": 1})
    with raises(ValueError):
        Aad.of("p", a=-1)
    with raises(ValueError):
        Aad.of("p", a=2**64)
    with raises(TypeError):
        Aad.of("p", a=True)
    with raises(TypeError):
        Aad.of("p", a=1.5)  # type: ignore[arg-type]
    with raises(ValueError):
        Aad("p", (("b", 1), ("a", 1)))  # unsorted: use Aad.of
    with raises(ValueError):
        Aad("p", (("a", 1), ("a", 2)))


def test_limits_are_named() -> None:
    with raises(LimitError) as info:
        Aad.of("p", a="x" * (AAD_VALUE_BYTES_MAX + 1))
    assert isinstance(info.value, LimitError)
    assert info.value.limit == "aad_value_bytes_max"
    assert "aad_value_bytes_max" in str(info.value)
    Aad.of("p", a="x" * AAD_VALUE_BYTES_MAX)
    fields = {f"f{i}": i for i in range(AAD_FIELDS_MAX + 1)}
    with raises(LimitError):
        Aad.of("p", **fields)


def test_text_with_lone_surrogates_still_encodes() -> None:
    assert frame_aad("id", "\udcff", 1).encode() != frame_aad("id", "\udcfe", 1).encode()


@pytest.mark.parametrize(
    ("frame_id", "namespace", "seq"),
    [("", "", 0), ("ab", "default", 7), ("é" * 40, "名前", 2**64 - 1), ("\udcff", "x" * 4096, 1)],
)
def test_the_frame_fast_path_matches_the_general_encoding(
    frame_id: str, namespace: str, seq: int
) -> None:
    fast = frame_aad(frame_id, namespace, seq)
    general = Aad.of(FRAME_PURPOSE, id=frame_id, ns=namespace, seq=seq)
    assert fast.encode() == general.encode() and fast == general
    assert encode_frame_aad(frame_id, namespace, seq) == general.encode()


def test_the_key_fast_paths_match_the_general_encoding() -> None:
    for keyring_id in (bytes(16), bytes(range(16)), b"\xff" * 16):
        for key_id in (0, 1, 2**40 + 3, 2**64 - 1):
            assert data_key_aad(keyring_id, key_id) == Aad.of(
                DATA_KEY_PURPOSE, keyring=keyring_id, data_key_id=key_id
            )
            assert data_key_aad(keyring_id, key_id).encode() == (
                Aad.of(DATA_KEY_PURPOSE, keyring=keyring_id, data_key_id=key_id).encode()
            )
            assert vault_key_aad(keyring_id, key_id).encode() == (
                Aad.of(VAULT_KEY_PURPOSE, keyring=keyring_id, vault_key_id=key_id).encode()
            )


def test_the_frame_fast_path_checks_its_values() -> None:
    with raises(LimitError):
        frame_aad("id", "x" * (AAD_VALUE_BYTES_MAX + 1), 1)
    with raises(ValueError):
        frame_aad("id", "ns", -1)
