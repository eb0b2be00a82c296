"""Sealed frames through the keyring: round trips, binding, tampering, forgetting, the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memoryd.crypto import (
    BLIND_TERM_BYTES,
    DATA_KEY_POOL_KEYS,
    ForgottenError,
    Keyring,
    LimitError,
    MasterKey,
    TamperedError,
    UnlockedKeyring,
    frame_aad,
    frame_key_id,
)
from memoryd.crypto.envelope import HEADER_BYTES as ENVELOPE_HEADER_BYTES
from memoryd.crypto.keystore import (
    ENTRY_BYTES,
    HEADER_BYTES,
    decode_entry,
    encode_entry,
    encode_live_entries,
)
from tests.unit.crypto_support import (
    CANARY,
    Audit,
    aad_for,
    crypto_audit,
    plaintext_for,
    raises,
)

__all__ = ["crypto_audit"]
pytestmark = pytest.mark.usefixtures("crypto_audit")

KEY = bytes(range(32, 64))


def master() -> MasterKey:
    return MasterKey.from_bytes(KEY)  # no KDF: these tests are about frames


@pytest.fixture
def vault(tmp_path: Path, crypto_audit: Audit) -> Iterator[UnlockedKeyring]:
    unlocked = Keyring.create(tmp_path / "keys", master())
    crypto_audit.add_keys(unlocked)
    crypto_audit.add(KEY)
    yield unlocked
    unlocked.keyring._check()
    unlocked.keyring.close()


def reopen(vault: UnlockedKeyring) -> UnlockedKeyring:
    """Close everything and unlock from the files again."""
    directory = vault.keyring.directory
    vault.keyring.close()
    return Keyring.open(directory).unlock(master())


def entry_offset(key_id: int) -> int:
    return HEADER_BYTES + (key_id - 1) * ENTRY_BYTES  # before any compaction or rotation


def test_frames_round_trip_across_pool_refills_and_reopening(vault: UnlockedKeyring) -> None:
    count = DATA_KEY_POOL_KEYS + 10
    blobs = [vault.seal_frame(plaintext_for(i), aad_for(i)) for i in range(count)]
    assert len({frame_key_id(b) for b in blobs}) == count  # one data key per frame
    vault.keyring._check()
    vault = reopen(vault)
    for i, blob in enumerate(blobs):
        assert vault.open_frame(blob, aad_for(i)) == plaintext_for(i)
    store = (vault.keyring.directory / "datakeys").read_bytes()
    assert CANARY.encode() not in store and b"zanzibar" not in store
    vault.keyring.close()


def test_a_batch_seals_each_frame_under_its_own_key_across_refills(
    vault: UnlockedKeyring,
) -> None:
    count = DATA_KEY_POOL_KEYS + 10  # more than the pool holds: it refills mid-batch
    aads = [aad_for(i) for i in range(count)]
    blobs = vault.seal_frames([plaintext_for(i) for i in range(count)], [a.encode() for a in aads])
    assert len({frame_key_id(b) for b in blobs}) == count
    assert len({b[ENVELOPE_HEADER_BYTES : ENVELOPE_HEADER_BYTES + 12] for b in blobs}) == count
    vault = reopen(vault)
    for i, blob in enumerate(blobs):
        assert vault.open_frame(blob, aads[i]) == plaintext_for(i)
    with raises(TamperedError):
        vault.open_frame(blobs[0], aads[1])  # each is bound to its own AAD
    with raises(LimitError):
        vault.seal_frames([b"ok", bytes(4 * 1024 * 1024 + 1)], [aads[0].encode()] * 2)
    vault.keyring.close()


def test_empty_and_large_plaintexts(vault: UnlockedKeyring) -> None:
    for size in (0, 1, 200, 256 * 1024):
        plaintext = bytes([size % 251]) * size
        assert vault.open_frame(vault.seal_frame(plaintext, aad_for(1)), aad_for(1)) == plaintext
    with raises(LimitError):
        vault.seal_frame(bytes(4 * 1024 * 1024 + 1), aad_for(1))


def test_a_sealed_frame_cannot_be_moved_or_replayed(vault: UnlockedKeyring) -> None:
    blob = vault.seal_frame(CANARY.encode(), frame_aad("a" * 32, "default", 5))
    for other in (
        frame_aad("a" * 32, "default", 6),  # replayed at another seq
        frame_aad("b" * 32, "default", 5),  # copied into another frame
        frame_aad("a" * 32, "private", 5),  # moved to another namespace
    ):
        with raises(TamperedError) as info:
            vault.open_frame(blob, other)
        assert isinstance(info.value, TamperedError)
        assert info.value.key_id == frame_key_id(blob) and info.value.what == "frame"


def test_swapping_two_blobs_fails(vault: UnlockedKeyring) -> None:
    a = vault.seal_frame(b"first", aad_for(1))
    b = vault.seal_frame(b"second", aad_for(2))
    with raises(TamperedError):
        vault.open_frame(b, aad_for(1))
    with raises(TamperedError):
        vault.open_frame(a, aad_for(2))


def test_every_byte_of_a_sealed_frame_is_checked(vault: UnlockedKeyring) -> None:
    blobs = [vault.seal_frame(plaintext_for(i), aad_for(i)) for i in range(5)]
    vault.keyring.forget([frame_key_id(blobs[3])])
    blob = blobs[1]
    for i in range(len(blob)):
        for mask in (0x01, 0x02, 0x80):
            edited = blob[:i] + bytes([blob[i] ^ mask]) + blob[i + 1 :]
            # An edited key id may name another frame's key, or a destroyed one.
            with raises((TamperedError, ForgottenError)):
                vault.open_frame(edited, aad_for(1))
    with raises(TamperedError):
        vault.open_frame(blob[:-1], aad_for(1))
    with raises(TamperedError):
        frame_key_id(b"not a frame")


def test_every_byte_of_the_data_key_store_is_checked(tmp_path: Path, crypto_audit: Audit) -> None:
    directory = tmp_path / "keys"
    vault = Keyring.create(directory, master())
    crypto_audit.add_keys(vault)
    blobs = [vault.seal_frame(plaintext_for(i), aad_for(i)) for i in range(3)]
    vault.keyring.close()  # the unused pool keys are destroyed: entries 4.. are destroyed ones
    original = (directory / "datakeys").read_bytes()
    span = HEADER_BYTES + 4 * ENTRY_BYTES  # the header, the three keys and a destroyed entry
    outcomes: dict[str, int] = {}
    for i in range(span):
        (directory / "datakeys").write_bytes(
            original[:i] + bytes([original[i] ^ 1]) + original[i + 1 :]
        )
        try:
            opened = Keyring.open(directory)
        except TamperedError:
            outcomes["open refused"] = outcomes.get("open refused", 0) + 1
            continue
        unlocked = opened.unlock(master())
        for n, blob in enumerate(blobs):
            try:
                assert unlocked.open_frame(blob, aad_for(n)) == plaintext_for(n)
                outcomes["intact"] = outcomes.get("intact", 0) + 1
            except (TamperedError, ForgottenError) as exc:
                crypto_audit.check(exc)
                outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
        opened._check()
        opened.close()
    assert outcomes["open refused"] == HEADER_BYTES  # every header byte is covered
    # A flip in one key's entry breaks that frame only: the other two open intact.
    assert outcomes["TamperedError"] == 3 * ENTRY_BYTES
    assert outcomes["intact"] == 3 * 2 * ENTRY_BYTES + 3 * ENTRY_BYTES


def test_forgetting_destroys_the_key_for_every_copy_of_the_blob(vault: UnlockedKeyring) -> None:
    blobs = [vault.seal_frame(plaintext_for(i), aad_for(i)) for i in range(4)]
    backup_of_old_blob = bytes(blobs[2])  # e.g. in an old segment or a backup of the log
    key_id = frame_key_id(blobs[2])
    entry_before = (vault.keyring.directory / "datakeys").read_bytes()[
        entry_offset(key_id) : entry_offset(key_id) + ENTRY_BYTES
    ]
    wrapped_before = decode_entry(entry_before, entry_offset(key_id)).wrapped
    assert vault.keyring.forget([key_id]) == 1
    assert vault.keyring.forget([key_id]) == 0  # idempotent
    vault.keyring._check()
    with raises(ForgottenError) as info:
        vault.open_frame(backup_of_old_blob, aad_for(2))
    assert isinstance(info.value, ForgottenError) and info.value.key_id == key_id
    store = (vault.keyring.directory / "datakeys").read_bytes()
    assert wrapped_before not in store  # overwritten in place, not just marked
    assert store[entry_offset(key_id) + 12 : entry_offset(key_id) + 87] == bytes(75)
    for i in (0, 1, 3):
        assert vault.open_frame(blobs[i], aad_for(i)) == plaintext_for(i)
    vault = reopen(vault)
    with raises(ForgottenError):
        vault.open_frame(backup_of_old_blob, aad_for(2))
    vault.keyring.compact()  # the entry is gone from the file now, and still forgotten
    with raises(ForgottenError):
        vault.open_frame(backup_of_old_blob, aad_for(2))
    assert vault.open_frame(blobs[3], aad_for(3)) == plaintext_for(3)
    vault.keyring._check()
    vault.keyring.close()


def test_forgetting_works_while_locked(vault: UnlockedKeyring) -> None:
    blob = vault.seal_frame(CANARY.encode(), aad_for(1))
    keyring = vault.keyring
    vault.lock()
    assert keyring.forget([frame_key_id(blob)]) == 1
    again = keyring.unlock(master())
    with raises(ForgottenError):
        again.open_frame(blob, aad_for(1))


def test_compaction_keeps_frames_and_never_reuses_an_id(vault: UnlockedKeyring) -> None:
    blobs = [vault.seal_frame(plaintext_for(i), aad_for(i)) for i in range(10)]
    vault.keyring.forget([frame_key_id(b) for b in blobs[:5]])
    before = vault.keyring.info().data_keys
    report = vault.keyring.compact()
    after = vault.keyring.info().data_keys
    assert report.kept == before.live == after.live
    assert report.bytes_after == HEADER_BYTES + after.live * ENTRY_BYTES < report.bytes_before
    vault.keyring._check()
    for i in range(5, 10):
        assert vault.open_frame(blobs[i], aad_for(i)) == plaintext_for(i)
    vault.lock()
    vault = vault.keyring.unlock(master())
    newest = vault.seal_frame(b"new", aad_for(11))
    assert frame_key_id(newest) > max(frame_key_id(b) for b in blobs) + DATA_KEY_POOL_KEYS - 10
    with raises(ForgottenError):
        vault.open_frame(blobs[0], aad_for(0))


def test_locking_destroys_the_unused_pool_keys(vault: UnlockedKeyring) -> None:
    vault.seal_frame(b"one", aad_for(1))
    assert vault.keyring.info().data_keys.live == DATA_KEY_POOL_KEYS
    keyring = vault.keyring
    vault.lock()
    counts = keyring.info().data_keys
    assert (counts.live, counts.destroyed) == (1, DATA_KEY_POOL_KEYS - 1)


def test_fill_data_key_pool_refills_ahead(vault: UnlockedKeyring) -> None:
    assert vault.fill_data_key_pool() == DATA_KEY_POOL_KEYS
    assert vault.fill_data_key_pool() == 0  # more than half full
    for i in range(DATA_KEY_POOL_KEYS // 2 + 1):
        vault.seal_frame(b"x", aad_for(i))
    assert vault.fill_data_key_pool() == DATA_KEY_POOL_KEYS


def test_a_torn_tail_is_cut_before_the_next_write(vault: UnlockedKeyring) -> None:
    blob = vault.seal_frame(CANARY.encode(), aad_for(1))
    vault.lock()
    path = vault.keyring.directory / "datakeys"
    vault.keyring.close()
    size = path.stat().st_size
    with open(path, "ab") as f:  # a whole garbage entry and part of another
        f.write(b"\xaa" * (ENTRY_BYTES + 40))
    keyring = Keyring.open(path.parent)
    assert keyring.info().data_keys.torn_tail_bytes == ENTRY_BYTES + 40
    unlocked = keyring.unlock(master())
    assert unlocked.open_frame(blob, aad_for(1)) == CANARY.encode()
    assert path.stat().st_size == size + ENTRY_BYTES + 40  # opening never writes
    second = unlocked.seal_frame(b"second", aad_for(2))
    assert (path.stat().st_size - HEADER_BYTES) % ENTRY_BYTES == 0
    keyring._check()
    assert unlocked.open_frame(second, aad_for(2)) == b"second"
    keyring.close()


def test_a_damaged_entry_breaks_only_its_frame_and_can_still_be_forgotten(
    vault: UnlockedKeyring,
) -> None:
    blobs = [vault.seal_frame(plaintext_for(i), aad_for(i)) for i in range(3)]
    directory = vault.keyring.directory
    vault.keyring.close()
    path = directory / "datakeys"
    data = bytearray(path.read_bytes())
    at = entry_offset(frame_key_id(blobs[1])) + 50  # inside the wrapped key
    data[at] ^= 0x10
    path.write_bytes(bytes(data))
    keyring = Keyring.open(directory)
    assert keyring.info().data_keys.damaged == 1
    vault = keyring.unlock(master())
    with raises(TamperedError) as info:
        vault.open_frame(blobs[1], aad_for(1))
    assert isinstance(info.value, TamperedError) and info.value.reason == "damaged_entry"
    assert vault.open_frame(blobs[2], aad_for(2)) == plaintext_for(2)
    # Forgetting a frame whose entry is damaged still overwrites what is left of its key.
    keyring.forget([frame_key_id(blobs[1])])
    assert keyring.info().data_keys.damaged == 0
    assert path.read_bytes()[at - 50 + 12 : at - 50 + 87] == bytes(75)
    keyring._check()
    keyring.close()


def test_a_frame_header_naming_a_vault_key_is_refused(vault: UnlockedKeyring) -> None:
    blob = bytearray(vault.seal_frame(b"x", aad_for(1)))
    blob[6] = 2  # key kind: vault
    with raises(TamperedError) as info:
        vault.open_frame(bytes(blob), aad_for(1))
    assert isinstance(info.value, TamperedError) and info.value.reason == "bad_key_kind"
    unknown = bytearray(blob)
    unknown[6] = 3
    unknown[7:ENVELOPE_HEADER_BYTES] = (10**9).to_bytes(8, "little")
    with raises(TamperedError) as info:
        vault.open_frame(bytes(unknown), aad_for(1))
    assert isinstance(info.value, TamperedError) and info.value.reason == "unknown_key"


def test_blinded_terms(vault: UnlockedKeyring, tmp_path: Path) -> None:
    token = vault.blind_term("quokka")
    assert len(token) == BLIND_TERM_BYTES and token == vault.blind_term("quokka")
    assert b"quokka" not in token
    assert vault.blind_term("Quokka") != token  # normalising is the tokenizer's job
    assert vault.blind_terms(["quokka", "zanzibar"]) == [token, vault.blind_term("zanzibar")]
    with raises(LimitError):
        vault.blind_term("x" * 1025)
    assert vault.index_key_id == 1
    other = Keyring.create(tmp_path / "other", master())
    assert other.blind_term("quokka") != token  # another keyring, another index key
    other.keyring.close()
    vault.change_master(MasterKey.from_bytes(bytes(32)))
    assert vault.blind_term("quokka") == token  # the master does not touch the index key
    vault.begin_rotation()
    assert vault.index_key_id == 2 and vault.blind_term("quokka") != token


def test_forgetting_a_key_still_in_the_pool_keeps_it_from_sealing(vault: UnlockedKeyring) -> None:
    first = vault.seal_frame(b"first", aad_for(0))
    next_id = frame_key_id(first) + 1  # in the pool, not handed out (a forged blob could name it)
    vault.keyring.forget([next_id])
    blobs = [vault.seal_frame(plaintext_for(i), aad_for(i)) for i in range(1, 300)]
    assert next_id not in {frame_key_id(b) for b in blobs}
    for i, blob in enumerate(blobs, start=1):
        assert vault.open_frame(blob, aad_for(i)) == plaintext_for(i)


def test_a_pool_of_entries_encodes_as_single_entries_do() -> None:
    entries = [(1, bytes(range(75))), (2**40, b"\xff" * 75), (2**64 - 1, bytes(75))]
    batch = b"".join(encode_live_entries(entries))
    assert batch == b"".join(encode_entry(key_id, wrapped) for key_id, wrapped in entries)
    ids = [decode_entry(batch[i : i + ENTRY_BYTES], i).key_id for i in range(0, 288, 96)]
    assert ids == [key_id for key_id, _ in entries]
