"""Reading texts and records from the file formats every command accepts.

Formats, chosen by extension: ``.txt`` (one text per line, blank lines skipped), ``.jsonl`` /
``.json`` (JSON lines, one object per line), ``.csv`` and ``.tsv`` (header row required).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable

from qembed.errors import InputError

TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
TABLE_SUFFIXES = (".csv", ".tsv")


def _check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"file not found: {p}")
    if not p.is_file():
        raise InputError(f"not a file: {p}")
    return p


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Read a ``.jsonl``/``.json``/``.csv``/``.tsv`` file into a list of dicts.

    Raises :class:`InputError` for a missing file, malformed line or an empty file.
    """
    p = _check_file(path)
    suffix = p.suffix.lower()
    rows: list[dict[str, Any]] = []
    if suffix in JSONL_SUFFIXES:
        with p.open(encoding="utf-8") as f:
            text = f.read()
        stripped = text.lstrip()
        if suffix == ".json" and stripped.startswith("["):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"{p}: invalid JSON: {exc}") from None
            rows = list(data)
        else:
            for lineno, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{p}:{lineno}: invalid JSON line: {exc.msg}") from None
                rows.append(obj)
        for i, obj in enumerate(rows, 1):
            if not isinstance(obj, dict):
                raise InputError(f"{p}: record {i} is not a JSON object")
    elif suffix in TABLE_SUFFIXES:
        delimiter = "\t" if suffix == ".tsv" else ","
        with p.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            if reader.fieldnames is None:
                raise InputError(f"{p} is empty (a header row is required)")
            rows = [dict(r) for r in reader]
    else:
        raise InputError(
            f"{p}: unsupported file type {suffix or '(none)'}; use .jsonl, .json, .csv or .tsv"
        )
    if not rows:
        raise InputError(f"{p} contains no records")
    return rows


def require_columns(rows: Iterable[dict[str, Any]], columns: Iterable[str], source: str) -> None:
    """Raise :class:`InputError` naming the first record that lacks one of ``columns``."""
    columns = list(columns)
    for i, row in enumerate(rows, 1):
        missing = [c for c in columns if c not in row or row[c] is None]
        if missing:
            have = ", ".join(sorted(map(str, row))) or "nothing"
            raise InputError(
                f"{source}: record {i} lacks column(s) {', '.join(missing)} (it has: {have})"
            )


def read_texts(
    path: str | Path,
    *,
    text_column: str | None = None,
    skip_empty: bool = True,
) -> list[str]:
    """Read texts: lines of a ``.txt``, or ``text_column`` (default ``text``) of a record file.

    With ``skip_empty`` blank lines/values are dropped; otherwise they raise :class:`InputError`.
    """
    p = _check_file(path)
    suffix = p.suffix.lower()
    if suffix in TEXT_SUFFIXES or suffix == "":
        lines = p.read_text(encoding="utf-8").splitlines()
        texts = []
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                if skip_empty:
                    continue
                raise InputError(f"{p}:{lineno}: empty line")
            texts.append(line.rstrip("\r"))
    else:
        column = text_column or "text"
        rows = read_records(p)
        require_columns(rows, [column], str(p))
        texts = []
        for i, row in enumerate(rows, 1):
            value = row[column]
            if not isinstance(value, str):
                raise InputError(f"{p}: record {i}: column {column!r} is not a string")
            if not value.strip():
                if skip_empty:
                    continue
                raise InputError(f"{p}: record {i}: column {column!r} is empty")
            texts.append(value)
    if not texts:
        raise InputError(f"{p} contains no texts")
    return texts
