"""The studio: one web page at ``/`` for trying the server's tasks (``qembed serve --no-studio`` turns it off).

The page (``server/studio/index.html``, ``studio.css``, ``studio.js``: plain HTML, CSS and
JavaScript, no build step, nothing fetched from elsewhere) calls the server's own documented
endpoints from the browser: ``/v1/similarity``, ``/v1/search``, ``/v1/documents``,
``/v1/cluster``, ``/v1/dedup``, ``/v1/classify``, ``/v1/rerank``, ``/v1/models``, ``/health`` and
``/metrics`` (and ``/v1/topics/...`` where the server has a saved topic model). These routes
only serve the files; they add nothing to ``/v1/*``:

- ``GET /``: the page, with a small JSON block of what this server offers (a knowledge base, a
  reranker, an API key to ask for, its request limits, optional routes present), no secrets.
  ``Cache-Control: no-cache`` with an ``ETag`` (a revisit costs a 304).
- ``GET /studio/studio.css`` and ``/studio/studio.js``: the page links them with ``?v=<hash of
  their content>``, so they are cached for a year (``immutable``) and a new version is a new URL.

Every answer carries a Content-Security-Policy that lets the page reach only this server.
The three paths are open without the API key (:data:`~qembed.server.middleware.STUDIO_PATHS`);
the page asks for the key and keeps it in the tab's ``sessionStorage``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

router = APIRouter(include_in_schema=False)

#: Where the page's files live (package data of the wheel).
STUDIO_DIR = Path(__file__).resolve().parents[1] / "studio"
#: The page's files besides ``index.html``, with their media types.
ASSETS = {"studio.css": "text/css; charset=utf-8", "studio.js": "text/javascript; charset=utf-8"}
#: Cache-Control of the versioned assets and of the page.
ASSET_CACHE = "public, max-age=31536000, immutable"
PAGE_CACHE = "no-cache"
#: The page may load its own files and call this server, nothing else.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")


@functools.lru_cache(maxsize=1)
def _files() -> tuple[str, dict[str, bytes], str]:
    """``(index.html template, {asset name: bytes}, version)``; read once per process."""
    page = (STUDIO_DIR / "index.html").read_text(encoding="utf-8")
    assets = {name: (STUDIO_DIR / name).read_bytes() for name in ASSETS}
    version = hashlib.sha256(b"".join(assets[n] for n in sorted(assets))).hexdigest()[:12]
    return page, assets, version


def _etag(content: bytes) -> str:
    return '"' + hashlib.sha256(content).hexdigest()[:20] + '"'


def _headers(cache: str, etag: str) -> dict[str, str]:
    return {"Cache-Control": cache, "ETag": etag, "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def _answer(request: Request, content: bytes, media_type: str, cache: str) -> Response:
    etag = _etag(content)
    headers = _headers(cache, etag)
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(content, media_type=media_type, headers=headers)


def _paths(routes: Any) -> list[str]:
    """Every route path, those of included routers too (FastAPI may keep them in their router)."""
    out: list[str] = []
    for route in routes or ():
        inner = getattr(route, "original_router", None)
        if inner is not None:
            out += _paths(getattr(inner, "routes", ()))
        elif isinstance(getattr(route, "path", None), str):
            out.append(route.path)
    return out


def page_config(app: Any) -> dict[str, Any]:
    """What the page needs to know about this server (no secrets: flags and limits only)."""
    settings = app.state.settings
    paths = set(_paths(app.routes))
    return {
        "auth": bool(settings.api_key),
        "knowledge_base": bool(settings.index),
        "reranker": bool(settings.reranker),
        "max_client_batch_size": settings.max_client_batch_size,
        "max_request_bytes": settings.max_request_bytes,
        "api_docs": bool(settings.api_docs),
        # a saved topic model (``--topic-model``), where this server has one
        "topic_model": bool(getattr(settings, "topic_model", None)) and "/v1/topics/assign" in paths,
    }


def render_page(app: Any) -> bytes:
    """``index.html`` with the assets' version and :func:`page_config` filled in."""
    page, _, version = _files()
    config = json.dumps(page_config(app), separators=(",", ":")).replace("<", "\\u003c")
    return page.replace("{{version}}", version).replace("{{config}}", config).encode("utf-8")


@router.api_route("/", methods=["GET", "HEAD"])
async def studio_page(request: Request) -> Response:
    content = getattr(request.app.state, "studio_page", None)
    if content is None:  # rendered on the first visit, once every route is mounted
        content = request.app.state.studio_page = render_page(request.app)
    return _answer(request, content, "text/html; charset=utf-8", PAGE_CACHE)


@router.api_route("/studio/studio.css", methods=["GET", "HEAD"])
async def studio_css(request: Request) -> Response:
    return _answer(request, _files()[1]["studio.css"], ASSETS["studio.css"], ASSET_CACHE)


@router.api_route("/studio/studio.js", methods=["GET", "HEAD"])
async def studio_js(request: Request) -> Response:
    return _answer(request, _files()[1]["studio.js"], ASSETS["studio.js"], ASSET_CACHE)
