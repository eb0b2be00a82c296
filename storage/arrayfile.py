"""Array files: named numpy arrays and a small JSON header in one checksummed file.

The container of checkpoints (storage/checkpoint.py).  No pickle: every array is
a plain numeric dtype, stored as its raw little-endian bytes, described by name,
dtype string and shape in the header; strings travel as UTF-8 in uint8 arrays.

Layout (little-endian)::

    offset  size  field
    0       4     magic          b"MDA\\x01"
    4       1     version        1
    5       3     reserved       0
    8       8     header length  H
    16      8     body length    B
    24      4     CRC-32         of the header bytes, then the body bytes
    28      4     CRC-32         of the header bytes alone (``read_array_meta``)
    32      H     header         JSON: {"meta": {...}, "arrays": [[name, dtype, shape, offset]]}
    32+H    B     body           each array's bytes at its offset (64-byte aligned)

``write_array_file`` is atomic: it writes a temporary file beside the target,
fsyncs it, renames it over the target and fsyncs the folder, so a reader sees
the old file or the new one, whole.  ``read_array_file`` verifies magic,
version, lengths and the CRC before returning anything; a file that fails is
an ``ArrayFileError``, never half-trusted.  Arrays it returns are writable, and
each is read into a buffer of its own: one the caller drops, or replaces by a
larger copy as it grows, goes back to the system (views of one shared buffer
would pin all of it while any array lived).

``start_reading_array_file`` reads the body on a helper thread instead: its
caller may take the arrays at the front of the file (``arrays_named``) as soon as
their bytes are in, and work on them while the rest is read, but nothing made
from them may be trusted, or leave the caller, before ``verified`` returns.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from memoryd.storage.fsio import fsync_dir

ARRAY_FILE_MAGIC = b"MDA\x01"
ARRAY_FILE_VERSION = 1
ARRAY_FILE_HEADER = struct.Struct("<4sB3xQQII")
ARRAY_FILE_PREFIX_BYTES = ARRAY_FILE_HEADER.size  # 32
ARRAY_ALIGN_BYTES = 64
ARRAY_FILE_HEADER_BYTES_MAX = 64 * 1024 * 1024  # a header is names and shapes: far below this
WRITE_PIECE_BYTES = 8 * 1024 * 1024  # written (and checked for cancellation) this much at a time
READ_PIECE_BYTES = 16 * 1024 * 1024  # read, and its CRC taken beside the next read, at a time
_DTYPE_KINDS = frozenset("biuf")  # bool, signed, unsigned, float: nothing that pickles

assert ARRAY_FILE_PREFIX_BYTES == 32


class ArrayFileError(ValueError):
    """An array file is missing, damaged, of another version, or not an array file."""


class WriteCancelledError(Exception):
    """``write_array_file`` was told to stop; the target is unchanged."""


def _crc(header: bytes, body: list[memoryview]) -> int:
    crc = zlib.crc32(header)
    for piece in body:
        crc = zlib.crc32(piece, crc)
    return crc


def write_array_file(
    path: Path,
    meta: Mapping[str, Any],
    arrays: Mapping[str, npt.NDArray[Any]],
    cancelled: Callable[[], bool] = lambda: False,
) -> int:
    """Write ``meta`` and ``arrays`` to ``path`` atomically; returns the file's size.

    ``cancelled`` is polled between pieces: when it turns true the temporary
    file is removed and WriteCancelledError raised, leaving ``path`` as it was.
    """
    entries: list[list[Any]] = []
    pieces: list[memoryview] = []
    offset = 0
    for name, array in arrays.items():
        data = np.ascontiguousarray(array)
        if data.dtype.kind not in _DTYPE_KINDS:
            raise ValueError(f"array {name!r} has dtype {data.dtype}, not a plain number type")
        data = data.astype(data.dtype.newbyteorder("<"), copy=False)
        pad = (-offset) % ARRAY_ALIGN_BYTES
        if pad:
            pieces.append(memoryview(bytes(pad)))
            offset += pad
        entries.append([name, data.dtype.str, list(data.shape), offset])
        raw = memoryview(data.reshape(-1).view(np.uint8).data) if data.size else memoryview(b"")
        pieces.append(raw)
        offset += raw.nbytes
    header = json.dumps({"meta": dict(meta), "arrays": entries}).encode("utf-8")
    prefix = ARRAY_FILE_HEADER.pack(
        ARRAY_FILE_MAGIC,
        ARRAY_FILE_VERSION,
        len(header),
        offset,
        _crc(header, pieces),
        zlib.crc32(header),
    )
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            _write_all(fd, memoryview(prefix + header), cancelled)
            for piece in pieces:
                _write_all(fd, piece, cancelled)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return ARRAY_FILE_PREFIX_BYTES + len(header) + offset


def _write_all(fd: int, data: memoryview, cancelled: Callable[[], bool]) -> None:
    for start in range(0, data.nbytes, WRITE_PIECE_BYTES):
        if cancelled():
            raise WriteCancelledError("array file write cancelled")
        piece = data[start : start + WRITE_PIECE_BYTES]
        while piece.nbytes:
            piece = piece[os.write(fd, piece) :]


def _read_header(path: Path, f: BinaryIO) -> tuple[bytes, int, int]:
    """(header bytes, body length, CRC of all) after checking the prefix and header CRC."""
    prefix = f.read(ARRAY_FILE_PREFIX_BYTES)
    if len(prefix) < ARRAY_FILE_PREFIX_BYTES:
        raise ArrayFileError(f"{path}: shorter than an array file header")
    magic, version, header_len, body_len, crc, header_crc = ARRAY_FILE_HEADER.unpack(prefix)
    if magic != ARRAY_FILE_MAGIC:
        raise ArrayFileError(f"{path}: not an array file")
    if version != ARRAY_FILE_VERSION:
        raise ArrayFileError(f"{path}: array file version {version}, not {ARRAY_FILE_VERSION}")
    size = os.fstat(f.fileno()).st_size
    if header_len > ARRAY_FILE_HEADER_BYTES_MAX or (
        ARRAY_FILE_PREFIX_BYTES + header_len + body_len != size
    ):
        raise ArrayFileError(f"{path}: lengths in the header do not match the file size")
    header = f.read(header_len)
    if len(header) != header_len or zlib.crc32(header) != header_crc:
        raise ArrayFileError(f"{path}: checksum mismatch (header)")
    return header, body_len, crc


def read_array_meta(path: Path) -> dict[str, Any]:
    """Only the meta of an array file (its header CRC checked, the body not read)."""
    try:
        with path.open("rb") as f:
            header, _body_len, _crc_all = _read_header(path, f)
    except OSError as exc:
        raise ArrayFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        meta = json.loads(header)["meta"]
    except (ValueError, TypeError, KeyError) as exc:
        raise ArrayFileError(f"{path}: malformed header: {exc}") from None
    if not isinstance(meta, dict):
        raise ArrayFileError(f"{path}: malformed header: meta is not an object")
    return meta


def read_array_file(path: Path) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    """The meta and arrays of a file ``write_array_file`` wrote; ArrayFileError if damaged."""
    reading = start_reading_array_file(path)
    try:
        return reading.meta, reading.verified()
    finally:
        reading.close()


def start_reading_array_file(path: Path) -> ArrayFileReading:
    """Check the header of ``path`` and start reading its body on a helper thread.

    ArrayFileError at once if the file cannot be opened or its header is bad;
    a damaged body is reported by ``verified``.  The caller must ``close`` it.
    """
    try:
        f = path.open("rb", buffering=0)
    except OSError as exc:
        raise ArrayFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        header, body_len, crc = _read_header(path, f)
        parsed = json.loads(header)
        meta = parsed["meta"]
        if not isinstance(meta, dict):
            raise ArrayFileError(f"{path}: malformed header: meta is not an object")
        arrays, ends, pieces = _array_buffers(parsed["arrays"], body_len)
    except ArrayFileError:
        f.close()
        raise
    except OSError as exc:
        f.close()
        raise ArrayFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (ValueError, TypeError, KeyError) as exc:
        f.close()
        raise ArrayFileError(f"{path}: malformed header: {exc}") from None
    reading = ArrayFileReading(path, meta, arrays, ends)
    reading._start(f, pieces, zlib.crc32(header), crc)
    return reading


def _array_buffers(
    described: list[Any], body_len: int
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, int], list[memoryview]]:
    """For the header's ``[name, dtype, shape, offset]`` entries: each array, empty, in
    a buffer of its own; where each ends in the body; and the body cut into the
    pieces to read in order (arrays' bytes, and the alignment padding between
    them, which is checksummed and dropped).  ValueError for an array outside the
    body, overlapping another, or a gap wider than alignment pads."""
    arrays: dict[str, npt.NDArray[Any]] = {}
    ends: dict[str, int] = {}
    placed: list[tuple[int, memoryview]] = []
    for name, dtype, shape, offset in described:
        kind = np.dtype(dtype)
        if kind.kind not in _DTYPE_KINDS:
            raise ValueError(f"dtype {dtype} is not a plain number type")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        start = int(offset)
        if start < 0 or count < 0 or start + count * kind.itemsize > body_len:
            raise ValueError("an array lies outside the body")
        # Not zeroed: the read fills every byte, and zeroing is a pass over every page.
        buffer = np.empty(count * kind.itemsize, dtype=np.uint8)
        arrays[name] = buffer.view(kind).reshape(shape)
        ends[name] = start + buffer.nbytes
        if buffer.nbytes:
            placed.append((start, buffer.data.cast("B")))
    placed.sort(key=lambda item: item[0])
    pieces: list[memoryview] = []
    at = 0
    for start, view in [*placed, (body_len, memoryview(b""))]:
        if start < at:
            raise ValueError("arrays overlap")
        if start - at >= ARRAY_ALIGN_BYTES:
            raise ValueError(f"{start - at} bytes between arrays that no array claims")
        if start > at:  # alignment padding: read into its own few bytes, checked, dropped
            pieces.append(memoryview(bytearray(start - at)))
            at = start
        for lo in range(0, view.nbytes, READ_PIECE_BYTES):
            pieces.append(view[lo : lo + READ_PIECE_BYTES])
        at += view.nbytes
    return arrays, ends, pieces


class ArrayFileReading:
    """An array file whose body a helper thread reads (``start_reading_array_file``).

    ``meta`` is known (its header is verified); ``arrays_named`` waits for some
    arrays' bytes, unverified; ``verified`` waits for all and checks the CRC.
    """

    def __init__(
        self,
        path: Path,
        meta: dict[str, Any],
        arrays: dict[str, npt.NDArray[Any]],
        ends: dict[str, int],
    ) -> None:
        self.path = path
        self.meta = meta
        self._arrays = arrays
        self._ends = ends
        self._changed = threading.Condition()
        self._bytes_read = 0
        self._finished = False
        self._error: ArrayFileError | None = None
        self._crc_matches = False
        self._cancelled = False
        self._thread: threading.Thread | None = None

    def _start(self, f: BinaryIO, pieces: list[memoryview], crc: int, expected: int) -> None:
        self._thread = threading.Thread(
            target=self._read, args=(f, pieces, crc, expected), name="array-read", daemon=True
        )
        self._thread.start()

    def arrays_named(self, prefix: str) -> dict[str, npt.NDArray[Any]]:
        """The arrays whose names start with ``prefix``, once their bytes are read.

        Not verified yet: what the caller makes of them is to be thrown away
        unless ``verified`` succeeds.  ArrayFileError if the read failed first.
        """
        chosen = {name: a for name, a in self._arrays.items() if name.startswith(prefix)}
        needed = max((self._ends[name] for name in chosen), default=0)
        with self._changed:
            self._changed.wait_for(lambda: self._finished or self._bytes_read >= needed)
            if self._bytes_read < needed and self._error is not None:
                raise self._error
        return chosen

    def verified(self) -> dict[str, npt.NDArray[Any]]:
        """Every array, once the whole body is read and its CRC matches; else ArrayFileError."""
        with self._changed:
            self._changed.wait_for(lambda: self._finished)
            if self._error is not None:
                raise self._error
            if not self._crc_matches:
                raise ArrayFileError(f"{self.path}: checksum mismatch")
        return self._arrays

    def close(self) -> None:
        """Stop reading (if it still runs) and wait for the helper thread."""
        with self._changed:
            self._cancelled = True
        if self._thread is not None:
            self._thread.join()

    def _read(self, f: BinaryIO, pieces: list[memoryview], crc: int, expected: int) -> None:
        error: ArrayFileError | None = None
        try:
            with f:
                crc = _read_body(self.path, f, pieces, crc, self._progress)
        except ArrayFileError as exc:
            error = exc
        except OSError as exc:
            error = ArrayFileError(f"{self.path}: cannot read: {exc.strerror or exc}")
        with self._changed:
            self._finished = True
            self._error = error
            self._crc_matches = error is None and crc == expected
            self._changed.notify_all()

    def _progress(self, bytes_read: int) -> bool:
        """Publish progress; False once the reading is to stop."""
        with self._changed:
            self._bytes_read = bytes_read
            self._changed.notify_all()
            return not self._cancelled


def _read_body(
    path: Path,
    f: BinaryIO,
    pieces: list[memoryview],
    crc: int,
    progress: Callable[[int], bool],
) -> int:
    """Read the body into ``pieces`` (consecutive, each at most READ_PIECE_BYTES),
    each piece's CRC taken on a helper thread while the next one is read: both
    release the interpreter lock, so a large checkpoint is read and verified in
    about the time of the slower of the two.  ``progress`` hears how many bytes
    are in after each piece and stops the read by returning False (an
    ArrayFileError).  Returns the CRC."""
    done = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="array-crc") as crc_thread:
        pending: Future[int] | None = None
        for piece in pieces:
            got = 0
            while got < piece.nbytes:
                n = os.readv(f.fileno(), [piece[got:]])
                if not n:
                    raise ArrayFileError(f"{path}: the file ended early")
                got += n
            done += got
            if not progress(done):
                raise ArrayFileError(f"{path}: reading was stopped")
            if pending is not None:
                crc = pending.result()
            pending = crc_thread.submit(zlib.crc32, piece, crc)
        if pending is not None:
            crc = pending.result()
    return crc


def strings_to_array(strings: list[str]) -> npt.NDArray[Any]:
    """Strings (no NUL inside) as one uint8 array: UTF-8, each followed by NUL."""
    if not strings:
        return np.zeros(0, dtype=np.uint8)
    joined = "\x00".join(strings) + "\x00"
    return np.frombuffer(joined.encode("utf-8", "surrogatepass"), dtype=np.uint8)


def array_to_strings(array: npt.NDArray[Any]) -> list[str]:
    """The inverse of ``strings_to_array``."""
    if array.shape[0] == 0:
        return []
    text = array.tobytes().decode("utf-8", "surrogatepass")
    if not text.endswith("\x00"):
        raise ArrayFileError("a string array is not NUL-terminated")
    return text[:-1].split("\x00")
