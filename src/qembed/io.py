"""Reading and writing the files every command accepts, and telling locations apart.

Formats, chosen by extension: ``.txt`` (one text per line, blank lines skipped), ``.md`` (one
document per file), ``.jsonl`` / ``.json`` (JSON lines, one object per line, or one JSON array),
``.csv`` and ``.tsv`` (header row required).

- :func:`read_texts`: texts (lines, or one column of records);
- :func:`read_records`: records as dicts; :func:`require_columns` checks their columns;
- :func:`read_documents`: knowledge-base documents (``id``, ``text``, ``title``, ``metadata``);
- :func:`write_records`: JSON lines or a table;
- :func:`is_http_url` / :func:`is_milvus_uri`: what a ``--model`` or ``--index`` value names.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from qembed.errors import InputError

TEXT_SUFFIXES = (".txt", ".md")
#: URL schemes of a Milvus server (``milvus://host:port`` is rewritten to ``http://``).
MILVUS_SCHEMES = ("http://", "https://", "milvus://", "tcp://")
#: File suffix of a Milvus Lite database.
MILVUS_LITE_SUFFIX = ".db"


def is_http_url(value: Any) -> bool:
    """Whether ``value`` is an ``http://`` or ``https://`` URL (a remote endpoint, not a local path or Hub id)."""
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))


def is_milvus_uri(value: str | os.PathLike[str] | None) -> bool:
    """Whether an index location names Milvus: a Milvus server URL (``http(s)://``, ``milvus://``,
    ``tcp://``) or a Milvus Lite file (``*.db``). Anything else is a FAISS folder (or ``None``:
    in memory)."""
    if value is None:
        return False
    s = os.fspath(value)
    return s.lower().startswith(MILVUS_SCHEMES) or s.endswith(MILVUS_LITE_SUFFIX)


def is_milvus_server(value: str | os.PathLike[str] | None) -> bool:
    """Whether an index location is a Milvus server URL (not a file on this machine)."""
    return value is not None and os.fspath(value).lower().startswith(MILVUS_SCHEMES)
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


DOCUMENT_SUFFIXES = (".txt", ".md", "", *JSONL_SUFFIXES, *TABLE_SUFFIXES)


def _safe_id(value: str) -> str:
    return value.replace("#", "_")


def read_documents(
    paths: Iterable[str | Path],
    *,
    per_file: bool = False,
    text_column: str | None = None,
    id_column: str | None = None,
    title_column: str | None = None,
) -> list[dict[str, Any]]:
    """Knowledge-base documents from files, as dicts ``{"id", "text", "title", "metadata"}``.

    ``.txt``: a document per non-blank line (id ``path:line``), or the whole file with
    ``per_file``; ``.md``: the whole file, its first ``#`` heading as title; ``.jsonl``/``.json``/
    ``.csv``/``.tsv``: a document per record — ``text_column`` (default ``text``), ``id_column``
    (default ``id`` or ``_id``, else ``path:record``), ``title_column`` (default ``title``), a
    ``metadata`` object plus every other non-empty field as metadata. Every document gets
    ``metadata.source`` = the file name. ``#`` in ids becomes ``_`` (it separates chunk numbers).
    Raises :class:`InputError` for a missing file, an unsupported type or a record without text.
    """
    docs: list[dict[str, Any]] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise InputError(f"file not found: {path}")
        suffix = path.suffix.lower()
        source = path.name
        if suffix in (".txt", ".md", ""):
            content = path.read_text(encoding="utf-8")
            if per_file or suffix == ".md":
                title = None
                if suffix == ".md":
                    first = content.lstrip().splitlines()[0] if content.strip() else ""
                    if first.startswith("#"):
                        title = first.lstrip("#").strip() or None
                docs.append({"id": _safe_id(str(path)), "text": content, "title": title,
                             "metadata": {"source": source}})
            else:
                for lineno, line in enumerate(content.splitlines(), 1):
                    if line.strip():
                        docs.append({"id": _safe_id(f"{path}:{lineno}"), "text": line.strip(),
                                     "metadata": {"source": source}})
        elif suffix in JSONL_SUFFIXES or suffix in TABLE_SUFFIXES:
            text_key = text_column or "text"
            for i, rec in enumerate(read_records(path), 1):
                if text_key not in rec:
                    have = ", ".join(map(str, rec)) or "nothing"
                    raise InputError(f"{path}: record {i} has no {text_key!r} field (it has: {have}); "
                                     "name the text field with --text-column")
                rec = dict(rec)
                doc: dict[str, Any] = {"text": rec.pop(text_key)}
                raw_id = rec.pop(id_column, None) if id_column else rec.pop("id", rec.pop("_id", None))
                doc["id"] = _safe_id(str(raw_id)) if raw_id not in (None, "") else _safe_id(f"{path}:{i}")
                title = rec.pop(title_column or "title", None)
                doc["title"] = title if isinstance(title, str) and title.strip() else None
                meta = rec.pop("metadata", None) or {}
                if not isinstance(meta, dict):
                    raise InputError(f"{path}: record {i}: 'metadata' must be an object")
                meta.update({k: v for k, v in rec.items() if v not in (None, "")})
                meta.setdefault("source", source)
                doc["metadata"] = meta
                if not isinstance(doc["text"], str) or not doc["text"].strip():
                    raise InputError(f"{path}: record {i} (id {doc['id']!r}) has no text")
                docs.append(doc)
        else:
            raise InputError(f"{path}: unsupported file type {suffix}; use .txt, .md, .jsonl, .json, .csv or .tsv")
    if not docs:
        raise InputError("the sources contain no documents")
    return docs


def write_records(path: str | Path, rows: Iterable[dict[str, Any]], *,
                  columns: Sequence[str] | None = None) -> Path:
    """Write ``rows`` to ``path``: JSON lines for ``.jsonl``/``.json``, a table for ``.csv``/``.tsv``
    (``columns``, default the first row's keys; nested values as JSON). Parent folders are created;
    the file is written to a temporary name and renamed, so a reader never sees half of it."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in JSONL_SUFFIXES and suffix not in TABLE_SUFFIXES:
        raise InputError(f"{p}: unsupported output type {suffix or '(none)'}; use .jsonl, .csv or .tsv")
    rows = list(rows)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        if suffix in JSONL_SUFFIXES:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            names = list(columns) if columns is not None else (list(rows[0]) if rows else [])
            writer = csv.writer(f, delimiter="\t" if suffix == ".tsv" else ",")
            writer.writerow(names)
            for row in rows:
                writer.writerow([_cell(row.get(c)) for c in names])
    tmp.replace(p)
    return p


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):  # as in JSON lines: true/false, not Python's True/False
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value
