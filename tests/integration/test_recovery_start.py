"""What a start does with a damaged log, on real segment files edited between runs.

A torn tail (bytes cut from, or garbage after, the last record) is what a
crash leaves: the start moves it to quarantine, reports it and serves every
complete frame.  Damage before the tail is corruption: the start refuses,
names the segment and offset and changes nothing; ``memoryd check`` reports
it (exit 5) and ``memoryd repair`` moves it aside, keeping every intact record.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from memoryd.client import Client, NotFoundError
from tests.integration.daemon_process import DaemonProcess

SEGMENT_NAME = "00000000000000000001.seg"
MAGIC = b"MDR\x01"
HEADER_BYTES = 60  # storage/FORMAT.md, section 2: header, then payload, then a 4-byte CRC
CRC_BYTES = 4
LENGTH_FIELD = struct.Struct("<I")  # payload length, at offset 8


def memoryd_command() -> list[str]:
    script = Path(sys.executable).parent / "memoryd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "memoryd.daemon"]


def run_memoryd(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    return subprocess.run(
        [*memoryd_command(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@dataclass(frozen=True)
class Stored:
    id: str
    seq: int
    content: str


@dataclass(frozen=True)
class RecordSpan:
    offset: int
    length: int


def record_spans(segment: bytes) -> list[RecordSpan]:
    """Where each record of an intact segment starts, from its header (FORMAT.md section 2)."""
    spans = []
    offset = 0
    while offset < len(segment):
        assert segment[offset : offset + 4] == MAGIC, f"no record at offset {offset}"
        (payload,) = LENGTH_FIELD.unpack_from(segment, offset + 8)
        length = HEADER_BYTES + payload + CRC_BYTES
        spans.append(RecordSpan(offset, length))
        offset += length
    assert offset == len(segment)
    return spans


def write_frames(daemon: DaemonProcess) -> tuple[list[Stored], Path]:
    """24 puts and a delete (seq 21), one record each; stop the daemon.

    Returns the live frames, in seq order, and the segment file.
    """
    with Client(daemon.socket_path) as memory:
        stored = []
        for i in range(24):
            if i == 20:  # a FRAME_DELETE record in the middle: seq 21
                assert memory.delete(stored[5].id).deleted
            content = f"frame {i}: ünïcode ✓ {'x' * i}"
            put = memory.put(content, kind="fact", tags=[f"t{i}"])
            stored.append(Stored(put.id, put.seq, content))
        assert memory.stats()["last_seq"] == stored[-1].seq == 25
    assert daemon.terminate() == 0, daemon.stderr()
    segment = daemon.data_dir / "log" / SEGMENT_NAME
    assert sorted(p.name for p in segment.parent.iterdir()) == [SEGMENT_NAME]
    live = [s for i, s in enumerate(stored) if i != 5]
    return live, segment


def start(data_dir: Path, socket_path: Path, log_name: str) -> DaemonProcess:
    process = DaemonProcess(data_dir, socket_path)
    process.stderr_path = data_dir.parent / log_name  # this run's log only
    return process.start()


def assert_readable(socket_path: Path, frames: list[Stored]) -> None:
    with Client(socket_path) as memory:
        assert memory.stats()["frames_live"] == len(frames)
        for frame in frames:
            got = memory.get(frame.id)
            assert (got.seq, got.content) == (frame.seq, frame.content)


def quarantined(data_dir: Path) -> list[str]:
    folder = data_dir / "quarantine"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_garbage_after_the_last_record_is_a_torn_tail(daemon: DaemonProcess) -> None:
    live, segment = write_frames(daemon)
    intact = segment.read_bytes()
    garbage = b"\x00\xffnot a record\n" * 7
    segment.write_bytes(intact + garbage)

    check = run_memoryd("check", "--data-dir", str(daemon.data_dir), "--json")
    assert check.returncode == 0, check.stdout + check.stderr  # a start cuts a torn tail
    report = json.loads(check.stdout)
    assert report["ok"] is True and report["problems"] == []
    assert report["torn_tail"]["offset"] == len(intact)

    restarted = start(daemon.data_dir, daemon.socket_path, "garbage.log")
    try:
        log = restarted.stderr()
        assert "torn tail" in log and SEGMENT_NAME in log
        assert f"{len(garbage)} bytes at offset {len(intact)}" in log
        saved = daemon.data_dir / "quarantine" / f"torn-{SEGMENT_NAME[:-4]}-{len(intact)}.bin"
        assert saved.read_bytes() == garbage
        assert segment.read_bytes() == intact
        assert_readable(daemon.socket_path, live)
        with Client(daemon.socket_path) as memory:
            after = memory.put("written after the recovery")
            assert after.seq == 26  # the log continues where the last whole record ended
    finally:
        assert restarted.terminate() == 0, restarted.stderr()
    again = start(daemon.data_dir, daemon.socket_path, "garbage-again.log")
    try:
        assert "torn tail" not in again.stderr()
        assert_readable(
            daemon.socket_path, [*live, Stored(after.id, 26, "written after the recovery")]
        )
    finally:
        assert again.terminate() == 0, again.stderr()


@pytest.mark.parametrize("kept", [30, HEADER_BYTES + 5, -1], ids=str)
def test_last_record_cut_short_is_a_torn_tail(daemon: DaemonProcess, kept: int) -> None:
    """Keep ``kept`` bytes of the last record (-1: all but its last CRC byte)."""
    live, segment = write_frames(daemon)
    intact = segment.read_bytes()
    last = record_spans(intact)[-1]
    kept = last.length - 1 if kept < 0 else kept
    cut_to = last.offset + kept
    with open(segment, "r+b") as f:
        f.truncate(cut_to)

    restarted = start(daemon.data_dir, daemon.socket_path, f"cut-{kept}.log")
    try:
        log = restarted.stderr()
        assert f"torn tail of {kept} bytes at offset {last.offset}" in log, log
        assert SEGMENT_NAME in log
        saved = daemon.data_dir / "quarantine" / f"torn-{SEGMENT_NAME[:-4]}-{last.offset}.bin"
        assert saved.read_bytes() == intact[last.offset : cut_to]
        assert segment.read_bytes() == intact[: last.offset]
        complete, torn = live[:-1], live[-1]
        assert_readable(daemon.socket_path, complete)
        with Client(daemon.socket_path) as memory:
            with pytest.raises(NotFoundError):
                memory.get(torn.id)
            assert memory.stats()["last_seq"] == torn.seq - 1
    finally:
        assert restarted.terminate() == 0, restarted.stderr()


# (where in the middle record to flip a byte, the reason the reader gives)
DAMAGE = {
    "payload": (lambda span: span.offset + HEADER_BYTES + 10, "bad_crc"),
    "magic": (lambda span: span.offset + 1, "bad_magic"),
}


@pytest.mark.parametrize("where", sorted(DAMAGE))
def test_damage_before_the_tail_refuses_the_start_then_repair(
    daemon: DaemonProcess, where: str
) -> None:
    live, segment = write_frames(daemon)
    intact = segment.read_bytes()
    spans = record_spans(intact)
    damaged_index = 12  # seq 13: a put, with valid records after it
    span = spans[damaged_index]
    position, reason = DAMAGE[where][0](span), DAMAGE[where][1]
    broken = bytearray(intact)
    broken[position] ^= 0x20
    segment.write_bytes(bytes(broken))
    damaged = next(s for s in live if s.seq == damaged_index + 1)

    refused = run_memoryd(
        "--socket", str(daemon.socket_path), "serve", "--data-dir", str(daemon.data_dir)
    )
    assert refused.returncode == 1, refused.stderr
    assert "Traceback" not in refused.stderr
    assert f"segment {SEGMENT_NAME} at offset {span.offset}: {reason}" in refused.stderr
    assert "memoryd repair" in refused.stderr
    assert segment.read_bytes() == bytes(broken)  # nothing was changed
    assert quarantined(daemon.data_dir) == []
    assert not daemon.socket_path.exists()

    check = run_memoryd("check", "--data-dir", str(daemon.data_dir))
    assert check.returncode == 5
    assert "CORRUPT" in check.stdout and f"offset {span.offset}" in check.stdout
    check_json = run_memoryd("--json", "check", "--data-dir", str(daemon.data_dir))
    assert check_json.returncode == 5
    report = json.loads(check_json.stdout)
    assert report["ok"] is False
    assert report["problems"] == [
        {
            "segment": SEGMENT_NAME,
            "offset": span.offset,
            "length": span.length,
            "reason": reason,
            "detail": report["problems"][0]["detail"],
        }
    ]
    assert segment.read_bytes() == bytes(broken)  # check is read-only

    repair = run_memoryd("repair", "--data-dir", str(daemon.data_dir))
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert f"offset {span.offset} ({span.length} bytes): {reason}" in repair.stdout
    names = quarantined(daemon.data_dir)
    assert len(names) == 2 and names[0].endswith(".bin") and names[1].endswith(".json")
    assert (daemon.data_dir / "quarantine" / names[0]).read_bytes() == bytes(
        broken[span.offset : span.offset + span.length]
    )
    index = json.loads((daemon.data_dir / "quarantine" / names[1]).read_text())
    assert [(r["offset"], r["length"], r["reason"]) for r in index["ranges"]] == [
        (span.offset, span.length, reason)
    ]
    assert run_memoryd("check", "--data-dir", str(daemon.data_dir)).returncode == 0

    restarted = start(daemon.data_dir, daemon.socket_path, f"repaired-{where}.log")
    try:
        intact_frames = [s for s in live if s is not damaged]
        assert_readable(daemon.socket_path, intact_frames)
        with Client(daemon.socket_path) as memory:
            with pytest.raises(NotFoundError):
                memory.get(damaged.id)
            assert memory.stats()["last_seq"] == 25
            assert memory.put("after the repair").seq == 26
    finally:
        assert restarted.terminate() == 0, restarted.stderr()
