"""Where things live in a data directory, and how the log's files are named.

One place for every name, so that the writer, recovery, ``check`` and
``repair`` agree on them (FORMAT.md describes the same layout)::

    <data_dir>/
        LOCK                                  held by the running daemon (lock.py)
        log/                                  the log: segment files only
            00000000000000000001.seg          first seq of the segment, 20 digits
        quarantine/                           bytes moved out of the log, never read back
            torn-<segment>-<offset>.bin       a torn tail dropped by recovery
            repair-<unix_s>.bin / .json       damaged ranges moved aside by repair
        log.repair-tmp/                       a repair being written (ignored at start)
        log.repair-ready/                     a finished repair not yet swapped in
        log.before-repair-<unix_s>/           the log as it was before a repair
"""

from __future__ import annotations

from pathlib import Path

LOG_DIR_NAME = "log"
QUARANTINE_DIR_NAME = "quarantine"
LOCK_FILE_NAME = "LOCK"

SEGMENT_SUFFIX = ".seg"
SEGMENT_NAME_DIGITS = 20  # a u64 seq has at most 20 decimal digits, so names sort as numbers


def segment_file_name(first_seq: int) -> str:
    """The file name of the segment whose first record has ``first_seq``."""
    assert first_seq >= 1
    return f"{first_seq:0{SEGMENT_NAME_DIGITS}d}{SEGMENT_SUFFIX}"


def parse_segment_file_name(name: str) -> int | None:
    """The first seq named by a segment file name, or None if ``name`` is not one."""
    stem, suffix = name[: -len(SEGMENT_SUFFIX)], name[-len(SEGMENT_SUFFIX) :]
    if suffix != SEGMENT_SUFFIX or len(stem) != SEGMENT_NAME_DIGITS or not stem.isdigit():
        return None
    first_seq = int(stem)
    return first_seq if first_seq >= 1 else None


def torn_tail_file_name(first_seq: int, offset: int) -> str:
    """Quarantine file name for a torn tail cut from a segment at ``offset``."""
    return f"torn-{first_seq:0{SEGMENT_NAME_DIGITS}d}-{offset}.bin"


def repair_quarantine_stem(unix_s: int) -> str:
    """Stem of repair's quarantine files: ``<stem>.bin`` holds bytes, ``<stem>.json`` says what."""
    return f"repair-{unix_s}"


def repair_tmp_dir(log_dir: Path) -> Path:
    """Where repair writes the new log; a leftover one is an interrupted repair's, never read."""
    return log_dir.with_name(log_dir.name + ".repair-tmp")


def repair_ready_dir(log_dir: Path) -> Path:
    """A complete repaired log waiting to be swapped in (recovery finishes the swap)."""
    return log_dir.with_name(log_dir.name + ".repair-ready")


def repair_backup_dir(log_dir: Path, unix_s: int) -> Path:
    """Where repair moves the log it replaced."""
    return log_dir.with_name(f"{log_dir.name}.before-repair-{unix_s}")


def unused_path(path: Path) -> Path:
    """``path`` if nothing is there, else the first free ``<stem>-<n><suffix>`` beside it.

    Quarantine files and backups are never overwritten: a second crash at the
    same offset, or two repairs in one second, each keep their own file.
    """
    candidate = path
    n = 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate
