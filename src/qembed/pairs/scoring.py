"""Pair similarity: cosine scores for sentence pairs, pair files, and saved thresholds.

Both sides of a pair get the same (symmetric) instruction — ``Retrieve semantically similar
text`` by default — so ``score(a, b) == score(b, a)``. Pair data sets repeat sentences (AFQMC
has about two pairs per distinct sentence), so every distinct sentence is encoded once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from qembed.config import resolve_instruction, want_progress
from qembed.deprecated import old_keywords
from qembed.errors import InputError, NotFoundError
from qembed.eval.pairs import parse_label
from qembed.models.encoder import Encoder, validate_texts
from qembed.models.prompts import SYMMETRIC_INSTRUCTION

logger = logging.getLogger(__name__)

#: Column names of AFQMC-style pair files.
LEFT_COLUMN, RIGHT_COLUMN, LABEL_COLUMN = "sentence1", "sentence2", "label"
THRESHOLD_FILE_VERSION = 1
#: Calibrated thresholds may sit this far outside [-1, 1] (a cut just above a score of 1.0).
CALIBRATION_SLACK = 1e-6


def check_threshold(threshold: Any, *, param: str = "min_similarity", slack: float = 0.0) -> float:
    """Return ``threshold`` as a float in [-1, 1] (the range of a cosine) or raise InputError.

    ``slack`` widens the range for thresholds computed by :func:`qembed.eval.pairs.calibrate`,
    whose "nothing is the same" cut lies just above the highest score (e.g. 1.0000000000000002).
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)):
        raise InputError(f"{param} must be a number, got {type(threshold).__name__}", param=param)
    value = float(threshold)
    if not np.isfinite(value) or not -1.0 - slack <= value <= 1.0 + slack:
        raise InputError(f"{param} must be between -1 and 1 (a cosine similarity), got {threshold}",
                         param=param)
    return value


@old_keywords
def unique_encode(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    instruction: str | None = None,
    dimensions: int | None = None,
    progress: bool | None = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Encode each distinct text once.

    In: texts (repeats allowed), ``instruction`` (``None``: the symmetric default, ``""``:
    none). Out: ``(vectors, index)`` where ``vectors`` holds one unit row per distinct text and
    ``vectors[index[i]]`` is the embedding of ``texts[i]``.
    """
    texts = validate_texts(list(texts))
    position: dict[str, int] = {}
    index = np.empty(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        index[i] = position.setdefault(t, len(position))
    distinct = list(position)
    if len(distinct) < len(texts):
        logger.info("encoding %d distinct texts of %d", len(distinct), len(texts))
    vectors = encoder.encode(distinct, instruction=resolve_instruction(instruction, SYMMETRIC_INSTRUCTION),
                             dimensions=dimensions, progress=want_progress(progress, len(distinct)))
    return vectors, index


@old_keywords
def score_pairs(
    encoder: Encoder,
    left: Sequence[str],
    right: Sequence[str],
    *,
    instruction: str | None = None,
    dimensions: int | None = None,
    progress: bool | None = False,
) -> np.ndarray:
    """Cosine similarity of ``left[i]`` and ``right[i]`` for every i.

    In: two equally long lists of non-empty texts. Out: float32 array of n scores in [-1, 1].
    Both sides get ``instruction`` (``None``: the symmetric default, ``""``: none); each
    distinct text is encoded once.
    """
    left = validate_texts(left, param="left")
    right = validate_texts(right, param="right")
    if len(left) != len(right):
        raise InputError(f"got {len(left)} left texts but {len(right)} right texts; pairs need both")
    vectors, index = unique_encode(encoder, [*left, *right], instruction=instruction,
                                   dimensions=dimensions, progress=progress)
    n = len(left)
    a, b = vectors[index[:n]], vectors[index[n:]]
    return np.clip(np.einsum("ij,ij->i", a, b), -1.0, 1.0).astype(np.float32)


def similarity(
    encoder: Encoder,
    a: str,
    b: str,
    *,
    instruction: str | None = None,
    dimensions: int | None = None,
) -> float:
    """Cosine similarity of two texts (both with ``instruction``: ``None`` default, ``""`` none)."""
    return float(score_pairs(encoder, [a], [b], instruction=instruction, dimensions=dimensions)[0])


@dataclass
class PairSet:
    """Sentence pairs read from a file; ``labels`` is None when the file has no label column."""

    left: list[str]
    right: list[str]
    labels: list[int] | None
    records: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.left)


def read_pairs(
    path: str | Path,
    *,
    left_column: str = LEFT_COLUMN,
    right_column: str = RIGHT_COLUMN,
    label_column: str = LABEL_COLUMN,
    require_labels: bool = False,
) -> PairSet:
    """Read pairs from AFQMC-style JSON lines or a CSV/TSV with a header.

    In: a ``.jsonl``/``.json``/``.csv``/``.tsv`` file whose records have ``left_column`` and
    ``right_column`` (default ``sentence1``/``sentence2``) and optionally ``label_column``
    (``0``/``1`` or ``"0"``/``"1"``). Labels are used when every record has one; a file where
    some records have labels and others not is an error. Out: a :class:`PairSet`.
    Raises :class:`InputError` for missing columns, empty texts, labels outside {0, 1}, an
    empty file, or (with ``require_labels``) a file without labels.
    """
    from qembed.io import read_records, require_columns

    rows = read_records(path)
    require_columns(rows, [left_column, right_column], str(path))
    left: list[str] = []
    right: list[str] = []
    for i, row in enumerate(rows, 1):
        for column, out in ((left_column, left), (right_column, right)):
            value = row[column]
            if not isinstance(value, str) or not value.strip():
                raise InputError(f"{path}: record {i}: column {column!r} must be a non-empty text, "
                                 f"got {value!r}")
            out.append(value)
    has_label = [label_column in row and row[label_column] not in (None, "") for row in rows]
    labels: list[int] | None = None
    if all(has_label):
        labels = [parse_label(row[label_column], where=f"{path}: record {i}") for i, row in enumerate(rows, 1)]
    elif any(has_label):
        first = has_label.index(False) + 1
        raise InputError(f"{path}: record {first} has no {label_column!r} while others do; "
                         "label every pair or none")
    if require_labels and labels is None:
        have = ", ".join(sorted(map(str, rows[0]))) or "nothing"
        raise InputError(f"{path}: no {label_column!r} column to calibrate against (records have: {have})")
    return PairSet(left, right, labels, rows)


def save_threshold(
    path: str | Path,
    *,
    model: str,
    threshold: float,
    instruction: str | None,
    metrics: dict[str, Any] | None = None,
    dimensions: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a calibrated threshold as JSON (model, instruction, dimensions, threshold, metrics)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": "qembed-threshold",
        "version": THRESHOLD_FILE_VERSION,
        "model": model,
        "instruction": instruction,
        "dimensions": dimensions,
        "threshold": float(check_threshold(threshold, slack=CALIBRATION_SLACK)),
        "metrics": metrics or {},
        **(extra or {}),
    }
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out)
    return out


def load_threshold(path: str | Path) -> dict[str, Any]:
    """Read a file written by :func:`save_threshold`; the ``threshold`` key is validated."""
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"threshold file not found: {p}")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p} is not a JSON threshold file: {exc}") from None
    if not isinstance(doc, dict) or "threshold" not in doc:
        raise InputError(f"{p} has no 'threshold' key; write it with --save-threshold")
    doc["threshold"] = check_threshold(doc["threshold"], param=f"threshold in {p}", slack=CALIBRATION_SLACK)
    return doc
