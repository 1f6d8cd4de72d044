"""The embedded vector store: a FAISS index plus SQLite for ids, texts, metadata and the manifest.

On disk a store is a folder::

    my-index/
      CURRENT              name of the live generation, e.g. "gen-000007" (replaced atomically)
      gen-000007/
        vectors.faiss      the FAISS index (int64 ids)
        docs.sqlite        docs(iid, id, text, metadata JSON), meta(key, value JSON), fields, dead
      ...                  other files (the knowledge base's BM25 index) live beside them

While open, the index and the SQLite database live in memory; :meth:`FaissStore.save` writes a
complete new generation folder, flushes it to disk, and only then points ``CURRENT`` at it with
``os.replace``. A crash at any moment leaves ``CURRENT`` naming a complete generation.

Quantized stores (``quantize="int8"|"binary"``, :mod:`qembed.store.quantize`) keep int8 or
binary codes in the FAISS index (``IndexScalarQuantizer`` QT_8bit / ``IndexBinaryFlat``, searched
exhaustively over the codes) and the float32 vectors in ``floats.npy`` (+ ``floats.ids.npy``) of the
generation, memory-mapped: a search takes ``rescore × k`` candidates by the codes and orders them
by the float vectors read from that file. Rows added since the last save wait in a scratch file
beside the generations; ``save`` writes the live rows into the new generation like the rest.
A quantized store of ``index="auto"`` (the default) switches from exhaustive search over the codes
to an inverted file (``IndexBinaryIVF`` / ``IndexIVFScalarQuantizer``, ``kind="ivf"``) once it
holds ``ivf_threshold`` vectors: ``nlist`` ≈ √n lists trained on a sample of the stored float
rows, ``nprobe`` of them searched per query; the ids live in the lists (deletes remove them
there), and rescoring is unchanged. ``index="ivf"`` switches as soon as there are
``IVF_MIN_ROWS`` vectors to train on, ``index="flat"`` never. The lists are trained again when the
store has grown ``IVF_REGROW`` times since.

Index kinds: ``flat`` (exact inner product, ``IndexIDMap2(IndexFlatIP)``), ``hnsw``
(``IndexIDMap2(IndexHNSWFlat)``, approximate; deleted vectors are tombstoned and dropped when
the index is compacted), ``auto`` (flat until ``hnsw_threshold`` vectors, then HNSW).
String ids map to int64 FAISS ids that are never reused, so a re-inserted id gets a fresh one.

Writes are all or nothing: everything is validated first, then the SQLite rows change inside one
transaction that commits only once the FAISS index has changed too (and the FAISS change is undone
when it cannot be completed), so a failed write leaves the store exactly as it was.

One writer at a time: a store takes an exclusive lock on ``LOCK`` in the folder (``fcntl.flock``,
shared with other processes, released by the kernel when a process dies) at its first change and
holds it until that change is saved (or the store is closed). A second writer waits up to
``lock_timeout`` seconds, then gets :class:`IndexLockedError` with nothing written. On taking the
lock, and before every read, a store whose folder another process has saved since reloads it, so
no writer overwrites another's documents and readers see the latest saved state.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import shutil
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import faiss
import numpy as np

from qembed.errors import (  # noqa: F401  (CorruptIndexError, IndexLockedError, IndexExistsError: re-exported)
    CorruptIndexError,
    IndexExistsError,
    IndexLockedError,
    InputError,
    NotFoundError,
    QembedError,
)
from qembed.store import quantize as qz
from qembed.store.base import (
    Filter,
    Hit,
    Record,
    check_filter,
    check_ids,
    check_k,
    check_metadata,
    check_texts,
    check_vectors,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CURRENT = "CURRENT"
INDEX_FILE = "vectors.faiss"
DB_FILE = "docs.sqlite"
LOCK_FILE = "LOCK"
#: Seconds a writer waits for another process' writer lock before giving up.
DEFAULT_LOCK_TIMEOUT = 30.0
KINDS = ("auto", "flat", "hnsw")
#: Index kinds of a quantized store (codes searched exhaustively, or through an inverted file).
QUANTIZED_KINDS = ("auto", "flat", "ivf")
#: A quantized ``auto`` store switches to an inverted file from this many vectors on
#: (docs/benchmarks.md, "Quantized vectors": binary codes of 1 M synthetic 1,024-dim vectors
#: searched through the inverted file about 4x faster than exhaustively, recall@10 0.85 against 0.91).
DEFAULT_IVF_THRESHOLD = 1_000_000
#: Share of the inverted lists searched per query unless ``nprobe`` is set: recall@10 at 1 M
#: binary codes (894 lists, rescore 10) was 0.44 with 32 lists, 0.73 with 128, 0.85 with 256,
#: at about the same latency (rescoring and the rest of a search cost as much as the lists).
DEFAULT_NPROBE_SHARE = 0.25
#: Fewest vectors an inverted file is trained on (``index="ivf"`` stays flat until then).
IVF_MIN_ROWS = 1_000
#: Train the inverted lists again when the store has grown this many times since they were trained.
IVF_REGROW = 4
#: Training vectors per inverted list (faiss' k-means uses at most 256 per centroid).
IVF_TRAIN_PER_LIST = 64
#: Filtered HNSW searches over at most this many candidates are done exactly.
EXACT_FILTER_LIMIT = 50_000
#: int8 ranges are calibrated again until they were set on this many vectors (see _requantize).
CALIBRATION_ROWS = 100_000
_SQL_CHUNK = 900  # SQLite's default limit on bound parameters is 999

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    iid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    text TEXT,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fields (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead (iid INTEGER PRIMARY KEY);
"""


def is_faiss_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like a qembed FAISS store folder (has a ``CURRENT`` file)."""
    return (Path(path) / CURRENT).is_file()


def is_empty_folder(path: Path) -> bool:
    """A folder holding nothing (but perhaps the lock file a writer left)."""
    return path.is_dir() and all(item.name == LOCK_FILE for item in path.iterdir())


class FaissStore:
    """A :class:`~qembed.store.base.VectorStore` over FAISS + SQLite, in memory or in a folder.

    Use :meth:`create` for a new store, :meth:`open` for an existing folder, or
    :func:`qembed.store.open_store` which picks one. All methods are thread-safe.
    """

    backend = "faiss"

    def __init__(self, *, path: Path | None, conn: sqlite3.Connection, index: faiss.Index,
                 meta: dict[str, Any], generation: int, ef_search: int | None = None,
                 stamp: tuple | None = None, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                 floats: qz.FloatRows | None = None, rescore: int | None = None,
                 nprobe: int | None = None) -> None:
        self._path = path
        self._rescore = rescore
        self._nprobe = nprobe
        self._lock = threading.RLock()  # guards the in-memory state (readers and writers)
        self._write_mutex = threading.RLock()  # one writer of this process at a time
        self._lock_file: Any = None  # the open LOCK file while this store holds the writer lock
        self._writers = 0  # depth of write_lock() blocks
        self._lock_timeout = float(lock_timeout)
        self._ef_search = ef_search
        self._dirty = False
        self._closed = False
        self._floats: qz.FloatRows | None = None
        self._install(conn, index, meta, generation, stamp, floats)

    def _install(self, conn: sqlite3.Connection, index: faiss.Index, meta: dict[str, Any], generation: int,
                 stamp: tuple | None, floats: qz.FloatRows | None = None) -> None:
        if self._floats is not None and self._floats is not floats:
            self._floats.close()
        self._floats = floats
        if meta.get("quantize") and floats is None:
            self._floats = qz.FloatRows(int(meta["dim"]), None, self._path)
        if self._rescore is not None:
            meta["rescore"] = int(self._rescore)
        if self._nprobe is not None:
            meta["nprobe"] = int(self._nprobe)
        self._conn = conn
        self._index = index
        self._meta = meta
        self._generation = generation
        self._stamp = stamp
        self._dead: set[int] = {r[0] for r in conn.execute("SELECT iid FROM dead")}
        self._fields: dict[str, int] = dict(conn.execute("SELECT name, n FROM fields").fetchall())
        if self._ef_search is not None:
            self._meta["ef_search"] = int(self._ef_search)
        self._apply_ef()

    # ------------------------------------------------------------------ construction

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str] | None,
        dim: int,
        *,
        index: str = "auto",
        metric: str = "ip",
        hnsw_m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 256,
        hnsw_threshold: int = 200_000,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        quantize: str | None = None,
        rescore: int | None = None,
        ivf_threshold: int = DEFAULT_IVF_THRESHOLD,
        nprobe: int | None = None,
    ) -> "FaissStore":
        """A new, empty store of ``dim``-sized vectors (in memory when ``path`` is None).

        ``index``: ``auto`` | ``flat`` | ``hnsw``. Only inner product (``metric="ip"``) is
        supported: qembed's vectors are unit length, so it is the cosine similarity.
        ``lock_timeout``: seconds to wait for another writer of the folder.
        ``quantize``: ``int8`` | ``binary`` keeps codes in the index and float32 vectors on disk
        for rescoring the ``rescore × k`` best candidates (default per type:
        :data:`qembed.store.quantize.DEFAULT_RESCORE`). A quantized store's ``index`` is ``auto``
        (exhaustive over the codes until ``ivf_threshold`` vectors, then an inverted file searching
        ``nprobe`` lists per query, default a quarter of them), ``flat`` or ``ivf``.
        """
        quantize = qz.check_quantize(quantize)
        if rescore is not None:
            rescore = qz.check_rescore(rescore)
        if quantize and index == "hnsw":
            raise InputError(f"a {quantize} index searches its codes exhaustively or through an inverted file: "
                             "--kind hnsw does not apply (use auto, flat or ivf, or a float index)", param="index")
        if not quantize and index == "ivf":
            raise InputError("--kind ivf applies to a quantized index (--quantize int8 or binary); a float "
                             "index is auto, flat or hnsw", param="index")
        ivf_threshold = _check_count(ivf_threshold, "ivf_threshold", IVF_MIN_ROWS)
        nprobe = _check_nprobe(nprobe) if nprobe is not None else None
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise InputError(f"dim must be a positive integer, got {dim!r}", param="dim")
        if index not in KINDS + QUANTIZED_KINDS:
            raise InputError(f"index kind must be one of {', '.join(KINDS)}, got {index!r}", param="index")
        if metric != "ip":
            raise InputError(f"metric must be 'ip' (inner product on unit vectors), got {metric!r}")
        p = Path(path) if path is not None else None
        if p is not None and p.exists() and not is_empty_folder(p):
            raise IndexExistsError(f"{p} exists and is not an empty folder; open it instead of creating it")
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        conn.executescript(_SCHEMA)
        meta = {
            "format": FORMAT_VERSION, "dim": int(dim), "metric": metric, "index": index,
            "kind": "hnsw" if index == "hnsw" else "flat", "next_iid": 0,
            "hnsw_m": int(hnsw_m), "ef_construction": int(ef_construction),
            "ef_search": int(ef_search), "hnsw_threshold": int(hnsw_threshold),
        }
        if quantize:
            meta.update(index=index, kind="flat", quantize=quantize,
                        rescore=rescore or qz.DEFAULT_RESCORE[quantize], calibrated_on=0,
                        ivf_threshold=ivf_threshold, nprobe=nprobe)
        store = cls(path=p, conn=conn, index=_new_index(meta), meta=meta, generation=0,
                    lock_timeout=lock_timeout)
        if p is None:
            return store
        p.mkdir(parents=True, exist_ok=True)
        with store._write_mutex:
            store._acquire()
            try:
                if not is_empty_folder(p):  # another process created it meanwhile
                    raise IndexExistsError(f"{p} exists and is not an empty folder; open it instead "
                                           "of creating it")
                store._dirty = True
                store.save()
            except BaseException:
                store.close()
                raise
        return store

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, ef_search: int | None = None,
             lock_timeout: float = DEFAULT_LOCK_TIMEOUT, rescore: int | None = None,
             nprobe: int | None = None) -> "FaissStore":
        """Open an existing store folder; :class:`NotFoundError` if absent, :class:`CorruptIndexError` if damaged.

        ``rescore`` (and ``nprobe``, the inverted lists searched per query) override a quantized
        store's settings for this session (and are saved with its next change).
        """
        p = Path(path)
        if not p.exists():
            raise NotFoundError(f"index not found: {p} does not exist")
        if not p.is_dir():
            raise InputError(f"{p} is not an index folder")
        if rescore is not None:
            rescore = qz.check_rescore(rescore)
        if nprobe is not None:
            nprobe = _check_nprobe(nprobe)
        conn, index, meta, generation, stamp, floats = _read_generation(p)
        for name, value in (("rescore", rescore), ("nprobe", nprobe)):
            if value is not None and not meta.get("quantize"):
                floats and floats.close()
                raise InputError(f"{name} applies to a quantized index; {p} holds float32 vectors", param=name)
        return cls(path=p, conn=conn, index=index, meta=meta, generation=generation, ef_search=ef_search,
                   stamp=stamp, lock_timeout=lock_timeout, floats=floats, rescore=rescore, nprobe=nprobe)

    # ------------------------------------------------------------------ properties

    @property
    def dim(self) -> int:
        return int(self._meta["dim"])

    @property
    def location(self) -> str | None:
        return str(self._path) if self._path is not None else None

    @property
    def kind(self) -> str:
        """The live FAISS index kind: ``flat``, ``hnsw`` or (quantized) ``ivf``."""
        return str(self._meta["kind"])

    @property
    def quantize(self) -> str | None:
        """``int8`` or ``binary`` for a quantized store, ``None`` for float32."""
        return self._meta.get("quantize")

    @property
    def rescore(self) -> int | None:
        """Candidates per wanted hit rescored with float vectors (quantized stores; else ``None``)."""
        return int(self._meta["rescore"]) if self._meta.get("quantize") else None

    @property
    def faiss_index(self) -> faiss.Index:
        """The underlying FAISS index (int64 ids); for inspection and benchmarks, not mutation."""
        return self._index

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self._reading():
            return self._meta.get(f"user.{key}", default)

    def set_meta(self, key: str, value: Any) -> None:
        value = json.loads(json.dumps(value))
        with self.write_lock():
            self._meta[f"user.{key}"] = value
            self._dirty = True

    def fields(self) -> dict[str, int]:
        """Metadata field names with the number of documents that have each."""
        with self._reading():
            return {k: v for k, v in self._fields.items() if v > 0}

    def info(self) -> dict[str, Any]:
        with self._reading():
            return {
                "backend": self.backend, "location": self.location, "dim": self.dim,
                "metric": self._meta["metric"], "index": self._meta["index"], "kind": self.kind,
                "count": self.count(), "deleted_pending": len(self._dead),
                "generation": self._generation, "fields": self.fields(),
                "manifest": {k[5:]: v for k, v in self._meta.items() if k.startswith("user.")},
                **({"quantize": self.quantize, "rescore": self.rescore} if self.quantize else {}),
                **({"nlist": int(self._meta["nlist"]), "nprobe": self._nprobe_now()}
                   if self.kind == "ivf" else {}),
            }

    # ------------------------------------------------------------------ verbs

    def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        delete: Sequence[str] = (),
    ) -> int:
        ids = check_ids(ids)
        new = set(ids)
        gone = [d for d in check_ids(list(delete), param="delete") if d not in new] if len(delete) else []
        if not ids:
            if gone:
                self.delete(gone)
            return 0
        vecs = check_vectors(vectors, self.dim, len(ids))
        texts_ = check_texts(texts, len(ids))
        metas = check_metadata(metadata, len(ids))
        rows_meta = [json.dumps(m, ensure_ascii=False) for m in metas]
        with self.write_lock():
            old = self._lookup(ids + gone)
            start = int(self._meta["next_iid"])
            iids = np.arange(start, start + len(ids), dtype=np.int64)
            self._meta["next_iid"] = start + len(ids)  # never reused, even by a failed write
            rows = [(int(i), d, t, m) for i, d, t, m in zip(iids, ids, texts_, rows_meta)]
            self._write(list(old), [row[0] for row in old.values()], rows, vecs, iids)
            for _, meta_json in old.values():
                self._count_fields(json.loads(meta_json), -1)
            for m in metas:
                self._count_fields(m, +1)
            self._dirty = True
            if self.quantize and self._ivf_due():
                self._requantize("ivf")
            elif self.quantize == "int8" and self.kind == "flat" \
                    and self._index.ntotal >= 2 * int(self._meta["calibrated_on"]) \
                    and int(self._meta["calibrated_on"]) < CALIBRATION_ROWS:
                self._requantize()
            if (self._meta["index"] == "auto" and self.kind == "flat"
                    and self._index.ntotal >= self._meta["hnsw_threshold"]):
                logger.info("%d vectors: switching the index from exact to HNSW", self._index.ntotal)
                self._rebuild("hnsw")
        return len(ids)

    def delete(self, ids: Sequence[str]) -> int:
        ids = check_ids(ids)
        if not ids:
            return 0
        with self.write_lock():
            old = self._lookup(ids)
            if not old:
                return 0
            self._write(list(old), [row[0] for row in old.values()], [], None, None)
            for _, meta_json in old.values():
                self._count_fields(json.loads(meta_json), -1)
            self._dirty = True
            return len(old)

    def search(self, query_vectors: np.ndarray, k: int = 10, filter: Filter | None = None) -> list[list[Hit]]:
        k = check_k(k)
        queries = check_vectors(query_vectors, self.dim, param="query_vectors")
        with self._reading():
            flt = check_filter(filter, set(self.fields())) if filter else None
            if flt is None:
                allowed = None
                n_allowed = self._index.ntotal - len(self._dead)
            else:
                allowed = self._filter_iids(flt)
                n_allowed = len(allowed)
            if n_allowed == 0:
                return [[] for _ in range(len(queries))]
            want = min(k, n_allowed)
            if self.quantize:
                scores, iids = self._search_quantized(queries, want, n_allowed, allowed)
            else:
                scores, iids = self._search_iids(queries, want, allowed)
            return self._to_hits(scores, iids)

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record | None]:
        ids = check_ids(ids)
        with self._reading():
            rows: dict[str, tuple[int, str | None, str]] = {}
            for chunk in _chunks(ids):
                q = f"SELECT id, iid, text, metadata FROM docs WHERE id IN ({','.join('?' * len(chunk))})"
                for d, iid, text, meta_json in self._conn.execute(q, chunk):
                    rows[d] = (iid, text, meta_json)
            out: list[Record | None] = []
            for d in ids:
                if d not in rows:
                    out.append(None)
                    continue
                iid, text, meta_json = rows[d]
                vec = None
                if with_vectors:
                    vec = self._floats.get([iid])[0] if self._floats is not None else self._index.reconstruct(int(iid))
                out.append(Record(id=d, text=text, metadata=json.loads(meta_json), vector=vec))
            return out

    def count(self) -> int:
        with self._reading():
            return int(self._conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0])

    def ids(self, filter: Filter | None = None) -> list[str]:
        with self._reading():
            flt = check_filter(filter, set(self.fields()))
            if flt is None:
                return [r[0] for r in self._conn.execute("SELECT id FROM docs ORDER BY iid")]
            where, params = _where(flt)
            return [r[0] for r in self._conn.execute(f"SELECT id FROM docs WHERE {where} ORDER BY iid", params)]

    def scan(self, batch_size: int = 1000) -> Iterator[list[Record]]:
        last = -1
        while True:
            with self._reading():
                rows = self._conn.execute(
                    "SELECT iid, id, text, metadata FROM docs WHERE iid > ? ORDER BY iid LIMIT ?",
                    (last, batch_size)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [Record(id=d, text=t, metadata=json.loads(m)) for _, d, t, m in rows]

    def compact(self) -> None:
        """Drop tombstoned vectors by rebuilding the index (HNSW cannot remove in place)."""
        with self.write_lock():
            if self._dead:
                self._rebuild(self.kind)

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold the folder's writer lock (and this store's) for a read-modify-write sequence.

        Re-entrant. Waits up to ``lock_timeout`` seconds for another process' writer, then raises
        :class:`IndexLockedError`. Inside, the store shows the latest saved state of the folder.
        The lock is kept after the block while changes are unsaved, and released by :meth:`save`
        (or :meth:`close`).
        """
        with self._write_mutex:
            self._check_open()
            self._acquire()
            self._writers += 1
            try:
                with self._lock:
                    self._check_open()
                    self._refresh()
                    yield
            finally:
                self._writers -= 1
                with self._lock:
                    self._release_if_clean()

    @property
    def has_unsaved_changes(self) -> bool:
        """Whether the store holds changes :meth:`save` has not written yet."""
        return self._dirty

    def discard(self) -> None:
        """Drop unsaved changes by reloading the folder's saved generation (in memory: no-op)."""
        with self._lock:
            self._check_open()
            if self._path is None or not self._dirty:
                return
            conn, index, meta, generation, stamp, floats = _read_generation(self._path)
            old = self._conn
            self._install(conn, index, meta, generation, stamp, floats)
            old.close()
            self._dirty = False
            self._release_if_clean()

    def refresh(self) -> bool:
        """Reload the folder if another process saved it since; returns whether it did."""
        with self._lock:
            self._check_open()
            return self._refresh()

    def save(self) -> None:
        """Write a new generation and switch ``CURRENT`` to it atomically (no-op in memory)."""
        with self._lock:
            self._check_open()
            if self._path is None or not self._dirty:
                return
            if self._dead and len(self._dead) > 0.1 * max(self._index.ntotal, 1):
                self._rebuild(self.kind)
            self._flush_tables()
            gen = self._generation + 1
            name = f"gen-{gen:06d}"
            partial = self._path / f"{name}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            written = [partial / INDEX_FILE, partial / DB_FILE]
            if self.quantize == "binary":
                faiss.write_index_binary(self._index, str(partial / INDEX_FILE))
            else:
                faiss.write_index(self._index, str(partial / INDEX_FILE))
            if self._floats is not None:
                written += self._floats.write(partial)
            disk = sqlite3.connect(str(partial / DB_FILE))
            try:
                self._conn.backup(disk)
            finally:
                disk.close()
            for f in written:
                _fsync(f)
            final = self._path / name
            shutil.rmtree(final, ignore_errors=True)
            os.replace(partial, final)
            _atomic_write(self._path / CURRENT, name)
            self._stamp = _stamp(self._path)
            if self._floats is not None:  # the saved rows, memory-mapped from the new generation
                self._floats.close()
                self._floats = qz.FloatRows(self.dim, final, self._path)
                qz.remove_stale_scratch(self._path)
            previous = self._generation
            self._generation = gen
            self._dirty = False
            for item in self._path.iterdir():
                if item.name.startswith("gen-") and item.name != name and item.is_dir():
                    if item.name.endswith(".partial") or _gen_number(item.name) <= previous:
                        shutil.rmtree(item, ignore_errors=True)
            logger.debug("saved %s generation %d (%d vectors)", self._path, gen, self._index.ntotal)
            self._release_if_clean()

    def close(self) -> None:
        """Release the store (unsaved changes are dropped) and its writer lock."""
        with self._lock:
            if not self._closed:
                self._conn.close()
                if self._floats is not None:
                    self._floats.close()
                self._closed = True
                self._unlock()

    def __enter__(self) -> "FaissStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        return self.count()

    def __repr__(self) -> str:
        return f"FaissStore(location={self.location!r}, dim={self.dim}, kind={self.kind!r})"

    # ------------------------------------------------------------------ writer lock and freshness

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        with self._lock:
            self._check_open()
            self._refresh()
            yield

    def _refresh(self) -> bool:
        """Reload from disk when another process saved a newer generation (never over unsaved changes)."""
        if self._path is None or self._dirty:
            return False
        if _stamp(self._path) == self._stamp:
            return False
        conn, index, meta, generation, stamp, floats = _read_generation(self._path)
        old = self._conn
        self._install(conn, index, meta, generation, stamp, floats)
        old.close()
        logger.info("index %s: loaded generation %d, saved by another process", self._path, generation)
        return True

    def _acquire(self) -> None:
        """Take the folder's writer lock (no-op in memory or when held already)."""
        if self._path is None or self._lock_file is not None:
            return
        handle = open(self._path / LOCK_FILE, "a+b")
        deadline = time.monotonic() + self._lock_timeout
        waiting = False
        try:
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not waiting:
                        waiting = True
                        logger.info("index %s is being written by %s; waiting up to %.0f s for its lock",
                                    self._path, _holder(handle), self._lock_timeout)
                    if time.monotonic() >= deadline:
                        raise IndexLockedError(
                            f"index {self._path} is being written by another process ({_holder(handle)}); "
                            f"waited {self._lock_timeout:g} s for its lock; nothing was written, retry "
                            "when it is done") from None
                    time.sleep(0.05)
        except BaseException:
            handle.close()
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}".encode("utf-8", "replace"))
        handle.flush()
        self._lock_file = handle

    def _release_if_clean(self) -> None:
        if self._writers == 0 and not self._dirty:
            self._unlock()

    def _unlock(self) -> None:
        handle, self._lock_file = self._lock_file, None
        if handle is not None:
            try:
                handle.seek(0)
                handle.truncate()
                handle.flush()
            finally:
                handle.close()  # closing the file releases the flock

    def _write(self, remove_ids: list[str], remove_iids: list[int], rows: list[tuple],
               vectors: np.ndarray | None, iids: np.ndarray | None) -> None:
        """Change SQLite and FAISS together: one transaction, committed only after FAISS changed."""
        with self._conn:  # rolls back if anything below raises
            if remove_ids:
                for chunk in _chunks(remove_ids):
                    self._conn.execute(f"DELETE FROM docs WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            if rows:
                self._conn.executemany("INSERT INTO docs (iid, id, text, metadata) VALUES (?, ?, ?, ?)", rows)
            self._change_vectors(remove_iids, vectors, iids)

    def _change_vectors(self, remove_iids: list[int], vectors: np.ndarray | None, iids: np.ndarray | None) -> None:
        """Remove ``remove_iids`` and add ``vectors`` as ``iids``, all or nothing."""
        old = np.asarray(remove_iids, dtype=np.int64)
        if self._floats is not None:
            self._change_quantized(old, vectors, iids)
            return
        if self.kind == "flat":
            saved = self._index.reconstruct_batch(old) if len(old) else None
            if len(old):
                self._index.remove_ids(old)
            if iids is None or not len(iids):
                return
            try:
                self._index.add_with_ids(vectors, iids)
            except BaseException:
                self._index.remove_ids(iids)  # whatever part of them went in
                if saved is not None:
                    self._index.add_with_ids(saved, old)
                raise
            return
        newly_dead = [int(i) for i in old if int(i) not in self._dead]
        self._dead.update(newly_dead)
        if iids is None or not len(iids):
            return
        before = self._index.ntotal
        try:
            self._index.add_with_ids(vectors, iids)
        except BaseException:
            self._dead.difference_update(newly_dead)
            # an HNSW graph cannot drop vectors: tombstone any that went in
            self._dead.update(int(i) for i in iids[: self._index.ntotal - before])
            raise

    # ------------------------------------------------------------------ quantized stores

    def _codes(self, vectors: np.ndarray) -> np.ndarray:
        """What the FAISS index takes: packed bits (binary) or the float rows (the SQ encodes them)."""
        if self.quantize == "binary":
            return qz.binary_codes(vectors)
        return vectors

    def _change_quantized(self, old: np.ndarray, vectors: np.ndarray | None, iids: np.ndarray | None) -> None:
        """Remove ``old`` and add ``vectors`` as ``iids`` in the codes and the float rows, all or nothing."""
        floats = self._floats
        assert floats is not None
        saved = floats.get(old) if len(old) else None
        token = floats.remove(old)
        if len(old):
            self._index.remove_ids(old)
        if iids is None or not len(iids):
            return
        try:
            if self.quantize == "int8" and not self._index.is_trained:
                self._index.train(vectors)  # the first rows calibrate the ranges (see _requantize)
                self._meta["calibrated_on"] = len(vectors)
            self._index.add_with_ids(self._codes(vectors), iids)
            floats.add(iids, vectors)
        except BaseException:
            self._index.remove_ids(iids)  # whatever part of them went in
            floats.drop_pending(iids)
            floats.restore(token)
            if saved is not None:
                self._index.add_with_ids(self._codes(saved), old)
            raise

    def _ivf_due(self) -> bool:
        """Whether the codes should move to (or be retrained as) an inverted file now."""
        n = self._index.ntotal
        if self._meta.get("index") not in ("auto", "ivf") or n < IVF_MIN_ROWS:
            return False
        if self.kind == "ivf":
            return n >= IVF_REGROW * int(self._meta["ivf_trained_at"])
        return n >= (IVF_MIN_ROWS if self._meta["index"] == "ivf" else int(self._meta["ivf_threshold"]))

    def _requantize(self, kind: str | None = None) -> None:
        """Train the codes again on a sample of the stored float rows and re-encode every row.

        int8: the ranges, on up to CALIBRATION_ROWS vectors, run whenever the store has doubled
        since the last calibration (until that reached CALIBRATION_ROWS), so ranges set by a small
        first batch do not clip later vectors. ``kind="ivf"``: an inverted file of ``nlist`` ≈ √n
        lists, trained on :data:`IVF_TRAIN_PER_LIST` vectors per list (and the int8 ranges with it).
        """
        floats = self._floats
        assert floats is not None
        meta = dict(self._meta)
        n = len(floats)
        if kind == "ivf" or self.kind == "ivf":
            nlist = max(16, min(65536, int(round(n ** 0.5)), n // 39))  # faiss wants 39 points a list
            meta.update(kind="ivf", nlist=nlist, ivf_trained_at=n)
            sample = floats.sample(IVF_TRAIN_PER_LIST * nlist)
        else:
            sample = floats.sample(CALIBRATION_ROWS)
        index = _new_index(meta)
        index.train(self._codes(sample))
        for ids, rows in floats.iter_live():
            index.add_with_ids(self._codes(rows), ids)
        self._index = index
        meta["calibrated_on"] = len(sample)
        self._meta = meta
        if meta["kind"] == "ivf":
            logger.info("%d vectors: %s codes in an inverted file of %d lists, trained on %d vectors",
                        n, self.quantize, meta["nlist"], len(sample))
        else:
            logger.info("int8 ranges calibrated again on %d vectors", len(sample))

    def _search_quantized(self, queries: np.ndarray, k: int, n_allowed: int,
                          allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The ``rescore × k`` best by the codes, ordered by the float32 vectors; top ``k`` of them."""
        assert self._floats is not None
        cand = min(n_allowed, k * int(self._meta["rescore"]))
        if self.kind == "ivf":
            iids = self._search_ivf(self._codes(queries), cand, allowed)
        else:
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed)) if allowed is not None else None
            _, iids = self._index.search(self._codes(queries), cand, params=params)
        out_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_i = np.full((len(queries), k), -1, dtype=np.int64)
        flat = iids[iids >= 0]
        if not len(flat):
            return out_s, out_i
        uniq, inverse = np.unique(flat, return_inverse=True)
        vecs = self._floats.get(uniq)
        at = 0
        for q in range(len(queries)):
            row = iids[q]
            n = int((row >= 0).sum())
            cand_i = row[row >= 0]
            sims = vecs[inverse[at:at + n]] @ queries[q]
            at += n
            top = np.argsort(-sims, kind="stable")[:k]
            out_s[q, :len(top)] = sims[top]
            out_i[q, :len(top)] = cand_i[top]
        return out_s, out_i

    def _search_ivf(self, codes: np.ndarray, cand: int, allowed: np.ndarray | None) -> np.ndarray:
        """``cand`` candidate ids per query from the inverted file (``cand`` <= allowed rows).

        ``nprobe`` lists are searched; a query they give fewer than ``cand`` candidates (few rows
        in its lists, or a filter) is searched again over every list, which is exact over the codes.
        FAISS' binary IVF takes no id selector: a filtered binary search scans the codes of the
        allowed rows, read out of the lists.
        """
        index = self._index
        nlist = int(index.nlist)
        if allowed is not None and self.quantize == "binary":
            return self._exact_binary(codes, cand, allowed)
        sel = faiss.IDSelectorBatch(allowed) if allowed is not None else None
        nprobe = self._nprobe_now()
        _, iids = index.search(codes, cand, params=faiss.SearchParametersIVF(nprobe=nprobe, sel=sel))
        short = np.where((iids >= 0).sum(axis=1) < cand)[0]
        if len(short) and nprobe < nlist:
            _, again = index.search(codes[short], cand, params=faiss.SearchParametersIVF(nprobe=nlist, sel=sel))
            iids[short] = again
        return iids

    def _nprobe_now(self) -> int:
        """Lists an IVF search reads: ``nprobe`` when set, else :data:`DEFAULT_NPROBE_SHARE` of them."""
        nlist = int(self._meta["nlist"])
        if self._meta.get("nprobe"):
            return min(int(self._meta["nprobe"]), nlist)
        return max(1, int(round(nlist * DEFAULT_NPROBE_SHARE)))

    def _exact_binary(self, codes: np.ndarray, cand: int, allowed: np.ndarray) -> np.ndarray:
        """The ``cand`` nearest allowed rows by Hamming distance, over codes read out of the lists."""
        invlists = self._index.invlists
        width = int(invlists.code_size)
        ids_parts, code_parts = [], []
        for lst in range(int(self._index.nlist)):
            size = int(invlists.list_size(lst))
            if not size:
                continue
            ids = faiss.rev_swig_ptr(invlists.get_ids(lst), size).copy()
            keep = np.isin(ids, allowed)
            if keep.any():
                rows = faiss.rev_swig_ptr(invlists.get_codes(lst), size * width).reshape(size, width)
                ids_parts.append(ids[keep])
                code_parts.append(rows[keep].copy())
        if not ids_parts:
            return np.full((len(codes), cand), -1, dtype=np.int64)
        subset = faiss.IndexBinaryFlat(int(self._index.d))
        subset.add(np.concatenate(code_parts))
        _, pos = subset.search(codes, cand)
        ids = np.concatenate(ids_parts)
        return np.where(pos >= 0, ids[np.maximum(pos, 0)], -1)

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise InputError("this store is closed")

    def _apply_ef(self) -> None:
        if self._meta.get("quantize"):
            return
        inner = faiss.downcast_index(self._index.index) if hasattr(self._index, "index") else None
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = int(self._meta["ef_search"])

    def _lookup(self, ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        out: dict[str, tuple[int, str]] = {}
        for chunk in _chunks(list(ids)):
            q = f"SELECT id, iid, metadata FROM docs WHERE id IN ({','.join('?' * len(chunk))})"
            for d, iid, meta_json in self._conn.execute(q, chunk):
                out[d] = (int(iid), meta_json)
        return out

    def _count_fields(self, metadata: Mapping[str, Any], sign: int) -> None:
        for key in metadata:
            self._fields[key] = self._fields.get(key, 0) + sign

    def _filter_iids(self, flt: Mapping[str, list[Any]]) -> np.ndarray:
        where, params = _where(flt)
        rows = self._conn.execute(f"SELECT iid FROM docs WHERE {where}", params).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def _search_iids(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search that never returns fewer than ``k`` hits (``k`` <= live candidates)."""
        if self.kind == "flat":
            params = None
            if allowed is not None:
                params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
            return self._index.search(queries, k, params=params)
        if allowed is not None and len(allowed) <= EXACT_FILTER_LIMIT:
            return self._exact_subset(queries, k, allowed)
        ef = max(int(self._meta["ef_search"]), k)
        sel = None
        if allowed is not None:
            sel = faiss.IDSelectorBatch(allowed)
        elif self._dead:
            sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.fromiter(self._dead, dtype=np.int64)))
        params = faiss.SearchParametersHNSW(efSearch=ef, sel=sel) if sel is not None else (
            faiss.SearchParametersHNSW(efSearch=ef) if ef != self._meta["ef_search"] else None)
        scores, iids = self._index.search(queries, k, params=params)
        short = np.where((iids < 0).any(axis=1))[0]
        if len(short):  # the graph walk found fewer than k: answer those queries exactly
            candidates = allowed if allowed is not None else self._live_iids()
            s2, i2 = self._exact_subset(queries[short], k, candidates)
            scores[short], iids[short] = s2, i2
        return scores, iids

    def _live_iids(self) -> np.ndarray:
        rows = self._conn.execute("SELECT iid FROM docs").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def _exact_subset(self, queries: np.ndarray, k: int, iids: np.ndarray, chunk: int = 65536
                      ) -> tuple[np.ndarray, np.ndarray]:
        best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        best_i = np.full((len(queries), k), -1, dtype=np.int64)
        for start in range(0, len(iids), chunk):
            part = iids[start:start + chunk]
            vecs = self._index.reconstruct_batch(part)
            sims = queries @ vecs.T
            s = np.concatenate([best_s, sims], axis=1)
            i = np.concatenate([best_i, np.broadcast_to(part, sims.shape)], axis=1)
            top = np.argpartition(-s, k - 1, axis=1)[:, :k]
            best_s = np.take_along_axis(s, top, axis=1)
            best_i = np.take_along_axis(i, top, axis=1)
        order = np.argsort(-best_s, axis=1, kind="stable")
        return np.take_along_axis(best_s, order, axis=1), np.take_along_axis(best_i, order, axis=1)

    def _to_hits(self, scores: np.ndarray, iids: np.ndarray) -> list[list[Hit]]:
        score_rows, iid_rows = scores.tolist(), iids.tolist()  # Python numbers: no numpy scalars per hit
        wanted = list({i for row in iid_rows for i in row if i >= 0})
        rows: dict[int, tuple[str, str | None, str]] = {}
        for chunk in _chunks(wanted):
            for iid, d, text, meta_json in self._conn.execute(_select_by_iid(len(chunk)), chunk):
                rows[iid] = (d, text, meta_json)
        loads = json.loads
        out: list[list[Hit]] = []
        for srow, irow in zip(score_rows, iid_rows):
            hits = []
            for s, i in zip(srow, irow):
                row = rows.get(i)
                if row is not None:
                    hits.append(Hit(row[0], s, row[1], {} if row[2] == "{}" else loads(row[2])))
            out.append(hits)
        return out

    def _rebuild(self, kind: str) -> None:
        live = self._live_iids()
        meta = dict(self._meta, kind=kind)
        index = _new_index(meta)
        for start in range(0, len(live), 65536):
            part = live[start:start + 65536]
            index.add_with_ids(self._index.reconstruct_batch(part), part)
        self._index = index
        self._meta = meta
        self._dead.clear()
        self._apply_ef()
        self._dirty = True

    def _flush_tables(self) -> None:
        with self._conn:
            self._conn.execute("DELETE FROM meta")
            self._conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                                   [(k, json.dumps(v)) for k, v in self._meta.items()])
            self._conn.execute("DELETE FROM fields")
            self._conn.executemany("INSERT INTO fields (name, n) VALUES (?, ?)",
                                   [(k, v) for k, v in self._fields.items() if v > 0])
            self._conn.execute("DELETE FROM dead")
            self._conn.executemany("INSERT INTO dead (iid) VALUES (?)", [(int(i),) for i in self._dead])


def _stamp(path: Path) -> tuple | None:
    """Identity of the folder's ``CURRENT`` file; every save replaces it (a new inode)."""
    try:
        st = os.stat(path / CURRENT)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _read_generation(p: Path, attempts: int = 3) -> tuple[sqlite3.Connection, faiss.Index, dict[str, Any], int,
                                                         tuple | None, qz.FloatRows | None]:
    """Load the live generation of folder ``p``: (SQLite in memory, FAISS index, manifest, number, stamp,
    float rows of a quantized store).

    A writer in another process may switch ``CURRENT`` and remove the generation being read;
    then the read is retried on the new one.
    """
    for attempt in range(attempts):
        stamp = _stamp(p)
        try:
            conn, index, meta, generation, floats = _load_generation(p)
            return conn, index, meta, generation, stamp, floats
        except CorruptIndexError:
            if attempt + 1 == attempts or _stamp(p) == stamp:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _load_generation(p: Path) -> tuple[sqlite3.Connection, faiss.Index, dict[str, Any], int, qz.FloatRows | None]:
    current = p / CURRENT
    if not current.is_file():
        raise CorruptIndexError(
            f"{p} is not a qembed index (no {CURRENT} file); it is corrupt or another kind of folder")
    name = current.read_text(encoding="utf-8").strip()
    gen_dir = p / name
    if not name.startswith("gen-") or not gen_dir.is_dir():
        raise CorruptIndexError(f"index {p} is corrupt: {CURRENT} names {name!r}, which is missing")
    try:
        generation = int(name[4:])
        disk = sqlite3.connect(f"file:{gen_dir / DB_FILE}?mode=ro", uri=True)
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        try:
            disk.backup(conn)
        finally:
            disk.close()
        meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
        if meta.get("quantize") == "binary":
            index = faiss.read_index_binary(str(gen_dir / INDEX_FILE))
        else:
            index = faiss.read_index(str(gen_dir / INDEX_FILE))
        floats = qz.FloatRows(int(meta["dim"]), gen_dir, p) if meta.get("quantize") else None
    except (sqlite3.Error, RuntimeError, ValueError, OSError, KeyError) as exc:
        raise CorruptIndexError(f"index {p} is corrupt: cannot read {name}: {exc}") from None
    if meta.get("format") != FORMAT_VERSION or "dim" not in meta:
        raise CorruptIndexError(f"index {p} is corrupt or from another version (manifest {meta})")
    n_docs = conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
    n_dead = conn.execute("SELECT COUNT(*) FROM dead").fetchone()[0]
    index_dim = qz.code_bits(meta["dim"]) if meta.get("quantize") == "binary" else meta["dim"]
    if index.d != index_dim or index.ntotal != n_docs + n_dead or (floats is not None and len(floats) != n_docs):
        raise CorruptIndexError(
            f"index {p} is corrupt: {index.ntotal} vectors of size {index.d} for {n_docs} documents "
            f"of size {meta['dim']}")
    return conn, index, meta, generation, floats


def _holder(handle: Any) -> str:
    """Who holds the writer lock, as its holder wrote it into the lock file."""
    try:
        handle.seek(0)
        text = handle.read(300).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "another process"


def _new_index(meta: Mapping[str, Any]) -> faiss.Index:
    dim = int(meta["dim"])
    ivf = meta.get("kind") == "ivf"
    if meta.get("quantize") == "binary":
        bits = qz.code_bits(dim)
        if ivf:  # the ids live in the inverted lists (no id map needed; remove_ids scans them)
            return faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, int(meta["nlist"]))
        return faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(bits))
    if meta.get("quantize") == "int8":
        if ivf:
            return faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, int(meta["nlist"]),
                                                 faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        return faiss.IndexIDMap2(faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit,
                                                            faiss.METRIC_INNER_PRODUCT))
    if meta["kind"] == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, int(meta["hnsw_m"]), faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = int(meta["ef_construction"])
        inner.hnsw.efSearch = int(meta["ef_search"])
    else:
        inner = faiss.IndexFlatIP(dim)
    return faiss.IndexIDMap2(inner)


def _check_count(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InputError(f"{name} must be an integer of at least {low}, got {value!r}", param=name)
    return int(value)


def _check_nprobe(value: Any) -> int:
    """Inverted lists searched per query: an integer from 1 (more than a store has means all of them)."""
    return _check_count(value, "nprobe", 1)


@functools.lru_cache(maxsize=64)
def _select_by_iid(n: int) -> str:
    return f"SELECT iid, id, text, metadata FROM docs WHERE iid IN ({','.join('?' * n)})"


def _where(flt: Mapping[str, list[Any]]) -> tuple[str, list[Any]]:
    """SQL over the JSON metadata column: typed equality, so True never matches 1 and "1" never 1.

    The values of one field travel as one JSON array parameter (``json_each``), so a field may list
    many values without deepening the SQL expression.
    """
    clauses: list[str] = []
    params: list[Any] = []
    for key, values in flt.items():
        path = f'$."{key}"'
        ors = []
        strings = [v for v in values if isinstance(v, str)]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if any(v is None for v in values):  # null: the field is null or absent (as Milvus' "is null")
            ors.append("json_type(metadata, ?) IS NULL OR json_type(metadata, ?) = 'null'")
            params += [path, path]
        for flag in {v for v in values if isinstance(v, bool)}:
            ors.append("json_type(metadata, ?) = ?")
            params += [path, "true" if flag else "false"]
        if strings:
            ors.append("(json_type(metadata, ?) = 'text' AND "
                       "json_extract(metadata, ?) IN (SELECT value FROM json_each(?)))")
            params += [path, path, json.dumps(strings, ensure_ascii=False)]
        if numbers:
            ors.append("(json_type(metadata, ?) IN ('integer', 'real') AND "
                       "json_extract(metadata, ?) IN (SELECT value FROM json_each(?)))")
            params += [path, path, json.dumps(numbers)]
        clauses.append("(" + " OR ".join(ors) + ")")
    return " AND ".join(clauses), params


def _chunks(items: list[Any], size: int = _SQL_CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _gen_number(name: str) -> int:
    try:
        return int(name[4:].split(".")[0])
    except ValueError:
        return -1


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, content: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - directories cannot be fsynced on some platforms
        pass
