"""ASGI middleware: request-body size limit and per-request metrics (status, latency, in progress)."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qembed.server.errors import error_body
from qembed.server.metrics import ServerMetrics


def _too_large_message(limit: int) -> str:
    return f"request body is larger than the limit of {limit} bytes (max_request_bytes); split the request"


class ServerMiddleware:
    """Refuse bodies over ``max_body_bytes`` with 413, and count every HTTP request.

    The ``endpoint`` label is the route's path template (``unmatched`` for unknown paths), so
    arbitrary URLs cannot blow up the metric's cardinality.
    """

    def __init__(self, app: ASGIApp, *, metrics: ServerMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = int(max_body_bytes)
        self._labels: dict[tuple[str, str], str] = {}

    def _label(self, scope: Scope) -> str:
        key = (scope.get("method", ""), scope.get("path", ""))
        label = self._labels.get(key)
        if label is None:
            label = "unmatched"
            app = scope.get("app")
            for route in getattr(getattr(app, "router", None), "routes", []):
                match, _ = route.matches(scope)
                if match != Match.NONE:
                    label = getattr(route, "path", "unmatched")
                    break
            if len(self._labels) < 4096:
                self._labels[key] = label
        return label

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        length = dict(scope.get("headers") or []).get(b"content-length")
        status = {"code": 500, "started": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
            await send(message)

        start = time.perf_counter()
        self.metrics.in_progress.inc()
        try:
            if length is not None and length.isdigit() and int(length) > limit:
                await _too_large(send_wrapper, limit)
                return
            received = 0

            async def receive_wrapper() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        # FastAPI re-raises its HTTPException from body parsing; the app's handler
                        # turns it into an OpenAI-shaped 413.
                        raise HTTPException(413, detail=_too_large_message(limit))
                return message

            await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            self.metrics.in_progress.dec()
            label = self._label(scope)
            self.metrics.requests.labels(endpoint=label, status=str(status["code"])).inc()
            self.metrics.latency.labels(endpoint=label).observe(time.perf_counter() - start)


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps(error_body(_too_large_message(limit), 413, code="request_too_large")).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
