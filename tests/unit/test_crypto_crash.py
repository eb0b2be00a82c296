"""A crash at every durability point of every multi-step operation recovers to one consistent state.

The harness counts the calls that make writes durable or visible (``fsync``,
``fdatasync``, ``rename``, ``ftruncate``) while an operation runs, then runs it
again from the same starting files once per call, dying just before that call:
the process crash model, in which everything written before stays in the page
cache.  After each crash the files are reopened from scratch, the operation is
resumed where the issue says it must be resumable, and every frame is checked.
No code of ours is replaced: only the operating system calls are interrupted.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from memoryd.crypto import (
    ForgottenError,
    Keyring,
    KeyringError,
    MasterKey,
    UnlockedKeyring,
    WrongKeyError,
    frame_key_id,
)
from memoryd.crypto.keystore import ENTRY_BYTES, HEADER_BYTES, EntryState, decode_entry
from tests.unit.crypto_support import aad_for, crypto_audit, plaintext_for, raises

__all__ = ["crypto_audit"]
pytestmark = pytest.mark.usefixtures("crypto_audit")

OLD_KEY = bytes(range(1, 33))
NEW_KEY = bytes(range(33, 65))
DURABILITY_CALLS = ("fsync", "fdatasync", "rename", "ftruncate")
FRAMES = 40


class Crash(BaseException):
    """The process dies here (a BaseException: nothing in the package may swallow it)."""


@contextmanager
def crash_before_call(monkeypatch: pytest.MonkeyPatch, n: int | None) -> Iterator[list[int]]:
    """Die just before the ``n``th durability call (never, if None); yields the count."""
    seen = [0]
    with monkeypatch.context() as patch:
        for name in DURABILITY_CALLS:
            real = getattr(os, name)

            def wrapper(*args: object, _real: Callable[..., object] = real) -> object:
                seen[0] += 1
                if seen[0] == n:
                    raise Crash
                return _real(*args)

            patch.setattr(os, name, wrapper)
        yield seen


@dataclass
class World:
    """What an operation promised before the crash: frames it sealed, keys it forgot."""

    directory: Path
    blobs: dict[int, bytes] = field(default_factory=dict)
    forgotten: set[int] = field(default_factory=set)  # forget() returned
    forgetting: set[int] = field(default_factory=set)  # forget() was called


def template(tmp_path: Path) -> World:
    """A keyring (key master) with FRAMES sealed frames, locked and closed."""
    world = World(tmp_path / "template" / "keys")
    world.directory.parent.mkdir()
    vault = Keyring.create(world.directory, MasterKey.from_bytes(OLD_KEY))
    for i in range(FRAMES):
        world.blobs[i] = vault.seal_frame(plaintext_for(i), aad_for(i))
    vault.keyring.close()
    return world


def fresh_copy(world: World, target: Path) -> World:
    shutil.copytree(world.directory, target)
    return World(target, dict(world.blobs))


def abandon(vault: UnlockedKeyring | None) -> None:
    """What a crash does to open objects: nothing more is written, descriptors go away."""
    if vault is not None:
        vault.keyring._store.close()


def run_crashing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    operation: Callable[[World], UnlockedKeyring | None],
    recover: Callable[[World], None],
) -> int:
    """Run ``operation`` once to count its durability calls, then crash before each one."""
    base = template(tmp_path)
    counting = fresh_copy(base, tmp_path / "count")
    with crash_before_call(monkeypatch, None) as seen:
        vault = operation(counting)
    if vault is not None:
        vault.keyring.close()
    total = seen[0]
    assert total > 0
    for n in range(1, total + 1):
        world = fresh_copy(base, tmp_path / f"crash-{n}")
        holder: list[UnlockedKeyring] = []
        with crash_before_call(monkeypatch, n), pytest.raises(Crash):
            operation(_Recording(world, holder))
        abandon(holder[0] if holder else None)
        recover(world)
    return total


class _Recording(World):
    """A World that remembers the last keyring the operation unlocked (to abandon it)."""

    def __init__(self, world: World, holder: list[UnlockedKeyring]) -> None:
        super().__init__(world.directory, world.blobs, world.forgotten, world.forgetting)
        self.holder = holder


def unlock(world: World, key: bytes = OLD_KEY) -> UnlockedKeyring:
    vault = Keyring.open(world.directory).unlock(MasterKey.from_bytes(key))
    if isinstance(world, _Recording):
        world.holder[:] = [vault]
    return vault


def check_frames(vault: UnlockedKeyring, world: World) -> None:
    for i, blob in world.blobs.items():
        key_id = frame_key_id(blob)
        if key_id in world.forgotten:
            with raises(ForgottenError):
                vault.open_frame(blob, aad_for(i))
        elif key_id in world.forgetting:  # the crash came during forget: either outcome
            with suppress(ForgottenError):
                assert vault.open_frame(blob, aad_for(i)) == plaintext_for(i)
        else:
            assert vault.open_frame(blob, aad_for(i)) == plaintext_for(i)


def live_vault_ids(directory: Path) -> set[int]:
    data = (directory / "datakeys").read_bytes()
    found = set()
    for offset in range(HEADER_BYTES, len(data) - ENTRY_BYTES + 1, ENTRY_BYTES):
        entry = decode_entry(data[offset : offset + ENTRY_BYTES], offset)
        if entry.state == EntryState.LIVE:
            found.add(entry.vault_key_id)
    return found


# -- rotation, with a seal and a forget in the middle ----------------------------------


def rotate(world: World) -> UnlockedKeyring:
    vault = unlock(world)
    vault.begin_rotation()
    vault.rotate_step(keys_max=10)
    world.blobs[100] = vault.seal_frame(plaintext_for(100), aad_for(100))
    target = frame_key_id(world.blobs[7])
    world.forgetting.add(target)
    vault.keyring.forget([target])
    world.forgotten.add(target)
    while not vault.rotate_step(keys_max=10).done:
        pass
    vault.finish_rotation()
    return vault


def finish_rotating(world: World) -> None:
    keyring = Keyring.open(world.directory)
    vault = keyring.unlock(MasterKey.from_bytes(OLD_KEY))
    keyring._check()
    check_frames(vault, world)
    info = keyring.info()
    if info.rotating_from is None and info.current_vault_key_id == 1:
        vault.begin_rotation()  # the crash came before the rotation was recorded
    if keyring.info().rotating_from is not None:
        while not vault.rotate_step(keys_max=7).done:
            keyring._check()
        vault.finish_rotation()
    else:
        keyring.compact()  # the crash may have come between finishing and compacting
    keyring._check()
    assert keyring.info().vault_key_ids == (2,)
    check_frames(vault, world)
    keyring.close()
    assert live_vault_ids(world.directory) <= {2}


def test_a_crash_anywhere_in_a_rotation_resumes_to_one_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    points = run_crashing(tmp_path, monkeypatch, rotate, finish_rotating)
    assert points >= 15  # begin, steps (two syncs each), a refill, a forget, finish, compact


# -- changing the master key -----------------------------------------------------------


def change_master(world: World) -> UnlockedKeyring:
    vault = unlock(world)
    vault.change_master(MasterKey.from_bytes(NEW_KEY))
    return vault


def exactly_one_master_works(world: World) -> None:
    keyring = Keyring.open(world.directory)
    unlocked = []
    for key in (OLD_KEY, NEW_KEY):
        try:
            vault = keyring.unlock(MasterKey.from_bytes(key))
        except WrongKeyError:
            continue
        check_frames(vault, world)
        vault.lock()
        unlocked.append(key)
    assert len(unlocked) == 1
    keyring._check()
    keyring.close()


def test_a_crash_anywhere_in_change_master_leaves_one_working_master(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_crashing(tmp_path, monkeypatch, change_master, exactly_one_master_works)


# -- sealing across refills, forgetting, compacting ------------------------------------


def seal_forget_compact(world: World) -> UnlockedKeyring:
    vault = unlock(world)
    for i in range(FRAMES, FRAMES + 300):  # two pool refills
        world.blobs[i] = vault.seal_frame(plaintext_for(i), aad_for(i))
    targets = {frame_key_id(world.blobs[i]) for i in range(0, FRAMES + 300, 37)}
    world.forgetting |= targets
    vault.keyring.forget(targets)
    world.forgotten |= targets
    vault.keyring.compact()
    for i in range(FRAMES + 300, FRAMES + 310):
        world.blobs[i] = vault.seal_frame(plaintext_for(i), aad_for(i))
    vault.lock()
    return vault


def everything_sealed_is_readable(world: World) -> None:
    keyring = Keyring.open(world.directory)
    vault = keyring.unlock(MasterKey.from_bytes(OLD_KEY))
    check_frames(vault, world)
    vault.seal_frame(b"after the crash", aad_for(999))  # and the store takes new keys
    keyring._check()
    keyring.close()


def test_a_crash_anywhere_in_sealing_forgetting_and_compacting_loses_nothing_promised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_crashing(tmp_path, monkeypatch, seal_forget_compact, everything_sealed_is_readable)


# -- creating a keyring ----------------------------------------------------------------


def test_a_crash_anywhere_in_create_leaves_no_keyring_or_a_working_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def create(n: int | None, directory: Path) -> None:
        with crash_before_call(monkeypatch, n) as seen:
            Keyring.create(directory, MasterKey.from_bytes(OLD_KEY)).keyring.close()
        counts.append(seen[0])

    counts: list[int] = []
    create(None, tmp_path / "count")
    for n in range(1, counts[0] + 1):
        directory = tmp_path / f"crash-{n}" / "keys"
        directory.parent.mkdir()
        with pytest.raises(Crash):
            create(n, directory)
        try:
            keyring = Keyring.open(directory)
        except KeyringError:  # no keyring yet: creating again must work
            Keyring.create(directory, MasterKey.from_bytes(OLD_KEY)).keyring.close()
            keyring = Keyring.open(directory)
        vault = keyring.unlock(MasterKey.from_bytes(OLD_KEY))
        blob = vault.seal_frame(b"works", aad_for(1))
        assert vault.open_frame(blob, aad_for(1)) == b"works"
        keyring._check()
        keyring.close()
