"""Binary pair metrics and decision-threshold calibration.

A pair task (paraphrase / same-intent detection) turns every pair into one score — a cosine
similarity or a classifier probability — and decides "same" when ``score >= threshold``.

- :func:`calibrate` finds, exactly, the threshold that maximises accuracy and the one that
  maximises F1 on labelled scores, by sweeping every cut between consecutive distinct scores
  (the threshold returned is the midpoint between the two scores the cut falls between).
- :func:`metrics_at` reports the same metrics at a fixed threshold (e.g. one calibrated on a
  training split, applied to a dev split).

Both return a dict with the keys ``accuracy``, ``f1``, ``precision``, ``recall``,
``average_precision``, ``threshold``, ``f1_threshold`` (plus ``n`` and ``positives``). In
:func:`calibrate`, ``accuracy`` is measured at ``threshold`` and ``f1``/``precision``/``recall``
at ``f1_threshold`` (the convention of sentence-transformers' binary classification evaluator);
``average_precision`` does not depend on a threshold. The metric values themselves come from
scikit-learn.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from qembed.errors import InputError

METRIC_KEYS = (
    "accuracy", "f1", "precision", "recall", "average_precision", "threshold", "f1_threshold",
)


def parse_label(value: Any, *, where: str = "label") -> int:
    """Turn a label as found in a data file (``0``/``1``, ``"0"``/``"1"``, ``true``/``false``) into 0/1.

    Raises :class:`InputError` naming ``where`` for anything else.
    """
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, np.integer)) and int(value) in (0, 1):
        return int(value)
    if isinstance(value, float) and value in (0.0, 1.0):
        return int(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("0", "1"):
            return int(v)
        if v in ("true", "false"):
            return int(v == "true")
    raise InputError(f"{where}: label must be 0 or 1, got {value!r}", param="label")


def _as_arrays(scores: Sequence[float] | np.ndarray, labels: Sequence[Any] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    raw = list(labels.tolist() if isinstance(labels, np.ndarray) else labels)
    if s.shape[0] != len(raw):
        raise InputError(f"got {s.shape[0]} scores but {len(raw)} labels")
    if s.shape[0] == 0:
        raise InputError("no scores to evaluate: pass at least one labelled pair")
    if not np.isfinite(s).all():
        raise InputError("scores contain NaN or infinity")
    y = np.fromiter((parse_label(v, where=f"labels[{i}]") for i, v in enumerate(raw)), dtype=np.int64,
                    count=len(raw))
    return s, y


def _average_precision(s: np.ndarray, y: np.ndarray) -> float | None:
    from sklearn.metrics import average_precision_score

    if y.sum() == 0:
        return None  # undefined without positives
    return float(average_precision_score(y, s))


def _at(s: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    pred = (s >= threshold).astype(np.int64)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, pred, average="binary", pos_label=1, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
    }


def metrics_at(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    threshold: float,
) -> dict[str, Any]:
    """Metrics of the decision ``score >= threshold`` on labelled pairs.

    In: ``scores`` (n floats), ``labels`` (n values in {0, 1}; ``"0"``/``"1"`` accepted) and a
    threshold. Out: ``{"accuracy", "f1", "precision", "recall", "average_precision",
    "threshold", "f1_threshold", "n", "positives"}``; both thresholds equal ``threshold``;
    ``average_precision`` is ``None`` when there is no positive pair.
    """
    s, y = _as_arrays(scores, labels)
    threshold = float(threshold)
    if not np.isfinite(threshold):
        raise InputError(f"threshold must be a finite number, got {threshold}", param="threshold")
    out: dict[str, Any] = _at(s, y, threshold)
    out.update(
        average_precision=_average_precision(s, y),
        threshold=threshold,
        f1_threshold=threshold,
        n=int(s.shape[0]),
        positives=int(y.sum()),
    )
    return out


def _cut_points(s: np.ndarray) -> np.ndarray:
    """Every distinct decision on ``s``: above the top score, midpoints, and the lowest score.

    Deciding ``score >= t`` for each returned ``t`` yields every possible split of the sorted
    scores into a positive head and a negative tail, exactly once, from "none positive" to "all".
    """
    u = np.unique(s)[::-1]  # descending distinct scores
    top = np.nextafter(u[0], np.inf)  # strictly above the highest score: nothing predicted positive
    mids = (u[:-1] + u[1:]) / 2.0
    # Midpoints of extremely close floats can round onto the lower score; keep the cut between them.
    mids = np.where(mids > u[1:], mids, u[:-1])
    return np.concatenate([[top], mids, [u[-1]]])


def sweep(scores: Sequence[float] | np.ndarray, labels: Sequence[Any] | np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, precision, recall and F1 for every cut point of :func:`_cut_points`.

    In: scores and 0/1 labels. Out: arrays ``threshold``, ``accuracy``, ``precision``,
    ``recall``, ``f1`` of equal length, ordered from the highest threshold to the lowest.
    Counting is exact (cumulative sums over the scores sorted high to low), O(n log n).
    """
    s, y = _as_arrays(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    thresholds = _cut_points(s)
    # Number of items predicted positive at each cut: those with score >= t.
    n_pos_pred = np.searchsorted(-s_sorted, -thresholds, side="right")
    cum_tp = np.concatenate([[0], np.cumsum(y_sorted)])
    tp = cum_tp[n_pos_pred].astype(np.float64)
    fp = n_pos_pred - tp
    positives = float(y.sum())
    n = float(s.shape[0])
    fn = positives - tp
    tn = n - positives - fp
    accuracy = (tp + tn) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_pos_pred > 0, tp / np.maximum(n_pos_pred, 1), 0.0)
        recall = np.where(positives > 0, tp / max(positives, 1.0), 0.0)
        denom = 2 * tp + fp + fn
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return {"threshold": thresholds, "accuracy": accuracy, "precision": precision,
            "recall": recall, "f1": f1}


def calibrate(scores: Sequence[float] | np.ndarray, labels: Sequence[Any] | np.ndarray) -> dict[str, Any]:
    """Find the accuracy-maximising and the F1-maximising thresholds on labelled scores.

    In: ``scores`` (n floats, higher = more alike) and ``labels`` (n values in {0, 1}); both
    classes must be present. Out: ``{"accuracy", "threshold", "f1", "precision", "recall",
    "f1_threshold", "average_precision", "n", "positives"}`` where ``accuracy`` is measured at
    ``threshold`` and ``f1``, ``precision``, ``recall`` at ``f1_threshold``. The search is
    exact: every cut between consecutive distinct scores is tried and its midpoint returned;
    among equally good cuts the highest threshold wins.
    """
    s, y = _as_arrays(scores, labels)
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        raise InputError(
            "calibration needs both same (1) and different (0) pairs; "
            f"all {len(y)} labels are {int(y[0])}"
        )
    curve = sweep(s, y)
    best_acc = int(np.argmax(curve["accuracy"]))
    best_f1 = int(np.argmax(curve["f1"]))
    threshold = float(curve["threshold"][best_acc])
    f1_threshold = float(curve["threshold"][best_f1])
    at_acc = _at(s, y, threshold)
    at_f1 = _at(s, y, f1_threshold)
    return {
        "accuracy": at_acc["accuracy"],
        "f1": at_f1["f1"],
        "precision": at_f1["precision"],
        "recall": at_f1["recall"],
        "average_precision": _average_precision(s, y),
        "threshold": threshold,
        "f1_threshold": f1_threshold,
        "n": int(s.shape[0]),
        "positives": positives,
    }
