"""Paths taken exactly as sent: a route matches the whole path, and an id keeps every character.

Starlette compiles a route's path into a regular expression ending in ``$``, which in Python also
matches just before a final line feed, and its ``path`` convertor (``.*``) stops at a line feed.
Together, ``DELETE /v1/documents/doc-01%0A`` (the id ``"doc-01\\n"`` once the ASGI server has
percent-decoded the path) matched the route with the id ``"doc-01"`` and deleted that document,
and ``GET /v1/models%0A`` answered like ``GET /v1/models``. Two rules close that, whatever the
FastAPI version builds its route patterns with:

- Path parameters that carry ids use the ``any`` convertor (``{doc_id:any}``): it captures every
  character, line feeds included, so the handler validates the id as sent (a control character
  is a 400, exactly as in a body).
- :func:`drops_final_line_feed` finds a request whose path ends in a line feed that the matching
  route did not capture — the ``$`` anchor dropped it — and :class:`~qembed.server.middleware.ServerMiddleware`
  answers it 404 (no route matches the whole path) before any handler runs.
"""

from __future__ import annotations

from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import Match
from starlette.types import Scope


class AnyConvertor(Convertor[str]):
    """A path parameter of any characters, ``/`` and line feeds included (``{name:any}``)."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return str(value)


register_url_convertor("any", AnyConvertor())


def drops_final_line_feed(routes: Any, scope: Scope) -> bool:
    """Whether the route ``scope`` matches first takes its path without the final line feed.

    ``routes``: the app's routes; the routes of routers FastAPI includes (without a prefix, as
    :func:`~qembed.server.app.create_app` does) are searched in place. A path that does not end
    in a line feed, or that no route matches, gives ``False``.
    """
    path = scope.get("path") or ""
    if not path.endswith("\n"):
        return False
    found = _first_match(routes, scope)
    if found is None:
        return False
    params = found.get("path_params") or {}
    return not any(isinstance(v, str) and v.endswith("\n") for v in params.values())


def _first_match(routes: Any, scope: Scope) -> dict[str, Any] | None:
    """The child scope of the first route matching ``scope`` (by path; any method), or ``None``."""
    for route in routes or ():
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found = _first_match(getattr(inner, "routes", ()), scope)
            if found is not None:
                return found
            continue
        try:
            match, child = route.matches(scope)
        except Exception:  # noqa: BLE001 - a route that cannot judge this scope does not match it
            continue
        if match != Match.NONE:
            return dict(child or {})
    return None
