"""The OpenAI-compatible routes: ``POST /v1/embeddings``, ``GET /v1/models``, ``POST /tokenize``.

Every handler reads the app's :class:`~qembed.server.registry.ModelRegistry`: ``model`` picks one
of the served embedding models (default: the first), an unknown name is OpenAI's 404
``model_not_found``. ``POST /v1/embeddings`` also has a fast path (:func:`fast_embeddings`,
registered by :func:`setup`) that answers a valid JSON body without FastAPI's per-request
machinery.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from qembed.errors import InputError
from qembed.models.encoder import check_dimensions, truncate_dimensions
from qembed.models.prompts import DEFAULT_QUERY_INSTRUCTION
from qembed.server.middleware import read_body
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

router = APIRouter()

#: Responses larger than this many floats are serialised on a worker thread, off the event loop.
_LARGE_RESPONSE = 64 * 1024

_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 429, 503)}


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


async def embeddings_body(app: FastAPI, body: EmbeddingRequest) -> bytes:
    """The response body of a validated embeddings request (the route's and the fast path's)."""
    served, adapter = app.state.registry.resolve(body.model, "embedding")
    enc = served.require()
    types = check_embedding_types(body.embedding_types) if body.embedding_types is not None else None
    kind, items = parse_input(body.input, app.state.settings.max_client_batch_size)
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
        vectors, tokens = await enc.embed_async(kind, items, instruction, adapter)
    args = (vectors, dimensions, body.encoding_format, adapter or served.name, tokens)
    if types is not None and types != ["float"]:  # Cohere's embedding_types (store/quantize.py)
        return await run_in_threadpool(_typed_payload, *args, types)
    if vectors.size > _LARGE_RESPONSE:
        return await run_in_threadpool(_embedding_payload, *args)
    return _embedding_payload(*args)


async def create_embeddings(body: EmbeddingRequest, request: Request) -> Response:
    return Response(await embeddings_body(request.app, body), media_type="application/json")


async def fast_embeddings(scope: Any, receive: Any, send: Any) -> bool | bytes:
    """``POST /v1/embeddings`` without FastAPI's per-request machinery (see
    :func:`qembed.server.middleware.fast_path`): a JSON body that validates is answered here;
    anything else goes the regular way (its raw body is handed back)."""
    raw = await read_body(receive)
    try:
        body = EmbeddingRequest.model_validate_json(raw)
    except ValueError:
        return raw  # FastAPI answers it, with the error it always gave
    content = await embeddings_body(scope["app"], body)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(content)).encode("ascii"))]})
    await send({"type": "http.response.body", "body": content})
    return True


async def list_models(request: Request) -> ModelList:
    from qembed.server.adapters import adapter_cards

    return ModelList(data=[ModelCard(**card) for served in request.app.state.registry
                           for card in (served.card(), *adapter_cards(served))])


async def tokenize(body: TokenizeRequest, request: Request) -> TokenizeResponse:
    served, _ = request.app.state.registry.resolve(body.model, "embedding")
    enc = served.require()
    if body.prompt == "":
        raise InputError("prompt is an empty string", param="prompt")
    if not enc.batched:
        raise InputError("this server proxies another endpoint and has no tokenizer", param="prompt")
    tokens = await enc.token_ids_async(body.prompt, body.add_special_tokens)
    return TokenizeResponse(tokens=tokens, count=len(tokens), max_model_len=enc.max_input_tokens)


_EMBEDDINGS_DOC = dict(
    response_model=EmbeddingResponse, responses=_ERRORS, tags=["OpenAI"], summary="Create embeddings",
    description="OpenAI's embeddings API. `model` picks one of the served embedding models (default: the "
                "first, see GET /v1/models; an unknown name is a 404 `model_not_found`). Extensions: "
                "`instruction` (a query instruction for every text) and `input_type` (`query` applies "
                f"the default retrieval instruction “{DEFAULT_QUERY_INSTRUCTION}”, `document` none).",
)
_TOKENIZE_DOC = dict(response_model=TokenizeResponse, responses=_ERRORS, tags=["Utilities"],
                     summary="Tokenize a prompt (vLLM/SGLang shape)",
                     description="Token ids of `prompt` with the `model`'s special tokens (default: the first "
                                 "embedding model), before truncation; `max_model_len` is the longest input "
                                 "embedded whole.")

#: The route table (TEI's shape: every route in one flat list; the handlers above are thin):
#: (path, handler, method, options).
ROUTES: list[tuple[str, Any, str, dict[str, Any]]] = [
    ("/v1/embeddings", create_embeddings, "POST", _EMBEDDINGS_DOC),
    ("/embeddings", create_embeddings, "POST", {"include_in_schema": False}),
    ("/v1/models", list_models, "GET", dict(
        response_model=ModelList, responses=_ERRORS, tags=["OpenAI"],
        summary="List the served models (embedding models, then rerankers), each with its kind and dimension")),
    ("/tokenize", tokenize, "POST", _TOKENIZE_DOC),
    ("/v1/tokenize", tokenize, "POST", {"include_in_schema": False}),
]


def mount(target: Any, dependencies: list[Any] | None = None) -> None:
    """Add :data:`ROUTES` to ``target`` (the app itself, so they stay flat in ``app.routes`` and
    the middleware finds the fast path; or an ``APIRouter``)."""
    for path, handler, method, options in ROUTES:
        target.add_api_route(path, handler, methods=[method], dependencies=list(dependencies or []), **options)


router = APIRouter()
mount(router)

#: Routes answered by :func:`fast_embeddings` when their body validates.
FAST_PATHS = ("/v1/embeddings", "/embeddings")


def setup_fast_paths(app: FastAPI) -> None:
    """Register the fast path of ``POST /v1/embeddings`` with the app's middleware."""
    app.state.fast_paths = {("POST", route.path): (fast_embeddings, route) for route in app.router.routes
                            if getattr(route, "path", None) in FAST_PATHS}
