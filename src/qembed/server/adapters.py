"""LoRA adapters served over a base model (``qembed serve --adapter NAME=PATH``, ``POST /v1/adapters``).

The adapters live where the model does — the engine process (or the thread engine's encoder) — so
every front process (``--api-workers N``) sees the same set. Loading, unloading and listing are
control messages to the engine (:meth:`~qembed.server.engine.ProcessEngine.adapter_op`), answered
once done; :func:`run_adapter_op` is what the engine runs for one. Requests name an adapter by its
name or ``BASE:ADAPTER`` (:meth:`~qembed.server.registry.ModelRegistry.find`); the batcher runs
requests for different adapters in one pass (``forward_batch(seqs, names)``).

The admin routes (``POST``/``DELETE /v1/adapters``) need ``--admin-key`` (``QEMBED_ADMIN_KEY``)
and ``Authorization: Bearer <admin key>``: 401 without a key, 403 with another one, or when the
server runs without an admin key.
"""

from __future__ import annotations

import secrets
from typing import Any

from qembed.errors import InputError, QembedError


class AdapterConflictError(InputError):
    """An adapter (or a served model) already answers to that name (HTTP 409)."""

    status_code = 409


class ForbiddenError(QembedError):
    """The request carries a key, but not the one this route needs (HTTP 403)."""

    status_code = 403


def adapter_names(encoder: Any) -> list[str]:
    """The names of the adapters loaded over ``encoder`` (none for encoders without adapters)."""
    listing = getattr(encoder, "adapters", None)
    return [a["name"] for a in listing()] if callable(listing) else []


def run_adapter_op(encoder: Any, op: dict[str, Any]) -> dict[str, Any]:
    """``{"op": "load", "name", "path"}``, ``{"op": "unload", "name"}`` or ``{"op": "list"}``
    over ``encoder``; returns ``{"adapters": [...]}`` (each loaded adapter's info) and, for a
    load, ``{"adapter": info}``. A duplicate name is :class:`AdapterConflictError` (409)."""
    if not callable(getattr(encoder, "load_adapter", None)):
        raise InputError(f"{getattr(encoder, 'name', 'this model')} cannot serve LoRA adapters (torch backend, "
                         "packed passes only)", param="model", code="invalid_adapter")
    result: dict[str, Any] = {}
    kind = op.get("op")
    if kind == "load":
        try:
            result["adapter"] = plain(encoder.load_adapter(str(op["name"]), str(op["path"])))
        except InputError as exc:
            if exc.code == "adapter_exists":
                raise AdapterConflictError(exc.message, param="name", code="adapter_exists") from None
            raise
    elif kind == "unload":
        encoder.unload_adapter(str(op["name"]))
    elif kind != "list":
        raise InputError(f"unknown adapter operation {kind!r}", param="op")
    result["adapters"] = [plain(a) for a in encoder.adapters()]
    return result


def plain(info: dict[str, Any]) -> dict[str, Any]:
    """An adapter's info as JSON data (paths and other objects as strings)."""
    return {k: v if isinstance(v, (str, int, float, bool, type(None), list)) else str(v) for k, v in info.items()}


def check_admin_key(authorization: str | None, key: str | None) -> None:
    """401 without ``Authorization: Bearer …``; 403 with another key, or when the server has no
    admin key (the admin routes are then closed)."""
    if not authorization:
        raise _unauthorized()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip(" \t"):
        raise _unauthorized()
    if not key:
        raise ForbiddenError("the admin routes are closed: start the server with --admin-key (QEMBED_ADMIN_KEY)",
                             code="admin_disabled")
    if not secrets.compare_digest(token.strip(" \t").encode("utf-8", "surrogatepass"), key.encode("utf-8")):
        raise ForbiddenError("wrong admin key", code="invalid_admin_key")


def _unauthorized() -> QembedError:
    from qembed.errors import AuthenticationError

    return AuthenticationError("missing admin key: send 'Authorization: Bearer <admin key>'",
                               code="invalid_api_key")


def adapter_cards(served: Any) -> list[dict[str, Any]]:
    """The ``/v1/models`` entries of the adapters over ``served`` (``parent``: the base model)."""
    base = served.card()
    return [{**base, "id": name, "root": served.spec.adapters.get(name, base["root"]), "parent": served.name}
            for name in served.adapter_names]


def with_adapter_options(specs: list[Any], options: list[str] | None) -> list[Any]:
    """``specs`` with ``--adapter NAME=PATH`` options added to the first embedding model's
    adapters (a bad option or a name served twice is an :class:`~qembed.errors.InputError`)."""
    from qembed.models.spec import check_names

    if not options:
        return specs
    adapters: dict[str, str] = {}
    for option in options:
        name, sep, path = option.partition("=")
        if not sep or not name.strip() or not path.strip() or ":" in name or "/" in name:
            raise InputError(f"--adapter {option!r}: expected NAME=PATH (a name without ':' or '/')", param="adapter")
        if name.strip() in adapters:
            raise InputError(f"--adapter {name.strip()!r} is given twice", param="adapter")
        adapters[name.strip()] = path.strip()
    first = next((i for i, s in enumerate(specs) if s.kind == "embedding"), None)
    if first is None:
        raise InputError("--adapter needs an embedding model to run over", param="adapter")
    specs = list(specs)
    specs[first] = specs[first].replace(adapters={**specs[first].adapters, **adapters})
    check_names(specs)
    return specs
