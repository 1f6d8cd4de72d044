"""Fine-tuning: the LoRA pair classifier and contrastive embedding tuning.

- :func:`qembed.train.pair_classifier.train_pair_classifier`: both sentences in one sequence, a
  2-label head, LoRA via peft, on ``transformers.Trainer`` (``qembed finetune classifier``); the
  trained classifier is used through :class:`qembed.pairs.cross_encoder.PairClassifier`.
- :func:`qembed.train.contrastive.tune_embeddings`: sentence-transformers training that keeps an
  embedding model (``qembed finetune embedding``).
- :func:`qembed.train.data.load_pairs`: labelled pair files, checked before training.
- :func:`qembed.train.lengths.length_report`: token lengths to choose ``max_length``.

Names are imported on first use so ``import qembed.train`` does not load torch.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "ClassifierConfig": "qembed.train.pair_classifier",
    "train_pair_classifier": "qembed.train.pair_classifier",
    "EmbeddingTuneConfig": "qembed.train.contrastive",
    "tune_embeddings": "qembed.train.contrastive",
    "PairData": "qembed.train.data",
    "load_pairs": "qembed.train.data",
    "length_report": "qembed.train.lengths",
    "PairTokenizer": "qembed.pairs.pair_tokens",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'qembed.train' has no attribute {name!r}")


__all__ = list(_LAZY)
