"""What every reranker shares: the result type, the response body, and the ``Reranker`` protocol."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from qembed.errors import InputError

DEFAULT_RERANKER = "Qwen/Qwen3-Reranker-0.6B"


@dataclass(frozen=True)
class RerankResult:
    """One document's place in a reranking: its position in the input, its score, its text."""

    index: int
    score: float
    document: str | None = None

    @property
    def relevance_score(self) -> float:
        """The score under the Cohere/Jina name."""
        return self.score

    def to_dict(self, return_documents: bool = True) -> dict[str, Any]:
        """``{"index", "relevance_score", "document": {"text"}}`` (the REST item)."""
        item: dict[str, Any] = {"index": self.index, "relevance_score": self.score}
        if return_documents and self.document is not None:
            item["document"] = {"text": self.document}
        return item


@runtime_checkable
class RerankerLike(Protocol):
    """Query and documents in, documents sorted by relevance out."""

    name: str

    def rerank(self, query: str, documents: Sequence[str], instruction: str | None = None,
               top_n: int | None = None, **kwargs: Any) -> list[RerankResult]: ...

    def score(self, pairs: Sequence[tuple[str, str]], instruction: str | None = None,
              **kwargs: Any) -> np.ndarray: ...


def check_top_n(top_n: Any, n: int | None = None) -> int | None:
    """Validate ``top_n`` (None: all). Values above ``n`` mean all."""
    if top_n is None:
        return None
    if isinstance(top_n, bool) or not isinstance(top_n, (int, np.integer)):
        raise InputError(f"top_n must be an integer, got {type(top_n).__name__}", param="top_n")
    if top_n < 1:
        raise InputError(f"top_n must be at least 1, got {top_n}", param="top_n")
    return int(top_n) if n is None else min(int(top_n), n)


def rank(scores: Sequence[float] | np.ndarray, documents: Sequence[str] | None = None,
         top_n: int | None = None) -> list[RerankResult]:
    """Results sorted by score, highest first (ties keep input order), cut to ``top_n``."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    top_n = check_top_n(top_n, len(order))
    if top_n is not None:
        order = order[:top_n]
    return [RerankResult(int(i), float(scores[i]), documents[i] if documents is not None else None)
            for i in order]


def rerank_body(results: Sequence[RerankResult], *, model: str, tokens: int | None = None,
                return_documents: bool = True, query: str | None = None) -> dict[str, Any]:
    """The Cohere/Jina-shaped body ``/v1/rerank`` answers and ``qembed rerank --json`` prints."""
    body: dict[str, Any] = {}
    if query is not None:
        body["query"] = query
    body["object"] = "rerank"
    body["model"] = model
    body["results"] = [r.to_dict(return_documents) for r in results]
    if tokens is not None:
        body["usage"] = {"prompt_tokens": int(tokens), "total_tokens": int(tokens)}
    return body


def want_progress(progress: bool | None, batches: int) -> bool:
    """``progress`` as given, or (None) on when stderr is a terminal and there is more than one batch."""
    if progress is not None:
        return bool(progress)
    return batches > 1 and sys.stderr.isatty()
