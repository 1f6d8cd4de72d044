"""Text to vectors: the Encoder protocol, the local and remote backends, and :func:`load_encoder`."""

from __future__ import annotations

from typing import Any

from qembed.io import is_http_url
from qembed.models.encoder import Encoder
from qembed.models.prompts import DEFAULT_QUERY_INSTRUCTION, SYMMETRIC_INSTRUCTION
from qembed.models.resolve import DEFAULT_MODEL


def load_encoder(
    model_or_url: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    max_input_tokens: int | None = None,
    truncate: bool = True,
    *,
    model: str | None = None,
    api_key: str | None = None,
    **kwargs: Any,
) -> Encoder:
    """Return an :class:`Encoder` for a local model or a remote OpenAI-compatible endpoint.

    ``load_encoder("Qwen/Qwen3-Embedding-0.6B")`` or ``load_encoder("/path/to/folder")`` loads the
    model in this process (:class:`~qembed.models.local.LocalEncoder`);
    ``load_encoder("http://host:30000/v1", model="Qwen3-Embedding-0.6B")`` returns a
    :class:`~qembed.models.remote.RemoteEncoder`. Extra keyword arguments go to the backend.
    """
    target = model_or_url if model_or_url is not None else (model or DEFAULT_MODEL)
    if is_http_url(target):
        from qembed.models.remote import RemoteEncoder

        return RemoteEncoder(target, model=model, api_key=api_key,
                             max_input_tokens=max_input_tokens, **kwargs)
    from qembed.models.local import LocalEncoder

    return LocalEncoder(target, device=device, dtype=dtype, max_input_tokens=max_input_tokens,
                        truncate=truncate, **kwargs)


__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_QUERY_INSTRUCTION",
    "SYMMETRIC_INSTRUCTION",
    "Encoder",
    "load_encoder",
]
