"""Pairs of texts: similarity with calibrated thresholds, classification and near-duplicate detection.

- :mod:`~qembed.pairs.scoring`: :func:`score_pairs` / :func:`similarity` (cosines), pair files,
  saved thresholds;
- :mod:`~qembed.pairs.classify`: :func:`zero_shot` (nearest label) and :func:`train_classifier`
  (a logistic-regression head on embeddings);
- :mod:`~qembed.pairs.dedup`: :func:`find_duplicates` (exact range search + connected components);
- :mod:`~qembed.pairs.cross_encoder`: :class:`PairClassifier`, a trained LoRA pair classifier
  (both texts in one sequence) at inference; :mod:`~qembed.pairs.pair_tokens` lays the pair out.

Training the pair classifier lives in :mod:`qembed.train.pair_classifier`; metrics in :mod:`qembed.eval`.
"""

from typing import Any

from qembed.pairs.classify import TrainedClassifier, ZeroShotClassifier, train_classifier, zero_shot
from qembed.pairs.dedup import DedupResult, DuplicateGroup, find_duplicates
from qembed.pairs.scoring import score_pairs, similarity


def __getattr__(name: str) -> Any:
    if name == "PairClassifier":  # loads torch: imported on first use
        from qembed.pairs.cross_encoder import PairClassifier

        return PairClassifier
    raise AttributeError(f"module 'qembed.pairs' has no attribute {name!r}")


__all__ = ["DedupResult", "DuplicateGroup", "PairClassifier", "TrainedClassifier", "ZeroShotClassifier",
           "find_duplicates", "score_pairs", "similarity", "train_classifier", "zero_shot"]
