"""The scale-out vector store: Milvus through pymilvus ``MilvusClient``.

A location ending in ``.db`` runs Milvus Lite (the real Milvus engine inside a local file); an
``http://host:19530`` URI talks to a Milvus standalone or cluster. One collection (default
``qembed``) holds ``id`` (VARCHAR primary key), ``vector`` (FLOAT_VECTOR, inner product),
``text`` (VARCHAR, nullable) and ``metadata`` (JSON). Filters become Milvus boolean expressions
on the JSON field (``metadata["lang"] == "zh"``), evaluated by Milvus before the top-k is cut.
The manifest (the encoder's name and so on) lives in the collection's properties.

Quantized collections (``quantize="binary"|"int8"``): ``vector`` is a BINARY_VECTOR (Hamming,
``BIN_FLAT`` unless ``index_type`` says otherwise) or an INT8_VECTOR (inner product; Milvus 2.6
and later), and ``float32`` (VARCHAR) holds each row's float32 vector as base64 little-endian
bytes, returned with the ``rescore × k`` candidates of a search and used to order them. Milvus
keeps that field in its segments (memory-mapped where the server enables ``mmap.enabled``, which
qembed asks for on servers; Milvus 2.3 accepts one vector field per collection, hence a scalar
field rather than a second vector field). Milvus Lite 3.2 has neither vector type and refuses a
quantized collection with a clear error. The quantization, the float vector size and the rescore
factor live in the ``qembed.quantize`` collection property.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from qembed.errors import InputError, NotFoundError, QembedError, RemoteError
from qembed.io import is_milvus_server
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

DEFAULT_COLLECTION = "qembed"
MANIFEST_PROPERTY = "qembed.manifest"
QUANTIZE_PROPERTY = "qembed.quantize"
#: Milvus VARCHAR limit, in bytes of UTF-8.
MAX_TEXT_BYTES = 65535
_BATCH = 512


def _milvus():
    from qembed.extras import require

    require("milvus", "a Milvus store", modules=("pymilvus",))
    import pymilvus

    return pymilvus


class MilvusStore:
    """A :class:`~qembed.store.base.VectorStore` backed by one Milvus collection."""

    backend = "milvus"

    def __init__(self, client: Any, uri: str, collection: str, dim: int, manifest: dict[str, Any],
                 quantize: str | None = None, rescore: int | None = None) -> None:
        self._client = client
        self._quantize = quantize
        self._rescore = rescore
        #: Milvus 2.3 servers accept ``nullable`` in a schema but not a null value: a missing text
        #: is then stored as "" (and read back as None).
        self._text_nullable = True
        self._uri = uri
        self._collection = collection
        self._dim = dim
        self._manifest = manifest
        self._lock = threading.RLock()
        self._closed = False
        self._manifest_dirty = False

    @classmethod
    def connect(
        cls,
        uri: str,
        *,
        dim: int | None = None,
        create: bool = True,
        collection: str = DEFAULT_COLLECTION,
        token: str | None = None,
        index_type: str | None = None,
        quantize: str | None = None,
        rescore: int | None = None,
    ) -> "MilvusStore":
        """Open ``collection`` at ``uri`` (Milvus Lite ``.db`` file or server URL), creating it if allowed.

        ``quantize`` (``binary`` | ``int8``) and ``rescore`` as for the FAISS store; an existing
        collection keeps the quantization it was created with (another value raises :class:`InputError`).
        """
        pymilvus = _milvus()
        asked_quantize = quantize
        quantize = qz.check_quantize(quantize)
        if rescore is not None:
            rescore = qz.check_rescore(rescore)
        lite = not is_milvus_server(uri)
        if lite:
            path = Path(uri)
            if not path.exists() and (not create or dim is None):
                raise NotFoundError(f"index not found: {path} does not exist")
            if not path.parent.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
            # Milvus Lite's in-process gRPC server logs "Method not implemented" for a timestamp
            # call pymilvus' query iterator tries first (then falls back); keep that off stderr.
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
        if uri.startswith("milvus://"):
            uri = "http://" + uri[len("milvus://"):]
        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
        try:
            client = pymilvus.MilvusClient(uri, token=token or "")
        except Exception as exc:
            raise RemoteError(f"cannot open Milvus at {uri}: {_msg(exc)}") from None
        try:
            if client.has_collection(collection):
                desc = client.describe_collection(collection)
                vec = [f for f in desc["fields"] if f["name"] == "vector"]
                names = {f["name"] for f in desc["fields"]}
                if not vec or not {"id", "text", "metadata"} <= names:
                    raise InputError(f"collection {collection!r} at {uri} was not created by qembed "
                                     f"(fields: {', '.join(sorted(names))})")
                props = desc.get("properties") or {}
                quant = json.loads(props.get(QUANTIZE_PROPERTY) or "{}")
                have_dim = int(quant.get("dim") or vec[0]["params"]["dim"])
                have_q = quant.get("quantize")
                if asked_quantize is not None:
                    from qembed.store import check_recorded_quantize

                    check_recorded_quantize(f"{uri} (collection {collection!r})", have_q, asked_quantize)
                if rescore is not None and not have_q:
                    raise InputError(f"rescore applies to a quantized index; collection {collection!r} at {uri} "
                                     "holds float32 vectors", param="rescore")
                if dim is not None and dim != have_dim:
                    raise InputError(f"index {uri} holds vectors of size {have_dim}, not {dim} "
                                     "(it was built with another model or --dimensions)")
                manifest = json.loads(props.get(MANIFEST_PROPERTY) or "{}")
                client.load_collection(collection)
                store = cls(client, uri, collection, have_dim, manifest, have_q,
                            rescore or (int(quant.get("rescore") or qz.DEFAULT_RESCORE[have_q]) if have_q else None))
                store._text_nullable = _text_nullable(desc)
                return store
            if not create or dim is None:
                raise NotFoundError(f"index not found: no collection {collection!r} at {uri}")
            if quantize:
                return cls._create_quantized(client, uri, collection, int(dim), quantize, rescore, index_type,
                                             lite)
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", pymilvus.DataType.VARCHAR, is_primary=True, max_length=512)
            schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=int(dim))
            schema.add_field("text", pymilvus.DataType.VARCHAR, max_length=MAX_TEXT_BYTES, nullable=True)
            schema.add_field("metadata", pymilvus.DataType.JSON)
            params = client.prepare_index_params()
            params.add_index("vector", index_type=index_type or ("FLAT" if lite else "AUTOINDEX"),
                             metric_type="IP")
            manifest: dict[str, Any] = {}
            client.create_collection(collection, schema=schema, index_params=params,
                                     properties={MANIFEST_PROPERTY: "{}"}, consistency_level="Strong")
            client.load_collection(collection)
            store = cls(client, uri, collection, int(dim), manifest)
            store._text_nullable = _text_nullable(client.describe_collection(collection))
            return store
        except QembedError:
            client.close()
            raise
        except Exception as exc:
            client.close()
            raise RemoteError(f"Milvus at {uri}: {_msg(exc)}") from None

    @classmethod
    def _create_quantized(cls, client: Any, uri: str, collection: str, dim: int, quantize: str,
                          rescore: int | None, index_type: str | None, lite: bool) -> "MilvusStore":
        """A new collection of binary or int8 codes with each row's float32 vector beside them."""
        pymilvus = _milvus()
        kind = "BINARY_VECTOR" if quantize == "binary" else "INT8_VECTOR"
        version = _version(client)
        dtype = getattr(pymilvus.DataType, kind, None)
        if dtype is None:
            raise InputError(f"this pymilvus has no {kind}: --quantize {quantize} on Milvus needs pymilvus 2.6 or "
                             "later", param="quantize")
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", pymilvus.DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("vector", dtype, dim=qz.code_bits(dim) if quantize == "binary" else dim)
        schema.add_field("text", pymilvus.DataType.VARCHAR, max_length=MAX_TEXT_BYTES, nullable=True)
        schema.add_field("metadata", pymilvus.DataType.JSON)
        schema.add_field("float32", pymilvus.DataType.VARCHAR, max_length=_b64_length(dim))
        params = client.prepare_index_params()
        if quantize == "binary":
            params.add_index("vector", index_type=index_type or "BIN_FLAT", metric_type="HAMMING")
        else:
            params.add_index("vector", index_type=index_type or ("FLAT" if lite else "HNSW"), metric_type="IP")
        rescore = rescore or qz.DEFAULT_RESCORE[quantize]
        props = {MANIFEST_PROPERTY: "{}",
                 QUANTIZE_PROPERTY: json.dumps({"quantize": quantize, "dim": dim, "rescore": rescore})}
        if not lite:
            props["mmap.enabled"] = "true"
        try:
            client.create_collection(collection, schema=schema, index_params=params, properties=props,
                                     consistency_level="Strong")
        except Exception as exc:
            why = _msg(exc).rstrip(".")
            with contextlib.suppress(Exception):  # a server may have made the collection, not its index
                if client.has_collection(collection):
                    client.drop_collection(collection)
            if "not support" in why.lower() or "unsupported" in why.lower() or "invalid" in why.lower():
                raise InputError(
                    f"Milvus {version or ''} at {uri} cannot hold {quantize} vectors ({kind}): {why}. "
                    f"Quantized Milvus collections need a Milvus server ({kind} "
                    f"{'from 2.6' if quantize == 'int8' else 'in every server version'}); Milvus Lite stores "
                    "float vectors only: use a FAISS folder for a local quantized index", param="quantize") from None
            raise
        client.load_collection(collection)
        store = cls(client, uri, collection, dim, {}, quantize, rescore)
        store._text_nullable = _text_nullable(client.describe_collection(collection))
        return store

    # ------------------------------------------------------------------ properties

    @property
    def quantize(self) -> str | None:
        """``binary`` or ``int8`` for a quantized collection, ``None`` for float32."""
        return self._quantize

    @property
    def rescore(self) -> int | None:
        """Candidates per wanted hit rescored with float vectors (quantized collections)."""
        return self._rescore

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def location(self) -> str | None:
        return self._uri

    def get_meta(self, key: str, default: Any = None) -> Any:
        return self._manifest.get(key, default)

    def set_meta(self, key: str, value: Any) -> None:
        with self._lock:
            self._manifest[key] = json.loads(json.dumps(value))
            self._manifest_dirty = True

    def info(self) -> dict[str, Any]:
        out = {"backend": self.backend, "location": self._uri, "collection": self._collection,
               "dim": self._dim, "metric": "ip", "count": self.count(), "manifest": dict(self._manifest)}
        if self._quantize:
            out.update(quantize=self._quantize, rescore=self._rescore)
        return out

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
        """Upsert, then remove ``delete``. Milvus has no transactions: everything is validated
        first, but a Milvus failure part-way (502) may leave part of the write; repeating the
        same call (upserts by id) completes it."""
        ids = check_ids(ids)
        new = set(ids)
        gone = [d for d in check_ids(list(delete), param="delete") if d not in new] if len(delete) else []
        if not ids:
            if gone:
                self.delete(gone)
            return 0
        vecs = check_vectors(vectors, self._dim, len(ids))
        texts_ = check_texts(texts, len(ids))
        metas = check_metadata(metadata, len(ids))
        for i, t in enumerate(texts_):
            if t is not None and len(t.encode("utf-8")) > MAX_TEXT_BYTES:
                raise InputError(f"texts[{i}] is longer than Milvus' {MAX_TEXT_BYTES} bytes; chunk it",
                                 param="texts")
        if self._quantize:
            codes = self._codes(vecs)
            rows = [{"id": d, "vector": c, "text": t, "metadata": m, "float32": _b64(v)}
                    for d, c, t, m, v in zip(ids, codes, texts_, metas, vecs)]
        else:
            rows = [{"id": d, "vector": v, "text": t, "metadata": m}
                    for d, v, t, m in zip(ids, vecs.tolist(), texts_, metas)]
        if not self._text_nullable:
            for row in rows:
                if row["text"] is None:
                    row["text"] = ""
        with self._lock:
            for start in range(0, len(rows), _BATCH):
                self._call("upsert", self._collection, rows[start:start + _BATCH])
            if gone:
                self.delete(gone)
        return len(ids)

    def delete(self, ids: Sequence[str]) -> int:
        ids = check_ids(ids)
        with self._lock:
            present = [r.id for r in self.get(ids) if r is not None]
            for start in range(0, len(present), _BATCH):
                self._call("delete", self._collection, filter=ids_expression(present[start:start + _BATCH]))
            return len(present)

    def search(self, query_vectors: np.ndarray, k: int = 10, filter: Filter | None = None) -> list[list[Hit]]:
        k = check_k(k)
        queries = check_vectors(query_vectors, self._dim, param="query_vectors")
        flt = check_filter(filter)
        expr = ""
        if flt:
            self._check_fields(flt)
            expr = filter_expression(flt)
        if self._quantize:
            return self._search_quantized(queries, k, expr)
        with self._lock:
            res = self._call("search", self._collection, data=queries.tolist(), limit=k, filter=expr,
                             output_fields=["text", "metadata"], search_params={"metric_type": "IP"},
                             anns_field="vector")
        out = []
        for row in res:
            out.append([Hit(id=h["id"], score=float(h["distance"]), text=self._text(h["entity"]),
                            metadata=h["entity"].get("metadata") or {}) for h in row])
        return out

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record | None]:
        ids = check_ids(ids)
        fields = ["text", "metadata"] + ([("float32" if self._quantize else "vector")] if with_vectors else [])
        found: dict[str, dict[str, Any]] = {}
        with self._lock:
            for start in range(0, len(ids), _BATCH):
                part = ids[start:start + _BATCH]
                for r in self._call("query", self._collection, filter=ids_expression(part),
                                    output_fields=["id", *fields], limit=len(part)):
                    found[r["id"]] = r
        out: list[Record | None] = []
        for d in ids:
            r = found.get(d)
            if r is None:
                out.append(None)
                continue
            vec = None
            if with_vectors:
                vec = _unb64(r["float32"]) if self._quantize else np.asarray(r["vector"], dtype=np.float32)
            out.append(Record(id=d, text=self._text(r), metadata=r.get("metadata") or {}, vector=vec))
        return out

    def count(self) -> int:
        with self._lock:
            res = self._call("query", self._collection, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def ids(self, filter: Filter | None = None) -> list[str]:
        flt = check_filter(filter)
        expr = ""
        if flt:
            self._check_fields(flt)
            expr = filter_expression(flt)
        return [r["id"] for batch in self._iterate(["id"], expr) for r in batch]

    def scan(self, batch_size: int = 1000) -> Iterator[list[Record]]:
        for batch in self._iterate(["id", "text", "metadata"], "", batch_size):
            yield [Record(id=r["id"], text=self._text(r), metadata=r.get("metadata") or {}) for r in batch]

    def save(self) -> None:
        """Flush inserted data and write the manifest to the collection's properties."""
        with self._lock:
            if self._manifest_dirty:
                self._call("alter_collection_properties", self._collection,
                           properties={MANIFEST_PROPERTY: json.dumps(self._manifest)})
                self._manifest_dirty = False
            self._call("flush", self._collection)

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        """Serialise a read-modify-write sequence within this process (Milvus Lite allows one
        process per file; a Milvus server has no cross-client lock)."""
        with self._lock:
            yield

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                try:
                    self._client.close()
                finally:
                    self._closed = True

    def __enter__(self) -> "MilvusStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MilvusStore(uri={self._uri!r}, collection={self._collection!r}, dim={self._dim})"

    # ------------------------------------------------------------------ quantized collections

    def _text(self, row: Mapping[str, Any]) -> str | None:
        """A row's text (a collection without nullable fields stores a missing text as "")."""
        text = row.get("text")
        return text if self._text_nullable else (text or None)

    def _codes(self, vectors: np.ndarray) -> list[Any]:
        """Rows as Milvus takes them: ``bytes`` of packed bits (binary) or int8 arrays (int8)."""
        if self._quantize == "binary":
            return [row.tobytes() for row in qz.binary_codes(vectors)]
        return list(qz.as_type(vectors, "int8"))

    def _search_quantized(self, queries: np.ndarray, k: int, expr: str) -> list[list[Hit]]:
        """``rescore × k`` candidates by the codes (with their float32 vectors), ordered by the floats."""
        cand = min(16384, k * int(self._rescore or 1))
        metric = "HAMMING" if self._quantize == "binary" else "IP"
        with self._lock:
            res = self._call("search", self._collection, data=self._codes(queries), limit=cand, filter=expr,
                             output_fields=["text", "metadata", "float32"], search_params={"metric_type": metric},
                             anns_field="vector")
        out = []
        for q, row in zip(queries, res):
            if not row:
                out.append([])
                continue
            vecs = np.stack([_unb64(h["entity"]["float32"]) for h in row])
            sims = vecs @ q
            top = np.argsort(-sims, kind="stable")[:k]
            out.append([Hit(id=row[i]["id"], score=float(sims[i]), text=self._text(row[i]["entity"]),
                            metadata=row[i]["entity"].get("metadata") or {}) for i in top])
        return out

    # ------------------------------------------------------------------ internals

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise InputError("this store is closed")
        try:
            return getattr(self._client, method)(*args, **kwargs)
        except QembedError:
            raise
        except Exception as exc:
            raise RemoteError(f"Milvus {method} failed: {_msg(exc)}") from None

    def _check_fields(self, flt: Mapping[str, list[Any]]) -> None:
        missing = [key for key, values in flt.items()
                   if not self._call("query", self._collection, filter=f'exists metadata["{key}"]',
                                     output_fields=["id"], limit=1)
                   and not (None in values and self._has_null_field(key))]
        if missing:
            raise InputError(f"filter on unknown metadata field {missing[0]!r}: no stored document has it",
                             param="filter")

    def _has_null_field(self, key: str) -> bool:
        """Whether a document holds ``key`` with the value null (Milvus' ``exists`` skips those,
        and its ``is null`` does not tell null from absent: the rows' metadata is read)."""
        for batch in self._iterate(["metadata"], f'metadata["{key}"] is null'):
            if any(key in (r.get("metadata") or {}) for r in batch):
                return True
        return False

    def _iterate(self, fields: list[str], expr: str, batch_size: int = 1000) -> Iterator[list[dict[str, Any]]]:
        """Rows matching ``expr`` in primary-key order, ``batch_size`` at a time.

        Paged by the last id seen, written as an escaped literal (pymilvus' query iterator pastes
        the raw id into its next expression, so an id holding a quote rewrote the filter).
        """
        with self._lock:  # what pymilvus' iterator sends: the server then returns rows in id order
            options = {"iterator": "True", "reduce_stop_for_best": "True",
                       "collection_id": self._call("describe_collection", self._collection).get("collection_id")}
        last: str | None = None
        while True:
            cursor = f"id > {string_literal(last)}" if last is not None else ""
            where = " and ".join(f"({e})" for e in (cursor, expr) if e)
            with self._lock:
                batch = self._call("query", self._collection, filter=where, output_fields=["id", *fields],
                                   limit=batch_size, **options)
            if not batch:
                return
            batch = sorted(batch, key=lambda r: r["id"])
            yield [dict(r) for r in batch]
            if len(batch) < batch_size:
                return
            last = batch[-1]["id"]


def string_literal(value: str) -> str:
    """``value`` as a Milvus expression string literal, escaped for Milvus and Milvus Lite alike.

    Only the escapes both parsers know are used (backslash, double quote, newline, carriage
    return, tab); the store's validation keeps every other control character out of ids and
    values, so nothing in ``value`` can end the literal early.
    """
    return '"' + value.translate(_ESCAPES) + '"'


_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def ids_expression(ids: Sequence[str]) -> str:
    """``id in [...]`` for validated ids, each an escaped literal (never raw text in the expression)."""
    return "id in [" + ", ".join(string_literal(d) for d in ids) + "]"


def filter_expression(flt: Mapping[str, list[Any]]) -> str:
    """A normalised filter as a Milvus boolean expression over the JSON ``metadata`` field.

    Field names are identifiers (checked by :func:`~qembed.store.base.check_filter`); strings are
    escaped literals; numbers are Python ints (int64) or finite floats.
    """
    clauses = []
    for key, values in flt.items():
        ors = []
        for v in values:
            if v is None:  # the field is null or absent (the FAISS store's rule too)
                ors.append(f'metadata["{key}"] is null')
                continue
            if isinstance(v, bool):
                literal = "true" if v else "false"
            elif isinstance(v, str):
                literal = string_literal(v)
            elif isinstance(v, int):
                literal = str(int(v))
            else:
                literal = repr(float(v))
            ors.append(f'metadata["{key}"] == {literal}')
        clauses.append("(" + " or ".join(ors) + ")")
    return " and ".join(clauses)


def _b64_length(dim: int) -> int:
    return 4 * ((4 * int(dim) + 2) // 3)


def _b64(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def _unb64(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


def _text_nullable(desc: Mapping[str, Any]) -> bool:
    return any(f["name"] == "text" and f.get("nullable") for f in desc.get("fields", []))


def _version(client: Any) -> str | None:
    try:
        return str(client.get_server_version())
    except Exception:  # Milvus Lite and old servers may not answer
        return None


def _msg(exc: Exception) -> str:
    return str(getattr(exc, "message", None) or exc).strip()
