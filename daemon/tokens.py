"""Counting tokens for context budgets: a real tokenizer where installed, else an approximation.

If ``tiktoken`` is importable and its ``o200k_base`` encoding loads (it may
need its BPE file, cached after the first download), counts are exact for
OpenAI's recent models and close for others.  Otherwise ``approximate_tokens``:

* a run of ASCII letters and digits counts one token per 4 characters,
  rounded up ("the" 1, "memory" 2);
* any other letter or digit (accented, CJK, ...) one token each;
* any other non-space character (punctuation, symbols, emoji) one token each;
* whitespace nothing.

It leans high for English prose (about 1.2 times tiktoken's count), so a
budget it fills is rarely overrun by a real tokenizer.  The name of the
counter used is reported with every context (``tokenizer``).
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("memoryd.tokens")

APPROXIMATION = "approx-v1"
TIKTOKEN_ENCODING = "o200k_base"
_PIECES = re.compile(r"[A-Za-z0-9]+|[^\W_]|\S")


def approximate_tokens(text: str) -> int:
    """The documented approximation (see the module docstring)."""
    total = 0
    for piece in _PIECES.findall(text):
        total += math.ceil(len(piece) / 4) if len(piece) > 1 else 1
    return total


@dataclass(frozen=True, slots=True)
class TokenCounter:
    """A named way of counting the tokens of a text."""

    name: str
    count: Callable[[str], int]


_lock = threading.Lock()
_loaded: TokenCounter | None = None


def token_counter() -> TokenCounter:
    """The best counter available, loaded once (may read a file: call it off the loop)."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = _load()
        return _loaded


def _load() -> TokenCounter:
    try:
        import tiktoken  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return TokenCounter(APPROXIMATION, approximate_tokens)
    try:
        encoding = tiktoken.get_encoding(TIKTOKEN_ENCODING)
    except Exception as exc:  # e.g. no network to fetch the BPE file: fall back, say so
        log.warning("tiktoken is installed but %s did not load (%s)", TIKTOKEN_ENCODING, exc)
        return TokenCounter(APPROXIMATION, approximate_tokens)

    def count(text: str) -> int:
        return len(encoding.encode(text, disallowed_special=()))

    return TokenCounter(f"tiktoken:{TIKTOKEN_ENCODING}", count)
