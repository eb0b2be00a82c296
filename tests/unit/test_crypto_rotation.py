"""Vault key rotation: re-wrapping every data key, resuming, forgetting during it."""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoryd.crypto import (
    DATA_KEY_POOL_KEYS,
    ForgottenError,
    Keyring,
    MasterKey,
    UnlockedKeyring,
    frame_key_id,
)
from memoryd.crypto.keyring_file import decode_keyring_file
from memoryd.crypto.keystore import ENTRY_BYTES, HEADER_BYTES, EntryState, decode_entry
from tests.unit.crypto_support import (
    Audit,
    aad_for,
    crypto_audit,
    plaintext_for,
    raises,
)

__all__ = ["crypto_audit"]
pytestmark = pytest.mark.usefixtures("crypto_audit")

KEY = bytes(range(64, 96))


def master() -> MasterKey:
    return MasterKey.from_bytes(KEY)


@pytest.fixture
def vault(tmp_path: Path, crypto_audit: Audit) -> Iterator[UnlockedKeyring]:
    unlocked = Keyring.create(tmp_path / "keys", master())
    crypto_audit.add_keys(unlocked)
    yield unlocked
    unlocked.keyring._check()
    unlocked.keyring.close()


def entries(directory: Path) -> list[tuple[EntryState, int, int]]:
    """(state, data key id, vault key id) of every entry in the store file."""
    data = (directory / "datakeys").read_bytes()
    found = []
    for offset in range(HEADER_BYTES, len(data) - ENTRY_BYTES + 1, ENTRY_BYTES):
        entry = decode_entry(data[offset : offset + ENTRY_BYTES], offset)
        found.append((entry.state, entry.key_id, entry.vault_key_id))
    return found


def reopen(vault: UnlockedKeyring) -> UnlockedKeyring:
    directory = vault.keyring.directory
    vault.keyring.close()
    return Keyring.open(directory).unlock(master())


def assert_readable(vault: UnlockedKeyring, blobs: dict[int, bytes]) -> None:
    for i, blob in blobs.items():
        assert vault.open_frame(blob, aad_for(i)) == plaintext_for(i)


def test_a_full_rotation_rewraps_every_key_and_destroys_the_old_vault_key(
    vault: UnlockedKeyring, crypto_audit: Audit
) -> None:
    # More seals than one pool holds: a second refill.
    blobs = {
        i: vault.seal_frame(plaintext_for(i), aad_for(i)) for i in range(DATA_KEY_POOL_KEYS + 44)
    }
    directory = vault.keyring.directory
    old_vault_key = bytes(vault._vaults[1].secret.buffer)
    assert vault.begin_rotation() == 2
    crypto_audit.add_keys(vault)
    progress = vault.rotation_progress()
    assert progress is not None
    live = 2 * DATA_KEY_POOL_KEYS  # two refills so far
    assert (progress.remaining, progress.rewrapped, progress.done) == (live, 0, False)
    newest = DATA_KEY_POOL_KEYS + 44
    blobs[newest] = vault.seal_frame(plaintext_for(newest), aad_for(newest))  # the new key
    progress = vault.rotate_step(keys_max=100)
    assert (progress.remaining, progress.unreadable) == (live - 100, 0)
    assert_readable(vault, blobs)  # readable in the middle of it
    vault.keyring._check()
    while not vault.rotate_step(keys_max=500).done:
        vault.keyring._check()
    vault.finish_rotation()
    assert vault.rotation_progress() is None
    info = vault.keyring.info()
    assert info.vault_key_ids == (2,) and info.rotating_from is None
    assert set(info.data_keys.live_by_vault_key) == {2}
    assert info.data_keys.destroyed == 0  # compacted
    assert {v for state, _, v in entries(directory) if state == EntryState.LIVE} == {2}
    keyring_file = decode_keyring_file((directory / "keyring").read_bytes())
    assert keyring_file.vault_key_ids() == (2,)
    assert_readable(vault, blobs)
    vault = reopen(vault)
    assert_readable(vault, blobs)
    assert old_vault_key not in (directory / "keyring").read_bytes()
    vault.keyring._check()
    vault.keyring.close()


def test_a_rotation_resumes_after_reopening_at_any_step(vault: UnlockedKeyring) -> None:
    blobs = {i: vault.seal_frame(plaintext_for(i), aad_for(i)) for i in range(40)}
    vault.begin_rotation()
    vault = reopen(vault)  # stopped right after begin_rotation
    progress = vault.rotation_progress()
    assert progress is not None and progress.old_vault_key_id == 1 and not progress.done
    steps = 0
    while True:
        progress = vault.rotate_step(keys_max=8)
        steps += 1
        if progress.done:
            break
        vault = reopen(vault)  # stopped between steps
        assert_readable(vault, blobs)
    assert steps == 40 // 8  # reopening locked: the unused pool keys were destroyed
    vault = reopen(vault)
    vault.finish_rotation()
    assert_readable(reopen(vault), blobs)


def test_lock_change_master_and_forget_in_the_middle_of_a_rotation(vault: UnlockedKeyring) -> None:
    blobs = {i: vault.seal_frame(plaintext_for(i), aad_for(i)) for i in range(20)}
    vault.begin_rotation()
    vault.rotate_step(keys_max=10)  # keys 1..10 now have a new entry; the old is destroyed
    forgotten = [frame_key_id(blobs[3]), frame_key_id(blobs[15])]  # one moved, one not yet
    assert vault.keyring.forget(forgotten) == 2
    vault.change_master(MasterKey.from_bytes(bytes(32)))
    keyring = vault.keyring
    vault.lock()
    vault = keyring.unlock(MasterKey.from_bytes(bytes(32)))
    while not vault.rotate_step().done:
        pass
    vault.finish_rotation()
    for i, blob in blobs.items():
        if frame_key_id(blob) in forgotten:
            with raises(ForgottenError):
                vault.open_frame(blob, aad_for(i))
        else:
            assert vault.open_frame(blob, aad_for(i)) == plaintext_for(i)
    live_ids = {k for state, k, _ in entries(keyring.directory) if state == EntryState.LIVE}
    assert not live_ids & set(forgotten)
    keyring._check()


def _duplicate_state(vault: UnlockedKeyring) -> tuple[Path, dict[int, bytes], bytes]:
    """Seal, begin a rotation, run one step, and return the store as a crash would leave it
    between the step's append and its destroying the old entries."""
    blobs = {i: vault.seal_frame(plaintext_for(i), aad_for(i)) for i in range(8)}
    vault.begin_rotation()
    directory = vault.keyring.directory
    before = (directory / "datakeys").read_bytes()
    vault.rotate_step(keys_max=5)
    after = (directory / "datakeys").read_bytes()
    vault.keyring._store.close()  # the process dies here: no lock, no more writes
    vault.keyring._unlocked = None
    return directory, blobs, before + after[len(before) :]


def test_a_crash_between_a_steps_append_and_its_destroy_is_resolved(vault: UnlockedKeyring) -> None:
    directory, blobs, crashed = _duplicate_state(vault)
    (directory / "datakeys").write_bytes(crashed)
    keyring = Keyring.open(directory)
    counts = keyring.info().data_keys
    old_key_live = DATA_KEY_POOL_KEYS - 5  # the pool's keys, less the 5 the step re-wrapped
    assert counts.superseded == 5 and counts.live_by_vault_key == {1: old_key_live, 2: 5}
    unlocked = keyring.unlock(master())
    assert_readable(unlocked, blobs)
    keyring._check()
    progress = unlocked.rotate_step()  # its first write destroys the superseded entries
    assert keyring.info().data_keys.superseded == 0
    while not progress.done:
        progress = unlocked.rotate_step()
    live = [k for state, k, _ in entries(directory) if state == EntryState.LIVE]
    assert len(live) == len(set(live))  # one live entry per data key
    unlocked.finish_rotation()
    assert_readable(unlocked, blobs)
    keyring.close()


def test_forgetting_a_key_with_a_superseded_copy_destroys_both(vault: UnlockedKeyring) -> None:
    directory, blobs, crashed = _duplicate_state(vault)
    (directory / "datakeys").write_bytes(crashed)
    keyring = Keyring.open(directory)
    target = frame_key_id(blobs[2])
    keyring.forget([target])  # destroys the superseded copies first, then the key
    assert all(state != EntryState.LIVE for state, k, _ in entries(directory) if k == target)
    with raises(ForgottenError):
        keyring.unlock(master()).open_frame(blobs[2], aad_for(2))
    keyring.close()


def test_an_unreadable_entry_is_reported_and_does_not_block_the_rotation(
    vault: UnlockedKeyring,
) -> None:
    blobs = {i: vault.seal_frame(plaintext_for(i), aad_for(i)) for i in range(4)}
    directory = vault.keyring.directory
    vault.keyring.close()
    # Edit the second key's wrapped bytes and fix up the CRC: only the AEAD can tell.
    path = directory / "datakeys"
    data = bytearray(path.read_bytes())
    at = HEADER_BYTES + (frame_key_id(blobs[1]) - 1) * ENTRY_BYTES
    data[at + 60] ^= 0x01
    data[at + 92 : at + 96] = struct.pack("<I", zlib.crc32(bytes(data[at : at + 92])))
    path.write_bytes(bytes(data))
    keyring = Keyring.open(directory)
    unlocked = keyring.unlock(master())
    unlocked.begin_rotation()
    progress = unlocked.rotate_step(keys_max=4096)
    assert (progress.unreadable, progress.remaining, progress.done) == (1, 0, True)
    unlocked.finish_rotation()
    with raises(Exception) as info:
        unlocked.open_frame(blobs[1], aad_for(1))
    assert "data key" in str(info.value)
    assert_readable(unlocked, {i: b for i, b in blobs.items() if i != 1})
    keyring._check()
    keyring.close()


def test_a_crash_between_finish_and_compaction_leaves_a_usable_store(
    vault: UnlockedKeyring,
) -> None:
    blobs = {i: vault.seal_frame(plaintext_for(i), aad_for(i)) for i in range(5)}
    vault.begin_rotation()
    while not vault.rotate_step().done:
        pass
    directory = vault.keyring.directory
    uncompacted = (directory / "datakeys").read_bytes()
    vault.finish_rotation()
    vault.keyring.close()
    (directory / "datakeys").write_bytes(uncompacted)  # as if the crash came before compaction
    keyring = Keyring.open(directory)
    assert keyring.info().vault_key_ids == (2,) and keyring.info().data_keys.destroyed > 0
    assert_readable(keyring.unlock(master()), blobs)
    keyring.compact()
    keyring._check()
    keyring.close()


def test_a_compaction_in_the_middle_of_a_rotation_does_not_strand_keys(
    vault: UnlockedKeyring,
) -> None:
    blobs = {i: vault.seal_frame(plaintext_for(i), aad_for(i)) for i in range(30)}
    vault.keyring.forget([frame_key_id(blobs[i]) for i in range(0, 30, 3)])
    vault.begin_rotation()
    vault.rotate_step(keys_max=100)  # the cursor is now far into the file
    blobs[30] = vault.seal_frame(plaintext_for(30), aad_for(30))
    vault.keyring.compact()  # sorts entries by id: old-key entries move behind the cursor
    # A bounded loop (every live key, the pool's too, in steps of 100): it must converge.
    for _ in range(2 * DATA_KEY_POOL_KEYS // 100 + 20):
        if vault.rotate_step(keys_max=100).done:
            break
    else:
        pytest.fail("the rotation never finished")
    vault.finish_rotation()
    assert_readable(vault, {i: b for i, b in blobs.items() if i % 3 or i == 30})


def test_seals_opens_and_forgets_go_on_while_another_thread_rotates(
    vault: UnlockedKeyring,
) -> None:
    blobs = {i: vault.seal_frame(plaintext_for(i), aad_for(i)) for i in range(600)}
    vault.begin_rotation()
    failures: list[BaseException] = []

    def rotate() -> None:
        try:
            while not vault.rotate_step(keys_max=64).done:
                pass
        except BaseException as exc:  # reported to the main thread below
            failures.append(exc)

    worker = threading.Thread(target=rotate)
    worker.start()
    forgotten = set()
    for i in range(600, 900):
        blobs[i] = vault.seal_frame(plaintext_for(i), aad_for(i))
        assert vault.open_frame(blobs[i - 300], aad_for(i - 300)) == plaintext_for(i - 300)
        if i % 50 == 0:
            vault.keyring.forget([frame_key_id(blobs[i - 500])])
            forgotten.add(i - 500)
    worker.join()
    assert not failures
    while not vault.rotate_step().done:  # keys made by refills during the run were new-key
        pass
    vault.finish_rotation()
    vault.keyring._check()
    assert_readable(vault, {i: b for i, b in blobs.items() if i not in forgotten})
    for i in forgotten:
        with raises(ForgottenError):
            vault.open_frame(blobs[i], aad_for(i))


def test_finishing_can_leave_compaction_for_later(vault: UnlockedKeyring) -> None:
    blobs = {i: vault.seal_frame(plaintext_for(i), aad_for(i)) for i in range(5)}
    vault.begin_rotation()
    while not vault.rotate_step().done:
        pass
    vault.finish_rotation(compact=False)
    counts = vault.keyring.info().data_keys
    assert counts.destroyed > 0 and set(counts.live_by_vault_key) == {2}
    assert_readable(vault, blobs)
    assert vault.keyring.compact().dropped_destroyed == counts.destroyed
    assert_readable(vault, blobs)
