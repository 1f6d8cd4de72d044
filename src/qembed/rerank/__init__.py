"""Rerankers: read a query and each candidate document together and score their relevance.

``load_reranker("Qwen/Qwen3-Reranker-0.6B")`` (or a folder) loads one in this process
(:class:`~qembed.rerank.local.Reranker`: Qwen3-Reranker, converted seq-cls checkpoints,
sentence-transformers ``CrossEncoder`` folders); ``load_reranker("http://host:port/v1")`` returns a
:class:`~qembed.rerank.remote.RemoteReranker` over a ``/rerank`` endpoint (qembed, TEI, vLLM,
Cohere, Jina).
"""

from __future__ import annotations

from typing import Any

from qembed.rerank.base import (
    DEFAULT_RERANKER,
    RerankerLike,
    RerankResult,
    rank,
    rerank_body,
)
from qembed.rerank.inputs import DEFAULT_RERANK_INSTRUCTION


def load_reranker(model: str | None = None, device: str | None = None, dtype: str | None = None, *,
                  api_key: str | None = None, served_model: str | None = None, **kwargs: Any) -> Any:
    """A :class:`Reranker` for a local model, or a :class:`RemoteReranker` for an http(s) URL.

    ``served_model`` and ``api_key`` apply to URLs (the model name the server expects, default
    the first it lists). Extra keyword arguments go to the backend (e.g. ``max_input_tokens``,
    ``instruction`` for local models; ``batch_size`` for remote ones).
    """
    target = model or DEFAULT_RERANKER
    if isinstance(target, str) and target.startswith(("http://", "https://")):
        from qembed.rerank.remote import RemoteReranker

        return RemoteReranker(target, model=served_model, api_key=api_key, **kwargs)
    from qembed.rerank.local import Reranker

    return Reranker(target, device=device, dtype=dtype, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "Reranker":
        from qembed.rerank.local import Reranker

        return Reranker
    if name == "RemoteReranker":
        from qembed.rerank.remote import RemoteReranker

        return RemoteReranker
    raise AttributeError(f"module 'qembed.rerank' has no attribute {name!r}")


__all__ = [
    "DEFAULT_RERANKER",
    "DEFAULT_RERANK_INSTRUCTION",
    "RemoteReranker",
    "RerankResult",
    "Reranker",
    "RerankerLike",
    "load_reranker",
    "rank",
    "rerank_body",
]
