"""Find a model folder: a local sentence-transformers/transformers folder or a Hugging Face Hub id."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from qembed.errors import ModelNotFoundError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen3-Embedding-0.6B"


def _looks_like_path(name: str) -> bool:
    # Hub ids are ``name`` or ``org/name``; anything else with a separator is a path.
    return (
        name.startswith(("/", ".", "~", "\\"))
        or name.count("/") > 1
        or "\\" in name
        or (len(name) > 1 and name[1] == ":")
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


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
            raise ModelNotFoundError(f"model path {path} is a file; pass the model's folder")
        if not (path / "config.json").exists():
            raise ModelNotFoundError(
                f"model folder {path} has no config.json; pass a sentence-transformers or "
                "transformers model folder"
            )
        return path
    if _looks_like_path(name_or_path):
        raise ModelNotFoundError(f"model folder {name_or_path} does not exist")

    from huggingface_hub import snapshot_download

    hint = (
        f"Download it where the Hub is reachable (`hf download {name_or_path} --local-dir DIR`) "
        "and pass the folder instead, e.g. `--model DIR` / `--model-path DIR` or "
        "`qembed.load_encoder('DIR')`."
    )
    try:
        local = snapshot_download(name_or_path, local_files_only=_offline())
    except Exception as exc:  # noqa: BLE001 - huggingface_hub raises many kinds (offline, network, 404, gated)
        reason = "HF_HUB_OFFLINE is set and it is not in the local cache" if _offline() else (
            f"it is not in the local Hugging Face cache and the Hub could not provide it "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        )
        raise ModelNotFoundError(f"model {name_or_path!r} is not available: {reason}. {hint}") from None
    logger.info("model %s resolved to %s", name_or_path, local)
    return Path(local)


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
