"""Scale-out: embed corpora on Ray Data, and bulk-load the vectors into FAISS or Milvus.

- :func:`embed_dataset` embeds a corpus (files, a folder or a glob) with a pool of Ray actors, each
  holding the model once, into a resumable Parquet dataset (``index``, ``id``, ``embedding``) with
  a ``_qembed.json`` manifest (:mod:`qembed.scale.dataset`).
- :func:`load_embeddings` writes such a dataset into a vector store without embedding again.

Ray is an optional dependency (``pip install "qembed[ray]"``); loading needs only pyarrow.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EmbedResult", "embed_dataset", "load_embeddings"]

_WHERE = {"EmbedResult": "qembed.scale.embed", "embed_dataset": "qembed.scale.embed",
          "load_embeddings": "qembed.scale.load"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'qembed.scale' has no attribute {name!r}")
