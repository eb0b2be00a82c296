"""Text to words and keyword terms: one tokenizer shared by every index and scorer.

Contract:

* ``normalize(text)``: NFKC (skipped for pure ASCII, which it cannot change) then
  ``casefold``.  Every comparison of text in search goes through it.
* ``words(text)``: the normalized word runs, in order, with nothing dropped but
  over-long runs.  A word is a run of Unicode letters and digits (any script),
  possibly joined by apostrophes (``don't``, ``o\u2019clock``); the apostrophes are
  removed (``dont``, ``carolines``: the stemmer then folds the possessive like a
  plural).  Han, kana and other scripts written without spaces give one word
  per character, so that they can be matched at all.  Used for phrases.
* ``terms(text)``: ``words`` without English stop words, each stemmed by
  :func:`stem`.  Used for keyword scoring.

Speed: ``terms`` runs on every frame at ingest.  Pure-ASCII text (nearly all of
it) is split by ``bytes.translate`` + ``bytes.split``, three times faster than any
regex here; other text goes through the Unicode regex, with the same result on
ASCII.  The per-word work (stop word test, stemming) is memoized in a bounded dict
keyed by the raw word, so the steady-state cost per token is one dict lookup, and
``terms_batch`` does those lookups in one ``map`` over a whole batch.  The builder
goes further: ``raw_words_batch`` splits a whole batch, and a lexicon (lexicon.py)
gives each raw word an id once, from which every pass reads what it needs.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat

import numpy as np

token_chars_max = 40  # longer runs are ids, hashes or base64: noise for keyword search
term_cache_entries_max = 1 << 20  # memo of word -> term; cleared when full (~100 MiB worst)
query_terms_max = 64  # longest phrase checked; longer queries get no implicit phrase

# Scripts written without spaces between words: one token per character.
_NO_SPACE_SCRIPTS = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\u0e00-\u0e7f"  # Thai
)
_WORD = rf"[^\W_{_NO_SPACE_SCRIPTS}]"
_TOKEN_RE = re.compile(
    rf"[{_NO_SPACE_SCRIPTS}]|{_WORD}+(?:['\u2019]{_WORD}+)*",
)
_PHRASE_RE = re.compile(r'"([^"]+)"')

# English stop words for keyword scoring: the usual function words plus the
# apostrophe-less forms this tokenizer produces (dont, im, ive...).
STOP_WORDS: frozenset[str] = frozenset(
    """
    a about above after again against all am an and any are arent as at be because been
    before being below between both but by can cant cannot could couldnt did didnt do
    does doesnt doing dont down during each few for from further had hadnt has hasnt have
    havent having he hed hell hes her here heres hers herself him himself his how hows i
    id ill im ive if in into is isnt it its itself lets me more most mustnt my myself no
    nor not of off on once only or other ought our ours ourselves out over own same shant
    she shed shell shes should shouldnt so some such than that thats the their theirs them
    themselves then there theres these they theyd theyll theyre theyve this those through
    to too under until up very was wasnt we wed well were weve werent what whats when
    whens where wheres which while who whos whom why whys with wont would wouldnt you youd
    youll youre youve your yours yourself yourselves s t d ll m re ve y also just really
    will shall may might must yeah yes oh ok okay hey hi
    """.split()
)

_VOWELS = frozenset("aeiouy")
_NO_UNDOUBLE = frozenset("lsz")  # fall/falling, pass/passing, buzz/buzzing keep the pair


def normalize(text: str) -> str:
    """NFKC then casefold; ASCII skips NFKC, which cannot change it."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return text.casefold()


def _fold_word(raw: str) -> str:
    """Remove the apostrophes of one raw word run, as the ASCII fast path does."""
    if "'" in raw or "\u2019" in raw:
        raw = raw.replace("\u2019", "").replace("'", "")
    return raw


# ASCII fast path: letters lowercased, digits kept, apostrophes deleted, all else a space.
_ASCII_TABLE = bytes(
    (c + 32 if 65 <= c <= 90 else c) if chr(c).isalnum() and c < 128 else 32 for c in range(256)
)
_APOSTROPHE = b"'"


def _raw_words(text: str) -> list[str] | list[bytes]:
    """Raw word runs (casefolded, apostrophes not yet removed on the Unicode path)."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_TABLE, _APOSTROPHE).split()
    return _TOKEN_RE.findall(normalize(text))


def raw_words_batch(texts: Sequence[str]) -> tuple[list[str | bytes], np.ndarray]:
    """The raw word runs of many texts, flat, and how many each text has (int64).

    What ``_raw_words`` gives text by text; a batch of ASCII texts goes through
    ``map`` over the bytes methods, with no Python call per text.  Raw runs are
    bytes (ASCII) or str: ``fold_word`` turns either into the word.
    """
    parts: Sequence[Sequence[str | bytes]]
    if all(map(str.isascii, texts)):
        encoded = map(str.encode, texts)
        cleaned = map(bytes.translate, encoded, repeat(_ASCII_TABLE), repeat(_APOSTROPHE))
        parts = list(map(bytes.split, cleaned))
    else:
        parts = list(map(_raw_words, texts))
    counts = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
    return list(chain.from_iterable(parts)), counts


def fold_word(raw: str | bytes) -> str:
    """The word of one raw run (see ``raw_words_batch``), not yet bounded in length."""
    return _fold_word(raw.decode("ascii") if isinstance(raw, bytes) else raw)


def _has_vowel(s: str) -> bool:
    return any(c in _VOWELS for c in s)


def stem(word: str) -> str:
    """A light English suffix stripper (plurals, -ed, -ing, final -y/-e), for ASCII words.

    Conflates the inflections that matter for recall (paint/paints/painted/painting,
    party/parties, hike/hiking/hiked) and leaves derivations alone (painter stays),
    so it over-merges less than Porter.  Non-ASCII, numeric and short words (<= 2
    chars) are returned unchanged.  Deterministic and idempotent on its output.
    """
    if len(word) <= 2 or not word.isascii() or not word.isalpha():
        return word
    w = word
    if len(w) <= 3:
        pass  # gas, bus, yes: too short to tell a plural
    elif w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("ies"):
        w = w[:-3] + "y" if len(w) > 4 else w[:-1]
    elif w.endswith(("ss", "us", "is")):
        pass
    elif w.endswith("s"):
        w = w[:-1]
    if w.endswith("eed"):
        if len(w) > 4:
            w = w[:-1]
    elif w.endswith("ing") and len(w) >= 5 and _has_vowel(w[:-3]):
        w = _undouble(w[:-3])
    elif w.endswith("ed") and len(w) >= 4 and _has_vowel(w[:-2]):
        w = _undouble(w[:-2])
    if len(w) > 3 and w[-1] == "y" and w[-2] not in _VOWELS:
        w = w[:-1] + "i"  # party/parties -> parti, as Porter's step 1c
    if len(w) >= 3 and w[-1] == "e":
        w = w[:-1]  # hike/hiking -> hik: drop the e that -ing and -ed drop
    return w


def _undouble(w: str) -> str:
    if len(w) >= 3 and w[-1] == w[-2] and w[-1] not in _VOWELS and w[-1] not in _NO_UNDOUBLE:
        return w[:-1]
    return w


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    """A query split for scoring: keyword terms, the phrases to verify, and its words."""

    terms: tuple[str, ...]  # distinct keyword terms, in first-seen order
    phrases: tuple[tuple[str, ...], ...]  # word sequences (>= 2 words) to find verbatim
    words: tuple[str, ...]  # all normalized words, for scorers that count raw words


class _Memo(dict[str | bytes, str]):
    """Raw word -> folded word or term ('' when dropped); bounded, filled on a miss."""

    def __init__(self, compute: Callable[[str], str]) -> None:
        super().__init__()
        self._compute = compute

    def __missing__(self, raw: str | bytes) -> str:
        text = raw.decode("ascii") if isinstance(raw, bytes) else raw
        value = self._compute(_fold_word(text))
        if len(self) >= term_cache_entries_max:
            self.clear()  # a cold memo costs speed only; a bounded one keeps memory known
        self[raw] = value
        return value


@dataclass(frozen=True, slots=True)
class TermBatch:
    """The terms of a batch of texts, flat: text i owns ``counts[i]`` consecutive entries.

    Stop words and over-long words stay in ``terms`` as '' so that the counts are cheap
    to compute; callers drop them (after mapping to ids, in numpy).
    """

    terms: list[str]
    counts: np.ndarray  # int64, one per text


class Tokenizer:
    """Words and terms of a text; see the module docstring for the contract."""

    def __init__(self, stop_words: Iterable[str] = STOP_WORDS, stemming: bool = True) -> None:
        self.stop_words = frozenset(stop_words)
        self.stemming = stemming
        self._terms = _Memo(self.term_of_word)
        self._words = _Memo(_bounded_word)

    def words(self, text: str) -> list[str]:
        """The normalized words of ``text`` in order (see module docstring)."""
        return [w for w in map(self._words.__getitem__, _raw_words(text)) if w]

    def terms(self, text: str) -> list[str]:
        """The keyword terms of ``text`` in order, with repeats (stop words removed, stemmed)."""
        return [t for t in map(self._terms.__getitem__, _raw_words(text)) if t]

    def terms_batch(self, texts: Sequence[str]) -> TermBatch:
        """The terms of many texts at once; see :class:`TermBatch`."""
        raws: list[str | bytes] = []
        counts = np.empty(len(texts), dtype=np.int64)
        for i, text in enumerate(texts):
            words = _raw_words(text)
            counts[i] = len(words)
            raws.extend(words)
        return TermBatch(terms=list(map(self._terms.__getitem__, raws)), counts=counts)

    def term_of_word(self, word: str) -> str:
        """The keyword term of one normalized word ('' for a stop word or an over-long one)."""
        if word in self.stop_words or len(word) > token_chars_max:
            return ""
        return stem(word) if self.stemming else word

    def parse_query(self, query: str) -> ParsedQuery:
        """Terms, phrases and words of a query.

        Phrases are the quoted parts (``"red car"``); with no quotes, the whole query is
        one implicit phrase when it has two words or more, so that a memory holding the
        query verbatim ranks above one that merely shares its words.
        """
        # Every word counts: the index, not the parser, picks which terms to score
        # (the most informative ones), so no word is dropped for where it stands.
        words = tuple(self.words(query))
        terms = tuple(dict.fromkeys(t for t in map(self.term_of_word, words) if t))
        quoted = [tuple(self.words(p)) for p in _PHRASE_RE.findall(query)]
        phrases = tuple(p for p in quoted if 2 <= len(p) <= query_terms_max)
        if not quoted and 2 <= len(words) <= query_terms_max:
            phrases = (words,)
        return ParsedQuery(terms=terms, phrases=phrases, words=words)


def _bounded_word(word: str) -> str:
    return "" if len(word) > token_chars_max else word


def contains_phrase(words: list[str] | tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    """True when ``phrase`` occurs as consecutive items of ``words``."""
    n = len(phrase)
    if n == 0:
        return True
    first = phrase[0]
    for i in range(len(words) - n + 1):
        if words[i] == first and tuple(words[i : i + n]) == phrase:
            return True
    return False


DEFAULT_TOKENIZER = Tokenizer()
