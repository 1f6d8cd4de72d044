"""OpenAI-shaped error bodies and the exception handlers that produce them.

Every error the server answers with has the body ``{"error": {"message", "type", "param", "code"}}``
(the shape the ``openai`` client parses). qembed's own exceptions carry their status
(:attr:`qembed.errors.QembedError.status_code`); request-validation errors (malformed JSON, wrong
types) become 400s; unknown routes 404; anything unexpected a 500 that says so without a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from qembed.errors import QembedError

logger = logging.getLogger(__name__)

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}


class AuthenticationError(QembedError):
    """Missing or wrong API key (``--api-key`` is set)."""

    status_code = 401
    error_type = "authentication_error"


class ModelNotServedError(QembedError):
    """The request names a model this server does not serve."""

    status_code = 404
    error_type = "invalid_request_error"


class QueueFullError(QembedError):
    """The batching queue holds ``max_queued_requests`` requests already."""

    status_code = 429
    error_type = "rate_limit_error"


class NotReadyError(QembedError):
    """The model is still loading (or failed to load)."""

    status_code = 503
    error_type = "service_unavailable_error"


class ServerClosingError(QembedError):
    """The server is shutting down and accepts no new work."""

    status_code = 503
    error_type = "service_unavailable_error"


def error_body(message: str, status: int, *, error_type: str | None = None,
               param: str | None = None, code: str | int | None = None) -> dict[str, Any]:
    """The OpenAI error object for ``message`` at HTTP ``status``."""
    return {
        "error": {
            "message": message,
            "type": error_type or _TYPE_BY_STATUS.get(status, "api_error"),
            "param": param,
            "code": code,
        }
    }


def error_response(message: str, status: int, *, headers: dict[str, str] | None = None,
                   **kwargs: Any) -> JSONResponse:
    """A JSON response carrying :func:`error_body`."""
    return JSONResponse(error_body(message, status, **kwargs), status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        return f"request body is not valid JSON{': ' + str(detail) if detail else ''}", None
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    param = loc[0] if loc else None
    where = ".".join(loc) if loc else "body"
    if first.get("type") == "missing":
        message = f"{where} is required"
    elif first.get("type") in {"model_attributes_type", "dict_type"} and not loc:
        message = "request body must be a JSON object"
    else:
        message = f"{where}: {first.get('msg', 'invalid value')}"
        if "input" in first and first.get("type") != "missing" and not isinstance(first["input"], (dict, list)):
            message += f" (got {first['input']!r})"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return message, param


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers turning every failure into an OpenAI-shaped error response."""

    @app.exception_handler(QembedError)
    async def _qembed_error(request: Request, exc: QembedError) -> JSONResponse:
        headers = {"Retry-After": "1"} if exc.status_code in (429, 503) else None
        if exc.status_code == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return error_response(exc.message, exc.status_code, headers=headers, error_type=exc.error_type,
                              param=exc.param, code=exc.code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(message, 400, param=param, code="invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        return error_response(message, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(f"internal server error ({type(exc).__name__}: {exc})", 500,
                              error_type="api_error")
