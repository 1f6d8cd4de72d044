"""Quantized vectors: codes for the index, float32 rows on disk for rescoring, and wire formats.

Two quantized index types (``quantize=``), following sentence-transformers'
``quantize_embeddings`` / ``semantic_search_faiss`` semantics:

- ``binary``: one bit per dimension, ``1`` where the value is positive, packed 8 to a byte
  (``np.packbits``, sentence-transformers' ``ubinary``; dimensions that are not a multiple of 8
  are padded with zero bits). Searched by Hamming distance. 32x smaller than float32.
- ``int8``: 8 bits per dimension over per-dimension ranges calibrated on the stored vectors
  (FAISS ``ScalarQuantizer`` ``QT_8bit``, inner product). 4x smaller than float32.

A quantized search takes the ``rescore × k`` best candidates by the codes and orders them by the
inner product of the float query with the float32 vectors, which :class:`FloatRows` keeps in a
file opened with ``np.load(mmap_mode="r")``: on disk, paged in only for the candidates read.
``rescore`` is sentence-transformers' ``rescore_multiplier``; the defaults in
:data:`DEFAULT_RESCORE` come from ``benchmarks/quantized_search.py`` (docs/benchmarks.md,
"Quantized vectors").

Wire formats (``embedding_types`` of ``/v1/embeddings``, Cohere's names): :func:`as_type`.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from qembed.errors import InputError

#: Index quantizations a store takes.
QUANTIZE = ("int8", "binary")
#: Candidates per wanted hit read from the quantized index and rescored with float32 vectors.
#: Measured (docs/benchmarks.md, "Quantized vectors"): with these factors all-MiniLM-L6-v2 keeps
#: 1.000x (int8) and 0.998x (binary) of its float nDCG@10 on a 6,000-document retrieval set, and
#: binary codes of 1 M synthetic 1,024-dim vectors find 0.91 of the exact top 10 (0.97 at 20).
DEFAULT_RESCORE = {"int8": 4, "binary": 10}
#: Largest accepted rescore factor.
MAX_RESCORE = 100
#: Vector types ``/v1/embeddings`` and ``qembed embed`` can return (Cohere's ``embedding_types``).
EMBEDDING_TYPES = ("float", "int8", "uint8", "binary", "ubinary")

FLOATS_FILE = "floats.npy"
FLOAT_IDS_FILE = "floats.ids.npy"
_CHUNK = 65536


def _random_access(rows: np.ndarray) -> np.ndarray:
    """Tell the kernel that a memory-mapped file is read at random (``MADV_RANDOM``).

    A search reads a few scattered rows; with the default read-ahead every row read faults in the
    pages around it too (measured at 1 M rows: 1.9 GB of file pages after 1,200 searches instead
    of the ~0.1 GB of rows asked for), which costs I/O and evicts other pages.
    """
    handle = getattr(rows, "_mmap", None)
    if handle is not None and hasattr(handle, "madvise") and hasattr(mmap, "MADV_RANDOM"):
        try:
            handle.madvise(mmap.MADV_RANDOM)
        except (OSError, ValueError):  # pragma: no cover - advice only
            pass
    return rows


def check_quantize(value: Any) -> str | None:
    """``None`` (float32 index), ``"int8"`` or ``"binary"``, or :class:`InputError`."""
    if value in (None, "", "none", "float", "float32"):
        return None
    if value not in QUANTIZE:
        raise InputError(f"quantize must be one of {', '.join(QUANTIZE)} (or none), got {value!r}",
                         param="quantize")
    return str(value)


def check_rescore(value: Any) -> int:
    """A rescore factor: an integer from 1 to :data:`MAX_RESCORE`, or :class:`InputError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= MAX_RESCORE:
        raise InputError(f"rescore must be an integer from 1 to {MAX_RESCORE}, got {value!r}", param="rescore")
    return int(value)


def code_bits(dim: int) -> int:
    """Bits of a binary code for ``dim`` dimensions (padded up to whole bytes)."""
    return (int(dim) + 7) // 8 * 8


def binary_codes(vectors: np.ndarray) -> np.ndarray:
    """``(n, ceil(dim / 8))`` uint8 codes: bit set where the value is > 0 (sentence-transformers' ``ubinary``)."""
    return np.packbits(np.asarray(vectors) > 0, axis=-1)


def check_embedding_types(types: Any, *, param: str = "embedding_types") -> list[str]:
    """A non-empty list of distinct names from :data:`EMBEDDING_TYPES`, or :class:`InputError`."""
    if isinstance(types, str):
        types = [t.strip() for t in types.split(",") if t.strip()]
    if not isinstance(types, (list, tuple)) or not types:
        raise InputError(f"{param} must be a non-empty list of: {', '.join(EMBEDDING_TYPES)}", param=param)
    out: list[str] = []
    for t in types:
        if t not in EMBEDDING_TYPES:
            raise InputError(f"{param} has {t!r}; the types are {', '.join(EMBEDDING_TYPES)}", param=param)
        if t in out:
            raise InputError(f"{param} lists {t!r} twice", param=param)
        out.append(t)
    return out


def as_type(vectors: np.ndarray, kind: str) -> np.ndarray:
    """Float32 rows ``(n, dim)`` in the wire type ``kind`` (one of :data:`EMBEDDING_TYPES`).

    - ``float``: unchanged.
    - ``binary`` / ``ubinary``: sentence-transformers' packing, ``ceil(dim / 8)`` bytes per row,
      bit set where the value is positive; ``ubinary`` as unsigned bytes 0..255, ``binary`` the
      same bytes minus 128 (signed -128..127), as sentence-transformers and Cohere give them.
    - ``int8``: each row scaled so its largest magnitude is 127 and rounded (-127..127): no
      calibration set needed and the same text always gives the same codes; the cosine of two
      int8 rows approximates the cosine of their float rows (the scale is per row, so compare by
      cosine, not raw dot product).
    - ``uint8``: the ``int8`` codes plus 128 (1..255).
    """
    x = np.asarray(vectors, dtype=np.float32)
    if kind == "float":
        return x
    if kind == "ubinary":
        return binary_codes(x)
    if kind == "binary":
        return (binary_codes(x).astype(np.int16) - 128).astype(np.int8)
    if kind in ("int8", "uint8"):
        peak = np.abs(x).max(axis=-1, keepdims=True)
        peak[peak == 0] = 1.0
        q = np.rint(x * (127.0 / peak)).astype(np.int16)
        return q.astype(np.int8) if kind == "int8" else (q + 128).astype(np.uint8)
    raise InputError(f"unknown embedding type {kind!r}; the types are {', '.join(EMBEDDING_TYPES)}")


def typed_embeddings(vectors: np.ndarray, types: Sequence[str], encoding_format: str = "float") -> list[Any]:
    """Per row, what ``/v1/embeddings`` returns as ``embedding`` for ``embedding_types=types``.

    One type: that type's vector (a list of numbers, as Infinity returns its ``embedding_dtype``),
    so OpenAI clients read it as usual. Several: ``{type: vector}`` (Cohere's embeddings by type).
    ``encoding_format="base64"``: each vector as base64 of its bytes (float32 little-endian, or
    one byte per int8/uint8 value, or the packed bits of binary/ubinary).
    """
    import base64

    per_type = {t: as_type(vectors, t) for t in types}
    if encoding_format == "base64":
        cols = {t: [base64.b64encode(np.ascontiguousarray(r, dtype="<f4" if t == "float" else None).tobytes())
                    .decode("ascii") for r in arr] for t, arr in per_type.items()}
    else:
        cols = {t: arr.tolist() for t, arr in per_type.items()}
    if len(types) == 1:
        return cols[types[0]]
    return [{t: cols[t][i] for t in types} for i in range(len(vectors))]


class FloatRows:
    """Float32 vectors by int64 id, kept on disk for rescoring.

    Two segments, each with a sorted id array (in memory, 8 bytes a row) and a live mask: the
    saved one (``floats.npy`` of a store generation, memory-mapped read-only) and the pending one
    (rows added since, appended to a scratch file beside the generations, or held in memory for an
    in-memory store). Ids are added in increasing order (the FAISS store never reuses one), so
    lookups are binary searches. :meth:`write` streams the live rows of both into a new
    generation folder, chunk by chunk; the folder is then switched in with a rename (the store's
    ``save``), so a failed write never touches the saved file.
    """

    def __init__(self, dim: int, folder: Path | None = None, scratch_dir: Path | None = None) -> None:
        self.dim = int(dim)
        self._scratch_dir = scratch_dir
        self._base: np.ndarray = np.zeros((0, self.dim), dtype=np.float32)
        self._base_ids = np.zeros(0, dtype=np.int64)
        if folder is not None and (folder / FLOATS_FILE).is_file():
            self._base = _random_access(np.load(folder / FLOATS_FILE, mmap_mode="r"))
            self._base_ids = np.load(folder / FLOAT_IDS_FILE)
            if self._base.shape != (len(self._base_ids), self.dim) or self._base.dtype != np.float32:
                raise ValueError(f"{FLOATS_FILE} holds {self._base.shape} {self._base.dtype} for "
                                 f"{len(self._base_ids)} ids of size {self.dim}")
        self._base_live = np.ones(len(self._base_ids), dtype=bool)
        self._new_ids = np.zeros(0, dtype=np.int64)
        self._new_live = np.zeros(0, dtype=bool)
        self._new_parts: list[np.ndarray] = []  # in-memory pending rows (no scratch dir)
        self._scratch: Path | None = None
        self._scratch_map: np.ndarray | None = None

    # ------------------------------------------------------------------ changes

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Append rows; ``ids`` must be increasing and above every id held."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        top = max(self._base_ids[-1] if len(self._base_ids) else -1, self._new_ids[-1] if len(self._new_ids) else -1)
        if ids[0] <= top or (len(ids) > 1 and (np.diff(ids) <= 0).any()):
            raise ValueError("float rows must be added with increasing new ids")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self._scratch_dir is None:
            self._new_parts.append(vectors.copy())
        else:
            if self._scratch is None:
                self._scratch = self._scratch_dir / f".floats-pending-{os.getpid()}-{id(self):x}"
                self._scratch.write_bytes(b"")
            with open(self._scratch, "ab") as f:
                f.write(vectors.tobytes())
            self._scratch_map = None
        self._new_ids = np.concatenate([self._new_ids, ids])
        self._new_live = np.concatenate([self._new_live, np.ones(len(ids), dtype=bool)])

    def remove(self, ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mark rows removed; returns a token for :meth:`restore` (unknown ids are ignored)."""
        ids = np.asarray(ids, dtype=np.int64)
        b = self._positions(self._base_ids, self._base_live, ids)
        n = self._positions(self._new_ids, self._new_live, ids)
        self._base_live[b] = False
        self._new_live[n] = False
        return b, n

    def restore(self, token: tuple[np.ndarray, np.ndarray]) -> None:
        """Undo a :meth:`remove`."""
        b, n = token
        self._base_live[b] = True
        self._new_live[n] = True

    def drop_pending(self, ids: np.ndarray) -> None:
        """Forget rows :meth:`add` appended (a failed write)."""
        n = self._positions(self._new_ids, self._new_live, np.asarray(ids, dtype=np.int64))
        self._new_live[n] = False

    # ------------------------------------------------------------------ reads

    def __len__(self) -> int:
        return int(self._base_live.sum() + self._new_live.sum())

    def get(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """``(len(ids), dim)`` float32 rows; :class:`KeyError` for an id not held."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        found = np.zeros(len(ids), dtype=bool)
        for seg_ids, live, rows in ((self._base_ids, self._base_live, self._base),
                                    (self._new_ids, self._new_live, None)):
            if not len(seg_ids):
                continue
            pos = np.searchsorted(seg_ids, ids)
            pos_c = np.minimum(pos, len(seg_ids) - 1)
            hit = (seg_ids[pos_c] == ids) & live[pos_c] & ~found
            if hit.any():
                where = np.nonzero(hit)[0]
                src = rows if rows is not None else self._pending()
                order = np.argsort(pos_c[where])  # read the file in order
                out[where[order]] = src[pos_c[where][order]]
                found |= hit
        if not found.all():
            raise KeyError(f"no float vector for id {int(ids[~found][0])}")
        return out

    def live_ids(self) -> np.ndarray:
        return np.concatenate([self._base_ids[self._base_live], self._new_ids[self._new_live]])

    def iter_live(self, chunk: int = _CHUNK):
        """``(ids, rows)`` of every live row, in id order, ``chunk`` rows at a time."""
        for seg_ids, live, rows in ((self._base_ids, self._base_live, self._base),
                                    (self._new_ids, self._new_live, None)):
            if not len(seg_ids):
                continue
            src = rows if rows is not None else self._pending()
            for start in range(0, len(seg_ids), chunk):
                mask = live[start:start + chunk]
                if mask.any():
                    part = np.asarray(src[start:start + chunk])
                    yield seg_ids[start:start + chunk][mask], part[mask] if not mask.all() else part

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """Up to ``n`` live rows, spread evenly (for calibration)."""
        ids = self.live_ids()
        if len(ids) > n:
            ids = ids[np.linspace(0, len(ids) - 1, n).astype(np.int64)]
        return self.get(ids)

    def _pending(self) -> np.ndarray:
        if self._scratch_dir is None:
            if len(self._new_parts) > 1:
                self._new_parts = [np.concatenate(self._new_parts)]
            return self._new_parts[0] if self._new_parts else np.zeros((0, self.dim), dtype=np.float32)
        if self._scratch_map is None:
            self._scratch_map = _random_access(np.memmap(self._scratch, dtype=np.float32, mode="r",
                                                         shape=(len(self._new_ids), self.dim)))
        return self._scratch_map

    @staticmethod
    def _positions(seg_ids: np.ndarray, live: np.ndarray, ids: np.ndarray) -> np.ndarray:
        if not len(seg_ids) or not len(ids):
            return np.zeros(0, dtype=np.int64)
        pos = np.minimum(np.searchsorted(seg_ids, ids), len(seg_ids) - 1)
        return pos[(seg_ids[pos] == ids) & live[pos]]

    # ------------------------------------------------------------------ persistence

    def write(self, folder: Path) -> list[Path]:
        """Write the live rows as ``floats.npy`` + ``floats.ids.npy`` into ``folder``; returns the files."""
        n = len(self)
        ids_out = np.empty(n, dtype=np.int64)
        target = np.lib.format.open_memmap(folder / FLOATS_FILE, mode="w+", dtype=np.float32, shape=(n, self.dim))
        at = 0
        for ids, rows in self.iter_live():
            target[at:at + len(ids)] = rows
            ids_out[at:at + len(ids)] = ids
            at += len(ids)
        target.flush()
        del target
        np.save(folder / FLOAT_IDS_FILE, ids_out)
        return [folder / FLOATS_FILE, folder / FLOAT_IDS_FILE]

    def close(self) -> None:
        """Remove the scratch file of pending rows (they are lost unless :meth:`write` ran)."""
        self._scratch_map = None
        self._base = np.zeros((0, self.dim), dtype=np.float32)
        if self._scratch is not None:
            try:
                self._scratch.unlink()
            except OSError:
                pass
            self._scratch = None


def remove_stale_scratch(folder: Path) -> None:
    """Delete scratch files of pending float rows left by processes that no longer run."""
    for item in folder.glob(".floats-pending-*"):
        try:
            pid = int(item.name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            item.unlink(missing_ok=True)
        except PermissionError:
            pass
