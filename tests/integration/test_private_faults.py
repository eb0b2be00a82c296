"""Faults around private memories, against a real daemon: tampered envelopes and wrapped
keys, a kill -9 in the middle of a key rotation."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import orjson
import pytest

from memoryd.client import Client
from memoryd.client.errors import MemorydError
from memoryd.crypto import DATA_KEY_POOL_KEYS, KEYS_DIR_NAME, Keyring, frame_key_id

from .daemon_process import DaemonProcess
from .vault_support import (
    PASSPHRASE,
    rewrite_record_payload,
    sealed_envelope_span,
    secret_file,
    vault_daemon,
    wait_for,
    wait_rotation_done,
)

# Offsets into the envelope (crypto/FORMAT.md section 4) and what lives there.
ENVELOPE_FIELDS = {
    "magic": 0,
    "version": 4,
    "algorithm": 5,
    "key_kind": 6,
    "key_id": 14,  # the high byte: an id never handed out
    "nonce": 20,
    "ciphertext": 30,
    "tag": -1,
}
DATA_KEYS_HEADER_BYTES = 96
DATA_KEY_ENTRY_BYTES = 96


def _flip(data: bytes, at: int) -> bytes:
    edited = bytearray(data)
    edited[at] ^= 0x01
    return bytes(edited)


def _with_envelope(payload: bytes, edit_at: int) -> bytes:
    obj = orjson.loads(payload)
    envelope = base64.b64decode(obj["sealed"])
    obj["sealed"] = base64.b64encode(_flip(envelope, edit_at)).decode()
    return orjson.dumps(obj)


def _assert_only_it_is_tampered(client: Client, bad: str, good: str, public: str) -> None:
    with pytest.raises(MemorydError) as get:
        client.get(bad)
    assert get.value.code == "tampered"
    assert bad in get.value.message and get.value.details["id"] == bad
    assert client.get(good).content == "an untouched secret"
    assert client.get(public).content == "a public note about gardens"
    page = client.call("recent", {})
    assert {f["id"] for f in page["frames"]} == {good, public}
    assert page["withheld"] == [{"id": bad, "code": "tampered"}]
    hits = client.search("gardens", mode="keyword", min_seq=3).hits
    assert hits[0].frame.id == public
    assert client.search("untouched", mode="keyword", min_seq=3).hits[0].frame.id == good
    assert client.stats()["unbuildable_records"] == 1  # the edited one, reported


def _three_frames(tmp_path: Path, socket_dir: Path) -> tuple[DaemonProcess, str, str, str]:
    proc = vault_daemon(tmp_path, socket_dir).start()
    with Client(proc.socket_path) as client:
        if client.vault_status()["state"] == "no vault":
            client.unlock(passphrase=PASSPHRASE, create=True)
        good = client.put("an untouched secret", private=True).id
        public = client.put("a public note about gardens").id
        bad = client.put("a secret someone will edit", private=True).id  # the last record
    assert proc.terminate() == 0
    return proc, bad, good, public


@pytest.mark.parametrize("field", sorted(ENVELOPE_FIELDS))
def test_a_tampered_envelope_in_the_log_is_reported_with_its_frame_id(
    tmp_path: Path, socket_dir: Path, field: str
) -> None:
    proc, bad, good, public = _three_frames(tmp_path, socket_dir)
    try:
        path, offset, _, _ = sealed_envelope_span(proc.data_dir, bad)
        rewrite_record_payload(path, offset, lambda p: _with_envelope(p, ENVELOPE_FIELDS[field]))
        proc.start()
        with Client(proc.socket_path) as client:
            client.unlock(passphrase=PASSPHRASE)
            _assert_only_it_is_tampered(client, bad, good, public)
    finally:
        proc.ensure_stopped()


@pytest.mark.parametrize("at", [0, 20, 40, 74])  # the wrapped key's header, nonce, body, tag
def test_a_tampered_wrapped_data_key_is_reported_with_its_frame_id(
    tmp_path: Path, socket_dir: Path, at: int
) -> None:
    proc, bad, good, public = _three_frames(tmp_path, socket_dir)
    try:
        _, _, _, envelope = sealed_envelope_span(proc.data_dir, bad)
        key_id = frame_key_id(envelope)
        store = proc.data_dir / KEYS_DIR_NAME / "datakeys"
        data = bytearray(store.read_bytes())
        for start in range(DATA_KEYS_HEADER_BYTES, len(data), DATA_KEY_ENTRY_BYTES):
            if data[start] == 1 and struct.unpack_from("<Q", data, start + 4)[0] == key_id:
                data[start + 12 + at] ^= 0x01
                struct.pack_into(
                    "<I", data, start + 92, zlib.crc32(bytes(data[start : start + 92]))
                )
                break
        else:
            raise AssertionError(f"no live entry for data key {key_id}")
        store.write_bytes(bytes(data))
        proc.start()
        with Client(proc.socket_path) as client:
            client.unlock(passphrase=PASSPHRASE)
            _assert_only_it_is_tampered(client, bad, good, public)
    finally:
        proc.ensure_stopped()


def test_rotation_runs_in_the_background_and_a_kill_9_in_it_recovers_to_one_key(
    tmp_path: Path, socket_dir: Path
) -> None:
    passphrase = secret_file(tmp_path / "pass", PASSPHRASE)
    extra = f'passphrase_file = "{passphrase}"\nvault_rotation_step_keys = 1\n'
    proc = vault_daemon(tmp_path, socket_dir, extra=extra).start()
    frames = 400
    try:
        with Client(proc.socket_path) as client:
            assert client.vault_status()["state"] == "unlocked"  # created at start
            ids = [
                r.id
                for r in client.put_batch(
                    [{"content": f"secret number {i}", "private": True} for i in range(frames)]
                )
            ]
            started = client.rotate_key()
            assert started["rotation"]["to_vault_key_id"] == 2
            assert client.get(ids[0]).content == "secret number 0"  # reads go on meanwhile

            def midway() -> bool:
                rotation = client.vault_status()["rotation"]
                return rotation is not None and 0 < rotation["remaining"] < frames - 10

            wait_for(midway)
        proc.kill()
        proc.start()
        with Client(proc.socket_path) as client:
            status = wait_rotation_done(client)  # resumed at the unlock from the passphrase file
            assert status["vault_key_id"] == 2 and status["rotation_error"] is None
            page = client.recent(limit=1000)
            assert sorted(f.content for f in page.frames) == sorted(
                f"secret number {i}" for i in range(frames)
            )
            assert client.search("number", mode="keyword", k=5, min_seq=frames).hits
        assert proc.terminate() == 0
    finally:
        proc.ensure_stopped()
    keyring = Keyring.open(proc.data_dir / KEYS_DIR_NAME, read_only=True)
    try:
        info = keyring.info()
        assert (info.vault_key_ids, info.rotating_from) == ((2,), None)
        # Every live data key is under the new vault key (a crash may leave up to one
        # and a half pools of made but unused keys besides the frames', crypto/FORMAT.md).
        live = info.data_keys.live_by_vault_key
        assert set(live) == {2} and frames <= live[2] <= frames + 3 * DATA_KEY_POOL_KEYS // 2
    finally:
        keyring.close()
