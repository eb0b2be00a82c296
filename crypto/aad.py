"""Associated data: what a ciphertext is for, encoded canonically (FORMAT.md section 3).

A sealed blob opens only with the very associated data it was sealed with.
Binding a frame's content to its id, namespace and sequence number means a
blob copied into another record, another namespace or another place in the
log fails to open instead of showing up there.  The encoding is
length-prefixed throughout and sorts fields by name, so one value has exactly
one encoding and no two values share one.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from memoryd.crypto.errors import LimitError

AAD_VERSION = 1
AAD_PURPOSE_BYTES_MAX = 64
AAD_FIELDS_MAX = 16
AAD_NAME_BYTES_MAX = 32
AAD_VALUE_BYTES_MAX = 4096  # far above a namespace or a frame id; keeps every AAD small
AAD_INT_MAX = 2**64 - 1

FRAME_PURPOSE = "memoryd.frame"
VAULT_KEY_PURPOSE = "memoryd.vault-key"
DATA_KEY_PURPOSE = "memoryd.data-key"

AadValue = bytes | str | int

_TYPE_BYTES = 1
_TYPE_TEXT = 2
_TYPE_INT = 3
_PURPOSE_RE = re.compile(r"[a-z0-9_.\-]{1,64}")
_NAME_RE = re.compile(r"[a-z0-9_]{1,32}")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


@dataclass(frozen=True, slots=True)
class Aad:
    """A purpose and named fields; build with ``Aad.of`` (or ``frame_aad``).

    AAD is authenticated but not secret, so it may be printed.
    """

    purpose: str
    fields: tuple[tuple[str, AadValue], ...]

    @classmethod
    def of(cls, purpose: str, **fields: AadValue) -> Aad:
        """An AAD with these fields (their order does not matter)."""
        return cls(purpose, tuple(sorted(fields.items())))

    def __post_init__(self) -> None:
        if not _PURPOSE_RE.fullmatch(self.purpose):
            raise ValueError("an AAD purpose is 1 to 64 of [a-z0-9_.-]")
        if len(self.fields) > AAD_FIELDS_MAX:
            raise LimitError("aad_fields_max", len(self.fields), AAD_FIELDS_MAX)
        names = [name for name, _ in self.fields]
        if names != sorted(set(names)):
            raise ValueError("AAD field names must be unique and sorted (use Aad.of)")
        for name, value in self.fields:
            if not _NAME_RE.fullmatch(name):
                raise ValueError("an AAD field name is 1 to 32 of [a-z0-9_]")
            _check_value(value)

    def encode(self) -> bytes:
        """The canonical bytes of this AAD."""
        purpose = self.purpose.encode("ascii")
        parts = [bytes((AAD_VERSION, len(purpose))), purpose, bytes((len(self.fields),))]
        for name, value in self.fields:
            kind, raw = _encode_value(value)
            parts += [bytes((len(name),)), name.encode("ascii"), bytes((kind,))]
            parts += [_U32.pack(len(raw)), raw]
        return b"".join(parts)


def frame_aad(frame_id: str, namespace: str, seq: int) -> Aad:
    """The AAD of a private frame's content: its id, its namespace and its record's seq."""
    return Aad.of(FRAME_PURPOSE, id=frame_id, ns=namespace, seq=seq)


def _check_value(value: AadValue) -> None:
    if isinstance(value, bool) or not isinstance(value, bytes | str | int):
        # bool is an int: refusing it keeps True and 1 from meaning the same thing.
        raise TypeError("an AAD value is bytes, str or a non-negative int")
    if isinstance(value, int):
        if not 0 <= value <= AAD_INT_MAX:
            raise ValueError("an AAD integer is between 0 and 2**64 - 1")
        return
    size = len(value) if isinstance(value, bytes) else len(_text(value))
    if size > AAD_VALUE_BYTES_MAX:
        raise LimitError("aad_value_bytes_max", size, AAD_VALUE_BYTES_MAX)


def _encode_value(value: AadValue) -> tuple[int, bytes]:
    if isinstance(value, bytes):
        return _TYPE_BYTES, value
    if isinstance(value, str):
        return _TYPE_TEXT, _text(value)
    return _TYPE_INT, _U64.pack(value)


def _text(value: str) -> bytes:
    # surrogatepass: any str has an encoding (frame ids are computed the same way).
    return value.encode("utf-8", "surrogatepass")
