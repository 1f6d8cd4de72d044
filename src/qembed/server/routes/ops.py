"""Operations routes: ``GET /health`` (readiness, per model) and ``GET /metrics`` (Prometheus).

Both are open (no API key) and read the app's :class:`~qembed.server.registry.ModelRegistry`.
``/health`` answers 200 when every served model is ready and 503 (``Retry-After: 1``) while one
loads or restarts, or after one failed; its body names the default embedding model at the top
(``model``, ``engine``; ``reranker`` for the first reranker) and every model under ``models``.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

async def health(request: Request) -> JSONResponse:
    state = request.app.state.server
    registry = request.app.state.registry
    default = registry.default("embedding")
    status = state.status
    body: dict[str, Any] = {"status": status, "model": default.name if default else None}
    if default is not None and (default.engine is not None or default.front is not None):
        body["engine"] = default.health()["engine"]
    if state.front_stats is not None:  # several fronts: the supervisor's figures
        fronts = state.front_stats.as_dict()
        body.setdefault("engine", {"kind": "process"})["restarts"] = fronts.pop("engine_restarts")
        body["fronts"] = {**fronts, "this": {"index": state.front_index, "pid": os.getpid()}}
    reranker = registry.default("reranker")
    if reranker is not None:  # the first reranker, where it always was
        body["reranker"] = {"model": reranker.name, "status": reranker.status, "restarts": reranker.restarts}
    body["models"] = [served.health() for served in registry]
    if status == "ready":
        body["status"] = "ok"
        return JSONResponse(body)
    if state.error:
        body["error"] = state.error
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})


async def prometheus_metrics(request: Request) -> Response:
    metrics = request.app.state.metrics
    return Response(metrics.render(), media_type=metrics.content_type)


#: The route table: (path, handler, method, options).
ROUTES: list[tuple[str, Any, str, dict[str, Any]]] = [
    ("/health", health, "GET", dict(
        tags=["Operations"], summary="Readiness: 200 when every served model is loaded, 503 before",
        responses={503: {"description": "loading or restarting, or a model failed to load"}})),
    ("/metrics", prometheus_metrics, "GET", dict(
        tags=["Operations"], summary="Prometheus metrics (per-model figures carry a `model` label)",
        response_class=Response)),
]


def mount(target: Any) -> None:
    """Add :data:`ROUTES` to ``target`` (the app: flat in ``app.routes``; or an ``APIRouter``)."""
    for path, handler, method, options in ROUTES:
        target.add_api_route(path, handler, methods=[method], **options)


router = APIRouter()
mount(router)
