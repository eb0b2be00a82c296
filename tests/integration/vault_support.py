"""Helpers for tests of private memories against a real daemon.

Every daemon here uses the fast, weak KDF (``vault_kdf = "test"``) through its
configuration file, never the real parameters: a test unlocks in microseconds.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from memoryd.client import Client
from memoryd.storage.chunks import CHUNK_HEADER_BYTES, CODEC_ZLIB
from memoryd.storage.events import decode_frame_put
from memoryd.storage.record import (
    RECORD_HEADER_BYTES,
    RECORD_TRAILER_STRUCT,
    RecordType,
    decode_record,
    record_length_at,
)

from .daemon_process import DaemonProcess

PASSPHRASE = "correct horse battery staple"


def vault_daemon(
    tmp_path: Path, socket_dir: Path, *, name: str = "data", extra: str = ""
) -> DaemonProcess:
    """A daemon (not started) whose configuration file selects the test KDF, plus ``extra``."""
    config = tmp_path / f"{name}.toml"
    config.write_text(f'vault_kdf = "test"\n{extra}')
    return DaemonProcess(tmp_path / name, socket_dir / "s.sock", "--config", str(config))


def secret_file(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    path.chmod(0o600)
    return path


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def wait_rotation_done(client: Client) -> dict[str, Any]:
    wait_for(lambda: client.vault_status()["rotation"] is None)
    return client.vault_status()


def segment_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "log").glob("*.seg"))


def records(path: Path) -> Iterator[tuple[int, Any]]:
    """(offset, record) of every record of a segment file."""
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
        record = decode_record(data, offset)
        yield offset, record
        offset += record_length_at(data, offset)


def sealed_envelope_span(data_dir: Path, frame_id: str) -> tuple[Path, int, int, bytes]:
    """Where frame ``frame_id``'s envelope sits in its record: (segment, record offset,
    record length, envelope bytes)."""
    for path in segment_files(data_dir):
        for offset, record in records(path):
            if record.record_type != RecordType.FRAME_PUT:
                continue
            frame = decode_frame_put(record.payload, record.seq, record.timestamp_ms)
            if frame.id == frame_id:
                assert frame.sealed is not None
                return path, offset, record.size, frame.sealed
    raise AssertionError(f"no record of frame {frame_id}")


def rewrite_record_payload(path: Path, offset: int, edit: Callable[[bytes], bytes]) -> None:
    """Replace a record's payload with ``edit(payload)`` (same length) and fix its CRC up,
    so that only what is inside the payload (the envelope) is damaged."""
    data = bytearray(path.read_bytes())
    record = decode_record(bytes(data), offset)
    payload = edit(record.payload)
    assert len(payload) == len(record.payload)
    start = offset + RECORD_HEADER_BYTES
    data[start : start + len(payload)] = payload
    end = start + len(payload)
    RECORD_TRAILER_STRUCT.pack_into(data, end, zlib.crc32(bytes(data[offset:end])))
    path.write_bytes(bytes(data))


def scan_for(root: Path, needles: list[bytes]) -> list[tuple[Path, bytes]]:
    """Every (file, needle) where a needle occurs anywhere under ``root`` (any case)."""
    found: list[tuple[Path, bytes]] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        found += scan_bytes(path, readable_bytes(path), needles)
    return found


def scan_bytes(path: Path, data: bytes, needles: list[bytes]) -> list[tuple[Path, bytes]]:
    data = data.lower()
    return [(path, needle) for needle in needles if needle.lower() in data]


def readable_bytes(path: Path) -> bytes:
    """A file's bytes, and for a compressed chunk its body inflated too (what a reader sees)."""
    data = path.read_bytes()
    if path.suffix == ".chunk" and data[5:6] == bytes((CODEC_ZLIB,)):
        data += zlib.decompress(data[CHUNK_HEADER_BYTES:])
    return data
