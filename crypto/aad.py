"""Associated data: what a ciphertext is for, encoded canonically (FORMAT.md section 3).

A sealed blob opens only with the very associated data it was sealed with.
Binding a frame's content to its id, namespace and sequence number means a
blob copied into another record, another namespace or another place in the
log fails to open instead of showing up there.  The encoding is
length-prefixed throughout and sorts fields by name, so one value has exactly
one encoding and no two values share one.
"""

from __future__ import annotations

import functools
import re
import struct
from dataclasses import dataclass, field

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
# The fixed bytes around a frame AAD's values (see frame_aad).
_FRAME_HEAD = b"\x01\x0dmemoryd.frame\x03\x02id\x02"
_FRAME_NS = b"\x02ns\x02"
_FRAME_SEQ = b"\x03seq\x03" + _U32.pack(_U64.size)
assert len(FRAME_PURPOSE) == 0x0D


@dataclass(frozen=True, slots=True)
class Aad:
    """A purpose and named fields; build with ``Aad.of`` (or ``frame_aad``).

    AAD is authenticated but not secret, so it may be printed.
    """

    purpose: str
    fields: tuple[tuple[str, AadValue], ...]
    # Checked and encoded once, when made: an AAD is used for every seal and open.
    _encoded: bytes = field(init=False, repr=False, compare=False)

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
        purpose = self.purpose.encode("ascii")
        parts = [bytes((AAD_VERSION, len(purpose))), purpose, bytes((len(self.fields),))]
        for name, value in self.fields:
            if not _NAME_RE.fullmatch(name):
                raise ValueError("an AAD field name is 1 to 32 of [a-z0-9_]")
            kind, raw = _encode_value(value)
            parts += [bytes((len(name),)), name.encode("ascii"), bytes((kind,))]
            parts += [_U32.pack(len(raw)), raw]
        object.__setattr__(self, "_encoded", b"".join(parts))

    def encode(self) -> bytes:
        """The canonical bytes of this AAD."""
        return self._encoded

    @classmethod
    def _encoded_by_caller(
        cls, purpose: str, fields: tuple[tuple[str, AadValue], ...], encoded: bytes
    ) -> Aad:
        """An AAD whose fields the caller has checked and encoded itself (the fast paths
        below, made on every seal and open; a test holds them equal to ``Aad.of``)."""
        aad = object.__new__(cls)
        object.__setattr__(aad, "purpose", purpose)
        object.__setattr__(aad, "fields", fields)
        object.__setattr__(aad, "_encoded", encoded)
        return aad


def frame_aad(frame_id: str, namespace: str, seq: int) -> Aad:
    """The AAD of a private frame's content: its id, its namespace and its record's seq."""
    fields = (("id", frame_id), ("ns", namespace), ("seq", seq))
    return Aad._encoded_by_caller(FRAME_PURPOSE, fields, encode_frame_aad(frame_id, namespace, seq))


def encode_frame_aad(frame_id: str, namespace: str, seq: int) -> bytes:
    """``frame_aad(frame_id, namespace, seq).encode()``, without making the ``Aad``
    (a batch of seals needs the bytes only; made once per private frame)."""
    if not (isinstance(frame_id, str) and isinstance(namespace, str) and type(seq) is int):
        raise TypeError("a frame AAD is made of a str id, a str namespace and an int seq")
    id_raw = frame_id.encode("utf-8", "surrogatepass")
    ns_raw = namespace.encode("utf-8", "surrogatepass")
    if len(id_raw) > AAD_VALUE_BYTES_MAX or len(ns_raw) > AAD_VALUE_BYTES_MAX:
        longest = max(len(id_raw), len(ns_raw))
        raise LimitError("aad_value_bytes_max", longest, AAD_VALUE_BYTES_MAX)
    if not 0 <= seq <= AAD_INT_MAX:
        raise ValueError("an AAD integer is between 0 and 2**64 - 1")
    u32 = _U32.pack
    return b"".join(
        (
            _FRAME_HEAD,
            u32(len(id_raw)),
            id_raw,
            _FRAME_NS,
            u32(len(ns_raw)),
            ns_raw,
            _FRAME_SEQ,
            _U64.pack(seq),
        )
    )


def key_aad(purpose: str, keyring_id: bytes, name: str, key_id: int) -> Aad:
    """The AAD of a wrapped key: ``purpose`` with ``keyring`` and the key's id as ``name``."""
    _, id_raw = _encode_value(key_id)
    before, after = key_aad_frame(purpose, keyring_id, name)
    pairs: list[tuple[str, AadValue]] = [("keyring", keyring_id), (name, key_id)]
    fields = tuple(sorted(pairs, key=lambda pair: pair[0]))
    return Aad._encoded_by_caller(purpose, fields, before + id_raw + after)


@functools.lru_cache(maxsize=16)
def key_aad_frame(purpose: str, keyring_id: bytes, name: str) -> tuple[bytes, bytes]:
    """The encoding of the key AAD around its id: found by encoding two ids that differ
    in all eight bytes."""
    low = Aad.of(purpose, keyring=keyring_id, **{name: 0}).encode()
    high = Aad.of(purpose, keyring=keyring_id, **{name: AAD_INT_MAX}).encode()
    at = next(i for i in range(len(low)) if low[i] != high[i])
    return low[:at], low[at + _U64.size :]


def _encode_value(value: AadValue) -> tuple[int, bytes]:
    """The type tag and bytes of a value, after checking it."""
    if isinstance(value, bytes):
        kind, raw = _TYPE_BYTES, value
    elif isinstance(value, str):
        # surrogatepass: any str has an encoding (frame ids are computed the same way).
        kind, raw = _TYPE_TEXT, value.encode("utf-8", "surrogatepass")
    elif isinstance(value, int) and not isinstance(value, bool):
        # (bool is an int: refusing it keeps True and 1 from meaning the same thing.)
        if not 0 <= value <= AAD_INT_MAX:
            raise ValueError("an AAD integer is between 0 and 2**64 - 1")
        return _TYPE_INT, _U64.pack(value)
    else:
        raise TypeError("an AAD value is bytes, str or a non-negative int")
    if len(raw) > AAD_VALUE_BYTES_MAX:
        raise LimitError("aad_value_bytes_max", len(raw), AAD_VALUE_BYTES_MAX)
    return kind, raw
