"""``POST /v1/rerank`` (and ``/rerank``): the Cohere/Jina rerank API over the server's rerankers.

Mounted always; it answers when the server runs with a reranker (``qembed serve --reranker M``,
repeatable; ``model`` picks one, default the first). Each reranker is a served model like the
embedding models (:mod:`qembed.server.registry`), started and restarted by its
:class:`~qembed.server.supervisor.ModelSupervisor`: with ``engine=process`` in an engine process of
its own (its passes return one score per input), with ``engine=thread`` on a thread of this
process, and for an ``http(s)://`` URL by calling that endpoint per request. Pairs are tokenised on
the :class:`RerankerFront`'s tokenizer thread and batched across requests by the engine. Requests
share the server's admission limit (429), auth, metrics and OpenAI-shaped errors with
``/v1/embeddings``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Iterator

import numpy as np
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from qembed.errors import EngineUnavailableError, InputError, NotFoundError, QembedError
from qembed.rerank.base import RerankResult, check_top_n, rank, rerank_body
from qembed.rerank.inputs import RerankInputs, validate_documents, validate_query
from qembed.server.schemas import Integer, Text

logger = logging.getLogger(__name__)

router = APIRouter(tags=["Rerank"])


class RerankDocument(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: Text = Field(..., description="The document's text.")


class RerankRequest(BaseModel):
    """Cohere/Jina/vLLM rerank request; qembed adds ``instruction``."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [
        {"query": "how do I reset my password?",
         "documents": ["Click 'Forgot password' on the sign-in page.", "Our shop opens at 9."], "top_n": 1}]})

    query: Text = Field(..., description="The query the documents are ranked against.")
    documents: list[Text | RerankDocument] = Field(
        ..., description="Documents: strings or objects with a `text` field.")
    model: Text | None = Field(None, description="The served reranker's name (optional; default: the first "
                                                 "reranker, see GET /v1/models).")
    top_n: Integer | None = Field(None, description="Results to return (default: all), best first.")
    return_documents: StrictBool = Field(True, description="Include each document's text in its result.")
    instruction: Text | None = Field(
        None, description="qembed extension: the task instruction (null: the model's default, "
                          "\"\": none).")


class RerankDocumentOut(BaseModel):
    text: str


class RerankItem(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocumentOut | None = None


class RerankUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class RerankResponse(BaseModel):
    object: str = "rerank"
    model: str
    results: list[RerankItem]
    usage: RerankUsage | None = None


class RerankerFront:
    """The routes' side of a served reranker: admission, a tokenizer thread, and its engine (or,
    for an ``http(s)://`` reranker, that endpoint called per request).

    Its :class:`~qembed.server.supervisor.ModelSupervisor` builds it once and swaps ``engine``
    when the engine is restarted. ``rerank`` and ``score`` (blocking) make it usable wherever a
    reranker is (two-stage search on the server); routes await :meth:`score_async`.
    """

    def __init__(self, name: str, *, engine: Any = None, inputs: RerankInputs | None = None, inner: Any = None,
                 admission: Any = None, metrics: Any = None) -> None:
        from qembed.server.registry import Admission
        from qembed.server.tokenizer import TokenizerWorker

        self.name = name
        self.engine = engine
        self.inner = inner
        self.metrics = metrics
        self.admission = admission if admission is not None else Admission(1 << 30)
        self.worker = TokenizerWorker(inputs, name="qembed-rerank-tokenizer") if inputs is not None else None
        self.max_input_tokens = getattr(inputs, "max_input_tokens", None)

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """The server's admission limit (shared with every model): 429 when full."""
        try:
            self.admission.enter()
        except QembedError:
            if self.metrics is not None:
                self.metrics.rejected.inc()
            raise
        try:
            yield
        finally:
            self.admission.leave()

    def _submit(self, ids: list[list[int]]) -> Any:
        if self.engine is None or not self.engine.alive:
            raise EngineUnavailableError("the reranker engine is not running (restarting); retry shortly",
                                         code="engine_unavailable")
        return self.engine.submit(ids)

    async def score_async(self, query: str, documents: list[str], instruction: str | None) -> tuple[np.ndarray, int | None]:
        """Scores in document order and the tokens read (``None`` for a remote reranker)."""
        if self.inner is not None:
            results = await asyncio.to_thread(self.inner.rerank, query, documents, instruction)
            scores = np.empty(len(documents), dtype=np.float32)
            for r in results:
                scores[r.index] = r.score
            return scores, None
        ids = await asyncio.wrap_future(self.worker.call(lambda inputs: inputs.tokenize(query, documents, instruction)))
        rows = await asyncio.wrap_future(self._submit(ids))
        return np.asarray(rows, dtype=np.float32).reshape(-1), sum(len(x) for x in ids)

    def score_documents(self, query: str, documents: list[str], instruction: str | None = None) -> np.ndarray:
        """Blocking :meth:`score_async` (not on the event loop)."""
        with self.admit():
            if self.inner is not None:
                return self.inner.score([(query, d) for d in documents], instruction)
            ids = self.worker.call(lambda inputs: inputs.tokenize(query, documents, instruction)).result()
            return np.asarray(self._submit(ids).result(), dtype=np.float32).reshape(-1)

    def rerank(self, query: str, documents: list[str], instruction: str | None = None,
               top_n: int | None = None, **_: Any) -> list[RerankResult]:
        """Documents sorted by score (blocking; two-stage search calls it from a worker thread)."""
        query = validate_query(query)
        docs = validate_documents(documents)
        return rank(self.score_documents(query, docs, instruction), docs, top_n)

    def score(self, pairs: Any, instruction: str | None = None, **_: Any) -> np.ndarray:
        """Scores of ``(query, document)`` pairs (blocking)."""
        from qembed.rerank.inputs import validate_pairs

        pairs = validate_pairs(pairs)
        out = np.empty(len(pairs), dtype=np.float32)
        by_query: dict[str, list[int]] = {}
        for i, (q, _d) in enumerate(pairs):
            by_query.setdefault(q, []).append(i)
        for q, rows in by_query.items():
            out[rows] = self.score_documents(q, [pairs[i][1] for i in rows], instruction)
        return out

    def info(self) -> dict[str, Any]:
        return dict((getattr(self.engine, "info", None) or {}).get("info") or {})

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        if self.worker is not None:
            self.worker.close()
        if self.inner is not None:
            self.inner.close()


def served_reranker(request: Request, model: str | None = None) -> Any:
    """The :class:`~qembed.server.registry.ServedModel` of the reranker ``model`` names (None: the
    first), or 404 when the server runs without one or ``model`` names none."""
    registry = request.app.state.registry
    if not registry.of_kind("reranker"):
        raise NotFoundError("this server has no reranker: start it with 'qembed serve --reranker MODEL'",
                            code="no_reranker")
    served, _ = registry.resolve(model, "reranker")
    return served


async def rerank(body: RerankRequest, request: Request) -> Response:
    served = served_reranker(request, body.model)
    front = served.require()
    query = validate_query(body.query)
    documents = [d if isinstance(d, str) else d.text for d in body.documents]
    if not documents:
        raise InputError("documents is empty: pass at least one document", param="documents")
    limit = request.app.state.settings.max_client_batch_size
    if len(documents) > limit:
        raise InputError(f"documents has {len(documents)} items, more than this server's limit of {limit} "
                         "per request (max_client_batch_size)", param="documents", code="too_many_inputs")
    documents = validate_documents(documents)
    top_n = check_top_n(body.top_n)
    with front.admit():  # the server's admission limit: 429 when full
        scores, tokens = await front.score_async(query, documents, body.instruction)
    results = rank(scores, documents, top_n)
    payload = rerank_body(results, model=served.name, tokens=tokens, return_documents=body.return_documents)
    if len(documents) > 256:
        content = await run_in_threadpool(_dumps, payload)
    else:
        content = _dumps(payload)
    return Response(content, media_type="application/json")


def _dumps(payload: dict[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(payload)


_DOC = {"response_model": RerankResponse, "summary": "Rerank documents against a query (Cohere/Jina shape)",
            "description": "Scores every document against the query with the server's reranker "
                        "(`qembed serve --reranker MODEL`) and returns them best first. Qwen3-Reranker "
                        "scores are P(yes) in [0, 1]. 404 when the server runs without a reranker."}
router.add_api_route("/v1/rerank", rerank, methods=["POST"], **_DOC)
router.add_api_route("/rerank", rerank, methods=["POST"], include_in_schema=False, response_model=RerankResponse)
