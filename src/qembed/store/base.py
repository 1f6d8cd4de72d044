"""The :class:`VectorStore` interface every backend implements, and the helpers they share.

A vector store keeps, per string id, one float32 vector, an optional text and an optional JSON
metadata object, and answers nearest-neighbour queries by inner product (cosine on the unit
vectors an :class:`~qembed.models.encoder.Encoder` produces). Backends: ``faiss`` (embedded,
a folder on disk; :mod:`qembed.store.faiss_store`) and ``milvus`` (Milvus Lite file or server;
:mod:`qembed.store.milvus_store`). They share the verbs below and one conformance test suite.

Filters are a mapping ``{field: value}`` over the metadata: every field must equal its value;
a list value means "any of these"; ``None`` (JSON null) matches a field that is null or absent
(both backends; Milvus' ``is null``). Filters apply before the top-k is cut, so a filtered search
returns ``min(k, number of matching documents)`` hits.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, ContextManager, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from qembed.errors import InputError

#: Longest accepted document id, in characters (Milvus VARCHAR primary key limit we configure).
MAX_ID_LENGTH = 512
#: Metadata field names must be plain identifiers (they become JSON paths / Milvus expressions);
#: always matched with ``fullmatch`` (``$`` would accept a trailing newline).
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,127}")
#: Most nested levels of objects/arrays in one document's metadata (the object itself is level 1).
MAX_METADATA_DEPTH = 16
#: Largest metadata object per document, in bytes of UTF-8 JSON (Milvus' JSON field limit).
MAX_METADATA_BYTES = 65_536
#: Most fields one filter may name, and most values one field may list.
MAX_FILTER_FIELDS = 32
MAX_FILTER_VALUES = 1024
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: Control characters no id may hold (Unicode category Cc).
_ID_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: Control characters no metadata string may hold: Cc but tab, line feed and carriage return.
_VALUE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

Filter = Mapping[str, Any]


@dataclass
class Hit:
    """One search result: document ``id``, similarity ``score`` (inner product), ``text``, ``metadata``."""

    id: str
    score: float
    text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"id", "score", "text", "metadata"}``."""
        return {"id": self.id, "score": float(self.score), "text": self.text, "metadata": self.metadata}


@dataclass
class Record:
    """A stored document as returned by :meth:`VectorStore.get`: id, text, metadata and (optionally) vector."""

    id: str
    text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: np.ndarray | None = None


@runtime_checkable
class VectorStore(Protocol):
    """Vectors at rest, addressed by string id. Same verbs for every backend."""

    @property
    def dim(self) -> int:
        """Vector size."""
        ...

    @property
    def location(self) -> str | None:
        """Folder, file or URI the store persists to; ``None`` when in memory only."""
        ...

    def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        delete: Sequence[str] = (),
    ) -> int:
        """Insert or replace documents by id, removing the ``delete`` ids in the same write.

        Everything is validated before anything is written; on FAISS the write is all or nothing.
        Returns how many documents were written.
        """
        ...

    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents by id (unknown ids are ignored); returns how many were removed."""
        ...

    def search(
        self, query_vectors: np.ndarray, k: int = 10, filter: Filter | None = None
    ) -> list[list[Hit]]:
        """For each query row, up to ``k`` hits by descending inner product, filter applied first."""
        ...

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record | None]:
        """The stored records for ``ids``, in order; ``None`` where an id is unknown."""
        ...

    def count(self) -> int:
        """Number of stored documents."""
        ...

    def ids(self, filter: Filter | None = None) -> list[str]:
        """Every stored id (optionally only those matching ``filter``)."""
        ...

    def scan(self, batch_size: int = 1000) -> Iterator[list[Record]]:
        """All records (without vectors) in batches, in a stable order."""
        ...

    def get_meta(self, key: str, default: Any = None) -> Any:
        """A value of the store's manifest (JSON-serialisable), e.g. the encoder name."""
        ...

    def set_meta(self, key: str, value: Any) -> None:
        """Set a manifest value (persisted at the next :meth:`save`)."""
        ...

    def info(self) -> dict[str, Any]:
        """Backend, location, dim, metric, index kind, count and manifest values."""
        ...

    def save(self) -> None:
        """Persist pending changes (atomically for the FAISS folder)."""
        ...

    def write_lock(self) -> ContextManager[None]:
        """Hold the store's writer lock for a read-modify-write sequence (re-entrant).

        FAISS folder: an exclusive lock on the folder, shared with other processes; inside it the
        store shows the latest saved state. Milvus: a lock within this process only.
        """
        ...

    def close(self) -> None:
        """Release resources (does not save)."""
        ...


# --------------------------------------------------------------------------- validation rules
#
# One rule for every backend, applied before anything is written (see the README section
# "Data safety"):
#
# - ids: 1 to MAX_ID_LENGTH characters, not only whitespace, no control characters
#   (U+0000-U+001F, U+007F-U+009F), no unpaired surrogates. Quotes, backslashes, slashes,
#   spaces and any other character are stored and matched exactly.
# - metadata field names (top level, the names filters use): FIELD_NAME, the whole name.
# - metadata values: JSON (objects, arrays, strings, numbers, booleans, null); strings (and
#   nested keys) without unpaired surrogates or control characters other than tab, line feed
#   and carriage return; integers within int64; finite floats; at most MAX_METADATA_DEPTH
#   nested levels; at most MAX_METADATA_BYTES of UTF-8 JSON per document.
# - filter values: strings under the same rule, int64 integers, finite floats, booleans, null
#   (null matches a field that is null or absent);
#   at most MAX_FILTER_FIELDS fields and MAX_FILTER_VALUES values per field.


def _bad_char(text: str, controls: re.Pattern[str]) -> str | None:
    """Why ``text`` cannot be stored (``None`` when it can)."""
    m = _SURROGATE.search(text)
    if m:
        return f"holds an unpaired surrogate (U+{ord(m.group()):04X}) at position {m.start()}; " \
               "text must be valid Unicode"
    m = controls.search(text)
    if m:
        return f"holds the control character U+{ord(m.group()):04X} at position {m.start()}"
    return None


def check_id(value: Any, *, where: str = "id", param: str = "ids") -> str:
    """``value`` as a valid id (see the rule above) or :class:`InputError`."""
    if not isinstance(value, str):
        raise InputError(f"{where} is {type(value).__name__}, not a string", param=param)
    if not value or not value.strip():
        raise InputError(f"{where} is empty: ids must be non-empty strings", param=param)
    if len(value) > MAX_ID_LENGTH:
        raise InputError(f"{where} is longer than {MAX_ID_LENGTH} characters", param=param)
    why = _bad_char(value, _ID_CONTROL)
    if why:
        raise InputError(f"{where} {why}; ids may not hold control characters", param=param)
    return value


def check_ids(ids: Any, *, param: str = "ids") -> list[str]:
    """Return ``ids`` as a list of unique, valid ids (see :func:`check_id`) or raise :class:`InputError`."""
    if isinstance(ids, str):
        ids = [ids]
    if not isinstance(ids, (list, tuple)) and not isinstance(ids, np.ndarray):
        raise InputError(f"{param} must be a list of strings, got {type(ids).__name__}", param=param)
    out: list[str] = []
    seen: set[str] = set()
    for i, value in enumerate(list(ids)):
        check_id(value, where=f"{param}[{i}]", param=param)
        if value in seen:
            raise InputError(f"{param} contains {value!r} twice", param=param)
        seen.add(value)
        out.append(value)
    return out


def check_field_name(key: Any, *, where: str, param: str = "metadata") -> str:
    """A metadata field name (the whole string matches :data:`FIELD_NAME`) or :class:`InputError`."""
    if not isinstance(key, str) or not FIELD_NAME.fullmatch(key):
        raise InputError(
            f"{where} has field {key!r}: field names are 1 to 128 letters, digits, '_' or '-', "
            "not starting with a digit or '-'", param=param)
    return key


def check_vectors(vectors: Any, dim: int, n: int | None = None, *, param: str = "vectors") -> np.ndarray:
    """Return a C-contiguous float32 ``(n, dim)`` array of finite values or raise :class:`InputError`."""
    try:
        arr = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{param} is not a numeric array: {exc}", param=param) from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InputError(f"{param} must be 2-D (rows of size {dim}), got shape {arr.shape}", param=param)
    if arr.shape[1] != dim:
        raise InputError(
            f"{param} have size {arr.shape[1]} but this store holds vectors of size {dim}", param=param
        )
    if n is not None and arr.shape[0] != n:
        raise InputError(f"{param} has {arr.shape[0]} rows for {n} ids", param=param)
    if not np.isfinite(arr).all():
        raise InputError(f"{param} contain NaN or infinite values", param=param)
    return np.ascontiguousarray(arr)


def check_texts(texts: Any, n: int) -> list[str | None]:
    """Texts aligned with ``n`` ids (``None`` allowed per row); valid Unicode (no unpaired surrogates)."""
    if texts is None:
        return [None] * n
    texts = list(texts)
    if len(texts) != n:
        raise InputError(f"texts has {len(texts)} entries for {n} ids", param="texts")
    for i, t in enumerate(texts):
        if t is None:
            continue
        if not isinstance(t, str):
            raise InputError(f"texts[{i}] is {type(t).__name__}, not a string", param="texts")
        m = _SURROGATE.search(t)
        if m:
            raise InputError(f"texts[{i}] holds an unpaired surrogate (U+{ord(m.group()):04X}) at position "
                             f"{m.start()}; text must be valid Unicode", param="texts")
    return texts


def check_metadata_value(value: Any, *, where: str, param: str = "metadata") -> None:
    """Check one metadata object (or any JSON value) against the value rule, without recursion."""
    stack: list[tuple[Any, str, int]] = [(value, where, 1 if isinstance(value, (dict, list, tuple)) else 0)]
    while stack:
        v, at, depth = stack.pop()
        if depth > MAX_METADATA_DEPTH:
            raise InputError(f"{where} is nested more than {MAX_METADATA_DEPTH} levels deep (at {at})",
                             param=param)
        if v is None or isinstance(v, bool):
            continue
        if isinstance(v, str):
            why = _bad_char(v, _VALUE_CONTROL)
            if why:
                raise InputError(f"{at} {why}; metadata strings may hold tab, line feed and carriage "
                                 "return but no other control character", param=param)
        elif isinstance(v, (int, np.integer)):
            if not INT64_MIN <= int(v) <= INT64_MAX:
                raise InputError(f"{at} is an integer outside the 64-bit range", param=param)
        elif isinstance(v, (float, np.floating)):
            if not math.isfinite(v):
                raise InputError(f"{at} is not a finite number", param=param)
        elif isinstance(v, Mapping):
            for key, item in v.items():
                if not isinstance(key, str):
                    raise InputError(f"{at} has a key of type {type(key).__name__}; keys are strings",
                                     param=param)
                why = _bad_char(key, _VALUE_CONTROL)
                if why:
                    raise InputError(f"{at} has a key that {why}", param=param)
                stack.append((item, f"{at}.{key}", depth + (1 if isinstance(item, (dict, list, tuple)) else 0)))
        elif isinstance(v, (list, tuple)):
            for i, item in enumerate(v):
                stack.append((item, f"{at}[{i}]", depth + (1 if isinstance(item, (dict, list, tuple)) else 0)))
        else:
            raise InputError(f"{at} is {type(v).__name__}, which JSON cannot hold", param=param)


def check_metadata(metadata: Any, n: int) -> list[dict[str, Any]]:
    """Metadata dicts aligned with ``n`` ids, checked against the value rule (see above)."""
    if metadata is None:
        return [{} for _ in range(n)]
    metadata = list(metadata)
    if len(metadata) != n:
        raise InputError(f"metadata has {len(metadata)} entries for {n} ids", param="metadata")
    out = []
    for i, m in enumerate(metadata):
        if m is None:
            out.append({})
            continue
        if not isinstance(m, Mapping):
            raise InputError(f"metadata[{i}] is {type(m).__name__}, not an object", param="metadata")
        for key in m:
            check_field_name(key, where=f"metadata[{i}]")
        check_metadata_value(m, where=f"metadata[{i}]")
        try:
            encoded = json.dumps(dict(m), allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise InputError(f"metadata[{i}] is not JSON-serialisable: {exc}", param="metadata") from None
        if len(encoded.encode("utf-8")) > MAX_METADATA_BYTES:
            raise InputError(f"metadata[{i}] is larger than {MAX_METADATA_BYTES} bytes as JSON",
                             param="metadata")
        out.append(json.loads(encoded))
    return out


def check_k(k: Any) -> int:
    """``k`` as a positive int (at most 16384, Milvus' limit) or :class:`InputError`."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}", param="k")
    if k > 16384:
        raise InputError(f"k must be at most 16384, got {k}", param="k")
    return int(k)


def check_filter(filter: Any, known_fields: set[str] | None = None) -> dict[str, list[Any]] | None:
    """Normalise a filter to ``{field: [allowed values]}``; ``None`` or ``{}`` means no filter.

    With ``known_fields`` a filter on a field no stored document has raises :class:`InputError`
    (a typo would otherwise silently return nothing).
    """
    if filter is None:
        return None
    if not isinstance(filter, Mapping):
        raise InputError(f"filter must be an object of field: value, got {type(filter).__name__}",
                         param="filter")
    if len(filter) > MAX_FILTER_FIELDS:
        raise InputError(f"filter has {len(filter)} fields, more than the limit of {MAX_FILTER_FIELDS}",
                         param="filter")
    out: dict[str, list[Any]] = {}
    for key, value in filter.items():
        if not isinstance(key, str) or not FIELD_NAME.fullmatch(key):
            raise InputError(f"filter field {key!r} is not a valid field name", param="filter")
        values = list(value) if isinstance(value, (list, tuple, set)) else [value]
        if not values:
            raise InputError(f"filter field {key!r} has an empty list of values", param="filter")
        if len(values) > MAX_FILTER_VALUES:
            raise InputError(f"filter field {key!r} has {len(values)} values, more than the limit of "
                             f"{MAX_FILTER_VALUES}", param="filter")
        for v in values:
            if v is not None and not isinstance(v, (str, int, float, bool, np.integer, np.floating)):
                raise InputError(
                    f"filter value for {key!r} must be a string, number, boolean or null, "
                    f"got {type(v).__name__}", param="filter")
            if isinstance(v, (float, np.floating)) and not math.isfinite(v):
                raise InputError(f"filter value for {key!r} is not finite", param="filter")
            if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and not INT64_MIN <= int(v) <= INT64_MAX:
                raise InputError(f"filter value for {key!r} is an integer outside the 64-bit range",
                                 param="filter")
            if isinstance(v, str):
                why = _bad_char(v, _VALUE_CONTROL)
                if why:
                    raise InputError(f"filter value for {key!r} {why}", param="filter")
        if known_fields is not None and key not in known_fields:
            have = ", ".join(sorted(known_fields)) or "none"
            raise InputError(
                f"filter on unknown metadata field {key!r}: no stored document has it "
                f"(fields in this index: {have})", param="filter")
        out[key] = [v.item() if isinstance(v, (np.integer, np.floating)) else v for v in values]
    return out or None


def metadata_matches(metadata: Mapping[str, Any], flt: Mapping[str, list[Any]] | None) -> bool:
    """Whether ``metadata`` satisfies a normalised filter (booleans never equal numbers)."""
    if not flt:
        return True
    for key, values in flt.items():
        have = metadata.get(key)
        if have is None:  # null or absent: only a null in the filter matches
            if not any(v is None for v in values):
                return False
            continue
        if not any(_same(have, v) for v in values):
            return False
    return True


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b
