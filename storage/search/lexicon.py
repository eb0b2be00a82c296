"""One tokenization of a batch of texts, shared by every pass over it: word ids and columns.

The builder reads each frame's text several ways (keyword terms, the hashed
embedding, SimHash, significance), all from the same word runs (text.py).  A
:class:`Lexicon` splits a batch of texts once and maps each raw run to a dense
*word id* with one C-level dict lookup; each pass then takes what it needs of a
word (its keyword term, its hash, its lexicon flags) from arrays indexed by word
id, with numpy over the whole batch: no Python work per token.

Contract:

* ``Lexicon.tokenize(texts)`` gives :class:`Tokens`: per text how many raw runs it
  has (``counts``) and per run its word id (``word_ids``), in order.  In the
  tokens' ``vocabulary``, ``words[i]`` is word i as ``Tokenizer.words`` gives it
  but not yet bounded in length (``kept[i]``: whether ``words`` keeps it), and
  ``word_term[i]`` is the id of its term in ``terms``, as ``Tokenizer.terms``
  gives it (id 0 is '', a dropped word).  So both are recovered exactly.
* Columns: a pass names a per-word or per-term column (``word_column``,
  ``term_column``, ``term_ragged``) and gives the function that fills it from
  the words (or terms) themselves; each value is computed once, for all the new
  words of a batch together.  A value depends on its word only, never on ids.
* Bounded: a vocabulary holds ``lexicon_words_max`` raw runs; a batch that would
  pass that starts a new, empty vocabulary (tokens keep theirs, so stay valid; a
  single batch with more distinct runs than that still gets them all).
* Thread-safe: the builder's thread and queries share a lexicon under its lock.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from memoryd.storage.search.arrays import BoolArray, IntArray, grown
from memoryd.storage.search.text import Tokenizer, fold_word, raw_words_batch, token_chars_max

lexicon_words_max = 1 << 18  # raw runs one vocabulary remembers (~115 MiB at most, see stats)


class _Column:
    """A 1-D array filled up to ``size``, grown by doubling (old prefixes stay valid)."""

    __slots__ = ("data", "size")

    def __init__(self, dtype: npt.DTypeLike) -> None:
        self.data: IntArray = np.zeros(0, dtype=dtype)
        self.size = 0

    def extend(self, values: npt.ArrayLike) -> None:
        values = np.asarray(values, dtype=self.data.dtype)
        end = self.size + values.shape[0]
        # A new array when full: tokens made earlier keep reading the old one.
        self.data = grown(self.data, end)
        self.data[self.size : end] = values
        self.size = end


class _Ragged:
    """Per item a run of values: ``values[starts[i] : starts[i] + lengths[i]]``."""

    __slots__ = ("lengths", "starts", "values")

    def __init__(self, dtype: npt.DTypeLike) -> None:
        self.starts = _Column(np.int64)
        self.lengths = _Column(np.int64)
        self.values = _Column(dtype)

    def extend(self, lengths: IntArray, values: npt.ArrayLike) -> None:
        lengths = np.asarray(lengths, dtype=np.int64)
        self.starts.extend(self.values.size + np.cumsum(lengths) - lengths)
        self.lengths.extend(lengths)
        self.values.extend(values)


class _WordIds(dict[str | bytes, int]):
    """Raw run -> word id; a miss takes the next id and is queued for ``Vocabulary._admit``."""

    def __init__(self) -> None:
        super().__init__()
        self.new: list[str | bytes] = []

    def __missing__(self, raw: str | bytes) -> int:
        word_id = len(self)
        self[raw] = word_id
        self.new.append(raw)
        return word_id


class Vocabulary:
    """Word ids, terms and columns of one lexicon generation; see the module docstring."""

    def __init__(self, tokenizer: Tokenizer, lock: threading.Lock) -> None:
        self.tokenizer = tokenizer
        self.lock = lock
        self.ids = _WordIds()
        self.words: list[str] = []
        self.terms: list[str] = [""]
        self.term_ids: dict[str, int] = {"": 0}
        self.word_term = _Column(np.int64)
        self.kept = _Column(np.bool_)
        self._columns: dict[object, _Column] = {}
        self._ragged: dict[object, _Ragged] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def memory_bytes(self) -> int:
        """Estimated bytes held: ~180 a word (its key, dict entry, word and columns),
        ~150 a term plus 4 per value of a ragged column."""
        values = sum(r.values.size * r.values.data.itemsize for r in self._ragged.values())
        columns = sum(c.size * c.data.itemsize for c in self._columns.values())
        return 180 * len(self.ids) + 150 * len(self.terms) + values + columns

    def _admit(self) -> None:
        """Give the words that ``ids`` queued their word, term and ``kept`` flag."""
        new, self.ids.new = self.ids.new, []
        if not new:
            return
        words = list(map(fold_word, new))
        term_ids = self.term_ids
        term_of_word = self.tokenizer.term_of_word
        ids = []
        for word in words:
            term = term_of_word(word)
            term_id = term_ids.get(term)
            if term_id is None:
                term_id = term_ids[term] = len(self.terms)
                self.terms.append(term)
            ids.append(term_id)
        self.words.extend(words)
        self.word_term.extend(ids)
        self.kept.extend([0 < len(w) <= token_chars_max for w in words])

    def word_column(
        self,
        key: object,
        dtype: npt.DTypeLike,
        compute: Callable[[list[str]], npt.ArrayLike],
        known: int,
    ) -> IntArray:
        """Column ``key`` by word id, filled at least below ``known``.

        ``compute(words)`` gives the values of a list of words (one each, in order).
        """
        return self._column(key, dtype, compute, self.words, known)

    def term_column(
        self,
        key: object,
        dtype: npt.DTypeLike,
        compute: Callable[[list[str]], npt.ArrayLike],
        known: int,
    ) -> IntArray:
        """Column ``key`` by term id, filled at least below ``known``; as ``word_column``."""
        return self._column(key, dtype, compute, self.terms, known)

    def _column(
        self,
        key: object,
        dtype: npt.DTypeLike,
        compute: Callable[[list[str]], npt.ArrayLike],
        source: list[str],
        known: int,
    ) -> IntArray:
        """Column ``key`` of values of ``source`` (words or terms), filled below ``known``."""
        with self.lock:
            column = self._columns.get(key)
            if column is None:
                column = self._columns[key] = _Column(dtype)
            if column.size < known:
                column.extend(compute(source[column.size : known]))
            return column.data

    def term_ragged(
        self,
        key: object,
        dtype: npt.DTypeLike,
        compute: Callable[[list[str]], tuple[IntArray, npt.ArrayLike]],
        known: int,
    ) -> tuple[IntArray, IntArray, IntArray]:
        """(starts, lengths, values) by term id: term i owns ``lengths[i]`` values.

        ``compute(terms)`` gives each term's number of values and all the values, in
        term order.  Filled at least below ``known``.
        """
        with self.lock:
            ragged = self._ragged.get(key)
            if ragged is None:
                ragged = self._ragged[key] = _Ragged(dtype)
            if ragged.lengths.size < known:
                lengths, values = compute(self.terms[ragged.lengths.size : known])
                ragged.extend(lengths, values)
            return ragged.starts.data, ragged.lengths.data, ragged.values.data


@dataclass(frozen=True, slots=True)
class Tokens:
    """A batch of texts tokenized: text i owns ``counts[i]`` consecutive ``word_ids``."""

    vocabulary: Vocabulary
    counts: IntArray  # int64, raw runs per text
    word_ids: IntArray  # int64, one per raw run
    words_known: int  # every word id of these tokens is below it
    terms_known: int  # every term id of their words is below it

    @property
    def tokenizer(self) -> Tokenizer:
        return self.vocabulary.tokenizer

    def rows(self) -> IntArray:
        """The text of each run."""
        return np.repeat(np.arange(self.counts.shape[0], dtype=np.int64), self.counts)

    def term_ids(self) -> IntArray:
        """The term id of each run (0: dropped)."""
        out: IntArray = self.vocabulary.word_term.data[self.word_ids]
        return out

    def kept(self) -> BoolArray:
        """Whether each run is a word that ``Tokenizer.words`` keeps."""
        out: BoolArray = self.vocabulary.kept.data[self.word_ids]
        return out

    def select(self, texts: Sequence[int] | IntArray) -> Tokens:
        """The tokens of some of the texts (by index, in the order given)."""
        which = np.asarray(texts, dtype=np.int64)
        starts = np.cumsum(self.counts) - self.counts
        counts = self.counts[which]
        return Tokens(
            self.vocabulary,
            counts,
            self.word_ids[spans(starts[which], counts)],
            self.words_known,
            self.terms_known,
        )


def spans(starts: IntArray, lengths: IntArray) -> IntArray:
    """The indexes ``starts[i] .. starts[i] + lengths[i] - 1`` of every i, concatenated."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    out: IntArray = np.repeat(np.asarray(starts, dtype=np.int64) - offsets, lengths)
    out += np.arange(total, dtype=np.int64)
    return out


class Lexicon:
    """Tokenizes batches of texts for one tokenizer; see the module docstring."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self._lock = threading.Lock()
        self.vocabulary = Vocabulary(tokenizer, self._lock)
        self.vocabularies = 1  # how many were started (a new one when one fills up)
        self.runs = 0  # raw runs tokenized
        self.new_words = 0  # of which were new to their vocabulary

    def tokenize(self, texts: Sequence[str]) -> Tokens:
        """The tokens of ``texts``: split (text.py), then one dict lookup per run."""
        raws, counts = raw_words_batch(texts)
        with self._lock:
            vocabulary = self.vocabulary
            if len(vocabulary) + len(raws) > lexicon_words_max and len(vocabulary):
                vocabulary = self.vocabulary = Vocabulary(self.tokenizer, self._lock)
                self.vocabularies += 1
            word_ids = np.fromiter(
                map(vocabulary.ids.__getitem__, raws), dtype=np.int64, count=len(raws)
            )
            self.runs += len(raws)
            self.new_words += len(vocabulary.ids.new)
            vocabulary._admit()
            return Tokens(
                vocabulary, counts, word_ids, len(vocabulary.words), len(vocabulary.terms)
            )

    def stats(self) -> dict[str, int | float]:
        """How full the current vocabulary is, and how often a run was already known."""
        with self._lock:
            vocabulary = self.vocabulary
            return {
                "lexicon_words": len(vocabulary),
                "lexicon_words_max": lexicon_words_max,
                "lexicon_terms": len(vocabulary.terms) - 1,
                "lexicon_vocabularies": self.vocabularies,
                "lexicon_hit_ratio": round(1 - self.new_words / max(self.runs, 1), 4),
                "lexicon_bytes": vocabulary.memory_bytes(),
            }


_lexicons: weakref.WeakKeyDictionary[Tokenizer, Lexicon] = weakref.WeakKeyDictionary()
_lexicons_lock = threading.Lock()


def lexicon_of(tokenizer: Tokenizer) -> Lexicon:
    """The one lexicon of ``tokenizer`` (made on first use)."""
    with _lexicons_lock:
        lexicon = _lexicons.get(tokenizer)
        if lexicon is None:
            lexicon = _lexicons[tokenizer] = Lexicon(tokenizer)
        return lexicon
