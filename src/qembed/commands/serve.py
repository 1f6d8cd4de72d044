"""``qembed serve``: the OpenAI-compatible embedding server (SGLang's command line works as is)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

import typer

from qembed.commands._common import (
    BackendOpt,
    DeviceOpt,
    DtypeOpt,
    JsonOpt,
    check_backend,
    emit_json,
)
from qembed.errors import InputError

logger = logging.getLogger("qembed.serve")


def serve(
    model: list[str] | None = typer.Option(
        None, "--model", "-m", "--model-path",
        help="Model folder or Hub id (default $QEMBED_MODEL or Qwen/Qwen3-Embedding-0.6B); an "
             "http(s)://…/v1 URL proxies another OpenAI-compatible endpoint. --model-path is "
             "SGLang's name for it. Repeat it to serve several embedding models, each in its own "
             "engine process; requests pick one with `model` (default: the first)."),
    config: str | None = typer.Option(
        None, "--config",
        help="TOML file listing the served models with their own options: [[models]] tables with "
             "path, and optionally kind (embedding or reranker), name, dtype, device, backend, "
             "max_input_tokens, truncate, max_batch_tokens, max_batch_size, threads. The other "
             "flags are every model's defaults. Replaces --model and --reranker."),
    host: str | None = typer.Option(None, "--host", help="Interface to listen on (default 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Port (default 30000)."),
    is_embedding: bool = typer.Option(False, "--is-embedding", help="Accepted for SGLang compatibility; ignored."),
    served_model_name: str | None = typer.Option(
        None, "--served-model-name", help="Name clients pass as `model` (default: the folder's name)."),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="QEMBED_API_KEY",
        help="Require 'Authorization: Bearer KEY' on every route except the open ones: /health, "
             "/metrics, and the API docs /docs, /docs/oauth2-redirect, /redoc, /openapi.json "
             "(see --no-api-docs)."),
    api_docs: bool | None = typer.Option(
        None, "--api-docs/--no-api-docs",
        help="Serve the API docs /docs, /redoc and /openapi.json, open without a key (default); "
             "--no-api-docs closes them (404)."),
    studio: bool | None = typer.Option(
        None, "--studio/--no-studio",
        help="Serve the studio web page at / (default); with --api-key the page asks for the key."),
    max_batch_tokens: int | None = typer.Option(
        None, "--max-batch-tokens", help="Tokens per forward pass: real tokens for packed Qwen3 passes, inputs x longest for padded ones (default 4096 CPU, 16384 GPU)."),
    max_batch_size: int | None = typer.Option(
        None, "--max-batch-size", help="Inputs per forward pass (default 256 for packed Qwen3 passes; padded: 32 CPU, 256 GPU; 1 turns batching off)."),
    max_client_batch_size: int | None = typer.Option(
        None, "--max-client-batch-size", help="Most inputs in one request (default 2048)."),
    max_input_tokens: int | None = typer.Option(
        None, "--max-input-tokens", help="Longest input in tokens (default: 8192 for Qwen3-Embedding)."),
    truncate: bool | None = typer.Option(
        None, "--truncate/--no-truncate", help="Cut longer inputs (default) or reject them with 400."),
    max_queued_requests: int | None = typer.Option(
        None, "--max-queued-requests", help="Requests waiting for the model before 429s (default 512)."),
    max_request_bytes: int | None = typer.Option(
        None, "--max-request-bytes", help="Largest request body (default 16 MiB)."),
    index: str | None = typer.Option(
        None, "--index", help="Knowledge base (folder or Milvus URI) served by /v1/search."),
    topic_model: str | None = typer.Option(
        None, "--topic-model", help="Topic model folder served by /v1/topics (assign, update, fit)."),
    reranker: list[str] | None = typer.Option(
        None, "--reranker",
        help="Reranker (folder, Hub id such as Qwen/Qwen3-Reranker-0.6B, or http(s):// URL of a /rerank "
             "endpoint): adds POST /v1/rerank and rerank=true on /v1/search; it runs in an engine of its "
             "own. Repeatable (`model` in /v1/rerank picks one; default: the first)."),
    adapter: list[str] | None = typer.Option(
        None, "--adapter",
        help="LoRA adapter NAME=PATH (a folder made by 'qembed finetune embedding') served over the first "
             "embedding model, loaded once; requests pick it with model=NAME (or BASE:NAME). Repeatable."),
    admin_key: str | None = typer.Option(
        None, "--admin-key", envvar="QEMBED_ADMIN_KEY",
        help="Key of the admin routes (POST /v1/adapters, DELETE /v1/adapters/NAME: load and unload "
             "adapters at run time), sent as 'Authorization: Bearer KEY'; without it they answer 403."),
    device: str | None = DeviceOpt,
    dtype: str | None = DtypeOpt,
    backend: str | None = BackendOpt,
    engine: str | None = typer.Option(
        None, "--engine",
        help="Where the model runs: 'process' (default: an engine process of its own, so HTTP and "
             "tokenisation never hold up a forward pass) or 'thread' (inside the server process)."),
    engine_threads: int | None = typer.Option(
        None, "--engine-threads", help="torch threads of the engine (default: one per core)."),
    api_workers: int | None = typer.Option(
        None, "--api-workers",
        help="Front processes (HTTP, JSON, tokenisation) sharing the port and one engine per model, "
             "with one admission limit (429), one /metrics and one /health across them (default 1; "
             "needs --engine process). More fronts help small models on many cores."),
    compile_: bool | None = typer.Option(
        None, "--compile/--no-compile",
        help="Fuse the packed Qwen3 passes' element-wise ops with torch.compile (default: compile "
             "at start-up, $QEMBED_COMPILE; the first start compiles for ~30 s on 2 CPU cores, later "
             "starts reuse the kernels cached under ~/.cache/qembed/torchinductor)."),
    background_load: bool = typer.Option(
        False, "--background-load",
        help="Listen at once and load the model in the background (/health answers 503 until it is "
             "ready). Default: load first, so 'Uvicorn running on …' means ready, as in SGLang."),
    access_log: bool | None = typer.Option(None, "--access-log/--no-access-log",
                                              help="Log every request (default off)."),
    log_level: str | None = typer.Option(None, "--log-level", help="debug, info, warning, error."),
    as_json: bool = JsonOpt,
) -> None:
    """Serve embeddings over HTTP: OpenAI /v1/embeddings, /v1/models, /tokenize, /health, /metrics, /docs.

    qembed serve --model-path /models/Qwen3-Embedding-0.6B --host 0.0.0.0 --port 30000

    qembed serve --model ./Qwen3-Embedding-0.6B --model ./all-MiniLM-L6-v2 --reranker ./Qwen3-Reranker-0.6B
    """
    started = time.perf_counter()
    logger.info("starting: loading the server code")
    import uvicorn
    from pydantic import ValidationError

    from qembed.config import Settings
    from qembed.extras import require_backend, require_store
    from qembed.errors import ModelNotFoundError
    from qembed.models.resolve import resolve_model_path, with_option_hint
    from qembed.models.spec import read_config, specs_from_config, specs_from_settings
    from qembed.server.app import create_app, start_engine, uses_engine_process

    del is_embedding  # SGLang flag: every qembed model is an embedding model
    models, rerankers = list(model or []), list(reranker or [])
    if config is not None and (models or rerankers):
        raise InputError("give the models with --model/--reranker or in --config, not both", param="config")
    updates = {
        "model": models[0] if models else None, "admin_key": admin_key, "host": host, "port": port, "served_model_name": served_model_name,
        "api_key": api_key, "api_docs": api_docs, "studio": studio, "max_batch_tokens": max_batch_tokens, "max_batch_size": max_batch_size,
        "max_client_batch_size": max_client_batch_size, "max_input_tokens": max_input_tokens,
        "truncate": truncate, "max_queued_requests": max_queued_requests,
        "max_request_bytes": max_request_bytes, "index": index, "topic_model": topic_model, "reranker": rerankers[0] if rerankers else None, "device": device,
        "dtype": dtype, "backend": check_backend(backend),
        "access_log": access_log, "log_level": log_level, "engine": engine,
        "engine_threads": engine_threads, "compile": compile_, "api_workers": api_workers,
    }
    try:
        settings = Settings(**{k: v for k, v in updates.items() if v is not None})
    except ValidationError as exc:  # the Field constraints of qembed.config name the setting
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first.get("loc", ())) or "settings"
        raise InputError(f"{name}: {first['msg']}") from None
    specs = specs_from_settings(settings, models, rerankers)
    if config is not None:
        specs = specs_from_config(read_config(config), defaults=specs[0].replace(name=None))
        if not any(s.kind == "embedding" for s in specs):
            raise InputError("the config file lists no embedding model (kind = \"embedding\")", param="config")
        first = next(s for s in specs if s.kind == "embedding")
        rerank = next((s for s in specs if s.kind == "reranker"), None)
        settings.model = first.path  # the studio, the OpenAPI page and the task routes read these
        settings.reranker = rerank.path if rerank is not None else None
    from qembed.server.adapters import with_adapter_options

    specs = with_adapter_options(specs, adapter)
    if settings.log_level.lower() == "debug":
        logging.getLogger("qembed").setLevel(logging.DEBUG)
    require_store(settings.index)  # optional features fail now, before any model loads
    for spec in specs:
        if not spec.remote:
            require_backend(spec.backend)

    in_process = not uses_engine_process(settings, specs)
    if settings.api_workers > 1 and in_process:
        raise InputError("--api-workers needs the model in an engine process: drop --engine thread "
                         "(an http(s):// upstream is proxied by one front)", param="api_workers")
    if settings.api_workers > 1 and background_load:
        raise InputError("--background-load works with one front only: drop --api-workers or "
                         "--background-load", param="api_workers")
    from qembed.server.fronts import raise_open_files_limit

    raise_open_files_limit()  # a connection is a file descriptor: 1,024 clients need more than 1,024
    for spec in specs:  # fail now on a missing folder, not in the engine
        if spec.remote:
            continue
        try:
            logger.info("resolving the %s %s", "reranker" if spec.kind == "reranker" else "model", spec.path)
            logger.info("model folder: %s", resolve_model_path(spec.path))  # a Hub id may download here
        except ModelNotFoundError as exc:
            if spec.kind == "reranker":
                raise with_option_hint(exc, "reranker", "--reranker DIR or $QEMBED_RERANKER") from None
            raise with_option_hint(exc, "embedding model", "--model DIR or $QEMBED_MODEL") from None
    if settings.api_workers > 1:
        _serve_fronts(settings, specs, as_json, started)
        return
    app = create_app(settings, specs=specs)
    if not background_load:
        logger.info("%s for %s", "loading the model" if in_process else "starting the engine process",
                    ", ".join(s.served_name for s in specs))
        start_engine(app)

    if as_json:
        emit_json({"url": f"http://{settings.host}:{settings.port}", "model": app.state.server.served_name,
                   **({"models": [s.served_name for s in specs]} if len(specs) > 1 else {})})
    # uvicorn re-raises SIGTERM after its graceful shutdown; a handler makes that a clean exit 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    if in_process:
        # The model worker shares this interpreter: a short switch interval keeps HTTP work on the
        # event loop from stalling a forward pass for whole 5 ms slices.
        sys.setswitchinterval(float(os.environ.get("QEMBED_SWITCH_INTERVAL", "0.0005")))
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                            access_log=settings.access_log, timeout_graceful_shutdown=settings.graceful_timeout,
                            lifespan="on", backlog=4096)
    server = uvicorn.Server(config)
    fatal: list[str] = []

    def stop(reason: str) -> None:  # the engine could not be brought back: exit non-zero
        fatal.append(reason)
        server.should_exit = True

    app.state.server.on_fatal = stop
    logger.info("%s after %.1fs; listening on http://%s:%d", "ready" if app.state.server.status == "ready"
                else "loading in the background", time.perf_counter() - started, settings.host, settings.port)
    server.run()
    if fatal:
        logger.error("exiting: %s", fatal[0])
        raise typer.Exit(1)
    logger.info("server stopped")


def _serve_fronts(settings, specs, as_json: bool, started: float) -> None:
    """``--api-workers N``: this process supervises the engines and N front processes."""
    from qembed.server.fronts import Supervisor

    logger.info("starting the engine processes for %s, then %d front processes",
                ", ".join(s.served_name for s in specs), settings.api_workers)
    supervisor = Supervisor(settings, specs=specs)
    # uvicorn re-raises SIGTERM after its graceful shutdown; the supervisor's handler stops the fronts
    try:
        supervisor.start()
    except BaseException:
        supervisor.close()
        raise

    def ready(sup: Supervisor) -> None:
        if as_json:
            emit_json({"url": f"http://{settings.host}:{sup.port}", "model": sup.served_name,
                       "api_workers": settings.api_workers,
                       **({"models": [s.served_name for s in specs]} if len(specs) > 1 else {})})
        logger.info("ready after %.1fs; listening on http://%s:%d (%d front processes)",
                    time.perf_counter() - started, settings.host, sup.port, settings.api_workers)

    supervisor.on_ready = ready
    code = supervisor.run()
    if code:
        raise typer.Exit(code)
    logger.info("server stopped")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Add ``qembed serve``."""
    app.command("serve")(serve)
