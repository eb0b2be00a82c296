"""Private memories against a real daemon: unlock, lock, sealed puts, reads, search, forget."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from memoryd.client import Client
from memoryd.client.errors import MemorydError, UnavailableError
from memoryd.crypto import (
    KEYS_DIR_NAME,
    ForgottenError,
    Keyring,
    MasterKey,
    frame_aad,
)
from memoryd.storage.events import frame_id

from .daemon_process import DaemonProcess
from .test_cli import memoryd
from .vault_support import (
    PASSPHRASE,
    sealed_envelope_span,
    secret_file,
    vault_daemon,
)


@pytest.fixture
def vault_proc(tmp_path: Path, socket_dir: Path) -> Iterator[DaemonProcess]:
    proc = vault_daemon(tmp_path, socket_dir).start()
    try:
        yield proc
    finally:
        proc.ensure_stopped()


def _code(exc: pytest.ExceptionInfo[MemorydError]) -> str:
    return exc.value.code


def test_no_vault_refuses_private_puts_and_unlock_without_create(vault_proc: DaemonProcess) -> None:
    with Client(vault_proc.socket_path) as client:
        assert client.vault_status()["state"] == "no vault"
        assert client.call("status")["vault"] == "no vault"
        with pytest.raises(UnavailableError) as put:
            client.put("a secret", private=True)
        assert _code(put) == "locked"
        with pytest.raises(MemorydError) as unlock:
            client.unlock(passphrase=PASSPHRASE)
        assert _code(unlock) == "bad_request" and "create" in unlock.value.message
        assert client.stats()["last_seq"] == 0


def test_private_frames_round_trip_while_unlocked_and_are_withheld_while_locked(
    vault_proc: DaemonProcess,
) -> None:
    with Client(vault_proc.socket_path) as client:
        assert client.unlock(passphrase=PASSPHRASE, create=True)["state"] == "unlocked"
        assert client.call("status")["vault"] == "unlocked"
        put = client.put(
            "the locker code is 4711",
            private=True,
            tags=["home"],
            metadata={"room": "hall"},
            source="notebook",
            kind="fact",
        )
        public = client.put("the sky is blue")
        # A keyed id: not the content address, and a re-put dedupes.
        assert put.id != frame_id("default", "fact", "the locker code is 4711")
        again = client.put("the locker code is 4711", private=True, kind="fact")
        assert (again.id, again.is_new) == (put.id, False)
        frame = client.get(put.id)
        assert (frame.content, frame.tags, dict(frame.metadata), frame.source) == (
            "the locker code is 4711",
            ("home",),
            {"room": "hall"},
            "notebook",
        )
        assert frame.private and frame.kind == "fact"
        assert [f.id for f in client.recent().frames] == [public.id, put.id]

        assert client.lock()["state"] == "locked"
        with pytest.raises(UnavailableError) as get:
            client.get(put.id)
        assert _code(get) == "locked" and put.id in get.value.message
        page = client.call("recent", {})
        assert [f["id"] for f in page["frames"]] == [public.id]
        assert page["withheld"] == [{"id": put.id, "code": "locked"}]
        assert client.get(public.id).content == "the sky is blue"  # public reads go on

        before = client.stats()["last_seq"]
        with pytest.raises(UnavailableError) as locked_put:
            client.put_batch([{"content": "public too"}, {"content": "x", "private": True}])
        assert _code(locked_put) == "locked"
        assert client.stats()["last_seq"] == before  # nothing of the request was stored

        with pytest.raises(MemorydError) as wrong:
            client.unlock(passphrase="not the passphrase")
        assert _code(wrong) == "wrong_key"
        assert client.vault_status()["state"] == "locked"
        client.unlock(passphrase=PASSPHRASE)
        assert client.get(put.id).content == "the locker code is 4711"


def test_search_finds_private_frames_only_while_unlocked(vault_proc: DaemonProcess) -> None:
    with Client(vault_proc.socket_path) as client:
        client.unlock(passphrase=PASSPHRASE, create=True)
        secret = client.put("meet the informant at the old quarry", private=True, tags=["spy"])
        public = client.put("the quarry reopens to hikers in spring", tags=["spy"])
        hits = client.search("quarry", mode="keyword", min_seq=public.seq).hits
        assert {h.frame.id for h in hits} == {secret.id, public.id}
        # (keyword mode adds neighbours in time for context: the match ranks first)
        assert client.search("informant", mode="keyword").hits[0].frame.id == secret.id
        tagged = client.search("quarry", mode="keyword", tags=["spy"]).hits
        assert {h.frame.id for h in tagged} == {secret.id, public.id}
        phrase = client.search('"old quarry"', mode="keyword", k=1).hits
        assert phrase[0].frame.content == "meet the informant at the old quarry"

        client.lock()
        for mode in ("keyword", "hybrid", "semantic", "classic"):
            result = client.call("search", {"query": "informant quarry", "mode": mode})
            assert result["private_excluded"] is True
            assert {h["frame"]["id"] for h in result["hits"]} <= {public.id}
        client.unlock(passphrase=PASSPHRASE)
        result = client.call("search", {"query": "informant", "mode": "keyword", "min_seq": 2})
        assert result["hits"][0]["frame"]["id"] == secret.id
        assert "private_excluded" not in result


def test_private_frames_committed_before_a_restart_are_indexed_after_unlock(
    tmp_path: Path, socket_dir: Path
) -> None:
    proc = vault_daemon(tmp_path, socket_dir).start()
    try:
        with Client(proc.socket_path) as client:
            client.unlock(passphrase=PASSPHRASE, create=True)
            put = client.put("the treasure is under the third oak", private=True)
        assert proc.terminate() == 0
        proc.start()
        with Client(proc.socket_path) as client:
            assert client.vault_status()["state"] == "locked"
            assert client.search("treasure", mode="keyword").hits == ()
            client.unlock(passphrase=PASSPHRASE)
            hits = client.search("treasure oak", mode="keyword", min_seq=put.seq).hits
            assert [h.frame.content for h in hits] == ["the treasure is under the third oak"]
    finally:
        proc.ensure_stopped()


def test_delete_destroys_the_data_key_so_old_copies_cannot_be_opened(
    tmp_path: Path, socket_dir: Path
) -> None:
    proc = vault_daemon(tmp_path, socket_dir).start()
    try:
        with Client(proc.socket_path) as client:
            client.unlock(passphrase=PASSPHRASE, create=True)
            gone = client.put("forget me entirely", private=True)
            kept = client.put("keep me", private=True)
            assert client.delete(gone.id).deleted
            assert client.vault_status()["frames_forgotten"] == 1
            with pytest.raises(MemorydError) as get:
                client.get(gone.id)
            assert _code(get) == "not_found"
            assert client.get(kept.id).content == "keep me"
        assert proc.terminate() == 0
    finally:
        proc.ensure_stopped()
    # The record is still in the log (append-only), but its key is destroyed.
    _, _, _, envelope = sealed_envelope_span(proc.data_dir, gone.id)
    keyring = Keyring.open(proc.data_dir / KEYS_DIR_NAME, read_only=True)
    try:
        with MasterKey.from_passphrase(PASSPHRASE) as master:
            unlocked = keyring.unlock(master)
        with pytest.raises(ForgottenError):
            unlocked.open_frame(envelope, frame_aad(gone.id, "default", gone.seq))
        _, _, _, kept_envelope = sealed_envelope_span(proc.data_dir, kept.id)
        aad = frame_aad(kept.id, "default", kept.seq)
        assert orjson.loads(unlocked.open_frame(kept_envelope, aad))["content"] == "keep me"
    finally:
        keyring.close()


def test_forget_by_id_and_by_namespace_destroys_private_data_keys(
    tmp_path: Path, socket_dir: Path
) -> None:
    proc = vault_daemon(tmp_path, socket_dir).start()
    try:
        with Client(proc.socket_path) as client:
            client.unlock(passphrase=PASSPHRASE, create=True)
            by_id = client.put("forgotten by id", private=True)
            in_ns = [client.put(f"secret {i}", private=True, namespace="diary") for i in range(3)]
            public = client.put("public diary entry", namespace="diary")
            kept = client.put("kept secret", private=True)
            assert client.forget(ids=[by_id.id]).deleted == 1
            assert client.forget(namespace="diary").deleted == 4
            assert client.vault_status()["frames_forgotten"] == 4
            assert client.get(kept.id).content == "kept secret"
        assert proc.terminate() == 0
    finally:
        proc.ensure_stopped()
    keyring = Keyring.open(proc.data_dir / KEYS_DIR_NAME, read_only=True)
    try:
        with MasterKey.from_passphrase(PASSPHRASE) as master:
            unlocked = keyring.unlock(master)
        for put, namespace in [(by_id, "default")] + [(p, "diary") for p in in_ns]:
            _, _, _, envelope = sealed_envelope_span(proc.data_dir, put.id)
            with pytest.raises(ForgottenError):
                unlocked.open_frame(envelope, frame_aad(put.id, namespace, put.seq))
        _, _, _, kept_envelope = sealed_envelope_span(proc.data_dir, kept.id)
        aad = frame_aad(kept.id, "default", kept.seq)
        assert orjson.loads(unlocked.open_frame(kept_envelope, aad))["content"] == "kept secret"
        assert public.id not in (by_id.id, kept.id)
    finally:
        keyring.close()


def test_context_shows_private_memories_only_while_unlocked(vault_proc: DaemonProcess) -> None:
    with Client(vault_proc.socket_path) as client:
        client.unlock(passphrase=PASSPHRASE, create=True)
        secret = client.put("the safe combination is nine four two", private=True)
        client.put("the weather was mild today")
        unlocked = client.context(budget_tokens=500, min_seq=secret.seq)
        assert "nine four two" in unlocked.text
        client.lock()
        locked = client.context(budget_tokens=500)
        assert "weather was mild" in locked.text
        assert "nine four two" not in locked.text
        assert secret.id not in {item.id for item in locked.included}


def test_export_keeps_private_frames_sealed_unless_decrypt_which_imports_elsewhere(
    tmp_path: Path, socket_dir: Path
) -> None:
    source = vault_daemon(tmp_path, socket_dir).start()
    config = tmp_path / "target.toml"
    config.write_text('vault_kdf = "test"\n')
    target = DaemonProcess(tmp_path / "target", socket_dir / "t.sock", "--config", str(config))
    target.start()
    sealed_file, open_file = tmp_path / "sealed.jsonl", tmp_path / "open.jsonl"
    try:
        with Client(source.socket_path) as client:
            client.unlock(passphrase=PASSPHRASE, create=True)
            secret = client.put(
                "the vault code is 2718",
                private=True,
                tags=["codes"],
                timestamp_ms=1_700_000_000_000,
            )
            client.put("a public note")
            assert memoryd("export", "-o", str(sealed_file), socket=source.socket_path).code == 0
            run = memoryd("export", "--decrypt", "-o", str(open_file), socket=source.socket_path)
            assert run.code == 0, run.err
            client.lock()
            refused = memoryd(
                "export", "--decrypt", "-o", str(tmp_path / "x"), socket=source.socket_path
            )
            assert refused.code != 0 and "locked" in refused.err
        assert b"2718" not in sealed_file.read_bytes()
        assert b"2718" in open_file.read_bytes()

        with Client(target.socket_path) as client:
            client.unlock(passphrase="another passphrase", create=True)
            run = memoryd("import", str(sealed_file), "--json", socket=target.socket_path)
            assert run.code == 1
            summary = orjson.loads(run.out)
            assert summary["stored"] == 1  # the public note; the sealed frame is reported
            assert "sealed private frame" in summary["errors"][0]["message"]
            run = memoryd("import", str(open_file), "--json", socket=target.socket_path)
            assert run.code == 0, run.err
            assert (run.json()["stored"], run.json()["existing"]) == (1, 1)
            mine = [f for f in client.recent(limit=10).frames if f.private]
            assert [(f.content, f.tags, f.timestamp_ms) for f in mine] == [
                ("the vault code is 2718", ("codes",), 1_700_000_000_000)
            ]
            assert mine[0].id != secret.id  # keyed by the target's own vault
    finally:
        source.ensure_stopped()
        target.ensure_stopped()


def test_subscribers_see_private_frames_opened_not_sealed(
    vault_proc: DaemonProcess,
) -> None:
    with Client(vault_proc.socket_path) as client:
        client.unlock(passphrase=PASSPHRASE, create=True)
        with client.subscribe() as subscription:
            client.put("whispered while unlocked", private=True)
            seen = subscription.next(timeout=5)
            assert seen is not None and seen.content == "whispered while unlocked"
            client.lock()
            client.put("a public marker")
            marker = subscription.next(timeout=5)
            assert marker is not None and marker.content == "a public marker"


def test_private_frames_survive_checkpointed_restarts_indexed_or_pending(
    tmp_path: Path, socket_dir: Path
) -> None:
    proc = vault_daemon(tmp_path, socket_dir).start()
    try:
        with Client(proc.socket_path) as client:
            client.unlock(passphrase=PASSPHRASE, create=True)
            indexed = client.put("the lighthouse keeper whistles", private=True)
            public = client.put("the harbour opens at dawn")
            client.search("lighthouse", mode="keyword", min_seq=public.seq)
        assert proc.terminate() == 0  # unlocked: the checkpoint holds it indexed (blinded)
        assert (proc.data_dir / "checkpoint" / "derived.ckpt").is_file()

        proc.start()
        with Client(proc.socket_path) as client:
            assert client.stats()["start_checkpoint_problem"] is None
            with pytest.raises(MemorydError) as locked:
                client.get(indexed.id)
            assert _code(locked) == "locked"  # still there, sealed
            assert client.search("lighthouse", mode="keyword").hits == ()
            client.unlock(passphrase=PASSPHRASE)
            pending = client.put("the ferry sails without lights", private=True)
            hits = client.search("lighthouse", mode="keyword", min_seq=pending.seq).hits
            assert hits[0].frame.id == indexed.id
            client.lock()  # both private frames now wait for the vault: no checkpoint
        assert proc.terminate() == 0

        proc.start()
        with Client(proc.socket_path) as client:
            client.unlock(passphrase=PASSPHRASE)
            for put, word in ((indexed, "lighthouse"), (pending, "ferry")):
                hits = client.search(word, mode="keyword", min_seq=put.seq).hits
                assert hits[0].frame.id == put.id
            assert client.get(public.id).content == "the harbour opens at dawn"
    finally:
        proc.ensure_stopped()


def test_change_master_rewraps_keys_so_only_the_new_secret_unlocks(
    tmp_path: Path, vault_proc: DaemonProcess
) -> None:
    new_passphrase = "a new and longer passphrase"
    with Client(vault_proc.socket_path) as client:
        with pytest.raises(MemorydError) as refused:
            client.change_master(passphrase=new_passphrase)
        assert _code(refused) == "locked"  # no vault yet: nothing to change
        client.unlock(passphrase=PASSPHRASE, create=True)
        secret = client.put("the cellar key hangs by the door", private=True)
        before = client.vault_status()
        status = client.change_master(passphrase=new_passphrase)
        assert status["data_keys_live"] == before["data_keys_live"]  # nothing re-encrypted
        assert status["vault_key_id"] == before["vault_key_id"]
        client.lock()
        with pytest.raises(MemorydError) as wrong:
            client.unlock(passphrase=PASSPHRASE)
        assert _code(wrong) == "wrong_key"
        client.unlock(passphrase=new_passphrase)
        assert client.get(secret.id).content == "the cellar key hangs by the door"
        client.lock()
    # The command line, to a key file this time: then only that key unlocks.
    key_file = secret_file(tmp_path / "master.key", bytes(range(32)))
    passphrase_file = secret_file(tmp_path / "pass", new_passphrase + "\n")
    socket = vault_proc.socket_path
    assert memoryd("unlock", "--passphrase-file", str(passphrase_file), socket=socket).code == 0
    run = memoryd("change-passphrase", "--key-file", str(key_file), socket=socket)
    assert run.code == 0, run.err
    assert memoryd("lock", socket=socket).code == 0
    assert memoryd("unlock", "--passphrase-file", str(passphrase_file), socket=socket).code != 0
    assert memoryd("unlock", "--key-file", str(key_file), socket=socket).code == 0
    with Client(socket) as client:
        assert client.get(secret.id).content == "the cellar key hangs by the door"
        assert client.vault_status()["master"] == "key"


def test_a_key_file_unlocks_at_start_and_a_missing_one_stops_the_start(
    tmp_path: Path, socket_dir: Path
) -> None:
    key = secret_file(tmp_path / "master.key", base64.b64encode(bytes(range(32))))
    proc = vault_daemon(tmp_path, socket_dir, extra=f'master_key_file = "{key}"\n').start()
    try:
        with Client(proc.socket_path) as client:
            assert client.vault_status()["state"] == "unlocked"
            assert client.vault_status()["master"] == "key"
            put = client.put("started with a key file", private=True)
        assert proc.terminate() == 0
        proc.start()
        with Client(proc.socket_path) as client:
            assert client.get(put.id).content == "started with a key file"
        assert proc.terminate() == 0
    finally:
        proc.ensure_stopped()

    key.chmod(0o644)
    proc.start(wait=False)
    assert proc.process is not None and proc.process.wait(timeout=20) != 0
    proc.ensure_stopped()
    assert "0644" in proc.stderr() or "open to" in proc.stderr()

    missing = tmp_path / "nowhere.key"
    other = vault_daemon(
        tmp_path, socket_dir, name="other", extra=f'master_key_file = "{missing}"\n'
    )
    other.start(wait=False)
    assert other.process is not None and other.process.wait(timeout=20) != 0
    other.ensure_stopped()
    assert f"{missing} does not exist" in other.stderr()


def test_cli_unlock_lock_rotate_and_private_put(tmp_path: Path, vault_proc: DaemonProcess) -> None:
    passphrase_file = secret_file(tmp_path / "pass.txt", PASSPHRASE + "\n")

    def memoryd(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "memoryd.daemon", "--socket", str(vault_proc.socket_path)]
        return subprocess.run([*command, *args], capture_output=True, text=True, timeout=30)

    created = memoryd("unlock", "--create", "--passphrase-file", str(passphrase_file))
    assert created.returncode == 0 and "vault: unlocked" in created.stdout
    put = memoryd("--json", "put", "--private", "cli secret words")
    assert put.returncode == 0
    frame_id_ = orjson.loads(put.stdout)["id"]
    assert memoryd("get", frame_id_).stdout.count("cli secret words") == 1
    assert memoryd("lock").stdout.startswith("vault: locked")
    locked = memoryd("get", frame_id_)
    assert locked.returncode == 1 and "locked" in locked.stderr
    passphrase_file.chmod(0o644)
    unsafe = memoryd("unlock", "--passphrase-file", str(passphrase_file))
    assert unsafe.returncode == 2 and "chmod 600" in unsafe.stderr
    passphrase_file.chmod(0o600)
    assert memoryd("unlock", "--passphrase-file", str(passphrase_file)).returncode == 0
    rotated = memoryd("--json", "rotate-key")
    assert rotated.returncode == 0 and orjson.loads(rotated.stdout)["vault_key_id"] == 2
    assert "cli secret words" in memoryd("get", frame_id_).stdout
    assert PASSPHRASE not in vault_proc.stderr()


def test_compaction_shreds_expired_private_frames(tmp_path: Path, socket_dir: Path) -> None:
    proc = vault_daemon(tmp_path, socket_dir, extra="segment_bytes_max = 1048576\n").start()
    try:
        with Client(proc.socket_path) as client:
            client.unlock(passphrase=PASSPHRASE, create=True)
            brief = [client.put(f"a passing secret {i}", private=True, ttl_s=1) for i in range(2)]
            kept = client.put("a lasting secret", private=True)
            # Enough public bytes that the private records end up in a sealed segment.
            client.put_batch([{"content": f"{n} " + "w" * 100_000} for n in range(25)])
            time.sleep(1.2)  # the two brief ones expire
        assert proc.terminate() == 0
    finally:
        proc.ensure_stopped()
    envelopes = {p.id: sealed_envelope_span(proc.data_dir, p.id)[3] for p in [*brief, kept]}
    run = memoryd("--json", "compact", "--data-dir", str(proc.data_dir))
    assert run.code == 0, run.err
    assert run.json()["expired_private_frames_shredded"] == 2
    assert run.json()["records_dropped"] >= 2
    # Their records are gone from the log, and a copy kept from before cannot be opened.
    keyring = Keyring.open(proc.data_dir / KEYS_DIR_NAME, read_only=True)
    try:
        with MasterKey.from_passphrase(PASSPHRASE) as master:
            unlocked = keyring.unlock(master)
        for put in brief:
            with pytest.raises(ForgottenError):
                unlocked.open_frame(envelopes[put.id], frame_aad(put.id, "default", put.seq))
        aad = frame_aad(kept.id, "default", kept.seq)
        assert orjson.loads(unlocked.open_frame(envelopes[kept.id], aad))["content"] == (
            "a lasting secret"
        )
    finally:
        keyring.close()
