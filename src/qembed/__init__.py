"""qembed: Qwen3-Embedding end to end — serving, similarity, search, clustering, tuning, evaluation."""

from __future__ import annotations

from typing import Any

from qembed.errors import InputError, ModelNotFoundError, QembedError
from qembed.models import (
    DEFAULT_MODEL,
    DEFAULT_QUERY_INSTRUCTION,
    SYMMETRIC_INSTRUCTION,
    Encoder,
    load_encoder,
)

__version__ = "0.1.0"

# Task-level API, imported on first use so `import qembed` stays light.
_LAZY = {
    "LocalEncoder": "qembed.models.local",
    "RemoteEncoder": "qembed.models.remote",
    "KnowledgeBase": "qembed.search",
    "open_store": "qembed.store",
    "cluster": "qembed.clustering",
    "score_pairs": "qembed.pairs.scoring",
    "zero_shot": "qembed.pairs.classify",
    "find_duplicates": "qembed.pairs.dedup",
    "load_reranker": "qembed.rerank",
    "Reranker": "qembed.rerank.local",
    "RemoteReranker": "qembed.rerank.remote",
    "embed_dataset": "qembed.scale.embed",
    "load_embeddings": "qembed.scale.load",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'qembed' has no attribute {name!r}")


__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_QUERY_INSTRUCTION",
    "SYMMETRIC_INSTRUCTION",
    "Encoder",
    "InputError",
    "ModelNotFoundError",
    "QembedError",
    "load_encoder",
    *_LAZY,
]
