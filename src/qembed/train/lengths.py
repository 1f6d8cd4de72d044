"""Token-length distribution of a data set, to choose ``max_length`` before training.

:func:`length_report` measures single texts (each sentence with its special tokens, as an
embedding model reads it) and pairs (both sentences in one sequence, as the pair classifier
reads them): percentiles, a histogram, and the share of inputs that fit each candidate length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from qembed.errors import InputError
from qembed.io import read_texts
from qembed.train.data import FIRST_COLUMNS, load_pairs, read_pair_rows
from qembed.pairs.pair_tokens import PairTokenizer

PERCENTILES = (50, 90, 95, 99)
DEFAULT_MAX_LENGTHS = (32, 64, 128, 256)


def summarize(lengths: Sequence[int], max_lengths: Sequence[int]) -> dict[str, Any]:
    """Count, mean, percentiles (p50/p90/p95/p99), min/max and the share fitting each max length."""
    x = np.asarray(lengths, dtype=np.int64)
    return {
        "count": int(x.size),
        "mean": float(x.mean()),
        "min": int(x.min()),
        **{f"p{p}": float(np.percentile(x, p)) for p in PERCENTILES},
        "max": int(x.max()),
        "fits": {str(m): float((x <= m).mean()) for m in max_lengths},
    }


def histogram(lengths: Sequence[int], bins: int = 12) -> list[dict[str, int]]:
    """Equal-width bins up to the 99th percentile, plus one open bin for the tail above it.

    Returns ``[{"low", "high", "count"}, …]`` with inclusive bounds (``high`` of the tail bin is the max).
    """
    x = np.asarray(lengths, dtype=np.int64)
    top = max(int(np.ceil(np.percentile(x, 99))), int(x.min()) + 1)
    width = max(1, int(np.ceil((top - int(x.min()) + 1) / bins)))
    out = []
    low = int(x.min())
    while low <= top:
        high = low + width - 1
        out.append({"low": low, "high": high, "count": int(((x >= low) & (x <= high)).sum())})
        low = high + 1
    if int(x.max()) >= low:
        out.append({"low": low, "high": int(x.max()), "count": int((x >= low).sum())})
    return out


def render_histogram(bins: list[dict[str, int]], width: int = 40) -> str:
    """A text bar chart of :func:`histogram` output."""
    peak = max(b["count"] for b in bins) or 1
    total = sum(b["count"] for b in bins) or 1
    lines = []
    for b in bins:
        bar = "█" * max(1 if b["count"] else 0, round(width * b["count"] / peak))
        lines.append(f"{b['low']:>6}-{b['high']:<6} {bar:<{width}} {b['count']:>7} "
                     f"({100 * b['count'] / total:5.1f}%)")
    return "\n".join(lines)


def length_report(
    path: str | Path,
    tokenizer: Any,
    *,
    max_lengths: Sequence[int] = DEFAULT_MAX_LENGTHS,
    text_column: str | None = None,
) -> dict[str, Any]:
    """Token lengths of the texts and pairs in ``path``.

    A pair file (``sentence1``/``sentence2``) yields ``texts`` (every sentence on its own) and
    ``pairs`` (both together, as :class:`~qembed.pairs.pair_tokens.PairTokenizer` lays them out); a
    ``.txt`` file or a record file with ``text_column`` yields ``texts`` only. Each part is a
    :func:`summarize` dict; ``texts`` also carries ``histogram``.
    """
    if not max_lengths or any(int(m) < 1 for m in max_lengths):
        raise InputError("max lengths must be positive integers, e.g. 32,64,128,256")
    max_lengths = sorted({int(m) for m in max_lengths})
    p = Path(path)
    pt = PairTokenizer(tokenizer)
    pairs = None
    suffix = p.suffix.lower()
    is_pairs = False
    if text_column is None and suffix not in (".txt", ".md"):
        rows = read_pair_rows(p)
        is_pairs = any(c in rows[0] for c in FIRST_COLUMNS)
    if is_pairs:
        data = load_pairs(p, labels="optional")
        texts = data.first + data.second
        pairs = pt.pair_lengths(data.first, data.second)
    else:
        texts = read_texts(p, text_column=text_column)
    text_lengths = pt.text_lengths(texts)
    report: dict[str, Any] = {
        "file": str(p),
        "tokenizer": getattr(tokenizer, "name_or_path", ""),
        "max_lengths": max_lengths,
        "texts": {**summarize(text_lengths, max_lengths), "histogram": histogram(text_lengths)},
    }
    if pairs is not None:
        report["pairs"] = {**summarize(pairs, max_lengths), "histogram": histogram(pairs),
                           "layout": pt.describe()}
    return report
