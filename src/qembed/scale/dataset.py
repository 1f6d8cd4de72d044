"""The output of a scale-out run: a folder of Parquet parts plus a ``_qembed.json`` manifest.

::

    vectors/
      _qembed.json                          model, vector size, instruction, normalisation,
                                            the input files and their row counts, status
      part-000000000000-000000002048.parquet  rows with index 0 … 2047
      part-000000002048-000000004096.parquet
      ...

Each part holds the columns ``index`` (int64, the row's position in the input), ``id`` (string,
when the input has ids) and ``embedding`` (list of float32), sorted by ``index``; its name gives the
range of ``index`` it holds, ``[start, end)``. A part is written under a temporary name starting
with ``.`` and renamed once complete, so a folder never holds a half-written part under a part
name, and Parquet readers (pyarrow, pandas, Ray Data, Spark) skip the temporary files and the
manifest, whose names start with ``.`` and ``_``. The same model facts are also stored in each
part's Parquet key-value metadata under ``qembed``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterable
from typing import Any

from qembed.errors import InputError, QembedError

MANIFEST = "_qembed.json"
FORMAT = "qembed-embeddings"
VERSION = 1
PART = re.compile(r"part-(\d{12})-(\d{12})\.parquet")
TMP_PREFIX = ".tmp-"


def part_name(start: int, end: int) -> str:
    return f"part-{start:012d}-{end:012d}.parquet"


def join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def read_manifest(filesystem: Any, folder: str) -> dict[str, Any] | None:
    """The folder's manifest, or ``None`` when it has none."""
    from pyarrow import fs

    path = join(folder, MANIFEST)
    if filesystem.get_file_info(path).type != fs.FileType.File:
        return None
    with filesystem.open_input_stream(path) as f:
        raw = f.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QembedError(f"{path} is damaged: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path} is not a qembed embeddings manifest")
    return data


def write_manifest(filesystem: Any, folder: str, data: dict[str, Any]) -> None:
    """Write the manifest atomically (a temporary file, then a rename)."""
    data = {"format": FORMAT, "version": VERSION, **data, "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = join(folder, f"{TMP_PREFIX}{uuid.uuid4().hex}.json")
    with filesystem.open_output_stream(tmp) as f:
        f.write(json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8"))
    filesystem.move(tmp, join(folder, MANIFEST))


def list_parts(filesystem: Any, folder: str) -> list[tuple[int, int, str]]:
    """``(start, end, path)`` of every part in the folder, sorted by start."""
    from pyarrow import fs

    out = []
    for info in filesystem.get_file_info(fs.FileSelector(folder, allow_not_found=True)):
        m = PART.fullmatch(info.base_name)
        if info.type == fs.FileType.File and m:
            start, end = int(m.group(1)), int(m.group(2))
            if end > start:
                out.append((start, end, info.path))
    return sorted(out)


def remove_temporaries(filesystem: Any, folder: str) -> int:
    """Delete the temporary files a killed run left behind; returns how many."""
    from pyarrow import fs

    n = 0
    for info in filesystem.get_file_info(fs.FileSelector(folder, allow_not_found=True)):
        if info.type == fs.FileType.File and info.base_name.startswith(TMP_PREFIX):
            filesystem.delete_file(info.path)
            n += 1
    return n


def plan_cover(parts: Iterable[tuple[int, int, str]]) -> tuple[list[tuple[int, int, str]], list[str],
                                                                   list[tuple[int, int, str]]]:
    """Split ``parts`` into those to keep, those wholly covered by others (redundant) and those
    that overlap the kept ones partly ``(new_start, end, path)``: only their rows from
    ``new_start`` on are new. Redundant parts come from a task Ray ran twice."""
    keep: list[tuple[int, int, str]] = []
    redundant: list[str] = []
    trim: list[tuple[int, int, str]] = []
    reach = 0
    for start, end, path in sorted(parts, key=lambda p: (p[0], -p[1])):
        if end <= reach:
            redundant.append(path)
        elif start < reach:
            trim.append((reach, end, path))
            reach = end
        else:
            keep.append((start, end, path))
            reach = end
    return keep, redundant, trim


def missing_ranges(covered: Iterable[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    """The ranges of ``[0, total)`` no part covers."""
    out = []
    at = 0
    for start, end in sorted(covered):
        if start > at:
            out.append((at, min(start, total)))
        at = max(at, end)
    if at < total:
        out.append((at, total))
    return [(s, e) for s, e in out if e > s]
