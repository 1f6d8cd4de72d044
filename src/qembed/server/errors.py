"""OpenAI-shaped error bodies, the exception handlers that produce them, and their OpenAPI entries.

Every error the server answers with has the body ``{"error": {"message", "type", "param", "code"}}``
(the shape the ``openai`` client parses). qembed's own exceptions carry their status
(:attr:`qembed.errors.QembedError.status_code`); request-validation errors (malformed JSON, wrong
types) become 400s — and the OpenAPI schema says so (:func:`document_errors`); unknown routes 404;
anything unexpected a 500 that says so without a traceback.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from qembed.errors import (  # noqa: F401  (the server's error kinds live in qembed.errors)
    AuthenticationError,
    InputError,
    ModelNotServedError,
    NotReadyError,
    QembedError,
    QueueFullError,
    ServerClosingError,
)

logger = logging.getLogger(__name__)

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}
#: Longest echo of a client's value in an error message, in characters.
_MAX_ECHO = 120
_LOC_PART = re.compile(r"[a-z_][a-z0-9_]*|[0-9]+")


def authorization_of(headers: Any) -> str | None:
    """The one ``Authorization`` header of a request (``None`` without one), for every key check.

    ``headers``: the ASGI scope's list of ``(name, value)`` byte pairs. A request carrying the
    header more than once is refused with 400 (``duplicate_authorization``), so no check can read
    one copy while another check reads a different one.
    """
    values = [v for k, v in headers or () if k.lower() == b"authorization"]
    if len(values) > 1:
        raise InputError(f"the request carries {len(values)} Authorization headers; send exactly one",
                         param="authorization", code="duplicate_authorization")
    return values[0].decode("latin-1") if values else None


def check_api_key(authorization: str | None, key: str) -> None:
    """Raise 401 unless ``authorization`` is ``Bearer <key>`` exactly.

    Only ASCII spaces and tabs around the token are ignored; any other character (a no-break
    space, NEL …) makes the key wrong. Compared in constant time.
    """
    if not authorization:
        raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
    scheme, _, token = authorization.partition(" ")
    given = token.strip(" \t").encode("utf-8", "surrogatepass")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given, key.encode("utf-8")):
        raise AuthenticationError("invalid API key", code="invalid_api_key")


class ErrorJSONResponse(JSONResponse):
    """A JSON response that renders any text, even an unpaired surrogate echoed from a request."""

    def render(self, content: Any) -> bytes:
        try:
            return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


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
    return ErrorJSONResponse(error_body(message, status, **kwargs), status_code=status, headers=headers)


def _echo(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_ECHO else text[:_MAX_ECHO] + f"… ({len(text)} characters)"


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    # a value the client sent that breaks a rule says more than "not a valid string" from
    # another member of a union
    first = next((e for e in errors if e.get("type") == "value_error"), errors[0])
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        return f"request body is not valid JSON{': ' + str(detail) if detail else ''}", None
    # union members appear in the location as tags ("function-after[…]", "DocumentIn"): drop them
    loc = [str(x) for x in first.get("loc", ()) if x != "body" and _LOC_PART.fullmatch(str(x))]
    param = loc[0] if loc else None
    where = ".".join(loc) if loc else "body"
    if first.get("type") == "missing":
        message = f"{where} is required"
    elif first.get("type") in {"model_attributes_type", "dict_type"} and not loc:
        message = "request body must be a JSON object"
    else:
        detail = str(first.get("msg", "invalid value"))
        detail = detail[len("Value error, "):] if detail.startswith("Value error, ") else detail
        message = f"{where}: {detail}"
        if "input" in first and first.get("type") != "missing" and not isinstance(first["input"], (dict, list)):
            message += f" (got {_echo(first['input'])})"
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
        # Unexpected errors are answered by ServerMiddleware (keeping the connection open); this
        # handler only sees one raised outside it.
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(f"internal server error ({type(exc).__name__}: {exc})", 500,
                              error_type="api_error")

    document_errors(app)


def document_errors(app: FastAPI) -> None:
    """Make ``/openapi.json`` describe what the server enforces and answers.

    FastAPI documents a 422 ``HTTPValidationError`` for every route with parameters; this server
    answers bad requests 400 with an OpenAI-shaped body instead. FastAPI's schema is built once
    (without the 422 and its components, with :class:`~qembed.server.schemas.ErrorResponse`);
    every request for it then gets :func:`qembed.server.openapi.served_schema` of it: the limits
    the handlers check, those of the served model and settings, and for every operation each
    status it can answer. Called by :func:`install_error_handlers`.
    """
    from qembed.server.openapi import served_schema
    from qembed.server.schemas import ErrorResponse

    build = app.openapi

    def openapi() -> dict[str, Any]:
        if not app.openapi_schema:
            schema = build()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            error = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(error.pop("$defs", {}))
            components["ErrorResponse"] = error
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    if isinstance(operation, dict):
                        operation.get("responses", {}).pop("422", None)
            used = json.dumps(schema.get("paths", {}))
            for name in ("HTTPValidationError", "ValidationError"):
                if f"#/components/schemas/{name}" not in used:
                    components.pop(name, None)
            app.openapi_schema = schema
        return served_schema(app.openapi_schema, app)

    app.openapi = openapi  # type: ignore[method-assign]
