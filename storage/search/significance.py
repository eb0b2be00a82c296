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
from dataclasses import dataclass
from typing import Literal

from memoryd.storage.search.text import DEFAULT_TOKENIZER

FactKind = Literal["procedural", "declarative", "episodic"]

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
        return {name: getattr(self, name) for name in self.__slots__}


def _saturate(evidence: float, scale: float) -> float:
    return round(1.0 - math.exp(-max(evidence, 0.0) / scale), 6)


def significance(text: str) -> Significance:
    """The six scores of ``text``; see the module docstring."""
    words = DEFAULT_TOKENIZER.words(text)
    n = max(len(words), 1)
    counts = {name: 0 for name in ("e", "k", "r", "b", "t", "p")}
    for w in words:
        counts["e"] += w in EMOTION
        counts["k"] += w in KNOWLEDGE
        counts["r"] += w in RELATIONSHIP
        counts["b"] += w in BREAKTHROUGH
        counts["t"] += w in TEMPORAL
        counts["p"] += w in PATTERN
    exclaims = min(text.count("!"), 3)
    numbers = len(_NUMBER_RE.findall(text))
    dates = len(_DATE_RE.findall(text))
    long_words = sum(len(w) >= 9 for w in words)
    return Significance(
        emotional_resonance=_saturate(counts["e"] + 0.5 * exclaims, 2.0),
        knowledge_value=_saturate(counts["k"] + 0.3 * numbers + 2.0 * long_words / n * 3, 3.0),
        relationship_depth=_saturate(counts["r"], 2.0),
        breakthrough_factor=_saturate(counts["b"] + 0.3 * exclaims, 1.5),
        temporal_relevance=_saturate(counts["t"] + dates, 1.5),
        pattern_strength=_saturate(counts["p"], 1.5),
    )


def classify_fact_kind(text: str) -> FactKind:
    """``procedural``, ``episodic`` or ``declarative``; see the module docstring."""
    words = DEFAULT_TOKENIZER.words(text)
    if not words:
        return "declarative"
    steps = len(_STEP_RE.findall(text))
    proc = sum(w in _PROCEDURE_MARKERS for w in words) + 2 * steps
    if words[0] in _IMPERATIVES:
        proc += 2
    if "how" in words and "to" in words:
        proc += 1
    past = sum(w in _PAST_MARKERS or (len(w) > 4 and w.endswith("ed")) for w in words)
    when = sum(w in TEMPORAL for w in words) + len(_DATE_RE.findall(text))
    episodic = past + (when if past else 0)
    if proc >= 3 and proc >= episodic:
        return "procedural"
    if past >= 1 and episodic >= 2:
        return "episodic"
    return "declarative"
