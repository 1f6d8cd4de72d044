"""The FastAPI application: OpenAI-compatible embeddings, model listing, health, metrics, tokenize.

:func:`create_app` wires the layers the way TEI's router does: the HTTP layer validates and
tokenises, the :class:`~qembed.server.batcher.Batcher` queue owns batching and backpressure, and
one model worker thread runs the forward passes. The task routes (``routes/pairs.py``,
``routes/cluster.py``, ``routes/search.py``) are mounted here and reach the batched encoder as
``request.app.state.encoder``.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import importlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import numpy as np
import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from qembed import __version__
from qembed.config import Settings
from qembed.errors import InputError, QembedError
from qembed.io import is_http_url
from qembed.models.compile import server_compile
from qembed.models.encoder import Encoder, check_dimensions, truncate_dimensions
from qembed.models.inputs import InputPreparer
from qembed.models.prompts import DEFAULT_QUERY_INSTRUCTION
from qembed.server.encoder import BatchedEncoder
from qembed.server.engine import EngineSpec, EngineUnavailableError, ProcessEngine, ThreadEngine
from qembed.server.errors import (
    NotReadyError,
    install_error_handlers,
)
from qembed.server.metrics import ServerMetrics
from qembed.server.middleware import ServerMiddleware, read_body
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
from qembed.store.quantize import check_embedding_types, typed_embeddings

logger = logging.getLogger(__name__)

#: Task route modules mounted by :func:`create_app` (each exports ``router``, maybe ``setup``).
ROUTE_MODULES = ("qembed.server.routes.pairs", "qembed.server.routes.cluster", "qembed.server.routes.search",
                 "qembed.server.routes.rerank", "qembed.server.routes.topics", "qembed.server.routes.summarize")

#: Responses larger than this many floats are serialised on a worker thread, off the event loop.
_LARGE_RESPONSE = 64 * 1024

_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 429, 503)}


@dataclass
class ServerState:
    """What the handlers need besides the settings: readiness, the encoder, the served names."""

    settings: Settings
    metrics: ServerMetrics
    served_name: str
    status: str = "loading"  # loading | ready | restarting | failed
    error: str | None = None
    encoder: BatchedEncoder | None = None
    accepted_names: set[str] = field(default_factory=set)
    setups: list[Callable[[FastAPI, Settings], None]] = field(default_factory=list)
    created: int = field(default_factory=lambda: int(time.time()))
    ready_event: threading.Event = field(default_factory=threading.Event)
    engine: Any = None
    restarts: int = 0
    #: called when the engine cannot be brought back (``qembed serve`` stops with exit code 1)
    on_fatal: Callable[[str], None] | None = None
    closing: bool = False
    #: one of several fronts (qembed serve --api-workers, :mod:`qembed.server.fronts`): the
    #: engines' sockets, the shared admission, the supervisor's figures and this front's index
    attach: dict[str, tuple[str, bytes]] | None = None
    admission: Any = None
    front_stats: Any = None
    front_index: int | None = None


def default_served_name(settings: Settings, encoder: Encoder | None = None) -> str:
    """``--served-model-name``, else the encoder's name, else the model folder's name or the Hub id."""
    if settings.served_model_name:
        return settings.served_model_name
    if encoder is not None:
        return encoder.name
    model = settings.model.rstrip("/")
    if is_http_url(model):
        return model
    path = Path(model).expanduser()
    return path.name if path.exists() else model


def load_from_settings(settings: Settings) -> Encoder:
    """Load the encoder ``settings.model`` names in this process: a local model, or an upstream
    endpoint (proxy)."""
    from qembed.models import load_encoder

    if is_http_url(settings.model):
        return load_encoder(settings.model, api_key=settings.upstream_api_key,
                            model=settings.upstream_model)
    return load_encoder(
        settings.model, device=settings.device, dtype=settings.dtype,
        max_input_tokens=settings.max_input_tokens, truncate=settings.truncate,
        max_batch_tokens=settings.max_batch_tokens, max_batch_size=settings.max_batch_size,
        name=settings.served_model_name, compile=server_compile(settings.compile),
        **({"backend": settings.backend} if settings.backend else {}),
    )


def engine_spec(settings: Settings) -> EngineSpec:
    """What the engine process loads, from the settings."""
    return EngineSpec(model=settings.model, device=settings.device, dtype=settings.dtype,
                      max_input_tokens=settings.max_input_tokens, truncate=settings.truncate,
                      max_batch_tokens=settings.max_batch_tokens, max_batch_size=settings.max_batch_size,
                      name=settings.served_model_name, compile=server_compile(settings.compile),
                      threads=settings.engine_threads, omp_wait_policy=settings.omp_wait_policy,
                      backend=settings.backend)


def uses_engine_process(settings: Settings) -> bool:
    """Whether ``settings`` put the model in an engine process (local models, ``engine=process``)."""
    return settings.engine == "process" and not is_http_url(settings.model)


def _serve(app: FastAPI, batched: BatchedEncoder, dim: int, max_input_tokens: Any) -> None:
    """Make ``batched`` the app's encoder, run the task routes' ``setup``, mark the app ready."""
    state: ServerState = app.state.server
    app.state.encoder = batched
    state.encoder = batched
    try:
        for setup in state.setups:
            setup(app, state.settings)
    except Exception:
        app.state.encoder = None
        state.encoder = None
        batched.close()
        raise
    state.status = "ready"
    state.error = None
    state.ready_event.set()
    logger.info("serving %s (dim %d, max input %s tokens, %s)", state.served_name, dim, max_input_tokens,
                f"engine {type(batched.engine).__name__}" if batched.batched else "per request")


def _names(state: ServerState, *names: str) -> None:
    state.accepted_names = set(names) | {n.rsplit("/", 1)[-1] for n in names}


def _activate(app: FastAPI, encoder: Encoder) -> None:
    """Serve an encoder loaded in this process: a thread engine, or per-request calls (proxy)."""
    state: ServerState = app.state.server
    settings = state.settings
    if isinstance(encoder, BatchedEncoder):
        batched = encoder
    elif all(hasattr(encoder, a) for a in ("inputs", "forward_batch")):
        engine = ThreadEngine(
            encoder, metrics=state.metrics,
            # unset limits follow the encoder's device defaults (LocalEncoder.BATCH_LIMITS)
            max_batch_tokens=settings.max_batch_tokens or getattr(encoder, "max_batch_tokens", 16384),
            max_batch_size=settings.max_batch_size or getattr(encoder, "max_batch_size", 256))
        # The front gets its own tokenizer: the encoder's stays free for its other users.
        inputs = InputPreparer.from_spec(copy.deepcopy(encoder.inputs.tokenizer), encoder.inputs.spec())
        batched = BatchedEncoder(engine, inputs, engine.info, max_queued_requests=settings.max_queued_requests,
                                 metrics=state.metrics)
    else:
        batched = BatchedEncoder(inner=encoder, max_queued_requests=settings.max_queued_requests,
                                 metrics=state.metrics)
    state.served_name = default_served_name(settings, encoder)
    _names(state, state.served_name, encoder.name)
    _serve(app, batched, encoder.dim, encoder.max_input_tokens)


def start_engine(app: FastAPI) -> None:
    """Start the engine process of ``app`` and serve it (blocking until the model is loaded).

    Raises :class:`~qembed.errors.QembedError` when the model cannot be loaded.
    """
    state: ServerState = app.state.server
    settings = state.settings
    if state.attach:  # one of several fronts: the supervisor runs the engine
        from qembed.server.fronts import AttachedEngine

        engine = AttachedEngine(*state.attach["embedding"], metrics=state.metrics,
                                on_exit=lambda code: _engine_exited(app, code))
    else:
        engine = ProcessEngine(engine_spec(settings), max_batch_tokens=settings.max_batch_tokens,
                               max_batch_size=settings.max_batch_size, metrics=state.metrics,
                               on_exit=lambda code: _engine_exited(app, code), log_level=settings.log_level,
                               linger=settings.batch_linger_ms / 1000)
    engine.launch()
    from transformers import AutoTokenizer  # seconds of imports, while the engine loads

    info = engine.start(timeout=settings.engine_start_timeout)
    if state.closing:
        engine.close()
        return
    state.engine = engine
    if state.encoder is not None:  # a restart: the front keeps its tokenizer thread and admission
        state.encoder.engine = engine
        state.status = "ready"
        state.error = None
        logger.info("the engine is back (pid %s)", engine.pid)
        return
    inputs = InputPreparer.from_spec(AutoTokenizer.from_pretrained(info["path"]), info["inputs"])
    batched = BatchedEncoder(engine, inputs, info, max_queued_requests=settings.max_queued_requests,
                             metrics=state.metrics, admission=state.admission)
    state.served_name = settings.served_model_name or default_served_name(settings)
    _names(state, state.served_name, info["name"])
    _serve(app, batched, info["dim"], info["max_input_tokens"])


def _engine_exited(app: FastAPI, code: int | None) -> None:
    """The engine process died: answer 503 meanwhile, restart it, give up after the limit."""
    state: ServerState = app.state.server
    if state.closing:
        return
    state.status = "restarting"
    state.error = f"the model engine exited (exit code {code}); restarting it"
    limit = state.settings.engine_restart_limit
    for attempt in range(1, limit + 1):
        state.restarts += 1
        if not state.attach:  # several fronts: the supervisor restarts it and counts
            state.metrics.engine_restarts.inc()
        logger.warning("%s the engine (attempt %d of %d)",
                       "reconnecting to" if state.attach else "restarting", attempt, limit)
        try:
            start_engine(app)
            return
        except Exception as exc:  # noqa: BLE001 - retried, then fatal
            state.error = exc.message if isinstance(exc, QembedError) else f"{type(exc).__name__}: {exc}"
            logger.error("the engine did not restart: %s", state.error)
            time.sleep(min(2.0 ** attempt, 30.0))
    state.status = "failed"
    state.error = f"the model engine exited and could not be restarted: {state.error}"
    logger.critical(state.error)
    if state.on_fatal is not None:
        state.on_fatal(state.error)


def _load_in_background(app: FastAPI, loader: Callable[[], Encoder] | None) -> None:
    state: ServerState = app.state.server
    try:
        if loader is None:
            start_engine(app)
        else:
            _activate(app, loader())
    except Exception as exc:  # noqa: BLE001 - reported through /health and 503s
        state.status = "failed"
        state.error = exc.message if isinstance(exc, QembedError) else f"{type(exc).__name__}: {exc}"
        logger.error("the model could not be loaded: %s", state.error,
                     exc_info=not isinstance(exc, QembedError))
        state.ready_event.set()
        if state.on_fatal is not None and loader is None:
            state.on_fatal(state.error)


# ---------------------------------------------------------------------- dependencies
async def require_auth(request: Request) -> None:
    """401 unless ``Authorization: Bearer <api_key>`` matches exactly (when an API key is configured)."""
    from qembed.server.errors import authorization_of, check_api_key  # ServerMiddleware's reading

    key = request.app.state.settings.api_key
    if key:
        check_api_key(authorization_of(request.scope.get("headers")), key)


async def require_ready(request: Request) -> BatchedEncoder:
    """The batched encoder, or 503 while the model loads, the engine restarts, or after a failure."""
    return require_ready_state(request.app.state.server)


def require_ready_state(state: ServerState) -> BatchedEncoder:
    """:func:`require_ready` for a server's state."""
    if state.status == "restarting":
        raise EngineUnavailableError(f"{state.error}; retry shortly", code="engine_unavailable")
    if state.encoder is None or state.status == "failed":
        if state.status == "failed":
            raise NotReadyError(f"the model failed to load: {state.error}", code="model_load_failed")
        raise NotReadyError("the model is still loading; retry when GET /health answers 200",
                            code="model_loading")
    return state.encoder


def _device_dtype(enc: BatchedEncoder | None) -> dict[str, str]:
    """``device`` and ``dtype`` of the served model, as far as its description says."""
    try:
        info = enc.info() if enc is not None else {}
    except Exception:  # noqa: BLE001 - a proxy's upstream may not say; the card leaves them out
        info = {}
    return {k: str(info[k]) for k in ("device", "dtype") if info.get(k)}


def _json(payload: Any) -> bytes:
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def _embedding_payload(vectors: np.ndarray, dimensions: int | None, encoding_format: str, model: str,
                       tokens: int) -> bytes:
    """The OpenAI response body for full-size unit ``vectors`` cut to ``dimensions``."""
    vectors = truncate_dimensions(vectors, dimensions)
    if encoding_format == "base64":
        little = np.ascontiguousarray(vectors, dtype="<f4")
        rows: Any = [base64.b64encode(v.tobytes()).decode("ascii") for v in little]
    else:
        rows = vectors  # orjson writes the float32 rows directly
    return _json({
        "object": "list",
        "data": [{"object": "embedding", "embedding": e, "index": i} for i, e in enumerate(rows)],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })


def _typed_payload(vectors: np.ndarray, dimensions: int | None, encoding_format: str, model: str, tokens: int,
                   types: list[str]) -> bytes:
    """The response body for ``embedding_types`` other than float alone."""
    rows = typed_embeddings(truncate_dimensions(vectors, dimensions), types, encoding_format)
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

    ``encoder`` given: served at once on a thread engine in this process (the task routes'
    ``setup`` runs here, so its errors reach the caller). ``loader`` given: ``loader()`` runs on a
    background thread at startup, then the same. Neither: ``settings.model`` is served — a local
    model in an engine process of its own (``settings.engine == "process"``, the default; started
    at startup unless :func:`start_engine` was called first) or in this process
    (``"thread"``), an ``http(s)://`` URL by proxy. ``/health`` answers 503 until the model is
    ready, and the endpoints 503 meanwhile.
    """
    settings = settings or Settings()
    metrics = ServerMetrics()
    state = ServerState(settings=settings, metrics=metrics,
                        served_name=default_served_name(settings, encoder))
    if loader is None and encoder is None and not uses_engine_process(settings):
        loader = lambda: load_from_settings(settings)  # noqa: E731 - thread engine or proxy

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.status == "loading" and state.encoder is None:
            threading.Thread(target=_load_in_background, args=(app, loader), name="qembed-model-loader",
                             daemon=True).start()
        yield
        state.closing = True
        reranker = getattr(app.state, "reranker", None)
        if reranker is not None:  # a second engine (qembed serve --reranker)
            await run_in_threadpool(reranker.close)
        if state.encoder is not None:
            logger.info("finishing queued requests")
            await run_in_threadpool(state.encoder.close)
        elif state.engine is not None:
            await run_in_threadpool(state.engine.close)

    app = FastAPI(
        title="qembed",
        version=__version__,
        summary="OpenAI-compatible embedding server for Qwen3-Embedding (and sentence-transformers models).",
        lifespan=lifespan,
        **({} if settings.api_docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}),
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
        return Response(await embeddings_body(body, enc), media_type="application/json")

    async def embeddings_body(body: EmbeddingRequest, enc: BatchedEncoder) -> bytes:
        """The response body of a validated embeddings request (the route's and the fast path's)."""
        check_model(state, body.model)
        types = check_embedding_types(body.embedding_types) if body.embedding_types is not None else None
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
        with enc.admit():  # 429 at once when the server is full
            vectors, tokens = await enc.embed_async(kind, items, instruction)
        args = (vectors, dimensions, body.encoding_format, state.served_name, tokens)
        if types is not None and types != ["float"]:  # Cohere's embedding_types (store/quantize.py)
            return await run_in_threadpool(_typed_payload, *args, types)
        if vectors.size > _LARGE_RESPONSE:
            return await run_in_threadpool(_embedding_payload, *args)
        return _embedding_payload(*args)

    async def fast_embeddings(scope: Any, receive: Any, send: Any) -> bool:
        """``POST /v1/embeddings`` without FastAPI's per-request machinery (see
        :func:`qembed.server.middleware.fast_path`): a JSON body that validates is answered here;
        anything else goes the regular way (False)."""
        raw = await read_body(receive)
        try:
            body = EmbeddingRequest.model_validate_json(raw)
        except ValueError:
            return raw  # FastAPI answers it, with the error it always gave
        enc = require_ready_state(state)
        content = await embeddings_body(body, enc)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(content)).encode("ascii"))]})
        await send({"type": "http.response.body", "body": content})
        return True

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
    app.state.fast_paths = {("POST", route.path): (fast_embeddings, route) for route in app.router.routes
                            if getattr(route, "path", None) in ("/v1/embeddings", "/embeddings")}

    @app.get("/v1/models", response_model=ModelList, dependencies=auth, tags=["OpenAI"],
             responses=_ERRORS, summary="List the served models (the embedding model, then the reranker when one is served)")
    async def list_models() -> ModelList:
        enc = state.encoder
        cards = [ModelCard(
            id=state.served_name, created=state.created,
            root=enc.path if enc else settings.model,
            max_model_len=enc.max_input_tokens if enc else None, dim=enc.dim if enc else None,
            **_device_dtype(enc),
        )]
        reranker = getattr(app.state, "reranker", None)
        if reranker is not None and reranker.status == "ready":  # qembed serve --reranker
            cards.append(ModelCard(id=reranker.name, created=state.created,
                                   root=str(reranker.info_data.get("path") or settings.reranker),
                                   max_model_len=reranker.info_data.get("max_input_tokens")))
        return ModelList(data=cards)

    async def tokenize(body: TokenizeRequest, enc: BatchedEncoder = Depends(require_ready)) -> TokenizeResponse:
        check_model(state, body.model)
        if body.prompt == "":
            raise InputError("prompt is an empty string", param="prompt")
        if not enc.batched:
            raise InputError("this server proxies another endpoint and has no tokenizer", param="prompt")
        tokens = await enc.token_ids_async(body.prompt, body.add_special_tokens)
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
        engine = state.engine
        if engine is not None:
            body["engine"] = {"kind": "process", "pid": engine.pid, "alive": engine.alive,
                              "restarts": state.restarts}
        elif state.encoder is not None:
            body["engine"] = {"kind": "thread" if state.encoder.batched else "proxy"}
        if state.front_stats is not None:  # several fronts: the supervisor's figures
            fronts = state.front_stats.as_dict()
            body.setdefault("engine", {"kind": "process"})["restarts"] = fronts.pop("engine_restarts")
            body["fronts"] = {**fronts, "this": {"index": state.front_index, "pid": os.getpid()}}
        reranker = getattr(app.state, "reranker", None)
        if reranker is not None:  # qembed serve --reranker: its own engine, reported beside
            body["reranker"] = {"model": reranker.name, "status": reranker.status, "restarts": reranker.restarts}
        if state.status == "ready":
            body["status"] = "ok"
            return JSONResponse(body)
        if state.error:
            body["error"] = state.error
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})

    @app.get("/metrics", tags=["Operations"], summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    if settings.studio:  # the page at / (routes/studio.py): static files, nothing on /v1/*
        from qembed.server.routes.studio import router as studio_router

        app.include_router(studio_router)
    for name in ROUTE_MODULES:
        module = importlib.import_module(name)
        app.include_router(module.router, dependencies=[*auth, Depends(require_ready)])
        if callable(getattr(module, "setup", None)):
            state.setups.append(module.setup)

    if encoder is not None:
        _activate(app, encoder)
    return app
