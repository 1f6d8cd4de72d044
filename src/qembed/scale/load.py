"""Bulk-load precomputed vectors into a knowledge-base index: :func:`load_embeddings`.

The vectors come from an embeddings dataset (:func:`qembed.scale.embed_dataset`'s Parquet folder:
``index``, optional ``id``, ``embedding``; the model facts in ``_qembed.json`` or in the parts'
``qembed`` key-value metadata). Each row becomes one stored document, the way
:class:`~qembed.search.knowledge_base.KnowledgeBase` stores a document of one chunk: id = the
document id, ``metadata.doc_id`` = the id, ``metadata.chunk`` = 0, so ``qembed search`` (dense,
BM25 when texts are given, hybrid) and ``qembed index delete`` work on it as on any index.

Everything is read and checked before the index is opened for writing — columns, vector sizes,
finite values, ids, texts, metadata, the model against the index's — so bad input leaves the
index as it was. The rows are then written in batches and saved once (FAISS: one new generation).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from qembed.errors import InputError, NotFoundError
from qembed.scale import dataset as ds_files
from qembed.scale.inputs import (
    TEXT_SUFFIXES,
    Columns,
    file_system,
    iter_records,
    list_inputs,
    suffix_of,
)

logger = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 4096


def _safe_id(value: str) -> str:
    return value.replace("#", "_")


def _data_files(filesystem: Any, folder: str, uri: str) -> list[str]:
    from pyarrow import fs

    info = filesystem.get_file_info(folder)
    if info.type == fs.FileType.NotFound:
        raise InputError(f"embeddings not found: {uri} does not exist")
    if info.type == fs.FileType.File:
        if not folder.endswith(".parquet"):
            raise InputError(f"{uri} is not a Parquet file or a folder of them")
        return [folder]
    found = filesystem.get_file_info(fs.FileSelector(folder, recursive=True))
    files = sorted(i.path for i in found if i.type == fs.FileType.File and i.base_name.endswith(".parquet")
                   and not i.base_name.startswith((".", "_")))
    if not files:
        raise InputError(f"{uri} holds no Parquet files (no embeddings to load)")
    return files


def _facts(filesystem: Any, folder: str, files: list[str], uri: str) -> dict[str, Any]:
    """The model facts: the manifest, else the first part's ``qembed`` metadata."""
    import pyarrow.parquet as pq
    from pyarrow import fs

    manifest = None
    if filesystem.get_file_info(folder).type == fs.FileType.Directory:
        manifest = ds_files.read_manifest(filesystem, folder)
    if manifest is not None:
        if manifest.get("status") != "complete":
            raise InputError(f"the embeddings run in {uri} did not finish; complete it with "
                             "qembed embed --ray … --resume before loading")
        return manifest
    with filesystem.open_input_file(files[0]) as f:
        try:
            meta = pq.ParquetFile(f).schema_arrow.metadata or {}
        except Exception as exc:  # noqa: BLE001 - any unreadable file
            raise InputError(f"{files[0]} is not a readable Parquet file: {exc}") from None
    if b"qembed" not in meta:
        raise InputError(f"{uri} has no {ds_files.MANIFEST} and its Parquet files carry no qembed metadata: "
                         "the model that made the vectors is unknown (write them with qembed embed --ray)")
    return json.loads(meta[b"qembed"])


def _batches(filesystem: Any, files: list[str], columns: list[str], batch_rows: int) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    for path in files:
        with filesystem.open_input_file(path) as f:
            try:
                pf = pq.ParquetFile(f)
            except Exception as exc:  # noqa: BLE001
                raise InputError(f"{path} is not a readable Parquet file: {exc}") from None
            names = pf.schema_arrow.names
            for need in ("embedding", "index"):
                if need not in names:
                    raise InputError(f"{path} has no {need!r} column (it has: {', '.join(names) or 'none'})")
            if pf.metadata.num_rows == 0:
                continue
            for batch in pf.iter_batches(batch_size=batch_rows, columns=[c for c in columns if c in names]):
                yield path, batch


def _vectors(batch: Any, path: str, dim: int | None) -> np.ndarray:
    """The batch's ``embedding`` column as a float32 ``(n, dim)`` array, checked."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = batch.column(batch.schema.get_field_index("embedding"))
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)
            or pa.types.is_fixed_size_list(col.type)) or not pa.types.is_floating(col.type.value_type):
        raise InputError(f"{path}: column 'embedding' is {col.type}, not a list of floats")
    if col.null_count:
        raise InputError(f"{path}: column 'embedding' has {col.null_count} empty (null) value(s)")
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    if len(lengths) == 0:
        return np.zeros((0, dim or 0), dtype=np.float32)
    want = dim if dim is not None else int(lengths[0])
    bad = np.flatnonzero(lengths != want)
    if len(bad):
        idx = batch.column(batch.schema.get_field_index("index"))[int(bad[0])].as_py()
        raise InputError(f"{path}: mixed vector sizes: the row with index {idx} has a vector of size "
                         f"{int(lengths[bad[0]])}, others have {want}")
    values = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    vectors = values.reshape(len(lengths), want)
    if not np.isfinite(vectors).all():
        row = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
        idx = batch.column(batch.schema.get_field_index("index"))[row].as_py()
        raise InputError(f"{path}: the vector of the row with index {idx} holds NaN or infinite values")
    return vectors


def read_text_rows(location: str | os.PathLike[str], columns: Columns) -> tuple[list[str], list[str | None],
                                                                                 list[dict[str, Any]]]:
    """Texts, ids and metadata of every row with text, in input order — the rows an embeddings
    run numbered: the fields other than the text and the id (and those of a ``metadata`` object)
    become metadata, with ``source`` = the file name."""
    texts: list[str] = []
    ids: list[str | None] = []
    metas: list[dict[str, Any]] = []
    text_key = columns.text or "text"
    for f in list_inputs(location):
        source = f.path.rsplit("/", 1)[-1]
        if suffix_of(f.path) in TEXT_SUFFIXES:
            from qembed.scale.inputs import iter_rows

            for text, _ in iter_rows(f, Columns(text=text_key)):
                texts.append(text)
                ids.append(None)
                metas.append({"source": source})
            continue
        for i, rec in iter_records(f):
            text = rec.get(text_key)
            if text is None:
                have = ", ".join(sorted(map(str, rec))) or "nothing"
                raise InputError(f"{f.uri}: record {i} lacks column {text_key!r} (it has: {have})")
            if not isinstance(text, str):
                raise InputError(f"{f.uri}: record {i}: column {text_key!r} is not a string")
            if not text.strip():
                continue
            rec = dict(rec)
            rec.pop(text_key)
            raw = rec.pop(columns.id, None) if columns.id else None
            meta = rec.pop("metadata", None) or {}
            if not isinstance(meta, Mapping):
                raise InputError(f"{f.uri}: record {i}: 'metadata' must be an object")
            meta = dict(meta)
            meta.update({k: v for k, v in rec.items() if v not in (None, "")})
            meta.setdefault("source", source)
            texts.append(text)
            ids.append(None if raw in (None, "") else str(raw))
            metas.append(meta)
    return texts, ids, metas


def load_embeddings(
    embeddings: str | os.PathLike[str],
    index: str | os.PathLike[str],
    *,
    texts: str | os.PathLike[str] | None = None,
    model: str | None = None,
    collection: str | None = None,
    kind: str | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    quantize: str | None = None,
    rescore: int | None = None,
) -> dict[str, Any]:
    """Write the vectors of an embeddings dataset into the index at ``index`` (a FAISS folder, a
    Milvus Lite ``.db`` file or a Milvus server URL), creating it when needed.

    Args:
        embeddings: the dataset folder (or one Parquet file).
        index: where the knowledge base is.
        texts: the input the embeddings were made from; its texts, ids and other fields (as
            metadata) are stored with the vectors, matched by ``index``.
        model: where to load the model for queries later (default: what the dataset records); it
            must be the model that made the vectors.
        collection / kind: Milvus collection; FAISS index kind for a new index.
        batch_rows: rows written per step.
        quantize / rescore: ``int8`` | ``binary`` codes for a new index (float32 vectors kept on disk
            for rescoring; see :mod:`qembed.store.quantize`); an existing index keeps its own, and a
            different ``quantize`` raises :class:`InputError` before anything is written.

    Returns ``{"object", "index", "model", "dim", "rows", "replaced", "count"}``.
    Raises :class:`InputError` for a missing column, no rows, mixed vector sizes, non-finite
    values, duplicate or missing positions, texts that do not line up, or a model or vector size
    that differs from the index's; nothing is written then.
    """
    from qembed.search.knowledge_base import (
        CHUNK,
        DOC_ID,
        _bump_bm25,
        check_document_id,
        chunks_of,
        documents_of,
        write_lock,
    )
    from qembed.store import open_store
    from qembed.store.base import check_metadata

    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise InputError(f"batch_rows must be a positive integer, got {batch_rows!r}", param="batch_rows")
    from qembed.store.quantize import check_quantize, check_rescore

    check_quantize(quantize)
    if rescore is not None:
        check_rescore(rescore)
    uri = os.fspath(embeddings)
    filesystem, folder = file_system(uri)
    files = _data_files(filesystem, folder, uri)
    facts = _facts(filesystem, folder, files, uri)
    name = facts.get("model")
    if not isinstance(name, str) or not name:
        raise InputError(f"{uri}: the metadata does not name the model that made the vectors")
    dim = facts.get("dim")
    source = facts.get("model_source")
    if model is not None:
        stem = model.rstrip("/")
        if stem != name and Path(stem).name != name and stem != source:
            raise InputError(f"the vectors in {uri} were made with {name!r}, not {model!r}")
        source = model

    # ------------------------------------------------------------------ pass 1: read and check
    positions: list[np.ndarray] = []
    stored_ids: list[str] | None = None
    dim_seen: int | None = int(dim) if dim is not None else None
    for path, batch in _batches(filesystem, files, ["index", "id", "embedding"], batch_rows):
        vectors = _vectors(batch, path, dim_seen)
        if dim_seen is None:
            dim_seen = int(vectors.shape[1])
        col = batch.column(batch.schema.get_field_index("index"))
        if col.null_count:
            raise InputError(f"{path}: column 'index' has empty (null) values")
        positions.append(col.to_numpy(zero_copy_only=False).astype(np.int64))
        if "id" in batch.schema.names:
            stored_ids = stored_ids if stored_ids is not None else []
            stored_ids += [None if v is None else str(v) for v in batch.column(batch.schema.get_field_index("id")).to_pylist()]
    if not positions or sum(len(p) for p in positions) == 0:
        raise InputError(f"{uri} holds no embeddings (its Parquet files have no rows)")
    order = np.concatenate(positions)
    n = len(order)
    if stored_ids is not None and len(stored_ids) != n:
        raise InputError(f"{uri}: some Parquet files have an 'id' column and others do not")
    values, counts = np.unique(order, return_counts=True)
    if len(values) != n:
        dup = int(values[np.flatnonzero(counts > 1)[0]])
        raise InputError(f"{uri}: the index {dup} appears more than once (a row was written twice)")
    if order.min() < 0 or order.max() >= n:
        raise InputError(f"{uri}: 'index' values must number the rows 0…{n - 1}; found {int(order.min())}…{int(order.max())}")
    rows_expected = facts.get("rows")
    if rows_expected is not None and int(rows_expected) != n:
        raise InputError(f"{uri} holds {n} rows but its manifest says {rows_expected}")

    texts_list: list[str] | None = None
    metas: list[dict[str, Any]] | None = None
    ids_by_pos: list[str | None] = [None] * n
    if texts is not None:
        columns = Columns(text=facts.get("text_column") or "text", id=facts.get("id_column"))
        texts_list, text_ids, metas = read_text_rows(texts, columns)
        if len(texts_list) != n:
            raise InputError(f"the texts in {os.fspath(texts)} have {len(texts_list)} row(s) with text but "
                             f"{uri} holds {n} vector(s); give the input the vectors were made from")
        ids_by_pos = text_ids
    if stored_ids is not None:
        for k, pos in enumerate(order):
            sid = stored_ids[k]
            if texts is not None and ids_by_pos[pos] is not None and sid is not None and ids_by_pos[pos] != sid:
                raise InputError(f"row {int(pos)}: the id in the texts ({ids_by_pos[pos]!r}) is not the id "
                                 f"stored with the vector ({sid!r}); give the input the vectors were made from")
            ids_by_pos[pos] = sid
    doc_ids = [_safe_id(i) if i is not None else str(p) for p, i in enumerate(ids_by_pos)]
    seen: dict[str, int] = {}
    for p, d in enumerate(doc_ids):
        check_document_id(d, where=f"row {p}: id")
        if d in seen:
            raise InputError(f"rows {seen[d]} and {p} have the same id {d!r}")
        seen[d] = p
    metadata = [{**(metas[p] if metas is not None else {}), DOC_ID: doc_ids[p], CHUNK: 0} for p in range(n)]
    check_metadata(metadata, n)

    # ------------------------------------------------------------------ the index's model
    opts: dict[str, Any] = {}
    if collection:
        opts["collection"] = collection
    try:
        existing = open_store(index, create=False, **({"collection": collection} if collection else {}))
    except NotFoundError:
        existing = None
    if existing is not None:
        try:
            recorded = existing.get_meta("model")
            if existing.dim != dim_seen:
                raise InputError(f"the index {index} holds vectors of size {existing.dim}, but the vectors in "
                                 f"{uri} have size {dim_seen}")
            if recorded is not None and recorded != name:
                raise InputError(f"the index {index} was built with model {recorded!r}, but the vectors in {uri} "
                                 f"were made with {name!r}; they are not comparable")
        finally:
            existing.close()
    if kind and existing is None:
        opts["index"] = kind
    if quantize is not None:
        opts["quantize"] = quantize
    if rescore is not None:
        opts["rescore"] = rescore

    # ------------------------------------------------------------------ pass 2: write
    store = open_store(index, dim=dim_seen, create=True, **opts)
    replaced = 0
    try:
        with write_lock(store):
            if store.get_meta("model") is None:
                store.set_meta("model", name)
                store.set_meta("dimensions", dim_seen)
                if source:
                    store.set_meta("model_source", str(source))
            done = 0
            for path, batch in _batches(filesystem, files, ["index", "embedding"], batch_rows):
                vectors = _vectors(batch, path, dim_seen)
                pos = order[done:done + len(vectors)]
                done += len(vectors)
                ids = [doc_ids[p] for p in pos]
                old = chunks_of(store, ids)
                wanted = set(ids)
                replaced += len(documents_of(store, old))  # by metadata: chunk ids may be bounded
                store.upsert(ids, vectors, texts=[texts_list[p] for p in pos] if texts_list is not None else None,
                             metadata=[metadata[p] for p in pos], delete=[c for c in old if c not in wanted])
            _bump_bm25(store)
            store.save()
        count = store.count()
    except Exception:
        discard = getattr(store, "discard", None)
        if discard is not None:
            discard()
        raise
    finally:
        store.close()
    logger.info("loaded %d vector(s) of size %d from %s into %s", n, dim_seen, uri, index)
    return {"object": "index_load", "index": os.fspath(index), "model": name, "dim": dim_seen, "rows": n,
            "replaced": replaced, "count": count}

