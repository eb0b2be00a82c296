"""Near-duplicate detection: 64-bit SimHash over word shingles, and a banded lookup index.

Contract:

* ``simhash(text)`` / ``simhash_batch(texts)``: Charikar's SimHash of the text's
  word 3-shingles (normalized words, stop words kept: order and function words are
  what make two texts the same text).  Texts of one or two words hash those words.
  Deterministic across processes (keyed BLAKE2b per word, splitmix64 per shingle).
  The empty text hashes to 0.
* Two texts are near twins when their hashes differ in at most
  ``near_bits_max`` bits (3 of 64 by default: the threshold Manku et al. use for
  web pages).
* :class:`NearDuplicateIndex` finds a near twin of a hash in O(1) expected: the 64
  bits are cut into ``near_bits_max + 1`` bands, and by pigeonhole two hashes within
  that distance agree exactly on at least one band, so one dict lookup per band
  finds every candidate; candidates are then checked bit by bit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from memoryd.storage.search.arrays import IntArray, mix64
from memoryd.storage.search.text import DEFAULT_TOKENIZER, Tokenizer

near_bits_max = 3  # Hamming distance of near twins
shingle_words = 3
word_hash_cache_entries_max = 1 << 20
_BANDS = near_bits_max + 1
_BAND_BITS = 64 // _BANDS
_PAIR = np.uint64(0x9E3779B97F4A7C15)
_word_hashes: dict[str, int] = {}

assert _BANDS * _BAND_BITS <= 64 and _BAND_BITS >= 8  # bands long enough to be selective


def _word_hash(word: str) -> int:
    h = _word_hashes.get(word)
    if h is None:
        digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8, person=b"memoryd-s")
        h = int.from_bytes(digest.digest(), "little")
        if len(_word_hashes) >= word_hash_cache_entries_max:
            _word_hashes.clear()
        _word_hashes[word] = h
    return h


def _shingles(hashes: IntArray) -> IntArray:
    """Hashes of the consecutive ``shingle_words``-word windows (or of each word, if fewer)."""
    n = hashes.shape[0]
    if n < shingle_words:
        return mix64(hashes)
    out = np.zeros(n - shingle_words + 1, dtype=np.uint64)
    for j in range(shingle_words):
        out = mix64(out * _PAIR + hashes[j : j + out.shape[0]])
    return out


def simhash(text: str, tokenizer: Tokenizer = DEFAULT_TOKENIZER) -> int:
    """The 64-bit SimHash of ``text`` (see module docstring)."""
    words = tokenizer.words(text)
    if not words:
        return 0
    hashes = np.fromiter(map(_word_hash, words), dtype=np.uint64, count=len(words))
    shingles = _shingles(hashes)
    bits = np.unpackbits(shingles.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    votes = 2 * bits.sum(axis=0, dtype=np.int64) - shingles.shape[0]
    # Little-endian bytes and bits: column c is bit c of the uint64.
    return int(np.packbits(votes > 0, bitorder="little").view("<u8")[0])


def simhash_batch(texts: Sequence[str], tokenizer: Tokenizer = DEFAULT_TOKENIZER) -> IntArray:
    """``simhash`` of each text, as a uint64 array."""
    return np.array([simhash(t, tokenizer) for t in texts], dtype=np.uint64)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def _bands(h: int) -> list[tuple[int, int]]:
    mask = (1 << _BAND_BITS) - 1
    return [(i, (h >> (i * _BAND_BITS)) & mask) for i in range(_BANDS)]


class NearDuplicateIndex:
    """Doc -> SimHash, with lookup of the nearest doc within ``near_bits_max`` bits."""

    def __init__(self) -> None:
        self._hash: dict[int, int] = {}
        self._tables: dict[tuple[int, int], list[int]] = {}

    def __len__(self) -> int:
        return len(self._hash)

    def add(self, doc: int, h: int) -> None:
        if doc in self._hash:
            raise ValueError(f"doc {doc} already indexed")
        self._hash[doc] = h
        for key in _bands(h):
            self._tables.setdefault(key, []).append(doc)

    def remove(self, doc: int) -> bool:
        h = self._hash.pop(doc, None)
        if h is None:
            return False
        for key in _bands(h):
            docs = self._tables[key]
            docs.remove(doc)
            if not docs:
                del self._tables[key]
        return True

    def nearest(self, h: int, bits_max: int = near_bits_max) -> tuple[int, int] | None:
        """(doc, distance) of the closest indexed hash within ``bits_max`` bits, or None.

        Ties go to the older (smaller) doc: the original, not a later copy.
        """
        if not 0 <= bits_max <= near_bits_max:
            raise ValueError(f"bits_max must be within 0-{near_bits_max}")
        best: tuple[int, int] | None = None
        for key in _bands(h):
            for doc in self._tables.get(key, ()):
                d = hamming(h, self._hash[doc])
                if d <= bits_max and (best is None or (d, doc) < (best[1], best[0])):
                    best = (doc, d)
        return best

    def memory_bytes(self) -> int:
        # dict entry ~100 B per doc, and one list slot + a share of a list per band.
        return 100 * len(self._hash) + (8 + 40) * _BANDS * len(self._hash)

    def _check(self) -> None:
        count = 0
        for (band, value), docs in self._tables.items():
            assert docs, "empty band list"
            for doc in docs:
                assert (band, value) in _bands(self._hash[doc])
            count += len(docs)
        assert count == _BANDS * len(self._hash)

    def to_arrays(self) -> tuple[IntArray, IntArray]:
        """(docs int64, hashes uint64) for a checkpoint; rebuild with :meth:`from_arrays`."""
        docs = np.fromiter(self._hash.keys(), dtype=np.int64, count=len(self._hash))
        hashes = np.fromiter(self._hash.values(), dtype=np.uint64, count=len(self._hash))
        return docs, hashes

    @classmethod
    def from_arrays(cls, docs: IntArray, hashes: IntArray) -> NearDuplicateIndex:
        index = cls()
        for d, h in zip(docs.tolist(), hashes.tolist(), strict=True):
            index.add(int(d), int(h))
        return index
