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

Index kinds: ``flat`` (exact inner product, ``IndexIDMap2(IndexFlatIP)``), ``hnsw``
(``IndexIDMap2(IndexHNSWFlat)``, approximate; deleted vectors are tombstoned and dropped when
the index is compacted), ``auto`` (flat until ``hnsw_threshold`` vectors, then HNSW).
String ids map to int64 FAISS ids that are never reused, so a re-inserted id gets a fresh one.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import faiss
import numpy as np

from qembed.errors import InputError, NotFoundError
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
KINDS = ("auto", "flat", "hnsw")
#: Filtered HNSW searches over at most this many candidates are done exactly.
EXACT_FILTER_LIMIT = 50_000
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


class CorruptIndexError(InputError):
    """An index folder exists but cannot be read (missing or damaged files)."""

    status_code = 500
    error_type = "server_error"


def is_faiss_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like a qembed FAISS store folder (has a ``CURRENT`` file)."""
    return (Path(path) / CURRENT).is_file()


class FaissStore:
    """A :class:`~qembed.store.base.VectorStore` over FAISS + SQLite, in memory or in a folder.

    Use :meth:`create` for a new store, :meth:`open` for an existing folder, or
    :func:`qembed.store.open_store` which picks one. All methods are thread-safe.
    """

    backend = "faiss"

    def __init__(self, *, path: Path | None, conn: sqlite3.Connection, index: faiss.Index,
                 meta: dict[str, Any], generation: int, ef_search: int | None = None) -> None:
        self._path = path
        self._conn = conn
        self._index = index
        self._meta = meta
        self._generation = generation
        self._lock = threading.RLock()
        self._dirty = False
        self._closed = False
        self._dead: set[int] = {r[0] for r in conn.execute("SELECT iid FROM dead")}
        self._fields: dict[str, int] = dict(conn.execute("SELECT name, n FROM fields").fetchall())
        if ef_search is not None:
            self._meta["ef_search"] = int(ef_search)
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
    ) -> "FaissStore":
        """A new, empty store of ``dim``-sized vectors (in memory when ``path`` is None).

        ``index``: ``auto`` | ``flat`` | ``hnsw``. Only inner product (``metric="ip"``) is
        supported: qembed's vectors are unit length, so it is the cosine similarity.
        """
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise InputError(f"dim must be a positive integer, got {dim!r}", param="dim")
        if index not in KINDS:
            raise InputError(f"index kind must be one of {', '.join(KINDS)}, got {index!r}", param="index")
        if metric != "ip":
            raise InputError(f"metric must be 'ip' (inner product on unit vectors), got {metric!r}")
        p = Path(path) if path is not None else None
        if p is not None and p.exists() and (not p.is_dir() or any(p.iterdir())):
            raise InputError(f"{p} exists and is not an empty folder; open it instead of creating it")
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        conn.executescript(_SCHEMA)
        meta = {
            "format": FORMAT_VERSION, "dim": int(dim), "metric": metric, "index": index,
            "kind": "hnsw" if index == "hnsw" else "flat", "next_iid": 0,
            "hnsw_m": int(hnsw_m), "ef_construction": int(ef_construction),
            "ef_search": int(ef_search), "hnsw_threshold": int(hnsw_threshold),
        }
        store = cls(path=p, conn=conn, index=_new_index(meta), meta=meta, generation=0)
        store._dirty = True
        if p is not None:
            p.mkdir(parents=True, exist_ok=True)
            store.save()
        return store

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, ef_search: int | None = None) -> "FaissStore":
        """Open an existing store folder; :class:`NotFoundError` if absent, :class:`CorruptIndexError` if damaged."""
        p = Path(path)
        if not p.exists():
            raise NotFoundError(f"index not found: {p} does not exist")
        if not p.is_dir():
            raise InputError(f"{p} is not an index folder")
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
            index = faiss.read_index(str(gen_dir / INDEX_FILE))
        except (sqlite3.Error, RuntimeError, ValueError, OSError) as exc:
            raise CorruptIndexError(f"index {p} is corrupt: cannot read {name}: {exc}") from None
        if meta.get("format") != FORMAT_VERSION or "dim" not in meta:
            raise CorruptIndexError(f"index {p} is corrupt or from another version (manifest {meta})")
        n_docs = conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
        n_dead = conn.execute("SELECT COUNT(*) FROM dead").fetchone()[0]
        if index.d != meta["dim"] or index.ntotal != n_docs + n_dead:
            raise CorruptIndexError(
                f"index {p} is corrupt: {index.ntotal} vectors of size {index.d} for {n_docs} documents "
                f"of size {meta['dim']}")
        return cls(path=p, conn=conn, index=index, meta=meta, generation=generation, ef_search=ef_search)

    # ------------------------------------------------------------------ properties

    @property
    def dim(self) -> int:
        return int(self._meta["dim"])

    @property
    def location(self) -> str | None:
        return str(self._path) if self._path is not None else None

    @property
    def kind(self) -> str:
        """The live FAISS index kind: ``flat`` or ``hnsw``."""
        return str(self._meta["kind"])

    @property
    def faiss_index(self) -> faiss.Index:
        """The underlying FAISS index (int64 ids); for inspection and benchmarks, not mutation."""
        return self._index

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self._meta.get(f"user.{key}", default)

    def set_meta(self, key: str, value: Any) -> None:
        with self._lock:
            self._meta[f"user.{key}"] = json.loads(json.dumps(value))
            self._dirty = True

    def fields(self) -> dict[str, int]:
        """Metadata field names with the number of documents that have each."""
        with self._lock:
            return {k: v for k, v in self._fields.items() if v > 0}

    def info(self) -> dict[str, Any]:
        with self._lock:
            return {
                "backend": self.backend, "location": self.location, "dim": self.dim,
                "metric": self._meta["metric"], "index": self._meta["index"], "kind": self.kind,
                "count": self.count(), "deleted_pending": len(self._dead),
                "generation": self._generation, "fields": self.fields(),
                "manifest": {k[5:]: v for k, v in self._meta.items() if k.startswith("user.")},
            }

    # ------------------------------------------------------------------ verbs

    def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> int:
        ids = check_ids(ids)
        if not ids:
            return 0
        vecs = check_vectors(vectors, self.dim, len(ids))
        texts_ = check_texts(texts, len(ids))
        metas = check_metadata(metadata, len(ids))
        with self._lock:
            self._check_open()
            old = self._lookup(ids)
            self._remove_iids([row[0] for row in old.values()])
            for _, meta_json in old.values():
                self._count_fields(json.loads(meta_json), -1)
            start = int(self._meta["next_iid"])
            iids = np.arange(start, start + len(ids), dtype=np.int64)
            self._index.add_with_ids(vecs, iids)
            self._meta["next_iid"] = start + len(ids)
            with self._conn:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO docs (iid, id, text, metadata) VALUES (?, ?, ?, ?)",
                    [(int(i), d, t, json.dumps(m, ensure_ascii=False))
                     for i, d, t, m in zip(iids, ids, texts_, metas)],
                )
            for m in metas:
                self._count_fields(m, +1)
            self._dirty = True
            if (self._meta["index"] == "auto" and self.kind == "flat"
                    and self._index.ntotal >= self._meta["hnsw_threshold"]):
                logger.info("%d vectors: switching the index from exact to HNSW", self._index.ntotal)
                self._rebuild("hnsw")
        return len(ids)

    def delete(self, ids: Sequence[str]) -> int:
        ids = check_ids(ids)
        with self._lock:
            self._check_open()
            old = self._lookup(ids)
            if not old:
                return 0
            self._remove_iids([row[0] for row in old.values()])
            with self._conn:
                self._conn.executemany("DELETE FROM docs WHERE id = ?", [(d,) for d in old])
            for _, meta_json in old.values():
                self._count_fields(json.loads(meta_json), -1)
            self._dirty = True
            return len(old)

    def search(self, query_vectors: np.ndarray, k: int = 10, filter: Filter | None = None) -> list[list[Hit]]:
        k = check_k(k)
        queries = check_vectors(query_vectors, self.dim, param="query_vectors")
        with self._lock:
            self._check_open()
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
            scores, iids = self._search_iids(queries, want, allowed)
            return self._to_hits(scores, iids)

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record | None]:
        ids = check_ids(ids)
        with self._lock:
            self._check_open()
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
                vec = self._index.reconstruct(int(iid)) if with_vectors else None
                out.append(Record(id=d, text=text, metadata=json.loads(meta_json), vector=vec))
            return out

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0])

    def ids(self, filter: Filter | None = None) -> list[str]:
        with self._lock:
            flt = check_filter(filter, set(self.fields()))
            if flt is None:
                return [r[0] for r in self._conn.execute("SELECT id FROM docs ORDER BY iid")]
            where, params = _where(flt)
            return [r[0] for r in self._conn.execute(f"SELECT id FROM docs WHERE {where} ORDER BY iid", params)]

    def scan(self, batch_size: int = 1000) -> Iterator[list[Record]]:
        last = -1
        while True:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT iid, id, text, metadata FROM docs WHERE iid > ? ORDER BY iid LIMIT ?",
                    (last, batch_size)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [Record(id=d, text=t, metadata=json.loads(m)) for _, d, t, m in rows]

    def compact(self) -> None:
        """Drop tombstoned vectors by rebuilding the index (HNSW cannot remove in place)."""
        with self._lock:
            if self._dead:
                self._rebuild(self.kind)

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
            faiss.write_index(self._index, str(partial / INDEX_FILE))
            disk = sqlite3.connect(str(partial / DB_FILE))
            try:
                self._conn.backup(disk)
            finally:
                disk.close()
            for f in (INDEX_FILE, DB_FILE):
                _fsync(partial / f)
            final = self._path / name
            shutil.rmtree(final, ignore_errors=True)
            os.replace(partial, final)
            _atomic_write(self._path / CURRENT, name)
            previous = self._generation
            self._generation = gen
            self._dirty = False
            for item in self._path.iterdir():
                if item.name.startswith("gen-") and item.name != name and item.is_dir():
                    if item.name.endswith(".partial") or _gen_number(item.name) <= previous:
                        shutil.rmtree(item, ignore_errors=True)
            logger.debug("saved %s generation %d (%d vectors)", self._path, gen, self._index.ntotal)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._conn.close()
                self._closed = True

    def __enter__(self) -> "FaissStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        return self.count()

    def __repr__(self) -> str:
        return f"FaissStore(location={self.location!r}, dim={self.dim}, kind={self.kind!r})"

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise InputError("this store is closed")

    def _apply_ef(self) -> None:
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

    def _remove_iids(self, iids: list[int]) -> None:
        if not iids:
            return
        if self.kind == "flat":
            self._index.remove_ids(np.asarray(iids, dtype=np.int64))
        else:
            self._dead.update(iids)

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


def _new_index(meta: Mapping[str, Any]) -> faiss.Index:
    dim = int(meta["dim"])
    if meta["kind"] == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, int(meta["hnsw_m"]), faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = int(meta["ef_construction"])
        inner.hnsw.efSearch = int(meta["ef_search"])
    else:
        inner = faiss.IndexFlatIP(dim)
    return faiss.IndexIDMap2(inner)


@functools.lru_cache(maxsize=64)
def _select_by_iid(n: int) -> str:
    return f"SELECT iid, id, text, metadata FROM docs WHERE iid IN ({','.join('?' * n)})"


def _where(flt: Mapping[str, list[Any]]) -> tuple[str, list[Any]]:
    """SQL over the JSON metadata column: typed equality, so True never matches 1 and "1" never 1."""
    clauses: list[str] = []
    params: list[Any] = []
    for key, values in flt.items():
        path = f'$."{key}"'
        ors = []
        for v in values:
            if v is None:
                ors.append("json_type(metadata, ?) = 'null'")
                params.append(path)
            elif isinstance(v, bool):
                ors.append("json_type(metadata, ?) = ?")
                params += [path, "true" if v else "false"]
            elif isinstance(v, str):
                ors.append("(json_type(metadata, ?) = 'text' AND json_extract(metadata, ?) = ?)")
                params += [path, path, v]
            else:
                ors.append("(json_type(metadata, ?) IN ('integer', 'real') AND json_extract(metadata, ?) = ?)")
                params += [path, path, v]
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
