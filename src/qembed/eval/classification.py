"""Classification metrics: multi-class (zero-shot and trained heads) and binary pair classifiers.

- :func:`classification_metrics`: accuracy, macro-F1 and per-label precision/recall/F1/support
  of predicted label names (scikit-learn);
- :func:`pair_classification_metrics`: accuracy, F1/precision/recall of the positive class
  ("same"), mean cross-entropy and average precision, from a pair classifier's ``(n, 2)`` logits.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-label precision/recall/F1/support (scikit-learn)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(labels), zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=list(labels), average="macro", zero_division=0)),
        "per_label": {lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                            "support": int(s[i])} for i, lab in enumerate(labels)},
        "n": len(y_true),
    }


def positive_probability(logits: np.ndarray) -> np.ndarray:
    """P(class 1) from ``(n, 2)`` logits (a softmax), float32 ``(n,)``."""
    logits = np.asarray(logits, dtype=np.float64)
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e[:, 1] / e.sum(axis=1)).astype(np.float32)


def pair_classification_metrics(logits: np.ndarray, labels: Sequence[int]) -> dict[str, Any]:
    """Metrics of a binary pair classifier from its ``(n, 2)`` logits and the 0/1 labels.

    Accuracy, F1/precision/recall of the positive class, mean cross-entropy ``loss`` (natural
    log), and the threshold-free ``average_precision`` of P(same) (``None`` when the labels hold a
    single class).
    """
    from sklearn.metrics import accuracy_score, average_precision_score, log_loss, precision_recall_fscore_support

    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    pred = logits.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
    z = logits - logits.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = float(log_loss(y, np.exp(log_probs), labels=[0, 1])) if len(y) else 0.0
    ap = float(average_precision_score(y, positive_probability(logits))) if 0 < y.sum() < len(y) else None
    return {"accuracy": float(accuracy_score(y, pred)), "f1": float(f1), "precision": float(precision),
            "recall": float(recall), "loss": loss, "average_precision": ap}


__all__ = ["classification_metrics", "pair_classification_metrics", "positive_probability"]
