"""Recovery with a checkpoint's trusted prefix: skips the sealed segments before the
checkpoint's record, verifies the rest, and falls back to verifying everything when
the files differ from what it vouches for."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import pytest

from memoryd.storage import FileLog, LogCorruptionError
from memoryd.storage.recovery import TrustedPrefix, recover_log
from memoryd.storage.segment import list_segments

RECORDS = 300


def make_log(tmp_path: Path) -> Path:
    log_dir = tmp_path / "log"
    log, _ = FileLog.open(log_dir, segment_bytes_max=4096)
    for i in range(RECORDS):
        log.append([(1, 1_700_000_000_000 + i, b'{"id": "%d", "pad": "%s"}' % (i, b"x" * 40))])
    log.close()
    return log_dir


def prefix_at(log_dir: Path, seq: int) -> TrustedPrefix:
    log, _ = FileLog.open(log_dir, segment_bytes_max=4096)
    try:
        entry = next(log.read_from(seq))
    finally:
        log.close()
    where = entry.location
    segments, _ = list_segments(log_dir)
    held = next(s for s in segments if s.first_seq == where.segment).path
    return TrustedPrefix(
        segments=tuple((s.first_seq, s.size) for s in segments if s.first_seq < where.segment),
        seq=seq,
        segment=where.segment,
        offset=where.offset,
        length=where.length,
        hash=hashlib.sha256(entry.record.raw).digest(),
        before_crc32=zlib.crc32(held.read_bytes()[: where.offset]),
    )


def test_a_matching_prefix_is_not_verified_again(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path)
    full = recover_log(log_dir, tmp_path / "q")
    trusted = prefix_at(log_dir, 250)
    assert len(trusted.segments) > 2  # the prefix spans several sealed segments
    quick = recover_log(log_dir, tmp_path / "q", trusted)
    assert quick.records == RECORDS - trusted.segment + 1  # from the record's segment on
    assert (quick.last_seq, quick.last_hash) == (full.last_seq, full.last_hash)
    assert any("checkpoint vouches" in n for n in quick.notices)


def test_damage_in_the_segment_of_the_checkpoint_record_is_still_found(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path)
    trusted = prefix_at(log_dir, 250)
    held = next(s for s in list_segments(log_dir)[0] if s.first_seq == trusted.segment).path
    data = bytearray(held.read_bytes())
    data[30] ^= 0xFF  # the first record of that segment, before the checkpoint's record
    held.write_bytes(bytes(data))
    with pytest.raises(LogCorruptionError):
        recover_log(log_dir, tmp_path / "q", trusted)


def test_damage_after_the_prefix_is_still_found_and_a_torn_tail_cut(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path)
    trusted = prefix_at(log_dir, 200)
    last = list_segments(log_dir)[0][-1].path
    with last.open("ab") as f:
        f.write(b"\x07torn")
    report = recover_log(log_dir, tmp_path / "q", trusted)
    assert report.torn_tail is not None and report.last_seq == RECORDS
    sealed = next(s for s in list_segments(log_dir)[0] if s.first_seq > trusted.segment).path
    data = bytearray(sealed.read_bytes())
    data[30] ^= 0xFF
    sealed.write_bytes(bytes(data))
    with pytest.raises(LogCorruptionError):
        recover_log(log_dir, tmp_path / "q", trusted)


def test_in_the_last_segment_verifying_starts_at_the_checkpoint_record(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path)
    full = recover_log(log_dir, tmp_path / "q")
    trusted = prefix_at(log_dir, RECORDS - 5)
    last = list_segments(log_dir)[0][-1]
    assert trusted.segment == last.first_seq < trusted.seq  # mid-way through the last segment
    quick = recover_log(log_dir, tmp_path / "q", trusted)
    assert quick.records == 6  # the checkpoint's record and the five after it
    assert (quick.last_seq, quick.last_hash) == (full.last_seq, full.last_hash)
    assert any("records before that offset" in n for n in quick.notices)
    # What follows the record is still verified: a torn tail is cut, a bad record refused.
    with last.path.open("ab") as f:
        f.write(b"\x07torn")
    assert recover_log(log_dir, tmp_path / "q", trusted).torn_tail is not None
    intact = last.path.read_bytes()
    after = bytearray(intact)
    after[trusted.offset + trusted.length + 30] ^= 0xFF
    last.path.write_bytes(bytes(after))
    with pytest.raises(LogCorruptionError):
        recover_log(log_dir, tmp_path / "q", trusted)


def test_damage_before_the_record_in_the_last_segment_is_found_by_its_crc(
    tmp_path: Path,
) -> None:
    log_dir = make_log(tmp_path)
    trusted = prefix_at(log_dir, RECORDS - 5)
    last = list_segments(log_dir)[0][-1].path
    before = bytearray(last.read_bytes())
    before[30] ^= 0xFF  # the segment's first record, long before the checkpoint's
    last.write_bytes(bytes(before))
    with pytest.raises(LogCorruptionError) as info:
        recover_log(log_dir, tmp_path / "q", trusted)
    assert info.value.offset == 0  # the segment was verified whole: the bad record is named
    # A checkpoint of an older format (no CRC) verifies that segment whole as well.
    old = TrustedPrefix(**{**_fields(trusted), "before_crc32": None})
    with pytest.raises(LogCorruptionError):
        recover_log(log_dir, tmp_path / "q", old)


@pytest.mark.parametrize("change", ["hash", "seq", "segment sizes", "missing segment"])
def test_a_prefix_that_does_not_match_means_verifying_everything(
    tmp_path: Path, change: str
) -> None:
    log_dir = make_log(tmp_path)
    trusted = prefix_at(log_dir, 250)
    if change == "hash":
        trusted = TrustedPrefix(**{**_fields(trusted), "hash": b"\0" * 32})
    elif change == "seq":
        trusted = TrustedPrefix(**{**_fields(trusted), "seq": 249})
    elif change == "segment sizes":
        first, size = trusted.segments[0]
        trusted = TrustedPrefix(
            **{**_fields(trusted), "segments": ((first, size + 1), *trusted.segments[1:])}
        )
    else:
        trusted = TrustedPrefix(**{**_fields(trusted), "segment": 10**9})
    report = recover_log(log_dir, tmp_path / "q", trusted)
    assert report.records == RECORDS
    assert any("verified the whole log" in n for n in report.notices)


def _fields(prefix: TrustedPrefix) -> dict[str, object]:
    return {name: getattr(prefix, name) for name in TrustedPrefix.__slots__}
