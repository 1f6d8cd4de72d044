"""The input side of a scale-out run: which files, how their rows are read, and how many there are.

An input is a file, a folder (its supported files, recursively, hidden and ``_``-prefixed names
left out) or a glob, on the local disk or on any file system pyarrow reaches (``s3://``,
``gs://`` … when their packages are installed). Files are taken in path order; within a file,
rows are taken in file order, so a row's position across all files (its ``index``) is fixed by
the input alone.

Formats, by extension, read the way single-process ``qembed embed`` reads them:

- ``.txt``: a text per line, blank lines skipped;
- ``.jsonl`` / ``.ndjson`` / ``.json``: JSON objects, one per line (or a ``.json`` array);
- ``.csv`` / ``.tsv``: a header row, then records;
- ``.parquet``: a table.

The text comes from ``text_column`` (default ``text``); records whose text is empty or only
whitespace are skipped, like ``qembed embed`` skips them, so ``index`` numbers the texts embedded.
The id comes from ``id_column``, or by default from an ``id`` (else ``_id``) field the first record
has; ids are kept as strings.
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from qembed.errors import InputError

TEXT_SUFFIXES = (".txt",)
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
TABLE_SUFFIXES = (".csv", ".tsv")
PARQUET_SUFFIXES = (".parquet",)
SUPPORTED = TEXT_SUFFIXES + JSONL_SUFFIXES + TABLE_SUFFIXES + PARQUET_SUFFIXES
_URI_COLLAPSED = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/(?!/)")
#: Rows of a Parquet file read per step.
PARQUET_BATCH = 8192


@dataclass(frozen=True)
class InputFile:
    """One input file: where it is (as given, and as its file system names it), its size and
    modification time (to notice a file changed before a resumed run)."""

    uri: str
    path: str
    size: int
    mtime: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalize_location(location: str | os.PathLike[str]) -> str:
    """``location`` as a string, with a URI's ``//`` restored after a trip through pathlib
    (``s3:/bucket/x`` -> ``s3://bucket/x``)."""
    return _URI_COLLAPSED.sub(r"\1://", os.fspath(location))


def file_system(location: str) -> tuple[Any, str]:
    """The pyarrow file system of ``location`` and the path on it."""
    from pyarrow import fs

    location = normalize_location(location)
    if "://" in location and not location.startswith("file://"):
        try:
            return fs.FileSystem.from_uri(location)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for unknown schemes
            raise InputError(f"cannot open {location}: {exc} (install the package of its file system, "
                             "e.g. pyarrow with S3 support or gcsfs)") from None
    location = location.removeprefix("file://")
    return fs.LocalFileSystem(), os.path.abspath(os.path.expanduser(location))


def suffix_of(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    return "." + name.rsplit(".", 1)[-1] if "." in name else ""


def _hidden(path: str, root: str) -> bool:
    rel = path[len(root):].lstrip("/") if path.startswith(root) else path.rsplit("/", 1)[-1]
    return any(part.startswith((".", "_")) for part in rel.split("/") if part)


def list_inputs(location: str | os.PathLike[str]) -> list[InputFile]:
    """The input files named by ``location`` (a file, a folder or a glob), sorted by path.

    Raises :class:`InputError` when nothing readable is there or a named file has an unsupported
    type.
    """
    from pyarrow import fs

    location = normalize_location(location)
    filesystem, path = file_system(location)
    scheme = location.split("://", 1)[0] + "://" if "://" in location and not location.startswith("file://") else ""
    infos: list[Any]
    if any(ch in path for ch in "*?["):
        if isinstance(filesystem, fs.LocalFileSystem):
            names = sorted(glob.glob(path, recursive=True))
            infos = [i for i in filesystem.get_file_info(names) if i.type == fs.FileType.File]
        else:
            base = path.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0].rsplit("/", 1)[0]
            found = filesystem.get_file_info(fs.FileSelector(base, recursive=True, allow_not_found=True))
            infos = [i for i in found if i.type == fs.FileType.File and fnmatch.fnmatch(i.path, path)]
        infos = [i for i in infos if suffix_of(i.path) in SUPPORTED]
        if not infos:
            raise InputError(f"no .jsonl, .json, .csv, .tsv, .txt or .parquet file matches {location}")
    else:
        info = filesystem.get_file_info(path)
        if info.type == fs.FileType.NotFound:
            raise InputError(f"input not found: {location}")
        if info.type == fs.FileType.Directory:
            found = filesystem.get_file_info(fs.FileSelector(path, recursive=True))
            infos = [i for i in found if i.type == fs.FileType.File and suffix_of(i.path) in SUPPORTED
                     and not _hidden(i.path, path)]
            if not infos:
                raise InputError(f"{location} holds no .jsonl, .json, .csv, .tsv, .txt or .parquet file")
        else:
            if suffix_of(info.path) not in SUPPORTED:
                raise InputError(f"{location}: unsupported file type {suffix_of(info.path) or '(none)'}; "
                                 "use .jsonl, .json, .csv, .tsv, .txt or .parquet")
            infos = [info]
    out = []
    for i in sorted(infos, key=lambda i: i.path):
        mtime = i.mtime.timestamp() if i.mtime is not None else None
        out.append(InputFile(uri=scheme + i.path if scheme else i.path, path=i.path, size=int(i.size or 0),
                             mtime=mtime))
    return out


# --------------------------------------------------------------------------- reading rows


@dataclass(frozen=True)
class Columns:
    """Where the text and the id are: ``text`` (default ``text``), ``id`` (``None``: no id)."""

    text: str | None = None
    id: str | None = None


def _text_stream(filesystem: Any, path: str, *, newline: str | None = None) -> io.TextIOWrapper:
    raw = filesystem.open_input_stream(path)
    return io.TextIOWrapper(raw, encoding="utf-8", newline=newline)


def iter_records(f: InputFile) -> Iterator[tuple[int, dict[str, Any]]]:
    """(record number from 1, record) of a record file (JSON lines, CSV/TSV, Parquet)."""
    filesystem, path = file_system(f.uri)
    suffix = suffix_of(path)
    name = f.uri
    try:
        if suffix in JSONL_SUFFIXES:
            with _text_stream(filesystem, path) as stream:
                first = ""
                if suffix == ".json":
                    head = stream.read(4096)
                    first = head.lstrip()[:1]
                    if first == "[":
                        try:
                            data = json.loads(head + stream.read())
                        except json.JSONDecodeError as exc:
                            raise InputError(f"{name}: invalid JSON: {exc}") from None
                        for i, obj in enumerate(data, 1):
                            if not isinstance(obj, dict):
                                raise InputError(f"{name}: record {i} is not a JSON object")
                            yield i, obj
                        return
                    lines = (head + stream.read()).splitlines()
                else:
                    lines = stream
                n = 0
                for lineno, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise InputError(f"{name}:{lineno}: invalid JSON line: {exc.msg}") from None
                    n += 1
                    if not isinstance(obj, dict):
                        raise InputError(f"{name}:{lineno}: record {n} is not a JSON object")
                    yield n, obj
        elif suffix in TABLE_SUFFIXES:
            with _text_stream(filesystem, path, newline="") as stream:
                reader = csv.DictReader(stream, delimiter="\t" if suffix == ".tsv" else ",")
                if reader.fieldnames is None:
                    raise InputError(f"{name} is empty (a header row is required)")
                for i, row in enumerate(reader, 1):
                    yield i, dict(row)
        elif suffix in PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            with filesystem.open_input_file(path) as handle:
                try:
                    pf = pq.ParquetFile(handle)
                except Exception as exc:  # noqa: BLE001 - pyarrow.lib.ArrowInvalid and friends
                    raise InputError(f"{name}: not a readable Parquet file: {exc}") from None
                i = 0
                for batch in pf.iter_batches(batch_size=PARQUET_BATCH):
                    for row in batch.to_pylist():
                        i += 1
                        yield i, row
        else:  # pragma: no cover - list_inputs filters suffixes
            raise InputError(f"{name}: unsupported file type {suffix}")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name} is not UTF-8 text: {exc}") from None


def iter_rows(f: InputFile, columns: Columns) -> Iterator[tuple[str, str | None]]:
    """(text, id) of each row of ``f`` that has text, in file order.

    Raises :class:`InputError` naming the file and record for a missing text or id, a text that
    is not a string, or an id that is not a string or number.
    """
    suffix = suffix_of(f.path)
    if suffix in TEXT_SUFFIXES:
        if columns.id is not None:
            raise InputError(f"{f.uri}: a .txt file has no id column ({columns.id!r} was asked for)")
        filesystem, path = file_system(f.uri)
        try:
            with _text_stream(filesystem, path) as stream:
                for line in stream:
                    line = line.rstrip("\n").rstrip("\r")
                    if line.strip():
                        yield line, None
        except UnicodeDecodeError as exc:
            raise InputError(f"{f.uri} is not UTF-8 text: {exc}") from None
        return
    text_key = columns.text or "text"
    for i, rec in iter_records(f):
        if text_key not in rec or rec[text_key] is None:
            have = ", ".join(sorted(map(str, rec))) or "nothing"
            raise InputError(f"{f.uri}: record {i} lacks column {text_key!r} (it has: {have}); "
                             "name the text column with --text-column")
        text = rec[text_key]
        if not isinstance(text, str):
            raise InputError(f"{f.uri}: record {i}: column {text_key!r} is {type(text).__name__}, not a string")
        if not text.strip():
            continue
        ident: str | None = None
        if columns.id is not None:
            raw = rec.get(columns.id)
            if raw is None or raw == "":
                raise InputError(f"{f.uri}: record {i} lacks the id column {columns.id!r}")
            if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
                raise InputError(f"{f.uri}: record {i}: id {columns.id!r} is {type(raw).__name__}, "
                                 "not a string or number")
            ident = str(raw)
        yield text, ident


def detect_id_column(files: list[InputFile], text_column: str | None) -> str | None:
    """``id`` or ``_id`` when the first record of every file has it (else ``None``)."""
    found: str | None = None
    for f in files:
        if suffix_of(f.path) in TEXT_SUFFIXES:
            return None
        first = next(iter_records(f), None)
        if first is None:
            continue
        rec = first[1]
        here = "id" if rec.get("id") not in (None, "") else "_id" if rec.get("_id") not in (None, "") else None
        if here is None or (found is not None and here != found) or here == text_column:
            return None
        found = here
    return found


def count_rows(f: InputFile, columns: Columns) -> int:
    """Rows of ``f`` that have text (every row is read and checked)."""
    n = 0
    for _ in iter_rows(f, columns):
        n += 1
    return n
