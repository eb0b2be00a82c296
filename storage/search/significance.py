"""Cheap, deterministic significance scores of a frame's text, and its fact kind.

Contract: ``significance(text)`` returns six scores, each in 0-1, from lexicon hits,
punctuation, numbers and dates only (no model, no state): the same text always
gives the same scores.  Each score is ``1 - exp(-evidence / scale)``: the first
signals count most and it saturates, so a long text cannot score 1 by length.
The lexicons are small and English; other languages score on punctuation,
numbers and dates only.

``classify_fact_kind(text)`` is ``"procedural"`` (how to do something: steps,
commands, imperatives), ``"episodic"`` (something that happened: past tense with a
time or a person), else ``"declarative"`` (a fact or a preference).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from memoryd.storage.search.arrays import FloatArray, IntArray, text_sums
from memoryd.storage.search.lexicon import Tokens
from memoryd.storage.search.text import DEFAULT_TOKENIZER, token_chars_max

FactKind = Literal["procedural", "declarative", "episodic"]
# Stored as an index into FACT_KINDS (uint8); the order is part of the checkpoint format.
FACT_KINDS: tuple[FactKind, ...] = ("declarative", "procedural", "episodic")
# The six dimensions, in the order they are stored and returned.
SIGNIFICANCE_DIMENSIONS = (
    "emotional_resonance",
    "knowledge_value",
    "relationship_depth",
    "breakthrough_factor",
    "temporal_relevance",
    "pattern_strength",
)

EMOTION = frozenset(
    """love loved loving hate hated happy happiest sad sadness afraid scared fear angry anger
    excited exciting thrilled proud grateful thankful joy joyful cry cried crying tears upset
    worried anxious anxiety lonely hurt heartbroken amazing awesome wonderful terrible awful
    miss missed glad delighted frustrated stressed overwhelmed hope hopeful blessed emotional
    feel feeling felt""".split()
)
KNOWLEDGE = frozenset(
    """because therefore means defined definition fact learned learn research study studies
    theory formula algorithm method evidence data result results explain explained reason
    principle rule works equals percent version api function error fix fixed documentation
    install configure syntax proof according""".split()
)
RELATIONSHIP = frozenset(
    """friend friends family mom mother dad father sister brother wife husband partner son
    daughter kids children child parents grandma grandpa uncle aunt cousin boyfriend
    girlfriend together trust support relationship married wedding colleague team mentor
    we us our""".split()
)
BREAKTHROUGH = frozenset(
    """finally realized realize discovered discover breakthrough solved solve eureka insight
    figured understood clicked aha first milestone achieved achievement succeeded success
    promoted accepted won breakthroughs turning""".split()
)
TEMPORAL = frozenset(
    """today tomorrow yesterday tonight deadline due week weekend month year next last ago
    soon schedule scheduled appointment meeting morning evening monday tuesday wednesday
    thursday friday saturday sunday january february march april may june july august
    september october november december""".split()
)
PATTERN = frozenset(
    """always usually often every everyday daily weekly never habit habits routine again
    pattern patterns tend tends typically regularly whenever repeatedly constantly each
    sometimes""".split()
)
_PAST_MARKERS = frozenset("yesterday ago last went was were did had met saw visited".split())
_PROCEDURE_MARKERS = frozenset(
    "step steps first then next finally run install click open press type set use".split()
)
_IMPERATIVES = frozenset(
    """run install open click press type set use add remove create delete make go check
    configure start stop restart call put take copy move edit save""".split()
)
_DATE_RE = re.compile(
    r"\b(?:\d{4}-\d{2}-\d{2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}|(?:19|20)\d{2}|\d{1,2}:\d{2})\b"
)
_DIGIT_RE = re.compile(r"\d")
_NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)?")
_STEP_RE = re.compile(r"(?m)^\s*(?:\d+[.)]|[-*])\s+|`[^`]+`|\$ ")


@dataclass(frozen=True, slots=True)
class Significance:
    """Six scores in 0-1."""

    emotional_resonance: float
    knowledge_value: float
    relationship_depth: float
    breakthrough_factor: float
    temporal_relevance: float
    pattern_strength: float

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in SIGNIFICANCE_DIMENSIONS}

    def as_tuple(self) -> tuple[float, ...]:
        return tuple(getattr(self, name) for name in SIGNIFICANCE_DIMENSIONS)


def effective_significance(text: str, given: dict[str, float] | None) -> tuple[float, ...]:
    """The six scores of a frame: the caller's where given, the heuristic's for the rest."""
    if given is not None and all(name in given for name in SIGNIFICANCE_DIMENSIONS):
        return tuple(float(given[name]) for name in SIGNIFICANCE_DIMENSIONS)
    computed = significance(text).as_dict()
    if given:
        computed.update(given)
    return tuple(float(computed[name]) for name in SIGNIFICANCE_DIMENSIONS)


def _saturate(evidence: float, scale: float) -> float:
    return round(1.0 - math.exp(-max(evidence, 0.0) / scale), 6)


# One lookup per word instead of one per lexicon: word -> bit flags.
_E, _K, _R, _B, _T, _P, _PAST, _PROC, _IMP = (1 << i for i in range(9))
_FLAGS: dict[str, int] = {}
for _flag, _words in (
    (_E, EMOTION),
    (_K, KNOWLEDGE),
    (_R, RELATIONSHIP),
    (_B, BREAKTHROUGH),
    (_T, TEMPORAL),
    (_P, PATTERN),
    (_PAST, _PAST_MARKERS),
    (_PROC, _PROCEDURE_MARKERS),
    (_IMP, _IMPERATIVES),
):
    for _word in _words:
        _FLAGS[_word] = _FLAGS.get(_word, 0) | _flag


@dataclass(frozen=True, slots=True)
class Analysis:
    """What one pass over a text gives: its significance and its fact kind."""

    significance: Significance
    fact_kind: FactKind


def analyze(text: str) -> Analysis:
    """``significance(text)`` and ``classify_fact_kind(text)`` in one pass (~10 µs a frame)."""
    words = DEFAULT_TOKENIZER.words(text)
    n = max(len(words), 1)
    e = k = r = b = t = p = past = proc = long_words = 0
    flags_get = _FLAGS.get
    for w in words:
        f = flags_get(w, 0)
        if f:
            e += f & _E
            k += (f & _K) >> 1
            r += (f & _R) >> 2
            b += (f & _B) >> 3
            t += (f & _T) >> 4
            p += (f & _P) >> 5
            proc += (f & _PROC) >> 7
            if f & _PAST:
                past += 1
                continue
        if len(w) > 4 and w.endswith("ed"):
            past += 1
    for w in words:
        long_words += len(w) >= 9
    exclaims = min(text.count("!"), 3)
    # Dates and numbers need a digit: most texts have none, and a search is cheaper.
    has_digit = _DIGIT_RE.search(text) is not None
    dates = len(_DATE_RE.findall(text)) if has_digit else 0
    numbers = len(_NUMBER_RE.findall(text)) if has_digit else 0
    scores = Significance(
        emotional_resonance=_saturate(e + 0.5 * exclaims, 2.0),
        knowledge_value=_saturate(k + 0.3 * numbers + 2.0 * long_words / n * 3, 3.0),
        relationship_depth=_saturate(r, 2.0),
        breakthrough_factor=_saturate(b + 0.3 * exclaims, 1.5),
        temporal_relevance=_saturate(t + dates, 1.5),
        pattern_strength=_saturate(p, 1.5),
    )
    return Analysis(scores, _fact_kind(text, words, proc, past, t + dates))


def _fact_kind(text: str, words: list[str], proc: int, past: int, when: int) -> FactKind:
    if not words:
        return "declarative"
    proc += 2 * len(_STEP_RE.findall(text))
    if _FLAGS.get(words[0], 0) & _IMP:
        proc += 2
    if "how" in words and "to" in words:
        proc += 1
    episodic = past + (when if past else 0)
    if proc >= 3 and proc >= episodic:
        return "procedural"
    if past >= 1 and episodic >= 2:
        return "episodic"
    return "declarative"


def significance(text: str) -> Significance:
    """The six scores of ``text``; see the module docstring."""
    return analyze(text).significance


def classify_fact_kind(text: str) -> FactKind:
    """``procedural``, ``episodic`` or ``declarative``; see the module docstring."""
    return analyze(text).fact_kind


# -- many texts at once -----------------------------------------------------------------

# Per word, besides its _FLAGS: what analyze() tests of each word, as more bits.
_PAST_LIKE, _LONG, _HOW, _TO, _WORD, _DIGIT = (1 << i for i in range(9, 15))
_COUNTED = (_E, _K, _R, _B, _T, _P, _PROC, _PAST_LIKE, _LONG, _HOW, _TO, _WORD, _DIGIT)
_BIT_OF = np.array([flag.bit_length() - 1 for flag in _COUNTED], dtype=np.int64)
# _saturate's scale of each dimension, in order, as analyze() uses them (and
# tests/property/test_shared_tokenization.py checks that both give the same).
_SCALES = (2.0, 3.0, 2.0, 1.5, 1.5, 1.5)
saturate_cache_entries_max = 1 << 16


def _word_flags(words: list[str]) -> IntArray:
    """The flags of each word: its lexicons and the tests ``analyze`` makes of it.

    Only words that ``Tokenizer.words`` keeps count (``_WORD``); ``_DIGIT`` is set for
    any word holding a decimal digit, kept or not.
    """
    out = []
    for w in words:
        f = _DIGIT if not w.isalpha() and any(c.isdecimal() for c in w) else 0
        if 0 < len(w) <= token_chars_max:
            lexicons = _FLAGS.get(w, 0)
            f |= lexicons | _WORD
            if lexicons & _PAST or (len(w) > 4 and w.endswith("ed")):
                f |= _PAST_LIKE
            if len(w) >= 9:
                f |= _LONG
            if w == "how":
                f |= _HOW
            elif w == "to":
                f |= _TO
        out.append(f)
    return np.asarray(out, dtype=np.int64)


class _Saturated(dict[float, float]):
    """evidence -> ``_saturate(evidence, scale)``: the same float, computed once."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def __missing__(self, evidence: float) -> float:
        value = _saturate(evidence, self.scale)
        if len(self) >= saturate_cache_entries_max:
            self.clear()
        self[evidence] = value
        return value


_SATURATED = [_Saturated(scale) for scale in _SCALES]


@dataclass(frozen=True, slots=True)
class BatchAnalysis:
    """``analyze`` of many texts: six scores per text, and fact kind codes (FACT_KINDS)."""

    scores: FloatArray  # float64, (texts, 6), SIGNIFICANCE_DIMENSIONS order
    fact_kinds: IntArray  # int64, index into FACT_KINDS


def analyze_tokens(texts: Sequence[str], tokens: Tokens) -> BatchAnalysis:
    """``analyze`` of each text, from its ``tokens`` (any tokenizer's: words do not
    depend on stop words or stemming): the same scores and kinds, with numpy over
    the batch instead of a Python loop over each text's words."""
    flags = tokens.vocabulary.word_column(
        "significance.flags", np.int64, _word_flags, tokens.words_known
    )[tokens.word_ids]
    bits = (flags[:, None] >> _BIT_OF) & 1
    (e, k, r, b, t, p, proc, past, long_words, how, to, n_words, digit_words) = text_sums(
        tokens.counts, bits
    ).T
    exclaims, dates, numbers, steps = _text_signals(texts, digit_words)
    n = np.maximum(n_words, 1)
    evidence = (
        e + 0.5 * exclaims,
        k + 0.3 * numbers + 2.0 * long_words / n * 3,
        r,
        b + 0.3 * exclaims,
        t + dates,
        p,
    )
    scores = np.empty((len(texts), 6), dtype=np.float64)
    for i, (values, saturated) in enumerate(zip(evidence, _SATURATED, strict=True)):
        scores[:, i] = list(map(saturated.__getitem__, np.asarray(values, np.float64).tolist()))
    proc = proc + 2 * steps + 2 * _first_word_is_imperative(flags, n_words)
    proc += (how > 0) & (to > 0)
    when = t + dates
    episodic = past + np.where(past > 0, when, 0)
    kinds = np.where(
        (proc >= 3) & (proc >= episodic),
        FACT_KINDS.index("procedural"),
        np.where((past >= 1) & (episodic >= 2), FACT_KINDS.index("episodic"), 0),
    )
    kinds[n_words == 0] = FACT_KINDS.index("declarative")
    return BatchAnalysis(scores, kinds.astype(np.int64))


def _first_word_is_imperative(flags: IntArray, n_words: IntArray) -> IntArray:
    """1 for texts whose first kept word is an imperative, else 0 (``flags``: per run)."""
    out = np.zeros(n_words.shape[0], dtype=np.int64)
    kept = np.flatnonzero(flags & _WORD)
    has = n_words > 0
    first = kept[(np.cumsum(n_words) - n_words)[has]]
    out[has] = (flags[first] & _IMP) > 0
    return out


def _text_signals(
    texts: Sequence[str], digit_words: IntArray
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """Per text: exclamation marks (at most 3), dates, numbers and step markers.

    The regexes run only on texts that can match them: dates and numbers need a
    digit (an ASCII text's digits are all in its words; other texts are searched),
    step markers a digit or one of ``-*`$``.
    """
    count = len(texts)
    exclaims = np.zeros(count, dtype=np.int64)
    dates = np.zeros(count, dtype=np.int64)
    numbers = np.zeros(count, dtype=np.int64)
    steps = np.zeros(count, dtype=np.int64)
    for i, (text, digits) in enumerate(zip(texts, digit_words.tolist(), strict=True)):
        if "!" in text:
            exclaims[i] = min(text.count("!"), 3)
        has_digit = digits > 0 if text.isascii() else _DIGIT_RE.search(text) is not None
        if has_digit:
            dates[i] = len(_DATE_RE.findall(text))
            numbers[i] = len(_NUMBER_RE.findall(text))
        if has_digit or "-" in text or "*" in text or "`" in text or "$" in text:
            steps[i] = len(_STEP_RE.findall(text))
    return exclaims, dates, numbers, steps
