"""Properties of sealing: round trips, context binding, damage never yields a wrong plaintext,
arbitrary bytes never crash, and the keyring against a plain-dict model."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memoryd.crypto import (
    Aad,
    CryptoError,
    ForgottenError,
    Keyring,
    MasterKey,
    TamperedError,
    UnlockedKeyring,
    frame_aad,
    frame_key_id,
)
from memoryd.crypto.aad import FRAME_PURPOSE
from memoryd.crypto.envelope import read_header
from memoryd.crypto.keyring_file import decode_keyring_file
from memoryd.crypto.keystore import ENTRY_BYTES, EntryState, decode_entry
from tests.unit.crypto_support import CANARY, exception_texts

KEY = bytes(range(7, 39))
FAST = settings(max_examples=60, deadline=None)


@pytest.fixture(scope="module")
def vault() -> Iterator[UnlockedKeyring]:
    with tempfile.TemporaryDirectory() as tmp:
        unlocked = Keyring.create(Path(tmp) / "keys", MasterKey.from_bytes(KEY))
        yield unlocked
        unlocked.keyring._check()
        unlocked.keyring.close()


def sized_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


plaintexts = st.one_of(
    st.binary(max_size=600),
    st.builds(sized_bytes, st.sampled_from([0, 1, 4095, 256 * 1024]), st.integers(0, 2**32)),
    st.builds(sized_bytes, st.integers(0, 300_000), st.integers(0, 2**32)),
)
texts = st.text(max_size=40)
seqs = st.integers(1, 2**63 - 1)
frame_aads = st.builds(frame_aad, texts, texts, seqs)


def assert_clean(exc: BaseException, *secrets: bytes) -> None:
    for text in exception_texts(exc):
        assert CANARY not in text
        for secret in secrets:
            if len(secret) >= 4:
                assert secret.hex() not in text and repr(secret)[2:-1] not in text


@FAST
@given(plaintext=plaintexts, aad=frame_aads)
def test_any_plaintext_round_trips(vault: UnlockedKeyring, plaintext: bytes, aad: Aad) -> None:
    blob = vault.seal_frame(plaintext, aad)
    assert vault.open_frame(blob, aad) == plaintext


@FAST
@given(plaintext=st.binary(min_size=8, max_size=200), aad=frame_aads, other=frame_aads)
def test_a_blob_opens_only_under_its_own_aad(
    vault: UnlockedKeyring, plaintext: bytes, aad: Aad, other: Aad
) -> None:
    blob = vault.seal_frame(plaintext, aad)
    if other.encode() == aad.encode():
        assert vault.open_frame(blob, other) == plaintext
        return
    with pytest.raises(TamperedError) as info:
        vault.open_frame(blob, other)
    assert_clean(info.value, plaintext)


edits = st.lists(
    st.tuples(
        st.sampled_from(["flip", "cut", "insert", "delete"]),
        st.integers(0, 10**6),
        st.integers(1, 255),
    ),
    min_size=1,
    max_size=4,
)


def apply(blob: bytes, edit_list: list[tuple[str, int, int]]) -> bytes:
    data = bytearray(blob)
    for kind, where, value in edit_list:
        at = where % (len(data) + 1)
        if kind == "flip" and at < len(data):
            data[at] ^= value
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = bytes([value])
        elif kind == "delete" and at < len(data):
            del data[at]
    return bytes(data)


@FAST
@given(plaintext=st.binary(min_size=1, max_size=300), edit_list=edits)
def test_damage_never_yields_a_wrong_plaintext(
    vault: UnlockedKeyring, plaintext: bytes, edit_list: list[tuple[str, int, int]]
) -> None:
    aad = frame_aad("p" * 32, "default", 9)
    blob = vault.seal_frame(plaintext, aad)
    edited = apply(blob, edit_list)
    try:
        opened = vault.open_frame(edited, aad)
    except (TamperedError, ForgottenError) as exc:
        assert edited != blob
        assert_clean(exc, plaintext)
        return
    assert edited == blob and opened == plaintext


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_never_crash_a_reader(vault: UnlockedKeyring, data: bytes) -> None:
    aad = frame_aad("q" * 32, "default", 1)
    for read in (
        lambda: vault.open_frame(data, aad),
        lambda: frame_key_id(data),
        lambda: read_header(data),
        lambda: decode_keyring_file(data),
    ):
        try:
            read()
        except CryptoError as exc:
            assert_clean(exc)
    entry = decode_entry(data[:ENTRY_BYTES].ljust(ENTRY_BYTES, b"\x00"), 96)
    assert entry.state in EntryState


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), prefix=st.sampled_from([b"MDE\x01\x01\x01\x03", b"MDE\x01"]))
def test_bytes_that_look_like_an_envelope_never_crash(
    vault: UnlockedKeyring, data: bytes, prefix: bytes
) -> None:
    try:
        vault.open_frame(prefix + data, frame_aad("r" * 32, "default", 1))
    except CryptoError as exc:
        assert_clean(exc)


aad_values = st.one_of(st.binary(max_size=20), st.text(max_size=20), st.integers(0, 2**64 - 1))
aads = st.builds(
    lambda purpose, fields: Aad.of(purpose, **fields),
    st.sampled_from(["a", "b", "memoryd.frame"]),
    st.dictionaries(st.sampled_from(["id", "ns", "seq", "x"]), aad_values, max_size=4),
)


@settings(max_examples=500, deadline=None)
@given(left=aads, right=aads)
def test_aad_encoding_is_injective(left: Aad, right: Aad) -> None:
    # Equal encodings exactly for equal values (bytes b"x" and text "x" are different values).
    def typed(aad: Aad) -> tuple[str, tuple[tuple[str, type, object], ...]]:
        return aad.purpose, tuple((k, type(v), v) for k, v in aad.fields)

    assert (left.encode() == right.encode()) == (typed(left) == typed(right))


@settings(max_examples=300, deadline=None)
@given(frame_id=st.text(max_size=60), namespace=st.text(max_size=60), seq=st.integers(0, 2**64 - 1))
def test_the_frame_aad_fast_path_equals_the_general_encoding(
    frame_id: str, namespace: str, seq: int
) -> None:
    general = Aad.of(FRAME_PURPOSE, id=frame_id, ns=namespace, seq=seq)
    assert frame_aad(frame_id, namespace, seq).encode() == general.encode()


# -- the keyring against a model -------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("seal"), st.integers(0, 3)),
        st.tuples(st.just("forget"), st.integers(0, 10**6)),
        st.tuples(
            st.sampled_from(["compact", "relock", "reopen", "rotate", "step", "finish"]), st.just(0)
        ),
    ),
    max_size=25,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=operations)
def test_the_keyring_agrees_with_a_dict_model(ops: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "keys"
        unlocked = Keyring.create(directory, MasterKey.from_bytes(KEY))
        live: dict[int, tuple[bytes, bytes]] = {}  # frame number -> (blob, plaintext)
        gone: dict[int, bytes] = {}
        number = 0
        for op, arg in ops:
            keyring = unlocked.keyring
            if op == "seal":
                for _ in range(arg + 1):
                    plaintext = f"{CANARY} {number}".encode()
                    live[number] = (unlocked.seal_frame(plaintext, aad(number)), plaintext)
                    number += 1
            elif op == "forget" and live:
                victim = sorted(live)[arg % len(live)]
                blob, _ = live.pop(victim)
                keyring.forget([frame_key_id(blob)])
                gone[victim] = blob
            elif op == "compact":
                keyring.compact()
            elif op == "relock":
                unlocked.lock()
                unlocked = keyring.unlock(MasterKey.from_bytes(KEY))
            elif op == "reopen":
                keyring.close()
                unlocked = Keyring.open(directory).unlock(MasterKey.from_bytes(KEY))
            elif op == "rotate" and unlocked.rotation_progress() is None:
                unlocked.begin_rotation()
            elif op == "step" and unlocked.rotation_progress() is not None:
                unlocked.rotate_step(keys_max=50)
            elif op == "finish":
                progress = unlocked.rotation_progress()
                if progress is not None and progress.done:
                    unlocked.finish_rotation()
            unlocked.keyring._check()
        if unlocked.rotation_progress() is not None:  # any state reached converges
            # Every live data key needs re-wrapping, the pool's unused ones too.
            for _ in range(unlocked.keyring.info().data_keys.live // 50 + 10):
                if unlocked.rotate_step(keys_max=50).done:
                    break
            unlocked.finish_rotation()
        for n, (blob, plaintext) in live.items():
            assert unlocked.open_frame(blob, aad(n)) == plaintext
        for n, blob in gone.items():
            with pytest.raises(ForgottenError):
                unlocked.open_frame(blob, aad(n))
        counts = unlocked.keyring.info().data_keys
        assert counts.live >= len(live) and counts.damaged == 0
        unlocked.keyring.close()


def aad(n: int) -> Aad:
    return frame_aad(f"{n:032x}", "model", n + 1)
