"""A reranker behind HTTP: qembed's ``/v1/rerank``, TEI's ``/rerank``, vLLM, Cohere and Jina.

The request goes out in the Cohere/Jina shape (``query``, ``documents``, ``top_n``,
``return_documents``, plus qembed's ``instruction`` when one is given) to ``{base_url}/rerank``;
a server that answers 404, 405 or 422 there is asked in TEI's shape (``query``, ``texts``) at
``/rerank`` of its root. Answers are read in every shape these servers use:
``{"results": [{"index", "relevance_score"}]}`` (qembed, Cohere, Jina, vLLM),
``[{"index", "score"}]`` (TEI) and ``{"data": [{"index", "score"}]}`` (vLLM's ``/score``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from qembed.errors import InputError, RemoteError
from qembed.rerank.base import RerankResult, check_top_n, rank
from qembed.rerank.inputs import validate_documents, validate_pairs, validate_query

logger = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
_OTHER_SHAPE = {404, 405, 415, 422}


class RemoteReranker:
    """Rerank through a remote endpoint.

    Args:
        base_url: ``http://host:port/v1`` (or the root, or the full ``…/rerank`` URL).
        model: the model name sent with each request; default: none (the server's own reranker),
            and :attr:`name` becomes the name the server reports in its first answer.
        api_key: sent as ``Authorization: Bearer …``.
        batch_size: documents per request; more are split (and scored per part).
        max_retries: retries of 408/409/429/5xx answers and connection errors, with backoff.
        timeout: seconds per request.
    """

    def __init__(self, base_url: str, model: str | None = None, *, api_key: str | None = None,
                 batch_size: int = 256, max_retries: int = 3, timeout: float = 120.0,
                 backoff: float = 0.5, client: httpx.Client | None = None) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise InputError(f"base_url must start with http:// or https://, got {base_url!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError("batch_size must be a positive integer")
        url = base_url.rstrip("/")
        self.url = url if url.endswith("/rerank") else f"{url}/rerank"
        self.base_url = self.url[: -len("/rerank")]
        root = self.base_url.removesuffix("/v1")
        self.tei_url = f"{root}/rerank"
        self.batch_size = batch_size
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self._client = client or httpx.Client(timeout=timeout,
                                              headers={"Authorization": f"Bearer {api_key or 'EMPTY'}"})
        self._shape: str | None = None  # "cohere" or "tei", once known
        self.model = model
        self.name = model or self.base_url

    # ------------------------------------------------------------------ http
    def _post(self, url: str, payload: dict[str, Any], *, probing: bool = False) -> httpx.Response | None:
        attempt = 0
        while True:
            try:
                response = self._client.post(url, json=payload)
            except httpx.TransportError as exc:
                if attempt >= self.max_retries:
                    raise RemoteError(f"POST {url} failed: {type(exc).__name__}: {exc}") from None
                delay = self.backoff * 2**attempt
            else:
                if response.status_code < 400:
                    return response
                if probing and response.status_code in _OTHER_SHAPE:
                    return None
                if response.status_code not in RETRY_STATUS or attempt >= self.max_retries:
                    raise _error(response, url)
                try:
                    delay = float(response.headers.get("retry-after") or self.backoff * 2**attempt)
                except ValueError:
                    delay = self.backoff * 2**attempt
            delay = min(delay, 30.0) * (1 + 0.1 * random.random())
            logger.warning("POST %s: retrying in %.1fs (attempt %d)", url, delay, attempt + 1)
            time.sleep(delay)
            attempt += 1

    def _scores(self, query: str, docs: list[str], instruction: str | None) -> np.ndarray:
        """Scores of ``docs`` in input order, from one request."""
        body = None
        if self._shape in (None, "cohere"):
            payload: dict[str, Any] = {"query": query, "documents": docs, "return_documents": False}
            if self.model:
                payload["model"] = self.model
            if instruction is not None:
                payload["instruction"] = instruction
            response = self._post(self.url, payload, probing=self._shape is None)
            if response is not None:
                self._shape = "cohere"
                body = response.json()
                if not self.model and isinstance(body, dict) and isinstance(body.get("model"), str):
                    self.name = body["model"]
        if body is None:
            if self._shape is None:
                logger.info("%s does not take the Cohere shape; using TEI's at %s", self.url, self.tei_url)
            self._shape = "tei"
            body = self._post(self.tei_url, {"query": query, "texts": docs, "return_text": False}).json()
        return _parse(body, len(docs), self.url)

    # ------------------------------------------------------------------ API
    def score(self, pairs: Sequence[tuple[str, str]], instruction: str | None = None, **_: Any) -> np.ndarray:
        """Score of each ``(query, document)`` pair (pairs sharing a query go in one request)."""
        pairs = validate_pairs(pairs)
        by_query: dict[str, list[int]] = {}
        for i, (q, _d) in enumerate(pairs):
            by_query.setdefault(q, []).append(i)
        out = np.empty(len(pairs), dtype=np.float32)
        for q, rows in by_query.items():
            out[rows] = self._score_docs(q, [pairs[i][1] for i in rows], instruction)
        return out

    def _score_docs(self, query: str, docs: list[str], instruction: str | None) -> np.ndarray:
        parts = [self._scores(query, docs[s:s + self.batch_size], instruction)
                 for s in range(0, len(docs), self.batch_size)]
        return np.concatenate(parts).astype(np.float32)

    def rerank(self, query: str, documents: Sequence[str], instruction: str | None = None,
               top_n: int | None = None, **_: Any) -> list[RerankResult]:
        """``documents`` sorted by the server's relevance scores, highest first, cut to ``top_n``."""
        query = validate_query(query)
        docs = validate_documents(documents)
        check_top_n(top_n)
        return rank(self._score_docs(query, docs, instruction), docs, top_n)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "remote": True, "api": self._shape}

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"RemoteReranker(url={self.url!r}, name={self.name!r})"


def _error(response: httpx.Response, url: str) -> RemoteError:
    try:
        body = response.json()
        err = body.get("error") if isinstance(body, dict) else None
        message = err.get("message") if isinstance(err, dict) else (err or body)
    except ValueError:
        message = response.text[:500]
    error = RemoteError(f"{url} answered {response.status_code}: {message}")
    if 400 <= response.status_code < 500:
        error.status_code = response.status_code
    return error


def _parse(body: Any, n: int, url: str) -> np.ndarray:
    """Scores by input index from any known answer shape."""
    if isinstance(body, dict):
        items = body.get("results", body.get("data"))
    else:
        items = body
    if not isinstance(items, list):
        raise RemoteError(f"{url} answered with no results list: {str(body)[:200]}")
    scores = np.full(n, np.nan, dtype=np.float64)
    for item in items:
        try:
            index = int(item["index"])
            value = item.get("relevance_score", item.get("score"))
            scores[index] = float(value)
        except (KeyError, TypeError, ValueError, IndexError):
            raise RemoteError(f"{url} answered with a malformed result: {str(item)[:200]}") from None
    if np.isnan(scores).any():
        raise RemoteError(f"{url} returned {len(items)} scores for {n} documents")
    return scores
