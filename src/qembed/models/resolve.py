"""Find a model folder: a local sentence-transformers/transformers folder or a Hugging Face Hub id."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from qembed.errors import ModelNotFoundError, ModelPathError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen3-Embedding-0.6B"
_TRUE = {"1", "true", "yes", "on"}


def cache_root() -> Path:
    """Where qembed caches what it builds (``$QEMBED_CACHE``, default ``~/.cache/qembed``): exported
    models and compiled kernels."""
    return Path(os.environ.get("QEMBED_CACHE", Path.home() / ".cache" / "qembed")).expanduser()


def default_model() -> str:
    """The model used when none is named: ``$QEMBED_MODEL`` when set, else :data:`DEFAULT_MODEL`."""
    return os.environ.get("QEMBED_MODEL", "").strip() or DEFAULT_MODEL


def use_modelscope() -> bool:
    """Whether Hub ids are downloaded from ModelScope (``QEMBED_USE_MODELSCOPE=true``) instead of
    the Hugging Face Hub (the default; ``HF_ENDPOINT`` points that at a mirror)."""
    return os.environ.get("QEMBED_USE_MODELSCOPE", "").strip().lower() in _TRUE


def _looks_like_path(name: str) -> bool:
    # Hub ids are ``name`` or ``org/name``; anything else with a separator is a path.
    return (
        name.startswith(("/", ".", "~", "\\"))
        or name.count("/") > 1
        or "\\" in name
        or (len(name) > 1 and name[1] == ":")
    )


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def resolve_model_path(name_or_path: str) -> Path:
    """Return a local folder holding the model's files.

    ``name_or_path`` is an existing folder, or a Hub id (``org/name``) that is taken from the local
    Hugging Face cache or downloaded (not when ``HF_HUB_OFFLINE`` is set). Raises
    :class:`ModelNotFoundError` with what to do when neither works.
    """
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ModelNotFoundError("model must be a non-empty folder path or Hugging Face Hub id")
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelPathError(f"model path {path} is a file; pass the model's folder")
        if not (path / "config.json").exists():
            raise ModelPathError(
                f"model folder {path} has no config.json; pass a sentence-transformers or "
                "transformers model folder"
            )
        return path
    if _looks_like_path(name_or_path):
        raise ModelPathError(f"model folder {name_or_path} does not exist")

    if use_modelscope():
        return _from_modelscope(name_or_path)
    from huggingface_hub import snapshot_download

    hint = (
        f"Download it once where the Hub is reachable (`hf download {name_or_path} --local-dir DIR`, "
        "or from ModelScope with QEMBED_USE_MODELSCOPE=true) and use that folder in place of the Hub id."
    )
    try:
        local = snapshot_download(name_or_path, local_files_only=hub_offline())
    except Exception as exc:  # noqa: BLE001 - huggingface_hub raises many kinds (offline, network, 404, gated)
        reason = "HF_HUB_OFFLINE is set and it is not in the local cache" if hub_offline() else (
            f"it is not in the local Hugging Face cache and the Hub could not provide it "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        )
        raise ModelNotFoundError(f"model {name_or_path!r} is not available: {reason}. {hint}") from None
    logger.info("model %s resolved to %s", name_or_path, local)
    return Path(local)


def _from_modelscope(model_id: str) -> Path:
    """``model_id`` from the ModelScope cache, or downloaded from ModelScope (the ``modelscope`` extra)."""
    from qembed.extras import require

    require("modelscope", "QEMBED_USE_MODELSCOPE")
    from modelscope import snapshot_download

    offline = hub_offline() or os.environ.get("MODELSCOPE_OFFLINE", "").strip().lower() in _TRUE
    try:
        local = snapshot_download(model_id, local_files_only=offline)
    except Exception as exc:  # noqa: BLE001 - network errors, unknown ids, missing cache entries
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelNotFoundError(
            f"model {model_id!r} is not available from ModelScope ({type(exc).__name__}: {detail}). "
            f"Download it once where ModelScope is reachable (`modelscope download --model {model_id} "
            "--local_dir DIR`) and use that folder in place of the model id.") from None
    if not (Path(local) / "config.json").exists():
        raise ModelNotFoundError(f"ModelScope's copy of {model_id!r} at {local} has no config.json")
    logger.info("model %s resolved to %s (ModelScope)", model_id, local)
    return Path(local)


def model_kind(path: str | os.PathLike[str]) -> str:
    """What a model folder holds, from its files alone (no weights read).

    ``"embedding"``: a sentence-transformers folder whose ``modules.json`` has a pooling module;
    ``"classifier"``: a ``…ForSequenceClassification`` model (a cross-encoder or seq-cls reranker);
    ``"other"``: anything else (a causal LM such as Qwen3-Reranker, a bare transformers encoder).
    """
    import json

    folder = Path(path)
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        if any(str(m.get("type", "")).rsplit(".", 1)[-1] == "Pooling" for m in modules if isinstance(m, dict)):
            return "embedding"
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        arch = (config.get("architectures") or [""])[0]
    except (OSError, ValueError, AttributeError, TypeError, IndexError):
        return "other"
    return "classifier" if str(arch).endswith("ForSequenceClassification") else "other"


def with_option_hint(exc: ModelNotFoundError, what: str, option: str) -> ModelNotFoundError:
    """``exc`` with a last sentence naming the command-line option (or variable) that chose the model."""
    return type(exc)(f"{exc.message} (the {what} comes from {option})")


#: The manifest that marks a folder written by ``qembed export`` (see :mod:`qembed.models.export`).
EXPORT_MANIFEST = "qembed_export.json"


def read_manifest(path: str | os.PathLike[str]) -> dict | None:
    """The export manifest of folder ``path``, or None when it is not an exported model."""
    import json

    file = Path(path).expanduser() / EXPORT_MANIFEST
    if not file.is_file():
        return None
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"{file} is not a readable export manifest: {exc}") from None
    if not isinstance(manifest, dict) or "backend" not in manifest or "graph" not in manifest:
        raise ModelNotFoundError(f"{file} is not a qembed export manifest (no backend or graph)")
    return manifest


def is_exported(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder written by ``qembed export`` (an OpenVINO or ONNX model)."""
    try:
        return read_manifest(path) is not None
    except (ModelNotFoundError, OSError, TypeError):
        return False
