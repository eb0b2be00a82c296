"""The canary test (issue 4): no byte the daemon leaves behind holds a private memory.

Private frames carry unique canary strings and words in every field a user
writes (content, tags, metadata, source).  The daemon builds them, is
restarted, unlocked, searched, rotates its vault key and is locked; then every
byte of the data directory (chunks inflated), of every export and of the
daemon's log output is scanned for each canary and each of its words.  A
public control frame proves the scan sees what is there.

``EXPORT_STEPS`` is where an export joins the run: each step gets the client
and a fresh directory, writes what it exports there, and that directory is
scanned too.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import orjson

from memoryd.client import Client
from memoryd.storage.search.text import DEFAULT_TOKENIZER
from tests.integration.test_cli import memoryd

from .vault_support import PASSPHRASE, scan_bytes, scan_for, vault_daemon, wait_rotation_done

CANARIES = 12
SEED = 4


def _export_sealed(client: Client, directory: Path) -> None:
    """``memoryd export`` as a user runs it (no --decrypt): private frames stay sealed."""
    directory.mkdir(parents=True)
    path = directory / "export.jsonl"
    run = memoryd("export", "-o", str(path), socket=Path(client.socket_path))
    assert run.code == 0, run.err
    events = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    sealed = [e for e in events if e.get("private") is True and e["event"] == "frame_put"]
    assert len(sealed) >= CANARIES and all(e.get("sealed") for e in sealed)


def _export_pages_sealed(client: Client, directory: Path) -> None:
    """The export op through the client library, written out whole."""
    directory.mkdir(parents=True)
    events = list(client.export_events())
    (directory / "events.json").write_bytes(orjson.dumps(events))


# (client, directory to write into): each export is scanned like the data directory.
EXPORT_STEPS: list[Callable[[Client, Path], None]] = [_export_sealed, _export_pages_sealed]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(9))


def _canaries() -> list[dict[str, object]]:
    rng = random.Random(SEED)
    frames = []
    for i in range(CANARIES):
        words = [_word(rng) for _ in range(6)]
        frames.append(
            {
                "content": f"CANARY-{rng.getrandbits(64):016x} {words[0]} {words[1]} {words[2]}",
                "tags": [words[3]],
                "metadata": {"note": words[4], "n": i},
                "source": f"src-{words[5]}",
                "private": True,
                "kind": "fact",
            }
        )
    return frames


def _needles(frames: list[dict[str, object]]) -> list[bytes]:
    """Each canary string and each of its words, with the terms the tokenizer makes of them."""
    texts: list[str] = []
    for frame in frames:
        content = str(frame["content"])
        texts.append(content.split()[0])
        texts += content.split()[1:]
        texts += [str(t) for t in frame["tags"]]  # type: ignore[attr-defined]
        texts.append(str(frame["metadata"]["note"]))  # type: ignore[index]
        texts.append(str(frame["source"]))
    terms = [t for text in texts for t in DEFAULT_TOKENIZER.terms(text) if len(t) >= 6]
    return sorted({n.encode() for n in texts + terms})


def test_no_plaintext_of_a_private_frame_reaches_any_file_or_log(
    tmp_path: Path, socket_dir: Path
) -> None:
    frames = _canaries()
    needles = _needles(frames)
    control = b"pzkdwqvbntrz"  # public: the scan must find it
    proc = vault_daemon(tmp_path, socket_dir, extra='log_level = "debug"\n').start()
    exports = tmp_path / "exports"
    try:
        with Client(proc.socket_path) as client:
            client.unlock(passphrase=PASSPHRASE, create=True)
            ids = [r.id for r in client.put_batch(frames)]
            last = client.put(f"public control {control.decode()}").seq
            words = str(frames[0]["content"]).split()
            assert client.search(words[1], mode="keyword", min_seq=last).hits[0].frame.id == ids[0]
        assert proc.terminate() == 0
        # The clean stop checkpointed the indexes, private frames in them (blinded): scanned too.
        assert (proc.data_dir / "checkpoint" / "derived.ckpt").is_file()

        proc.start()
        with Client(proc.socket_path) as client:
            client.unlock(passphrase=PASSPHRASE)
            for frame, frame_id in zip(frames, ids, strict=True):
                word = str(frame["content"]).split()[2]
                hits = client.search(word, mode="hybrid", min_seq=last, tags=frame["tags"]).hits  # type: ignore[arg-type]
                assert hits[0].frame.id == frame_id
            client.rotate_key()
            assert wait_rotation_done(client)["vault_key_id"] == 2
            rotated_word = str(frames[-1]["content"]).split()[1]
            assert (
                client.search(rotated_word, mode="keyword", min_seq=last).hits[0].frame.id
                == ids[-1]
            )
            assert client.get(ids[3]).metadata["note"] == frames[3]["metadata"]["note"]  # type: ignore[index]
            for index, step in enumerate(EXPORT_STEPS):
                step(client, exports / str(index))
            client.lock()
        assert proc.terminate() == 0
    finally:
        proc.ensure_stopped()

    log_output = proc.stderr_path.read_bytes()
    assert b"vault key rotation finished" in log_output  # the log ran at debug level throughout
    found = scan_for(proc.data_dir, needles) + scan_bytes(proc.stderr_path, log_output, needles)
    if exports.exists():
        found += scan_for(exports, needles)
    assert found == []
    assert scan_for(proc.data_dir, [control])  # the scan sees plaintext where there is some
