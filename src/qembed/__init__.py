"""qembed: Qwen3-Embedding end to end — serving, similarity, search, clustering, tuning, evaluation.

Vocabulary (the same words on the command line, in the REST API and in Python):

=============================  ==========================  ========================  ==============================
thing                          CLI                         REST body field           Python parameter
=============================  ==========================  ========================  ==============================
main input file                ``--input / -i PATH``       —                         ``path`` / ``input``
texts given directly           positional ``TEXT...``      ``input`` / ``texts``     ``texts``
output file or folder          ``--output / -o PATH``      —                         ``output``
model                          ``--model / -m``            ``model``                 ``model`` (first arg of load_*)
device, precision, runtime     ``--device``, ``--dtype``,  —                         ``device``, ``dtype``,
                               ``--backend``                                         ``backend``
instruction                    ``--instruction TEXT``,     ``instruction`` (null:    ``instruction=None`` (default),
                               ``--no-instruction``        default, ``""``: none)    ``instruction=""`` (none)
results per query              ``--top-k N``               ``top_k``                 ``top_k``
number of clusters             ``--clusters N|auto``       ``clusters``              ``clusters``
cosine threshold               ``--min-similarity X``      ``min_similarity``        ``min_similarity``
probability threshold          ``--min-probability X``     ``min_probability``       ``min_probability``
embedding size (Matryoshka)    ``--dimensions N``          ``dimensions``            ``dimensions``
progress bars                  ``--progress/--no-progress``  —                       ``progress: bool | None``
=============================  ==========================  ========================  ==============================

- The encoder (or reranker) is the first parameter of every task function:
  ``find_duplicates(encoder, texts, min_similarity=0.9)``, ``cluster(encoder, texts, clusters=5)``,
  ``score_pairs(encoder, left, right)``, ``zero_shot(encoder, texts, labels)``,
  ``evaluate_retrieval(encoder, data)``.
- ``progress=None`` shows a bar when stderr is a terminal and the work takes more than one batch.
- Every exception is a :class:`~qembed.errors.QembedError` whose ``status_code`` is the HTTP
  status the server answers and ``exit_code`` the CLI's (2 bad input or usage, 1 runtime failure).
"""

from __future__ import annotations

from typing import Any

from qembed.deprecated import install_module_aliases
from qembed.errors import InputError, MissingExtraError, ModelNotFoundError, QembedError
from qembed.models import (
    DEFAULT_MODEL,
    DEFAULT_QUERY_INSTRUCTION,
    SYMMETRIC_INSTRUCTION,
    Encoder,
    load_encoder,
)

__version__ = "0.1.0"

install_module_aliases()  # old module paths (qembed.deprecated.MODULES) still import

# Task-level API, imported on first use so `import qembed` stays light.
_LAZY = {
    "LocalEncoder": "qembed.models.local",
    "RemoteEncoder": "qembed.models.remote",
    "KnowledgeBase": "qembed.search",
    "open_store": "qembed.store",
    "cluster": "qembed.clustering",
    "TopicModel": "qembed.clustering",
    "summarize": "qembed.summarize",
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
    "MissingExtraError",
    "ModelNotFoundError",
    "QembedError",
    "load_encoder",
    *_LAZY,
]
