"""ASGI middleware: the API key, request-body limits, unexpected errors, per-request metrics.

For every HTTP request, in this order:

1. **API key** (when the server has one): every route but :func:`open_paths` needs
   ``Authorization: Bearer <key>``; a request without it is answered 401 before its body is read,
   so a client without the key learns nothing from body errors. The header is read once, by
   :func:`~qembed.server.errors.authorization_of`: a request carrying it twice is a 400.
   **Whole paths**: a path whose final line feed the route's pattern would drop
   (``/v1/models%0A``) is answered 404 (:mod:`qembed.server.routing`).
2. **Body size**: a ``Content-Length`` over ``max_body_bytes`` is answered 413 at once; a body
   streamed past it is cut off with 413.
3. **Body timeout**: a body that stops arriving (e.g. shorter than its ``Content-Length``) is
   answered 408 after ``body_timeout`` seconds without a byte, and the connection is closed.
4. **Unexpected errors**: an exception no handler turned into a response is logged and answered
   500 with an OpenAI-shaped body *here*, so the keep-alive connection stays open (an exception
   reaching the ASGI server would make it drop the connection).
5. **Fast path**: a route listed in ``app.state.fast_paths`` (``POST /v1/embeddings``) whose
   request carries ``Content-Type: application/json`` is handed to its direct ASGI handler, which
   validates the body with pydantic and answers without FastAPI's request objects, dependency
   solving and exception layers (about a third of a front's CPU per small request). A body that
   does not validate is replayed to FastAPI, so every error is the one the route always gave;
   errors raised by the handler go through the app's exception handlers.
6. **Metrics**: status and latency per route; the ``endpoint`` label is the route's path
   template (``/v1/documents/{doc_id:any}``), ``unmatched`` for unknown paths, so arbitrary
   URLs cannot blow up the metric's cardinality.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from typing import Any

from fastapi import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qembed.errors import QembedError
from qembed.server.errors import authorization_of, check_api_key, error_body
from qembed.server.metrics import ServerMetrics
from qembed.server.routing import drops_final_line_feed

logger = logging.getLogger(__name__)

#: Paths served without the API key: health checks and metrics scrapes, and the API docs
#: (:data:`DOCS_PATHS`) unless the server runs with ``api_docs=False`` (``--no-api-docs``).
OPEN_PATHS = frozenset({"/health", "/metrics"})
DOCS_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
#: Seconds a request body may go without a byte arriving before the server answers 408.
BODY_TIMEOUT = 30.0


#: The studio page and its files: open, since the page asks for the key itself (unless ``studio=False``).
STUDIO_PATHS = frozenset({"/", "/studio/studio.css", "/studio/studio.js"})


def open_paths(settings: Any) -> frozenset[str]:
    """The paths ``settings`` serve without the API key."""
    paths = OPEN_PATHS | DOCS_PATHS if getattr(settings, "api_docs", True) else OPEN_PATHS
    return paths | STUDIO_PATHS if getattr(settings, "studio", False) else paths


def _too_large_message(limit: int) -> str:
    return f"request body is larger than the limit of {limit} bytes (max_request_bytes); split the request"


class ServerMiddleware:
    """API key first, body size and read timeout, 500s without dropping the connection, metrics.

    ``body_timeout``: seconds without a byte of the request body before answering 408 (default
    :data:`BODY_TIMEOUT`, read when a request arrives).
    """

    def __init__(self, app: ASGIApp, *, metrics: ServerMetrics, max_body_bytes: int,
                 body_timeout: float | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = int(max_body_bytes)
        self.body_timeout = body_timeout
        self._labels: dict[tuple[str, str], str] = {}

    def _label(self, scope: Scope) -> str:
        if scope.get("qembed.unmatched"):
            return "unmatched"
        route = scope.get("route")  # set by the router for the route that served the request
        label = getattr(route, "path", None) or getattr(route, "path_format", None)
        if isinstance(label, str) and label:
            return label
        key = (scope.get("method", ""), scope.get("path", ""))
        label = self._labels.get(key)
        if label is None:
            app = scope.get("app")
            label = _match_path(getattr(getattr(app, "router", None), "routes", []), scope) or "unmatched"
            if len(self._labels) < 4096:
                self._labels[key] = label
        return label

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        timeout = self.body_timeout if self.body_timeout is not None else BODY_TIMEOUT
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        status = {"code": 500, "started": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
            await send(message)

        start = time.perf_counter()
        self.metrics.in_progress.inc()
        try:
            denied = self._check_key(scope)
            if denied is not None:
                await _send_error(send_wrapper, denied.status_code, denied.message, param=denied.param,
                                  code=denied.code,
                                  headers={"WWW-Authenticate": "Bearer"} if denied.status_code == 401 else None)
                return
            routes = getattr(getattr(scope.get("app"), "router", None), "routes", None)
            if drops_final_line_feed(routes, scope):
                scope["qembed.unmatched"] = True
                await _send_error(send_wrapper, 404, f"no route {scope.get('method')} "
                                                     f"{urllib.parse.quote(scope.get('path', ''))}")
                return
            if length is not None and length.isdigit() and int(length) > limit:
                await _send_error(send_wrapper, 413, _too_large_message(limit), code="request_too_large")
                return
            received = 0
            body_done = False

            async def receive_wrapper() -> Message:
                nonlocal received, body_done
                if body_done or status["started"]:
                    return await receive()
                try:
                    message = await asyncio.wait_for(receive(), timeout)
                except asyncio.TimeoutError:
                    # FastAPI re-raises an HTTPException from body parsing; the app's handler
                    # turns it into an OpenAI-shaped 408 (and the connection is closed).
                    raise HTTPException(408, detail=f"the request body stopped arriving: no byte for "
                                                    f"{timeout:g} s ({received} bytes received)",
                                        headers={"Connection": "close"}) from None
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise HTTPException(413, detail=_too_large_message(limit))
                    body_done = not message.get("more_body", False)
                else:
                    body_done = True
                return message

            try:
                fast = _fast_handler(scope)
                if fast is None:
                    await self.app(scope, receive_wrapper, send_wrapper)
                else:
                    await _run_fast(fast, scope, receive_wrapper, send_wrapper, self.app)
            except Exception as exc:  # noqa: BLE001 - answered here so the connection stays open
                if status["started"]:
                    raise
                logger.error("unexpected error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
                await _send_error(send_wrapper, 500, f"internal server error ({type(exc).__name__}: {exc})",
                                  error_type="api_error")
        finally:
            self.metrics.in_progress.dec()
            label = self._label(scope)
            self.metrics.requests.labels(endpoint=label, status=str(status["code"])).inc()
            self.metrics.latency.labels(endpoint=label).observe(time.perf_counter() - start)

    def _check_key(self, scope: Scope) -> QembedError | None:
        """The error (401, or 400 for a repeated header) for a request that needs the API key
        and lacks it (``None`` when fine)."""
        settings = getattr(getattr(scope.get("app"), "state", None), "settings", None)
        key = getattr(settings, "api_key", None)
        if not key or scope.get("path") in open_paths(settings) or str(scope.get("path")).startswith("/v1/adapters"):
            return None
        try:
            check_api_key(authorization_of(scope.get("headers")), key)
        except QembedError as exc:
            return exc
        return None


async def read_body(receive: Receive) -> bytes:
    """The whole request body (the caller's ``receive`` enforces size and time limits)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _fast_handler(scope: Scope) -> Any:
    """The fast-path handler and route for this request, or ``None``."""
    paths = getattr(getattr(scope.get("app"), "state", None), "fast_paths", None)
    if not paths:
        return None
    found = paths.get((scope.get("method"), scope.get("path")))
    if found is None:
        return None
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            return found if value in (b"application/json", b"application/json; charset=utf-8") else None
    return None


async def _run_fast(found: Any, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
    handler, route = found
    scope["route"] = route  # the metrics label
    try:
        done = await handler(scope, receive, send)
    except Exception as exc:  # noqa: BLE001 - the app's handler for it answers, as on the regular path
        handlers = getattr(scope.get("app"), "exception_handlers", {})
        for kind in type(exc).__mro__:
            if kind in handlers and kind is not Exception:
                from starlette.requests import Request

                response = await handlers[kind](Request(scope, receive), exc)
                await response(scope, receive, send)
                return
        raise
    if done is True:
        return
    replayed = False

    async def replay() -> Message:  # the body the fast path read, then the connection as it goes on
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": done, "more_body": False}
        return await receive()

    await app(scope, replay, send)


def _match_path(routes: Any, scope: Scope) -> str | None:
    """The path template of the route matching ``scope`` (routers included by FastAPI too)."""
    partial = None
    for route in routes:
        try:
            match, _ = route.matches(scope)
        except Exception:  # noqa: BLE001 - a route that cannot judge this scope does not match it
            continue
        if match == Match.NONE:
            continue
        path = getattr(route, "path", None) or getattr(route, "path_format", None)
        inner = getattr(route, "original_router", None) or getattr(route, "router", None)
        if not isinstance(path, str) and inner is not None:
            path = _match_path(getattr(inner, "routes", []), scope)
        if match == Match.FULL and path:
            return path
        partial = partial or path
    return partial


async def _send_error(send: Send, status: int, message: str, *, headers: dict[str, str] | None = None,
                      **kwargs: Any) -> None:
    body = json.dumps(error_body(message, status, **kwargs), ensure_ascii=True).encode("ascii")
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
