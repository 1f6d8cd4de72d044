"""The FastAPI application: OpenAI-compatible embeddings, model listing, health, metrics, tokenize.

:func:`create_app` wires the layers the way TEI's router does: the HTTP layer validates and
tokenises, the :class:`~qembed.server.batcher.Batcher` queue owns batching and backpressure, and
one model worker thread runs the forward passes. The task routes (``routes/pairs.py``,
``routes/cluster.py``, ``routes/search.py``) are mounted here and reach the batched encoder as
``request.app.state.encoder``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from qembed import __version__
from qembed.config import Settings
from qembed.errors import InputError, QembedError
from qembed.models.encoder import Encoder, check_dimensions, truncate_dimensions
from qembed.models.prompts import DEFAULT_QUERY_INSTRUCTION
from qembed.server.encoder import BatchedEncoder
from qembed.server.errors import (
    AuthenticationError,
    NotReadyError,
    install_error_handlers,
)
from qembed.server.metrics import ServerMetrics
from qembed.server.middleware import ServerMiddleware
from qembed.server.routes import check_model
from qembed.server.schemas import (
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorResponse,
    ModelCard,
    ModelList,
    TokenizeRequest,
    TokenizeResponse,
    parse_input,
)

logger = logging.getLogger(__name__)

#: Task route modules mounted by :func:`create_app` (each exports ``router``, maybe ``setup``).
ROUTE_MODULES = ("qembed.server.routes.pairs", "qembed.server.routes.cluster", "qembed.server.routes.search")

#: Responses larger than this many floats are serialised on a worker thread, off the event loop.
_LARGE_RESPONSE = 64 * 1024

_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 429, 503)}


@dataclass
class ServerState:
    """What the handlers need besides the settings: readiness, the encoder, the served names."""

    settings: Settings
    metrics: ServerMetrics
    served_name: str
    status: str = "loading"  # loading | ready | failed
    error: str | None = None
    encoder: BatchedEncoder | None = None
    accepted_names: set[str] = field(default_factory=set)
    setups: list[Callable[[FastAPI, Settings], None]] = field(default_factory=list)
    created: int = field(default_factory=lambda: int(time.time()))
    ready_event: threading.Event = field(default_factory=threading.Event)


def default_served_name(settings: Settings, encoder: Encoder | None = None) -> str:
    """``--served-model-name``, else the encoder's name, else the model folder's name or the Hub id."""
    if settings.served_model_name:
        return settings.served_model_name
    if encoder is not None:
        return encoder.name
    model = settings.model.rstrip("/")
    if model.startswith(("http://", "https://")):
        return model
    path = Path(model).expanduser()
    return path.name if path.exists() else model


def load_from_settings(settings: Settings) -> Encoder:
    """Load the encoder ``settings.model`` names: a local model, or an upstream endpoint (proxy)."""
    from qembed.models import load_encoder

    if settings.model.startswith(("http://", "https://")):
        return load_encoder(settings.model, api_key=settings.upstream_api_key,
                            model=settings.upstream_model)
    return load_encoder(
        settings.model, device=settings.device, dtype=settings.dtype,
        max_input_tokens=settings.max_input_tokens, truncate=settings.truncate,
        max_batch_tokens=settings.max_batch_tokens, max_batch_size=settings.max_batch_size,
        name=settings.served_model_name,
    )


def _activate(app: FastAPI, encoder: Encoder) -> None:
    """Wrap ``encoder`` in the batching queue, run the task routes' ``setup``, mark the app ready."""
    state: ServerState = app.state.server
    settings = state.settings
    batched = encoder if isinstance(encoder, BatchedEncoder) else BatchedEncoder(
        encoder,
        # unset limits follow the encoder's device defaults (LocalEncoder.BATCH_LIMITS)
        max_batch_tokens=settings.max_batch_tokens or getattr(encoder, "max_batch_tokens", 16384),
        max_batch_size=settings.max_batch_size or getattr(encoder, "max_batch_size", 256),
        max_queued_requests=settings.max_queued_requests, metrics=state.metrics)
    state.served_name = default_served_name(settings, encoder)
    names = {state.served_name, encoder.name}
    state.accepted_names = names | {n.rsplit("/", 1)[-1] for n in names}
    app.state.encoder = batched
    state.encoder = batched
    try:
        for setup in state.setups:
            setup(app, settings)
    except Exception:
        app.state.encoder = None
        state.encoder = None
        batched.close()
        raise
    state.status = "ready"
    state.ready_event.set()
    logger.info("serving %s (dim %d, max input %s tokens, batching %s)", state.served_name, encoder.dim,
                encoder.max_input_tokens, "on" if batched.batched else "per request")


def _load_in_background(app: FastAPI, loader: Callable[[], Encoder]) -> None:
    state: ServerState = app.state.server
    try:
        _activate(app, loader())
    except Exception as exc:  # noqa: BLE001 - reported through /health and 503s
        state.status = "failed"
        state.error = exc.message if isinstance(exc, QembedError) else f"{type(exc).__name__}: {exc}"
        logger.error("the model could not be loaded: %s", state.error,
                     exc_info=not isinstance(exc, QembedError))
        state.ready_event.set()


# ---------------------------------------------------------------------- dependencies
def require_auth(request: Request) -> None:
    """401 unless ``Authorization: Bearer <api_key>`` matches exactly (when an API key is configured)."""
    from qembed.server.errors import check_api_key  # the rule ServerMiddleware applies first

    key = request.app.state.settings.api_key
    if key:
        check_api_key(request.headers.get("authorization"), key)


def require_ready(request: Request) -> BatchedEncoder:
    """The batched encoder, or 503 while the model loads (or after it failed to)."""
    state: ServerState = request.app.state.server
    if state.encoder is None:
        if state.status == "failed":
            raise NotReadyError(f"the model failed to load: {state.error}", code="model_load_failed")
        raise NotReadyError("the model is still loading; retry when GET /health answers 200",
                            code="model_loading")
    return state.encoder


def _json(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _embedding_payload(vectors: np.ndarray, dimensions: int | None, encoding_format: str, model: str,
                       tokens: int) -> bytes:
    """The OpenAI response body for full-size unit ``vectors`` cut to ``dimensions``."""
    vectors = truncate_dimensions(vectors, dimensions)
    if encoding_format == "base64":
        little = vectors.astype("<f4", copy=False)
        rows = [base64.b64encode(v.tobytes()).decode("ascii") for v in little]
    else:
        rows = vectors.tolist()
    return _json({
        "object": "list",
        "data": [{"object": "embedding", "embedding": e, "index": i} for i, e in enumerate(rows)],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })


# ---------------------------------------------------------------------- the app
def create_app(
    settings: Settings | None = None,
    encoder: Encoder | None = None,
    *,
    loader: Callable[[], Encoder] | None = None,
) -> FastAPI:
    """Build the server app.

    ``encoder`` given: served at once (the task routes' ``setup`` runs here, so its errors reach
    the caller). ``encoder`` None: ``loader()`` (default: load ``settings.model``) runs on a
    background thread at startup; ``/health`` answers 503 until it is done, and the endpoints 503
    meanwhile.
    """
    settings = settings or Settings()
    metrics = ServerMetrics()
    state = ServerState(settings=settings, metrics=metrics,
                        served_name=default_served_name(settings, encoder))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.status == "loading":
            load = loader or (lambda: load_from_settings(settings))
            threading.Thread(target=_load_in_background, args=(app, load), name="qembed-model-loader",
                             daemon=True).start()
        yield
        if state.encoder is not None:
            logger.info("finishing queued requests")
            await run_in_threadpool(state.encoder.close)

    app = FastAPI(
        title="qembed",
        version=__version__,
        summary="OpenAI-compatible embedding server for Qwen3-Embedding (and sentence-transformers models).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.server = state
    app.state.metrics = metrics
    app.state.encoder = None
    install_error_handlers(app)
    app.add_middleware(ServerMiddleware, metrics=metrics, max_body_bytes=settings.max_request_bytes)

    auth = [Depends(require_auth)]

    async def create_embeddings(body: EmbeddingRequest, request: Request,
                                enc: BatchedEncoder = Depends(require_ready)) -> Response:
        check_model(state, body.model)
        kind, items = parse_input(body.input, settings.max_client_batch_size)
        dimensions = check_dimensions(body.dimensions, enc.dim)
        instruction = body.instruction or None
        if instruction is None and body.input_type == "query":
            instruction = DEFAULT_QUERY_INSTRUCTION
        if kind == "ids":
            if instruction is not None:
                raise InputError("instruction and input_type=query apply to text input only; token-id "
                                 "input is embedded as given", param="instruction")
            if not enc.batched:
                raise InputError("this server proxies another endpoint and takes text input only",
                                 param="input")
        if body.user:
            logger.debug("embeddings request from user %s", body.user)
        if enc.batched:
            def prepare() -> tuple[int, Any]:
                ids = enc.tokenize(items, instruction) if kind == "text" else enc.prepare_token_ids(items)
                return sum(len(x) for x in ids), enc.submit(ids)

            with enc.arriving():  # counted from here, so the worker can wait for it to arrive
                tokens, future = await run_in_threadpool(prepare)
            vectors = await asyncio.wrap_future(future)
        else:
            vectors = await run_in_threadpool(enc.encode, items, instruction)
            tokenizer = getattr(enc.inner, "tokenizer", None)
            tokens = sum(len(x) for x in tokenizer(items)["input_ids"]) if tokenizer else 0
        args = (vectors, dimensions, body.encoding_format, state.served_name, tokens)
        if vectors.size > _LARGE_RESPONSE:
            content = await run_in_threadpool(_embedding_payload, *args)
        else:
            content = _embedding_payload(*args)
        return Response(content, media_type="application/json")

    embeddings_doc = dict(
        response_model=EmbeddingResponse, responses=_ERRORS, dependencies=auth, tags=["OpenAI"],
        summary="Create embeddings",
        description="OpenAI's embeddings API. Extensions: `instruction` (a query instruction for "
                    "every text) and `input_type` (`query` applies the default retrieval "
                    f"instruction “{DEFAULT_QUERY_INSTRUCTION}”, `document` none).",
    )
    app.add_api_route("/v1/embeddings", create_embeddings, methods=["POST"], **embeddings_doc)
    app.add_api_route("/embeddings", create_embeddings, methods=["POST"], include_in_schema=False,
                      **{k: v for k, v in embeddings_doc.items() if k == "dependencies"})

    @app.get("/v1/models", response_model=ModelList, dependencies=auth, tags=["OpenAI"],
             responses=_ERRORS, summary="List the served model")
    async def list_models() -> ModelList:
        enc = state.encoder
        return ModelList(data=[ModelCard(
            id=state.served_name, created=state.created,
            root=str(getattr(enc.inner, "path", enc.name)) if enc else settings.model,
            max_model_len=enc.max_input_tokens if enc else None, dim=enc.dim if enc else None,
        )])

    async def tokenize(body: TokenizeRequest, enc: BatchedEncoder = Depends(require_ready)) -> TokenizeResponse:
        check_model(state, body.model)
        if body.prompt == "":
            raise InputError("prompt is an empty string", param="prompt")
        if not hasattr(enc.inner, "tokenizer"):
            raise InputError("this server proxies another endpoint and has no tokenizer", param="prompt")
        tokens = await run_in_threadpool(enc.token_ids, body.prompt, body.add_special_tokens)
        return TokenizeResponse(tokens=tokens, count=len(tokens), max_model_len=enc.max_input_tokens)

    tokenize_doc = dict(response_model=TokenizeResponse, responses=_ERRORS, dependencies=auth,
                        tags=["Utilities"], summary="Tokenize a prompt (vLLM/SGLang shape)",
                        description="Token ids of `prompt` with the model's special tokens, before "
                                    "truncation; `max_model_len` is the longest input embedded whole.")
    app.add_api_route("/tokenize", tokenize, methods=["POST"], **tokenize_doc)
    app.add_api_route("/v1/tokenize", tokenize, methods=["POST"], include_in_schema=False,
                      dependencies=auth)

    @app.get("/health", tags=["Operations"], summary="Readiness: 200 when the model is loaded, 503 before",
             responses={503: {"description": "loading, or the model failed to load"}})
    async def health() -> JSONResponse:
        body: dict[str, Any] = {"status": state.status, "model": state.served_name}
        if state.status == "ready":
            body["status"] = "ok"
            return JSONResponse(body)
        if state.error:
            body["error"] = state.error
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})

    @app.get("/metrics", tags=["Operations"], summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    for name in ROUTE_MODULES:
        module = importlib.import_module(name)
        app.include_router(module.router, dependencies=[*auth, Depends(require_ready)])
        if callable(getattr(module, "setup", None)):
            state.setups.append(module.setup)

    if encoder is not None:
        _activate(app, encoder)
    return app
