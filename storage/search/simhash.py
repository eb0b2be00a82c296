"""Near-duplicate detection: 64-bit SimHash over word shingles, and a banded lookup index.

Contract:

* ``simhash(text)`` / ``simhash_batch(texts)``: Charikar's SimHash of the text's
  word 3-shingles (normalized words, stop words kept: order and function words are
  what make two texts the same text).  Texts of one or two words hash those words.
  Deterministic across processes (keyed BLAKE2b per word, splitmix64 per shingle).
  The empty text hashes to 0.  Only the first ``simhash_words_max`` words count,
  so that the cost of a put's near-duplicate check is bounded whatever its size
  (texts that differ only further on are near twins).
* Two texts are near twins when their hashes differ in at most
  ``near_bits_max`` bits (3 of 64 by default: the threshold Manku et al. use for
  web pages).
* :class:`NearDuplicateIndex` finds a near twin of a hash in O(1) expected: the 64
  bits are cut into ``near_bits_max + 1`` bands, and by pigeonhole two hashes within
  that distance agree exactly on at least one band, so one dict lookup per band
  finds every candidate; candidates are then checked bit by bit.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Callable, Sequence

import numpy as np

from memoryd.storage.search.arrays import IntArray, mix64, mix64_in_place, text_sums
from memoryd.storage.search.lexicon import Tokens, lexicon_of
from memoryd.storage.search.text import DEFAULT_TOKENIZER, Tokenizer

near_bits_max = 3  # Hamming distance of near twins
shingle_words = 3
simhash_words_max = 256
word_hash_cache_entries_max = 1 << 20
_BANDS = near_bits_max + 1
_PLANE_SHIFTS = np.arange(8, dtype=np.uint64)
_LANE_LOW_BITS = np.uint64(0x0101010101010101)
# A text's shingles at most (its windows, or its words when fewer than shingle_words).
_SHINGLES_MAX = max(simhash_words_max - shingle_words + 1, shingle_words - 1)
assert _SHINGLES_MAX <= 255
_BAND_BITS = 64 // _BANDS
_DOC_BITS = 63 - _BAND_BITS  # a settled (band value, doc) pair sorts as one int64
_DOC_MASK = (1 << _DOC_BITS) - 1
_PAIR = np.uint64(0x9E3779B97F4A7C15)


_WORD_HASHER = hashlib.blake2b(digest_size=8, person=b"memoryd-s")  # copied, never fed


def _hash_word(word: str) -> int:
    hasher = _WORD_HASHER.copy()  # a copy costs half of making one with these parameters
    hasher.update(word.encode("utf-8"))
    return int.from_bytes(hasher.digest(), "little")


class _WordHashes(dict[str, int]):
    """word -> 64-bit hash, computed on a miss; bounded (cleared when full).

    A dict subclass with ``__missing__``: ``map(memo.__getitem__, words)`` runs in C
    for every word seen before, which is most words of most texts.
    """

    def __missing__(self, word: str) -> int:
        h = _hash_word(word)
        if len(self) >= word_hash_cache_entries_max:
            self.clear()
        self[word] = h
        return h


_word_hashes = _WordHashes()

assert _BANDS * _BAND_BITS <= 64 and _BAND_BITS >= 8  # bands long enough to be selective


_word_hash = _word_hashes.__getitem__


def _shingles(hashes: IntArray) -> IntArray:
    """Hashes of the consecutive ``shingle_words``-word windows (or of each word, if fewer)."""
    n = hashes.shape[0]
    if n < shingle_words:
        return mix64(hashes)
    out = np.zeros(n - shingle_words + 1, dtype=np.uint64)
    for j in range(shingle_words):
        out = mix64_in_place(out * _PAIR + hashes[j : j + out.shape[0]])
    return out


def simhash(text: str, tokenizer: Tokenizer = DEFAULT_TOKENIZER) -> int:
    """The 64-bit SimHash of ``text`` (see module docstring)."""
    return int(simhash_batch([text], tokenizer)[0])


def simhash_batch(texts: Sequence[str], tokenizer: Tokenizer = DEFAULT_TOKENIZER) -> IntArray:
    """``simhash`` of each text, as a uint64 array: one numpy pass over the whole batch."""
    if len(texts) == 1:  # a lone put's check: the batch's bookkeeping costs more than it
        out = np.zeros(1, dtype=np.uint64)
        out[0] = _simhash_words(tokenizer.words(texts[0])[:simhash_words_max])
        return out
    return simhash_tokens(lexicon_of(tokenizer).tokenize(texts))


def _word_hash_column(words: list[str]) -> IntArray:
    return np.fromiter(map(_hash_word, words), dtype=np.uint64, count=len(words))


def simhash_tokens(tokens: Tokens) -> IntArray:
    """``simhash`` of each text of ``tokens`` (made by any tokenizer's lexicon)."""
    kept = tokens.kept()
    ids = tokens.word_ids[kept]
    counts = text_sums(tokens.counts, kept)
    if counts.shape[0] and int(counts.max()) > simhash_words_max:
        starts = np.cumsum(counts) - counts
        position = np.arange(ids.shape[0]) - np.repeat(starts, counts)
        ids = ids[position < simhash_words_max]
        counts = np.minimum(counts, simhash_words_max)
    column = tokens.vocabulary.word_column(
        "simhash.word_hash", np.uint64, _word_hash_column, tokens.words_known
    )
    return _simhash_of_hashes(column[ids], counts)


def _simhash_of_hashes(hashes: IntArray, counts: IntArray) -> IntArray:
    """Per text (owning ``counts[i]`` consecutive word ``hashes``), its SimHash."""
    out = np.zeros(counts.shape[0], dtype=np.uint64)
    total = int(hashes.shape[0])
    if total == 0:
        return out
    starts = np.cumsum(counts) - counts
    # Texts of shingle_words words or more hash their windows, shorter ones their words.
    windows = np.where(counts >= shingle_words, counts - shingle_words + 1, counts)
    owner = np.repeat(np.arange(counts.shape[0]), windows)
    first = np.repeat(starts, windows) + (
        np.arange(owner.shape[0]) - np.repeat(np.cumsum(windows) - windows, windows)
    )
    acc = np.zeros(owner.shape[0], dtype=np.uint64)
    for j in range(shingle_words):
        at = np.minimum(first + j, total - 1)
        acc = mix64_in_place(acc * _PAIR + hashes[at])
    shingles = acc
    if bool((counts < shingle_words).any()):  # short texts hash their words alone
        long_text = np.repeat(counts >= shingle_words, windows)
        shingles = np.where(long_text, acc, mix64_in_place(hashes[first]))
    present = np.flatnonzero(windows)
    starts_of_present = np.cumsum(windows)[present] - windows[present]
    # Per text, how many of its shingles set each bit.  Plane k keeps bit k of each
    # byte, one per byte lane, so that adding the planes of a text's shingles counts
    # bit 8 * byte + k in lane ``byte``: 64 counters in 8 uint64 sums (a lane holds
    # up to 255: see _SHINGLES_MAX).
    planes = (shingles[:, None] >> _PLANE_SHIFTS) & _LANE_LOW_BITS
    sums = np.add.reduceat(planes, starts_of_present, axis=0)  # (texts, k)
    # Little-endian lanes: byte b of plane k's sum counts bit 8 * b + k.
    ones = sums.view(np.uint8).reshape(-1, 8, 8).transpose(0, 2, 1).reshape(-1, 64)
    votes = 2 * ones.astype(np.int32) - windows[present][:, None]
    # Little-endian bytes and bits: column c is bit c of the uint64.
    packed = np.packbits(votes > 0, axis=1, bitorder="little")
    out[present] = packed.view("<u8").reshape(-1)
    return out


def _simhash_words(words: Sequence[str]) -> int:
    """The SimHash of one text's words: what ``simhash_batch`` gives, in fewer numpy calls.

    A lone put's near-twin check runs this on the event loop, where each of its ~30
    numpy calls costs about a microsecond whatever the size: the first window round
    skips the zero accumulator (0 * pair + h is h), rounds mix in place, and a bit
    is set when more than half the shingles set it (2 * ones - shingles > 0).
    """
    n = len(words)
    if n == 0:
        return 0
    hashes = np.fromiter(map(_word_hash, words), dtype=np.uint64, count=n)
    if n >= shingle_words:
        windows = n - shingle_words + 1
        shingles = mix64_in_place(hashes[:windows].copy())
        for j in range(1, shingle_words):
            shingles *= _PAIR
            shingles += hashes[j : j + windows]
            mix64_in_place(shingles)
    else:
        shingles = mix64(hashes)
    # Column c of the little-endian bits is bit c of the uint64, as in the batch.
    bits = np.unpackbits(shingles.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    ones = bits.sum(axis=0, dtype=np.int32)
    majority = ones > (shingles.shape[0] >> 1)
    return int(np.packbits(majority, bitorder="little").view("<u8")[0])


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def _bands(h: int) -> list[tuple[int, int]]:
    mask = (1 << _BAND_BITS) - 1
    return [(i, (h >> (i * _BAND_BITS)) & mask) for i in range(_BANDS)]


class NearDuplicateIndex:
    """Doc -> SimHash, with lookup of the nearest doc within ``near_bits_max`` bits.

    Band tables come in two parts: a *settled* part, per band the band values of
    many docs as a sorted numpy array (looked up by binary search, rebuilt in bulk
    in milliseconds), and a small *recent* part, a dict per (band, value), that
    ``add`` appends to and that is settled once it holds ``settle_fraction`` of
    the docs.  Removed docs leave stale settled entries, skipped at lookup and
    dropped at the next settling.  So a checkpoint restores the index in bulk.

    With ``docs_max``, memory is bounded: adding beyond it forgets the oldest doc
    added (near twins are looked for among the most recent ``docs_max``).
    """

    settle_docs_min = 1024
    settle_fraction = 0.125

    def __init__(self, docs_max: int | None = None) -> None:
        if docs_max is not None and docs_max < 1:
            raise ValueError("docs_max must be positive")
        self.docs_max = docs_max
        self._hash: dict[int, int] = {}
        self._order: collections.deque[int] = collections.deque()
        # Per band: band value -> docs added since the last settling.
        self._recent: list[dict[int, list[int]]] = [{} for _ in range(_BANDS)]
        self._recent_docs = 0
        empty = np.zeros(0, dtype=np.uint64)
        self._settled: list[tuple[IntArray, IntArray]] = [
            (empty, np.zeros(0, dtype=np.int64)) for _ in range(_BANDS)
        ]

    def __len__(self) -> int:
        return len(self._hash)

    def add(self, doc: int, h: int) -> None:
        if doc in self._hash:
            raise ValueError(f"doc {doc} already indexed")
        if not 0 <= doc <= _DOC_MASK:
            raise ValueError(f"doc {doc} is out of range")
        self._hash[doc] = h
        for band, value in _bands(h):
            self._recent[band].setdefault(value, []).append(doc)
        self._recent_docs += 1
        if self.docs_max is not None:
            self._order.append(doc)
            while len(self._hash) > self.docs_max:
                self.remove(self._order.popleft())
        if self._recent_docs >= max(self.settle_docs_min, self.settle_fraction * len(self._hash)):
            self._settle()

    def add_batch(self, docs: Sequence[int], hashes: Sequence[int]) -> None:
        """``add`` of each (doc, hash) in order: the same docs end up indexed."""
        if len(docs) != len(hashes):
            raise ValueError("docs and hashes differ in length")
        if any(doc in self._hash for doc in docs) or len(set(docs)) != len(docs):
            raise ValueError("a doc is already indexed")
        if not docs:
            return
        if min(docs) < 0 or max(docs) > _DOC_MASK:
            raise ValueError("a doc is out of range")
        self._hash.update(zip(docs, hashes, strict=True))
        values = np.asarray(hashes, dtype=np.uint64)
        mask = np.uint64((1 << _BAND_BITS) - 1)
        for band in range(_BANDS):
            band_values = ((values >> np.uint64(band * _BAND_BITS)) & mask).tolist()
            setdefault = self._recent[band].setdefault
            for doc, value in zip(docs, band_values, strict=True):
                setdefault(value, []).append(doc)
        self._recent_docs += len(docs)
        if self.docs_max is not None:
            # The oldest go first, as when added one by one: the newest docs_max stay.
            self._order.extend(docs)
            while len(self._hash) > self.docs_max:
                self.remove(self._order.popleft())
        if self._recent_docs >= max(self.settle_docs_min, self.settle_fraction * len(self._hash)):
            self._settle()

    def remove(self, doc: int) -> bool:
        h = self._hash.pop(doc, None)
        if h is None:
            return False
        for band, value in _bands(h):
            recent = self._recent[band]
            docs = recent.get(value)
            if docs is not None and doc in docs:
                docs.remove(doc)
                if not docs:
                    del recent[value]
        return True

    def _settle(self) -> None:
        """Rebuild the settled part from every live doc; empty the recent part."""
        docs = np.fromiter(self._hash.keys(), dtype=np.int64, count=len(self._hash))
        hashes = np.fromiter(self._hash.values(), dtype=np.uint64, count=len(self._hash))
        mask = np.uint64((1 << _BAND_BITS) - 1)
        settled = []
        for band in range(_BANDS):
            values = ((hashes >> np.uint64(band * _BAND_BITS)) & mask).astype(np.int64)
            # By value, then doc: one sort of (value, doc) packed in an int64 key,
            # eight times faster than a lexsort of the two.
            keys = (values << _DOC_BITS) | docs
            keys.sort()
            settled.append(((keys >> _DOC_BITS).astype(np.uint64), keys & _DOC_MASK))
        self._settled = settled
        self._recent = [{} for _ in range(_BANDS)]
        self._recent_docs = 0

    def _candidates(self, h: int) -> set[int]:
        found: set[int] = set()
        for band, value in _bands(h):
            values, docs = self._settled[band]
            # The array's own method: np.searchsorted's dispatch costs three times more.
            key = np.uint64(value)
            lo = int(values.searchsorted(key))
            hi = int(values.searchsorted(key, "right"))
            if hi > lo:
                found.update(docs[lo:hi].tolist())
            found.update(self._recent[band].get(value, ()))
        return found

    def nearest(
        self,
        h: int,
        bits_max: int = near_bits_max,
        accept: Callable[[int], bool] | None = None,
    ) -> tuple[int, int] | None:
        """(doc, distance) of the closest indexed hash within ``bits_max`` bits, or None.

        Only docs that ``accept`` (when given) admits count.  Ties go to the older
        (smaller) doc: the original, not a later copy.
        """
        if not 0 <= bits_max <= near_bits_max:
            raise ValueError(f"bits_max must be within 0-{near_bits_max}")
        best: tuple[int, int] | None = None
        hashes = self._hash
        for doc in sorted(self._candidates(h)):
            other = hashes.get(doc)
            if other is None:
                continue  # removed since it was settled
            d = hamming(h, other)
            closer = best is None or (d, doc) < (best[1], best[0])
            if d <= bits_max and closer and (accept is None or accept(doc)):
                best = (doc, d)
        return best

    def memory_bytes(self) -> int:
        # dict entry ~100 B per doc; 16 B per doc and band settled; ~56 B per recent entry.
        settled = sum(int(v.nbytes + d.nbytes) for v, d in self._settled)
        return 100 * len(self._hash) + settled + 56 * _BANDS * self._recent_docs

    def _check(self) -> None:
        for doc, h in self._hash.items():
            for band, value in _bands(h):
                values, docs = self._settled[band]
                lo = int(np.searchsorted(values, np.uint64(value), side="left"))
                hi = int(np.searchsorted(values, np.uint64(value), side="right"))
                in_settled = doc in docs[lo:hi].tolist()
                assert in_settled or doc in self._recent[band].get(value, ()), doc
        for recent in (docs for band in self._recent for docs in band.values()):
            assert recent and all(d in self._hash for d in recent)
        if self.docs_max is not None:
            assert len(self._hash) <= self.docs_max

    def to_arrays(self) -> tuple[IntArray, IntArray]:
        """(docs int64, hashes uint64) for a checkpoint; rebuild with :meth:`from_arrays`."""
        docs = np.fromiter(self._hash.keys(), dtype=np.int64, count=len(self._hash))
        hashes = np.fromiter(self._hash.values(), dtype=np.uint64, count=len(self._hash))
        return docs, hashes

    @classmethod
    def from_arrays(
        cls, docs: IntArray, hashes: IntArray, docs_max: int | None = None
    ) -> NearDuplicateIndex:
        """An index of these docs (in increasing doc order: the oldest is forgotten first)."""
        index = cls(docs_max)
        order = np.argsort(docs, kind="stable")
        if docs_max is not None:
            order = order[-docs_max:]
        doc_list = np.asarray(docs)[order].tolist()
        index._hash = dict(zip(doc_list, np.asarray(hashes)[order].tolist(), strict=True))
        if docs_max is not None:
            index._order = collections.deque(doc_list)
        index._settle()
        return index
