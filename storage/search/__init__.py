"""memoryd.storage.search: keyword, vector and fused ranking over frames by doc number.

Docs are dense ints the caller assigns in commit order.  Start from
:class:`SearchIndex` (engine.py); the parts are usable alone.
"""

from memoryd.storage.search.columns import DocColumns
from memoryd.storage.search.embedding import (
    Embedder,
    EmbedderUnavailableError,
    HashingEmbedder,
    HashingSettings,
    MiniLMEmbedder,
)
from memoryd.storage.search.engine import SearchIndex, SearchResult
from memoryd.storage.search.inverted import Bm25Params, InvertedIndex, KeywordHits
from memoryd.storage.search.ranking import MODES, Mode, RankingWeights, ScoreParts
from memoryd.storage.search.text import DEFAULT_TOKENIZER, ParsedQuery, Tokenizer
from memoryd.storage.search.vectors import VectorHits, VectorIndex

__all__ = [
    "DEFAULT_TOKENIZER",
    "MODES",
    "Bm25Params",
    "DocColumns",
    "Embedder",
    "EmbedderUnavailableError",
    "HashingEmbedder",
    "HashingSettings",
    "InvertedIndex",
    "KeywordHits",
    "MiniLMEmbedder",
    "Mode",
    "ParsedQuery",
    "RankingWeights",
    "ScoreParts",
    "SearchIndex",
    "SearchResult",
    "Tokenizer",
    "VectorHits",
    "VectorIndex",
]
