"""Text to vectors: the Encoder protocol, the local and remote backends, and :func:`load_encoder`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qembed.errors import InputError, ModelPathError
from qembed.io import is_http_url
from qembed.models.encoder import Encoder
from qembed.models.prompts import DEFAULT_QUERY_INSTRUCTION, SYMMETRIC_INSTRUCTION
from qembed.models.resolve import DEFAULT_MODEL, _looks_like_path, default_model
from qembed.models.runtimes import BACKENDS, auto_backend, auto_torch_dtype, canonical_dtype, check_backend


def load_encoder(
    model_or_url: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    max_input_tokens: int | None = None,
    truncate: bool = True,
    *,
    model: str | None = None,
    api_key: str | None = None,
    backend: str | None = None,
    **kwargs: Any,
) -> Encoder:
    """Return an :class:`Encoder` for a local model or a remote OpenAI-compatible endpoint.

    ``load_encoder("Qwen/Qwen3-Embedding-0.6B")`` or ``load_encoder("/path/to/folder")`` loads the
    model in this process (:class:`~qembed.models.local.LocalEncoder`);
    ``load_encoder("http://host:30000/v1", model="Qwen3-Embedding-0.6B")`` returns a
    :class:`~qembed.models.remote.RemoteEncoder`. Extra keyword arguments go to the backend.

    With no model named, ``$QEMBED_MODEL`` is loaded when set, else :data:`DEFAULT_MODEL`.

    ``backend`` picks the runtime of a local model: ``"torch"`` (the default),
    ``"openvino"`` or ``"onnx"`` (``"auto"``: the fastest for this CPU,
    :func:`~qembed.models.runtimes.auto_backend`) (:class:`~qembed.models.backends.CompiledEncoder`: the model is
    exported once, cached, and run at ``dtype`` ``"int8"`` by default). A folder written by
    ``qembed export`` loads with its own backend when ``backend`` is None.
    """
    target = model_or_url if model_or_url is not None else (model or default_model())
    if is_http_url(target):
        from qembed.models.remote import RemoteEncoder

        if backend is not None:
            raise InputError("backend applies to a local model, not to an endpoint URL", param="backend")
        return RemoteEncoder(target, model=model, api_key=api_key,
                             max_input_tokens=max_input_tokens, **kwargs)
    from qembed.models.resolve import read_manifest

    folder = Path(str(target)).expanduser()
    manifest = read_manifest(folder) if folder.is_dir() else None
    chosen = check_backend(backend if backend is not None else (manifest or {}).get("backend"))
    if chosen == "auto":  # the fastest runtime for this CPU (an exported folder keeps its own)
        chosen = manifest["backend"] if manifest is not None else auto_backend(device)
        if chosen == "torch" and (dtype is None or (isinstance(dtype, str) and canonical_dtype(dtype) == "auto")):
            dtype = auto_torch_dtype(device) or dtype  # int8 where it is the fastest (AUTO_TORCH_DTYPE)
    if chosen != "torch":
        from qembed.models.backends import CompiledEncoder

        return CompiledEncoder(target, backend=chosen, device=device, dtype=dtype,
                               max_input_tokens=max_input_tokens, truncate=truncate, **kwargs)
    if manifest is not None:
        raise InputError(f"{target} is an exported {manifest['backend']} model; load it with that "
                         "backend (or without one), or load its source model with torch",
                         param="backend")
    kwargs.pop("threads", None)
    if not folder.exists() and _looks_like_path(str(target)):  # said before torch is imported
        raise ModelPathError(f"model folder {target} does not exist")
    from qembed.models.local import LocalEncoder

    return LocalEncoder(target, device=device, dtype=dtype, max_input_tokens=max_input_tokens,
                        truncate=truncate, **kwargs)


__all__ = [
    "BACKENDS",
    "DEFAULT_MODEL",
    "DEFAULT_QUERY_INSTRUCTION",
    "SYMMETRIC_INSTRUCTION",
    "Encoder",
    "load_encoder",
]
