"""Route modules of the task endpoints; each exports ``router`` (and optionally ``setup``).

Helpers every route shares live here: the served-model check and the batched encoder lookup.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from qembed.models.encoder import check_dimensions
from qembed.server.errors import ModelNotServedError


def check_model(state: Any, model: str | None) -> None:
    """Raise 404 when a request names a model this server does not serve (``None`` is fine)."""
    if model is not None and model not in state.accepted_names:
        raise ModelNotServedError(f"model {model!r} is not served here; this server serves "
                                  f"{state.served_name!r} (GET /v1/models)", param="model",
                                  code="model_not_found")


def task_encoder(request: Request, model: str | None, dimensions: int | None) -> tuple[Any, int | None]:
    """The batched encoder for a task request, after checking its ``model`` and ``dimensions``."""
    check_model(request.app.state.server, model)
    encoder = request.app.state.encoder
    return encoder, check_dimensions(dimensions, encoder.dim)
