"""The optional features of qembed, the extra that installs each, and one check for all of them.

The base install (``pip install qembed``) serves, embeds, compares, searches on FAISS, clusters,
classifies and finds duplicates. Everything else comes with an extra::

    pip install 'qembed[milvus]'    # Milvus Lite (.db files) and Milvus servers
    pip install 'qembed[train]'     # qembed finetune classifier / embedding, LoRA pair classifiers
    pip install 'qembed[umap]'      # UMAP maps and reduction in clustering
    pip install 'qembed[ray]'       # qembed embed --ray, index add --from-embeddings (Parquet)
    pip install 'qembed[cpu]'       # --backend openvino / onnx, qembed export
    pip install 'qembed[modelscope]'  # models downloaded from ModelScope
    pip install 'qembed[docs]'      # the documentation site (mkdocs build)
    pip install 'qembed[all]'       # every feature above but docs

:func:`require` is called where a feature starts — by the CLI before any model loads, by the
server before it accepts a request that needs the feature, and by the library where it imports
the package — and raises :class:`~qembed.errors.MissingExtraError` with one line naming the extra.
The check looks the modules up without importing them, so it costs microseconds.

This table is the one place that maps features to packages; ``pyproject.toml`` declares the same
extras (a test keeps the two equal).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from qembed.errors import MissingExtraError


@dataclass(frozen=True)
class Extra:
    """One optional feature set: the import names it needs (one per distribution) and what it enables."""

    name: str
    #: ``(import name, distribution)`` pairs, checked in order.
    modules: tuple[tuple[str, str], ...]
    #: What the extra enables, for messages and ``qembed doctor``.
    enables: str


EXTRAS: dict[str, Extra] = {e.name: e for e in (
    Extra("milvus", (("pymilvus", "pymilvus"), ("milvus_lite", "milvus-lite")),
          "Milvus stores: Milvus Lite .db files and Milvus servers"),
    Extra("train", (("peft", "peft"), ("accelerate", "accelerate"), ("datasets", "datasets")),
          "fine-tuning (qembed finetune classifier / embedding) and LoRA pair classifiers"),
    Extra("umap", (("umap", "umap-learn"),), "UMAP maps and dimension reduction in clustering"),
    Extra("ray", (("ray", "ray"), ("pyarrow", "pyarrow")),
          "embedding on Ray Data (qembed embed --ray) and Parquet datasets (index add --from-embeddings)"),
    Extra("cpu", (("openvino", "openvino"), ("nncf", "nncf"), ("onnxruntime", "onnxruntime"),
                  ("onnx", "onnx"), ("onnx_ir", "onnx-ir")),
          "the compiled CPU backends (--backend openvino / onnx, qembed export)"),
    Extra("modelscope", (("modelscope", "modelscope"),), "downloading models from ModelScope"),
    Extra("docs", (("mkdocs", "mkdocs"), ("material", "mkdocs-material"), ("mkdocstrings", "mkdocstrings")),
          "building the documentation site"),
)}


#: The import names each compiled CPU backend needs (all of them in the ``cpu`` extra).
BACKEND_MODULES = {"openvino": ("openvino", "nncf"), "onnx": ("onnxruntime", "onnx", "onnx_ir")}


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken parent package, or a module without a spec
        return False


def missing(extra: str, modules: tuple[str, ...] | None = None) -> list[str]:
    """Distributions of ``extra`` that are not installed (only those of ``modules`` when given)."""
    spec = EXTRAS[extra]
    return [dist for mod, dist in spec.modules if (modules is None or mod in modules) and not _present(mod)]


def available(extra: str) -> bool:
    """Whether every package of ``extra`` is installed."""
    return not missing(extra)


def require(extra: str, feature: str, *, modules: tuple[str, ...] | None = None) -> None:
    """Raise :class:`~qembed.errors.MissingExtraError` unless ``extra``'s packages are installed.

    ``feature`` names what the user asked for (``"--ray"``, ``"a Milvus store"``); ``modules``
    narrows the check to the import names that feature needs (``("pyarrow",)`` for Parquet alone).
    """
    absent = missing(extra, modules)
    if absent:
        raise MissingExtraError(extra, feature, absent)


def require_backend(backend: str | None) -> None:
    """The ``cpu`` extra's packages of a compiled backend (nothing for torch or ``None``)."""
    if backend in BACKEND_MODULES:
        require("cpu", f"the {backend} backend", modules=BACKEND_MODULES[backend])


def require_store(uri: object) -> None:
    """The ``milvus`` extra when ``uri`` names a Milvus store (a ``.db`` file or a server URL)."""
    from qembed.io import is_milvus_uri

    if is_milvus_uri(uri):
        require("milvus", f"the Milvus store {uri}", modules=("pymilvus",))
