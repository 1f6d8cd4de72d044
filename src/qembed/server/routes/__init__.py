"""Route modules: ``openai`` (``/v1/embeddings``, ``/v1/models``, ``/tokenize``), ``ops``
(``/health``, ``/metrics``) and the task endpoints; each exports ``router`` (and optionally ``setup``).

Helpers every route shares live here: finding the served model a request's ``model`` names (in
the app's :class:`~qembed.server.registry.ModelRegistry`) and its batched encoder.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from qembed.errors import InputError
from qembed.models.encoder import check_dimensions


def embedding_model(request: Request, model: str | None) -> tuple[Any, str | None]:
    """The served embedding model ``model`` names (None: the default) and the adapter it names;
    404 ``model_not_found`` for an unknown name. The choice is kept for :func:`served_name`."""
    served, adapter = request.app.state.registry.resolve(model, "embedding")
    request.state.served_model = served
    return served, adapter


def task_encoder(request: Request, model: str | None, dimensions: int | None, *,
                 bound_to: str | None = None) -> tuple[Any, int | None]:
    """The batched encoder for a task request, after checking its ``model`` and ``dimensions``.

    ``bound_to`` names what only the default embedding model can serve (``"the knowledge base"``:
    its vectors come from that model); another model is then a 400.
    """
    served, _ = embedding_model(request, model)
    default = request.app.state.registry.default("embedding")
    if bound_to and served is not default:
        raise InputError(f"{bound_to} is embedded with {default.name!r}; model {served.name!r} cannot "
                         "be used with it", param="model", code="model_mismatch")
    encoder = served.require()
    return encoder, check_dimensions(dimensions, encoder.dim)


def served_name(request: Request) -> str:
    """The served name of the model the request picked (the default embedding model's otherwise)."""
    served = getattr(request.state, "served_model", None)
    if served is None:
        served = request.app.state.registry.default("embedding")
    return served.name
