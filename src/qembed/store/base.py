"""The :class:`VectorStore` interface every backend implements, and the helpers they share.

A vector store keeps, per string id, one float32 vector, an optional text and an optional JSON
metadata object, and answers nearest-neighbour queries by inner product (cosine on the unit
vectors an :class:`~qembed.models.encoder.Encoder` produces). Backends: ``faiss`` (embedded,
a folder on disk; :mod:`qembed.store.faiss_store`) and ``milvus`` (Milvus Lite file or server;
:mod:`qembed.store.milvus_store`). They share the verbs below and one conformance test suite.

Filters are a mapping ``{field: value}`` over the metadata: every field must equal its value;
a list value means "any of these". Filters apply before the top-k is cut, so a filtered search
returns ``min(k, number of matching documents)`` hits.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from qembed.errors import InputError

#: Longest accepted document id, in characters (Milvus VARCHAR primary key limit we configure).
MAX_ID_LENGTH = 512
#: Metadata field names must be plain identifiers (they become JSON paths / Milvus expressions).
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,127}$")

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
    ) -> int:
        """Insert or replace documents by id; returns how many were written."""
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

    def close(self) -> None:
        """Release resources (does not save)."""
        ...


# --------------------------------------------------------------------------- validation helpers


def check_ids(ids: Any, *, param: str = "ids") -> list[str]:
    """Return ``ids`` as a list of unique, non-empty strings or raise :class:`InputError`."""
    if isinstance(ids, str):
        ids = [ids]
    if not isinstance(ids, (list, tuple)) and not isinstance(ids, np.ndarray):
        raise InputError(f"{param} must be a list of strings, got {type(ids).__name__}", param=param)
    out: list[str] = []
    seen: set[str] = set()
    for i, value in enumerate(list(ids)):
        if not isinstance(value, str):
            raise InputError(f"{param}[{i}] is {type(value).__name__}, not a string", param=param)
        if not value or not value.strip():
            raise InputError(f"{param}[{i}] is empty: ids must be non-empty strings", param=param)
        if len(value) > MAX_ID_LENGTH:
            raise InputError(f"{param}[{i}] is longer than {MAX_ID_LENGTH} characters", param=param)
        if value in seen:
            raise InputError(f"{param} contains {value!r} twice", param=param)
        seen.add(value)
        out.append(value)
    return out


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
    """Texts aligned with ``n`` ids (``None`` allowed per row)."""
    if texts is None:
        return [None] * n
    texts = list(texts)
    if len(texts) != n:
        raise InputError(f"texts has {len(texts)} entries for {n} ids", param="texts")
    for i, t in enumerate(texts):
        if t is not None and not isinstance(t, str):
            raise InputError(f"texts[{i}] is {type(t).__name__}, not a string", param="texts")
    return texts


def check_metadata(metadata: Any, n: int) -> list[dict[str, Any]]:
    """Metadata dicts aligned with ``n`` ids; keys must be identifiers, values JSON-serialisable."""
    import json

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
            if not isinstance(key, str) or not FIELD_NAME.match(key):
                raise InputError(
                    f"metadata[{i}] has field {key!r}: field names must be identifiers "
                    "(letters, digits, '_' or '-', not starting with a digit)",
                    param="metadata",
                )
        try:
            out.append(json.loads(json.dumps(dict(m), allow_nan=False)))
        except (TypeError, ValueError) as exc:
            raise InputError(f"metadata[{i}] is not JSON-serialisable: {exc}", param="metadata") from None
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
    out: dict[str, list[Any]] = {}
    for key, value in filter.items():
        if not isinstance(key, str) or not FIELD_NAME.match(key):
            raise InputError(f"filter field {key!r} is not a valid field name", param="filter")
        values = list(value) if isinstance(value, (list, tuple, set)) else [value]
        if not values:
            raise InputError(f"filter field {key!r} has an empty list of values", param="filter")
        for v in values:
            if v is not None and not isinstance(v, (str, int, float, bool)):
                raise InputError(
                    f"filter value for {key!r} must be a string, number, boolean or null, "
                    f"got {type(v).__name__}", param="filter")
            if isinstance(v, float) and not math.isfinite(v):
                raise InputError(f"filter value for {key!r} is not finite", param="filter")
        if known_fields is not None and key not in known_fields:
            have = ", ".join(sorted(known_fields)) or "none"
            raise InputError(
                f"filter on unknown metadata field {key!r}: no stored document has it "
                f"(fields in this index: {have})", param="filter")
        out[key] = values
    return out or None


def metadata_matches(metadata: Mapping[str, Any], flt: Mapping[str, list[Any]] | None) -> bool:
    """Whether ``metadata`` satisfies a normalised filter (booleans never equal numbers)."""
    if not flt:
        return True
    for key, values in flt.items():
        if key not in metadata:
            return False
        have = metadata[key]
        if not any(_same(have, v) for v in values):
            return False
    return True


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b
