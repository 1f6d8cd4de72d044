"""What quantization costs in meaning: cosine to the torch encoder and the change of a task score.

A worst single cosine says little about what users get: sentence-transformers reports int8
backends by their task scores. :func:`measure_quality` encodes the pairs of a graded
similarity file (STS-B style ``s1<TAB>s2<TAB>score``, or any file :func:`qembed.train.data.
load_pairs` reads) with a reference encoder (torch, fp32) and a candidate (an exported graph),
and reports

- ``worst_cosine`` / ``mean_cosine``: each sentence's candidate vector against its reference
  vector;
- ``score_reference`` / ``score``: the task score, Spearman's rank correlation between the pairs'
  cosine similarities and their gold scores (STS-B's metric), with either encoder;
- ``score_drop``: ``(score_reference - score) / |score_reference|``, the relative loss.

:func:`check_quality` refuses a candidate whose ``score_drop`` exceeds the limit (default
:data:`DEFAULT_MAX_SCORE_DROP`, 1%) with :class:`QualityGuardError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qembed.errors import QembedError

#: Largest relative loss of the task score an export may show (0.01 = 1%).
DEFAULT_MAX_SCORE_DROP = 0.01
#: Pairs of the guard file that are scored (the first ones).
DEFAULT_GUARD_PAIRS = 400


class QualityGuardError(QembedError):
    """A quantized export lost more of the task score than allowed (exit 1, nothing is written)."""

    status_code = 422
    exit_code = 1


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank (as scipy's ``rankdata``)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of two equally long sequences (0.0 when either is constant)."""
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = float(np.sqrt((rx ** 2).sum() * (ry ** 2).sum()))
    return float((rx * ry).sum() / denominator) if denominator else 0.0


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def guard_texts(path: str | Path, limit: int = DEFAULT_GUARD_PAIRS) -> tuple[list[str], list[str], list[float]]:
    """The first ``limit`` graded pairs of ``path`` (first sentences, second sentences, scores)."""
    from qembed.train.data import load_pairs

    data = load_pairs(path, labels="score", limit=limit)
    assert data.labels is not None
    return data.first, data.second, [float(y) for y in data.labels]


def measure_quality(reference: Any, candidate: Any, first: list[str], second: list[str],
                    scores: list[float], instruction: str | None = None) -> dict[str, Any]:
    """Cosine of ``candidate``'s vectors to ``reference``'s and the task score of both (see module doc).

    ``reference`` and ``candidate`` are encoders (``encode(texts, instruction)``); ``instruction``
    is given to both sides (symmetric similarity) on instruction models.
    """
    texts = list(dict.fromkeys(first + second))
    where = {t: i for i, t in enumerate(texts)}
    ref = _unit(np.asarray(reference.encode(texts, instruction), dtype=np.float64))
    got = _unit(np.asarray(candidate.encode(texts, instruction), dtype=np.float64))
    cosine = (ref * got).sum(axis=1)
    a = np.array([where[t] for t in first])
    b = np.array([where[t] for t in second])
    gold = np.asarray(scores, dtype=np.float64)
    score_ref = spearman((ref[a] * ref[b]).sum(axis=1), gold)
    score = spearman((got[a] * got[b]).sum(axis=1), gold)
    drop = (score_ref - score) / abs(score_ref) if score_ref else 0.0
    return {"sentences": len(texts), "pairs": len(first), "metric": "spearman",
            "worst_cosine": round(float(cosine.min()), 6), "mean_cosine": round(float(cosine.mean()), 6),
            "score_reference": round(score_ref, 6), "score": round(score, 6), "score_drop": round(float(drop), 6)}


def check_quality(report: dict[str, Any], max_score_drop: float = DEFAULT_MAX_SCORE_DROP,
                  what: str = "the export") -> None:
    """Raise :class:`QualityGuardError` when ``report['score_drop']`` exceeds ``max_score_drop``."""
    if report["score_drop"] > max_score_drop:
        raise QualityGuardError(
            f"{what} loses {100 * report['score_drop']:.2f}% of the task score ({report['metric']} "
            f"{report['score']:.4f} against {report['score_reference']:.4f} with torch; worst cosine "
            f"{report['worst_cosine']:.4f}), over the {100 * max_score_drop:g}% allowed: nothing was "
            "written. Use a precision with float activations (int8), more or other calibration "
            "text, or a larger allowed drop (--max-score-drop)")
