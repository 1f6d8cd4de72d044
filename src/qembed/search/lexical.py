"""Lexical retrieval: BM25 (``bm25s``) over jieba-segmented text, for Chinese and English alike.

Text is lower-cased and segmented with jieba (which keeps Latin words whole and splits Chinese
into words); punctuation, whitespace and English function words
(:data:`qembed.text.SEARCH_STOP_WORDS`) are dropped, every content word stays. The index can be
saved to and loaded from a folder (bm25s' own format plus the document ids, a version tag and
the tokenizer's version: an index saved by another tokenizer is rebuilt).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import unicodedata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from qembed.text import SEARCH_STOP_WORDS

logger = logging.getLogger(__name__)

_jieba = None
_WORD = re.compile(r"\w", re.UNICODE)


def _segmenter():
    global _jieba
    if _jieba is None:
        import jieba

        logging.getLogger("bm25s").setLevel(logging.WARNING)

        jieba.setLogLevel(logging.WARNING)
        _jieba = jieba
    return _jieba


#: Changes whenever :func:`bm25_tokens` would split a text differently (saved indexes are rebuilt).
TOKENIZER_VERSION = 1


def _stopwords() -> frozenset[str]:
    return SEARCH_STOP_WORDS


def bm25_tokens(text: str, stopwords: frozenset[str] | None = None) -> list[str]:
    """Words of ``text`` for BM25: NFKC, lower-case, jieba segmentation, no punctuation, no
    :data:`~qembed.text.SEARCH_STOP_WORDS`; single characters and numbers stay (a query may
    need them). Not the keyword tokens of clustering (:func:`qembed.clustering.keywords.keyword_tokens`)."""
    stop = _stopwords() if stopwords is None else stopwords
    text = unicodedata.normalize("NFKC", text).lower()
    out = []
    for tok in _segmenter().lcut(text):
        tok = tok.strip()
        if tok and _WORD.search(tok) and tok not in stop:
            out.append(tok)
    return out


class BM25Index:
    """BM25 over a list of ``(id, text)`` pairs; exact scores for every document, so filters are exact."""

    def __init__(self, ids: Sequence[str], texts: Sequence[str | None], *, version: Any = None) -> None:
        import bm25s

        self.ids = list(ids)
        self.version = version
        self._pos = {d: i for i, d in enumerate(self.ids)}
        self._stop = _stopwords()
        self._bm25 = bm25s.BM25()
        if self.ids:
            tokens = [bm25_tokens(t or "", self._stop) or ["\u2400"] for t in texts]
            self._bm25.index(tokens, show_progress=False)

    def __len__(self) -> int:
        return len(self.ids)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of ``query`` against every document (zeros when no query word is indexed)."""
        if not self.ids:
            return np.zeros(0, dtype=np.float32)
        words = [w for w in bm25_tokens(query, self._stop) if w in self._bm25.vocab_dict]
        if not words:
            return np.zeros(len(self.ids), dtype=np.float32)
        return np.asarray(self._bm25.get_scores(words), dtype=np.float32)

    def search(self, query: str, k: int, allowed: set[str] | None = None) -> list[tuple[str, float]]:
        """Top ``k`` ``(id, score)`` with a positive score, restricted to ``allowed`` ids if given."""
        scores = self.scores(query)
        if allowed is not None:
            mask = np.fromiter((d in allowed for d in self.ids), dtype=bool, count=len(self.ids))
            scores = np.where(mask, scores, 0.0)
        positive = np.flatnonzero(scores > 0)
        if len(positive) == 0:
            return []
        k = min(k, len(positive))
        top = positive[np.argpartition(-scores[positive], k - 1)[:k]]
        top = top[np.lexsort((top, -scores[top]))]
        return [(self.ids[i], float(scores[i])) for i in top]

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write the index to ``folder`` atomically (a temporary folder renamed into place)."""
        target = Path(folder)
        unique = f"{os.getpid()}-{threading.get_ident()}"  # several processes may save at once
        tmp = target.with_name(f"{target.name}.tmp-{unique}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.ids:
            self._bm25.save(str(tmp), show_progress=False)
        (tmp / "qembed-bm25.json").write_text(
            json.dumps({"ids": self.ids, "version": self.version, "tokenizer": TOKENIZER_VERSION},
                       ensure_ascii=False), encoding="utf-8")
        old = target.with_name(f"{target.name}.old-{unique}")
        shutil.rmtree(old, ignore_errors=True)
        try:
            if target.exists():
                os.replace(target, old)
            os.replace(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process put its index in place first
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> "BM25Index | None":
        """The index saved in ``folder``, or ``None`` when absent or unreadable (then rebuild it)."""
        import bm25s

        path = Path(folder)
        try:
            state = json.loads((path / "qembed-bm25.json").read_text(encoding="utf-8"))
            if state.get("tokenizer", 1) != TOKENIZER_VERSION:
                logger.info("the BM25 index in %s was built by another tokenizer; rebuilding it", path)
                return None
            self = cls.__new__(cls)
            self.ids = list(state["ids"])
            self.version = state.get("version")
            self._pos = {d: i for i, d in enumerate(self.ids)}
            self._stop = _stopwords()
            self._bm25 = bm25s.BM25.load(str(path), show_progress=False) if self.ids else bm25s.BM25()
            return self
        except Exception as exc:  # missing or damaged: the caller rebuilds from the store
            logger.debug("no usable BM25 index in %s (%s)", path, exc)
            return None
