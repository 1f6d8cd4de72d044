"""The FastAPI application: :func:`create_app` wires the served models to the routes.

The layers are TEI's: the HTTP layer validates and tokenises, the
:class:`~qembed.server.batcher.Batcher` queue in each model's engine owns batching, and the
server's admission limit answers 429. What is where:

- :mod:`qembed.models.spec` — one :class:`~qembed.models.spec.ModelSpec` per served model, built
  once from the settings (or ``qembed serve --config``) and passed unchanged to the engines;
- :mod:`qembed.server.registry` — the served models (:class:`~qembed.server.registry.ModelRegistry`)
  every route reads, and the admission limit they share;
- :mod:`qembed.server.supervisor` — one :class:`~qembed.server.supervisor.ModelSupervisor` per
  model: start, health, restart, ``on_fatal``;
- :mod:`qembed.server.routes` — the routes: ``openai`` (``/v1/embeddings``, ``/v1/models``,
  ``/tokenize``), ``ops`` (``/health``, ``/metrics``) and the task routes, each an ``APIRouter``.

The task routes reach the default embedding model's batched encoder as ``request.app.state.encoder``
and any model through :func:`qembed.server.routes.task_encoder`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from qembed import __version__
from qembed.config import Settings
from qembed.errors import QembedError
from qembed.models.encoder import Encoder
from qembed.models.spec import ModelSpec, specs_from_settings
from qembed.server.encoder import BatchedEncoder
from qembed.server.errors import NotReadyError, install_error_handlers
from qembed.server.metrics import ServerMetrics
from qembed.server.middleware import ServerMiddleware
from qembed.server.registry import Admission, ModelRegistry, ServedModel
from qembed.server.supervisor import ModelSupervisor, engine_threads, start_models

logger = logging.getLogger(__name__)

#: Task route modules mounted by :func:`create_app` (each exports ``router``, maybe ``setup``).
ROUTE_MODULES = ("qembed.server.routes.pairs", "qembed.server.routes.cluster", "qembed.server.routes.search",
                 "qembed.server.routes.rerank", "qembed.server.routes.topics", "qembed.server.routes.summarize")


@dataclass
class ServerState:
    """The server's own state besides the models (``app.state.server``): settings, the
    registry, what happens at start-up and on a fatal error, and the ``--api-workers`` links.

    ``status``, ``error``, ``encoder``, ``served_name``, ``engine`` and ``restarts`` read the
    registry (the last four: the default embedding model's)."""

    settings: Settings
    metrics: ServerMetrics
    registry: ModelRegistry
    admission: Any = None
    setups: list[Callable[[FastAPI, Settings], None]] = field(default_factory=list)
    supervisors: list[ModelSupervisor] = field(default_factory=list)
    ready_event: threading.Event = field(default_factory=threading.Event)
    #: the setups ran (the models are served); an error there fails the server
    wired: bool = False
    setup_error: str | None = None
    #: called when a model cannot be brought back (``qembed serve`` stops with exit code 1)
    on_fatal: Callable[[str], None] | None = None
    closing: bool = False
    #: one of several fronts (qembed serve --api-workers, :mod:`qembed.server.fronts`): the
    #: engines' sockets (by model name), the supervisor's figures and this front's index
    attach: dict[str, tuple[str, bytes]] | None = None
    front_stats: Any = None
    front_index: int | None = None
    #: models already loaded in this process, by name (create_app's ``encoder``)
    loaded: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.setup_error is not None:
            return "failed"
        status = self.registry.status
        return status if status != "ready" or self.wired else "loading"

    @property
    def error(self) -> str | None:
        return self.setup_error or self.registry.error

    @property
    def default(self) -> ServedModel | None:
        return self.registry.default("embedding")

    @property
    def encoder(self) -> BatchedEncoder | None:
        default = self.default
        return default.front if default is not None else None

    @property
    def served_name(self) -> str:
        default = self.default
        return default.name if default is not None else ""

    @property
    def engine(self) -> Any:
        default = self.default
        return default.engine if default is not None else None

    @property
    def restarts(self) -> int:
        default = self.default
        return default.restarts if default is not None else 0


def uses_engine_process(settings: Settings, specs: list[ModelSpec] | None = None) -> bool:
    """Whether ``settings`` put a model in an engine process (``engine=process`` and a local model)."""
    specs = specs if specs is not None else specs_from_settings(settings)
    return settings.engine == "process" and any(not s.remote for s in specs)


# ---------------------------------------------------------------------- starting and stopping
def _supervisors(app: FastAPI) -> list[ModelSupervisor]:
    """One supervisor per served model (made once, when the models start)."""
    state: ServerState = app.state.server
    if not state.supervisors:
        attach = state.attach or {}

        def fatal(reason: str) -> None:
            if state.on_fatal is not None:
                state.on_fatal(reason)

        state.supervisors = [
            ModelSupervisor(served, state.settings, metrics=state.metrics, admission=state.admission,
                            attach=attach.get(served.name), loaded=state.loaded.get(served.name),
                            count_restarts=not attach, on_fatal=fatal)
            for served in state.registry]
    return state.supervisors


def start_engine(app: FastAPI) -> None:
    """Start every served model of ``app`` and serve them (blocking until all are loaded).

    Raises :class:`~qembed.errors.QembedError` when a model cannot be loaded.
    """
    state: ServerState = app.state.server
    start_models(_supervisors(app))
    if state.closing:
        return
    _wire(app)


def _wire(app: FastAPI) -> None:
    """Make the default embedding model the app's encoder, run the task routes' ``setup``, mark
    the app ready."""
    state: ServerState = app.state.server
    app.state.encoder = state.encoder
    app.state.reranker = state.registry.default("reranker")
    try:
        for setup in state.setups:
            setup(app, state.settings)
    except Exception:
        for sup in state.supervisors:
            sup.close()
        app.state.encoder = None
        raise
    state.wired = True
    state.ready_event.set()
    for served in state.registry:
        logger.info("serving %s %s (%s%s)", served.kind, served.name,
                    f"dim {served.dim}, " if served.dim else "", served.health()["engine"]["kind"])


def _load_in_background(app: FastAPI) -> None:
    state: ServerState = app.state.server
    try:
        start_engine(app)
    except Exception as exc:  # noqa: BLE001 - reported through /health and 503s
        error = exc.message if isinstance(exc, QembedError) else f"{type(exc).__name__}: {exc}"
        if state.registry.status != "failed":  # a task route's setup failed
            state.setup_error = error
        logger.error("the model could not be loaded: %s", error, exc_info=not isinstance(exc, QembedError))
        state.ready_event.set()
        if state.on_fatal is not None and uses_engine_process(state.settings, [m.spec for m in state.registry]):
            state.on_fatal(error)


# ---------------------------------------------------------------------- dependencies
async def require_auth(request: Request) -> None:
    """401 unless ``Authorization: Bearer <api_key>`` matches exactly (when an API key is configured)."""
    from qembed.server.errors import authorization_of, check_api_key  # ServerMiddleware's reading

    key = request.app.state.settings.api_key
    if key:
        check_api_key(authorization_of(request.scope.get("headers")), key)


async def require_ready(request: Request) -> BatchedEncoder | None:
    """The default batched encoder, or 503 while the models load, or after a failure (a task route
    checks its own model's state when it picks one)."""
    return require_ready_state(request.app.state.server)


def require_ready_state(state: ServerState) -> BatchedEncoder | None:
    """:func:`require_ready` for a server's state."""
    if state.setup_error is not None:
        raise NotReadyError(f"the model failed to load: {state.setup_error}", code="model_load_failed")
    if not state.wired and state.registry.status in ("ready", "loading"):
        raise NotReadyError("the model is still loading; retry when GET /health answers 200",
                            code="model_loading")
    default = state.default
    return default.require() if default is not None else None


# ---------------------------------------------------------------------- the app
def create_app(
    settings: Settings | None = None,
    encoder: Encoder | None = None,
    *,
    loader: Callable[[], Encoder] | None = None,
    specs: list[ModelSpec] | None = None,
) -> FastAPI:
    """Build the server app.

    ``specs``: the served models (default: :func:`~qembed.models.spec.specs_from_settings`, i.e.
    ``settings.model`` and ``settings.reranker``). Each local model runs in an engine process of
    its own (``settings.engine == "process"``, the default; started at startup unless
    :func:`start_engine` was called first) or in this process (``"thread"``); an ``http(s)://``
    URL is proxied. ``encoder`` given: it is the first embedding model, served at once on a
    thread engine in this process (the other models and the task routes' ``setup`` start here
    too, so their errors reach the caller). ``loader`` given: ``loader()`` makes that encoder on
    a background thread at startup. ``/health`` answers 503 until every model is ready, and the
    endpoints 503 meanwhile.
    """
    settings = settings or Settings()
    specs = list(specs) if specs is not None else specs_from_settings(settings)
    if encoder is not None or loader is not None:  # the first embedding model is given (or made) here
        # an encoder given here is named by --served-model-name, else by itself
        name = (settings.served_model_name or encoder.name) if encoder is not None else specs[0].served_name
        path = str(getattr(encoder, "path", None) or name) if encoder is not None else specs[0].path
        specs[0] = specs[0].replace(path=path, name=name)
    specs = engine_threads(specs, settings.engine)
    metrics = ServerMetrics()
    state = ServerState(settings=settings, metrics=metrics, registry=ModelRegistry(specs),
                        admission=Admission(settings.max_queued_requests))
    if encoder is not None:
        state.loaded[specs[0].served_name] = encoder

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not state.wired and not state.supervisors and state.setup_error is None:
            if loader is not None:
                def load() -> None:
                    try:
                        state.loaded[specs[0].served_name] = loader()
                    except Exception as exc:  # noqa: BLE001 - reported through /health and 503s
                        state.registry.models[0].set_failed(exc)
                        logger.error("the model could not be loaded: %s", state.registry.models[0].error)
                        state.ready_event.set()
                        return
                    _load_in_background(app)

                target: Callable[[], None] = load
            else:
                target = lambda: _load_in_background(app)  # noqa: E731
            threading.Thread(target=target, name="qembed-model-loader", daemon=True).start()
        yield
        state.closing = True
        for sup in reversed(state.supervisors):  # the rerankers first, then the embedding models
            if sup.served.kind == "embedding" and sup.served.front is not None:
                logger.info("finishing queued requests of %s", sup.served.name)
            await run_in_threadpool(sup.close)

    app = FastAPI(
        title="qembed",
        version=__version__,
        summary="OpenAI-compatible embedding server for Qwen3-Embedding (and sentence-transformers models).",
        lifespan=lifespan,
        **({} if settings.api_docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}),
    )
    app.state.settings = settings
    app.state.server = state
    app.state.registry = state.registry
    app.state.metrics = metrics
    app.state.encoder = None
    app.state.reranker = None
    install_error_handlers(app)
    app.add_middleware(ServerMiddleware, metrics=metrics, max_body_bytes=settings.max_request_bytes)

    from qembed.server.routes import openai as openai_routes
    from qembed.server.routes import ops

    auth = [Depends(require_auth)]
    openai_routes.mount(app, auth)  # flat in app.routes, where the middleware's fast path finds them
    openai_routes.setup_fast_paths(app)
    ops.mount(app)
    from qembed.server.routes.adapters import router as adapters_router

    app.include_router(adapters_router)  # its own keys: the API key to list, the admin key to change
    if settings.studio:  # the page at / (routes/studio.py): static files, nothing on /v1/*
        from qembed.server.routes.studio import router as studio_router

        app.include_router(studio_router)
    for name in ROUTE_MODULES:
        module = importlib.import_module(name)
        app.include_router(module.router, dependencies=[*auth, Depends(require_ready)])
        if callable(getattr(module, "setup", None)):
            state.setups.append(module.setup)

    if encoder is not None:
        start_engine(app)
    return app
