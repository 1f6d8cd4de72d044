"""Labelled sentence pairs for training and evaluation, and how a pair becomes one token sequence.

Files: JSON lines / JSON / CSV / TSV with a header (columns ``sentence1``, ``sentence2``,
``label``; ``text1``/``text2``, ``s1``/``s2``, ``score`` are accepted too), or a header-less
tab-separated file ``s1<TAB>s2<TAB>score`` (Chinese STS-B's ``*.data`` files).

Labels are either binary (``0``/``1``, the AFQMC convention) or graded similarity scores (STS-B,
0-5). :func:`load_pairs` checks every record before anything is trained and raises
:class:`~qembed.errors.InputError` naming the first bad one.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

from qembed.errors import InputError
from qembed.io import TABLE_SUFFIXES, read_records

FIRST_COLUMNS = ("sentence1", "text1", "s1", "query", "anchor")
SECOND_COLUMNS = ("sentence2", "text2", "s2", "document", "positive")
LABEL_COLUMNS = ("label", "score", "similarity")

LabelMode = Literal["binary", "score", "optional"]


@dataclass
class PairData:
    """Parallel lists of first sentences, second sentences and labels (``None`` when absent).

    ``binary`` is True when every label is 0 or 1.
    """

    first: list[str]
    second: list[str]
    labels: list[float] | None
    source: str = ""

    def __len__(self) -> int:
        return len(self.first)

    @property
    def binary(self) -> bool:
        return self.labels is not None and all(x in (0.0, 1.0) for x in self.labels)

    def int_labels(self) -> list[int]:
        """Labels as 0/1 integers (raises when there are none or they are graded)."""
        if self.labels is None:
            raise InputError(f"{self.source}: the file has no label column")
        if not self.binary:
            raise InputError(f"{self.source}: labels must be 0 or 1 for this use (found graded scores)")
        return [int(x) for x in self.labels]

    def head(self, n: int | None) -> "PairData":
        """The first ``n`` pairs (all of them for ``None``)."""
        if n is None or n >= len(self):
            return self
        return PairData(self.first[:n], self.second[:n],
                        None if self.labels is None else self.labels[:n], self.source)


def _pick(row: dict[str, Any], names: Sequence[str]) -> str | None:
    for name in names:
        if name in row:
            return name
    return None


def _read_headerless_tsv(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8", newline="") as f:
        for lineno, parts in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            if not parts or all(not p.strip() for p in parts):
                continue
            if len(parts) < 2:
                raise InputError(f"{path}:{lineno}: expected 'sentence1<TAB>sentence2[<TAB>label]', "
                                 f"found {len(parts)} field")
            row: dict[str, Any] = {"sentence1": parts[0], "sentence2": parts[1]}
            if len(parts) >= 3:
                row["label"] = parts[2]
            rows.append(row)
    if not rows:
        raise InputError(f"{path} contains no pairs")
    return rows


def read_pair_rows(path: str | Path) -> list[dict[str, Any]]:
    """Records of a pair file: with a header (jsonl/json/csv/tsv) or header-less ``s1<TAB>s2<TAB>score``."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"file not found: {p}")
    if not p.is_file():
        raise InputError(f"not a file: {p}")
    if p.stat().st_size == 0:
        raise InputError(f"{p} is empty")
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson", ".csv"):
        return read_records(p)
    # .tsv with a known header goes through read_records; anything else is header-less TSV.
    first_line = p.open(encoding="utf-8").readline().rstrip("\r\n").split("\t")
    if suffix in TABLE_SUFFIXES and any(c in FIRST_COLUMNS for c in first_line):
        return read_records(p)
    return _read_headerless_tsv(p)


def parse_score(value: Any, where: str) -> float:
    """A graded similarity label: a finite number (``"3.8"`` accepted)."""
    import math

    if isinstance(value, bool):
        return float(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: label must be a number, got {value!r}", param="label") from None
    if not math.isfinite(x):
        raise InputError(f"{where}: label must be finite, got {value!r}", param="label")
    return x


def load_pairs(
    path: str | Path,
    *,
    labels: LabelMode = "binary",
    limit: int | None = None,
) -> PairData:
    """Read and check labelled pairs.

    ``labels="binary"``: a label column is required and every label must be 0 or 1 (classifier
    training). ``"score"``: a numeric label is required (0/1 or graded, e.g. STS-B 0-5).
    ``"optional"``: labels are read when the column exists (scoring files without answers).
    ``limit`` keeps the first ``limit`` pairs. Raises :class:`InputError` for a missing file, an
    empty file, missing columns, empty sentences or bad labels.
    """
    from qembed.eval.pairs import parse_label

    if limit is not None and limit < 1:
        raise InputError(f"limit must be at least 1, got {limit}")
    p = Path(path)
    rows = read_pair_rows(p)
    if limit is not None:
        rows = rows[:limit]
    source = str(p)
    a_col = _pick(rows[0], FIRST_COLUMNS)
    b_col = _pick(rows[0], SECOND_COLUMNS)
    if a_col is None or b_col is None:
        have = ", ".join(map(str, rows[0])) or "nothing"
        raise InputError(f"{source}: record 1 has no sentence pair columns (expected sentence1 and "
                         f"sentence2; it has: {have})")
    y_col = _pick(rows[0], LABEL_COLUMNS)
    if y_col is None and labels != "optional":
        have = ", ".join(map(str, rows[0]))
        raise InputError(f"{source}: no label column (expected 'label' with 0/1 values; record 1 has: {have})",
                         param="label")
    first: list[str] = []
    second: list[str] = []
    ys: list[float] = []
    for i, row in enumerate(rows, 1):
        where = f"{source}: record {i}"
        a, b = row.get(a_col), row.get(b_col)
        for col, value in ((a_col, a), (b_col, b)):
            if not isinstance(value, str):
                raise InputError(f"{where}: column {col!r} is missing or not a string")
            if not value.strip():
                raise InputError(f"{where}: column {col!r} is empty")
        first.append(a)
        second.append(b)
        if y_col is not None:
            if y_col not in row or row[y_col] is None or row[y_col] == "":
                raise InputError(f"{where}: label column {y_col!r} is missing", param="label")
            if labels == "binary":
                ys.append(float(parse_label(row[y_col], where=where)))
            else:
                ys.append(parse_score(row[y_col], where))
    return PairData(first, second, ys if y_col is not None else None, source)


def check_binary_classes(data: PairData) -> None:
    """Training a classifier needs both classes; raise :class:`InputError` otherwise."""
    ys = data.int_labels()
    if len(set(ys)) < 2:
        raise InputError(f"{data.source}: all {len(ys)} labels are {ys[0]}; training needs both 0 and 1 pairs")
