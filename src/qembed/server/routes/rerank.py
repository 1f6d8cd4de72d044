"""``POST /v1/rerank`` (and ``/rerank``): the Cohere/Jina rerank API over the server's reranker.

Mounted always; it answers when the server runs with a reranker (``qembed serve --reranker M``).
:func:`setup` starts the reranker beside the embedding model: with ``engine=process`` in an
engine process of its own (the same :class:`~qembed.server.engine.ProcessEngine` the embedding
model runs in; its passes return one score per input), with ``engine=thread`` on a thread of this
process, and for an ``http(s)://`` URL by calling that endpoint per request. Pairs are tokenised on
a front tokenizer thread and batched across requests by the engine. Requests share the server's
admission limit (429), auth, metrics and OpenAI-shaped errors with ``/v1/embeddings``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from qembed.config import Settings
from qembed.errors import InputError, NotFoundError, QembedError
from qembed.io import is_http_url
from qembed.models.compile import server_compile
from qembed.rerank.base import RerankResult, check_top_n, rank, rerank_body
from qembed.rerank.inputs import RerankInputs, validate_documents, validate_query
from qembed.server.errors import ModelNotServedError
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
    model: Text | None = Field(None, description="The served reranker's name (optional).")
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


def reranker_spec(settings: Settings) -> Any:
    """What the reranker's engine process loads, from the settings."""
    from qembed.server.engine import EngineSpec

    s = settings
    return EngineSpec(model=s.reranker, device=s.device, dtype=s.dtype, max_batch_tokens=s.max_batch_tokens,
                      max_batch_size=s.max_batch_size, compile=server_compile(s.compile), threads=s.engine_threads,
                      omp_wait_policy=s.omp_wait_policy, kind="reranker")


class ServedReranker:
    """The server's reranker: admission, a front tokenizer thread, an engine (or a remote endpoint).

    ``rerank`` (blocking) makes it usable wherever a reranker is (two-stage search on the server);
    routes await :meth:`score_async`.
    """

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.engine: Any = None
        self.inner: Any = None
        self.worker: Any = None
        self.info_data: dict[str, Any] = {}
        self.closing = False
        self.restarts = 0
        self.status = "loading"
        self.error: str | None = None

    # ------------------------------------------------------------------ starting
    def start(self) -> None:
        from qembed.server.tokenizer import TokenizerWorker

        target = self.settings.reranker
        assert target
        if is_http_url(target):
            from qembed.rerank.remote import RemoteReranker

            self.inner = RemoteReranker(target, api_key=self.settings.upstream_api_key)
            self.info_data = {"name": self.inner.name, "remote": True}
        elif self.settings.engine == "process":
            from transformers import AutoTokenizer

            self._start_process()
            inputs = RerankInputs.from_spec(AutoTokenizer.from_pretrained(self.info_data["path"]),
                                            self.info_data["inputs"])
            self.worker = TokenizerWorker(inputs, name="qembed-rerank-tokenizer")
        else:
            from qembed.rerank.local import Reranker
            from qembed.server.engine import ThreadEngine

            s = self.settings
            reranker = Reranker(target, device=s.device, dtype=s.dtype, max_batch_tokens=s.max_batch_tokens,
                                max_batch_size=s.max_batch_size, compile=server_compile(s.compile))
            self.engine = ThreadEngine(reranker, max_batch_tokens=reranker.max_batch_tokens,
                                       max_batch_size=reranker.max_batch_size, metrics=self.app.state.metrics)
            self.info_data = self.engine.info
            inputs = RerankInputs.from_spec(copy.deepcopy(reranker.tokenizer), reranker.inputs.spec())
            self.worker = TokenizerWorker(inputs, name="qembed-rerank-tokenizer")
        self.status = "ready"
        logger.info("serving reranker %s", self.name)

    def _start_process(self) -> None:
        from qembed.server.engine import ProcessEngine

        s = self.settings
        attach = getattr(getattr(self.app.state, "server", None), "attach", None)
        if attach and "reranker" in attach:  # one of several fronts: the supervisor runs the engine
            from qembed.server.fronts import AttachedEngine

            engine: Any = AttachedEngine(*attach["reranker"], metrics=self.app.state.metrics, on_exit=self._exited)
        else:
            engine = ProcessEngine(reranker_spec(s), max_batch_tokens=s.max_batch_tokens,
                                   max_batch_size=s.max_batch_size, metrics=self.app.state.metrics,
                                   on_exit=self._exited, log_level=s.log_level, linger=s.batch_linger_ms / 1000)
        self.info_data = engine.start(timeout=s.engine_start_timeout)
        if self.closing:
            engine.close()
            return
        self.engine = engine

    def _exited(self, code: int | None) -> None:
        """The reranker's engine process died: 503 meanwhile, restart it up to the limit."""
        if self.closing:
            return
        self.status = "restarting"
        attached = bool(getattr(getattr(self.app.state, "server", None), "attach", None))
        for attempt in range(1, self.settings.engine_restart_limit + 1):
            self.restarts += 1
            if not attached:  # several fronts: the supervisor restarts it and counts
                self.app.state.metrics.engine_restarts.inc()
            logger.warning("restarting the reranker engine (exit code %s; attempt %d)", code, attempt)
            try:
                self._start_process()
                self.status = "ready"
                return
            except Exception as exc:  # noqa: BLE001 - retried, then given up
                self.error = exc.message if isinstance(exc, QembedError) else f"{type(exc).__name__}: {exc}"
                time.sleep(min(2.0 ** attempt, 30.0))
        self.status = "failed"
        logger.error("the reranker engine could not be restarted: %s", self.error)

    # ------------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        return str(self.info_data.get("name") or self.settings.reranker)

    @property
    def names(self) -> set[str]:
        return {self.name, self.name.rsplit("/", 1)[-1], str(self.settings.reranker).rstrip("/")}

    def check_model(self, model: str | None) -> None:
        if model is not None and model not in self.names:
            raise ModelNotServedError(f"model {model!r} is not served here; this server's reranker is "
                                      f"{self.name!r}", param="model", code="model_not_found")

    # ------------------------------------------------------------------ scoring
    def _submit(self, ids: list[list[int]]) -> Any:
        from qembed.server.engine import EngineUnavailableError

        if self.status != "ready" or self.engine is None:
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
        with self.app.state.encoder.admit():
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

    def close(self) -> None:
        self.closing = True
        if self.engine is not None:
            self.engine.close()
        if self.worker is not None:
            self.worker.close()
        if self.inner is not None:
            self.inner.close()


def setup(app: FastAPI, settings: Settings) -> None:
    """Start the reranker named by ``settings.reranker`` (nothing when there is none)."""
    app.state.reranker = None
    if not getattr(settings, "reranker", None):
        return
    served = ServedReranker(app, settings)
    app.state.reranker = served
    try:
        served.start()
    except Exception:
        app.state.reranker = None
        served.close()
        raise


def served_reranker(request: Request) -> ServedReranker:
    """The server's reranker, or 404 when it runs without one."""
    served = getattr(request.app.state, "reranker", None)
    if served is None:
        raise NotFoundError("this server has no reranker: start it with 'qembed serve --reranker MODEL'",
                            code="no_reranker")
    return served


async def rerank(body: RerankRequest, request: Request) -> Response:
    served = served_reranker(request)
    served.check_model(body.model)
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
    with request.app.state.encoder.admit():  # the server's admission limit: 429 when full
        scores, tokens = await served.score_async(query, documents, body.instruction)
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
