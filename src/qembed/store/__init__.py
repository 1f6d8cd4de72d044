"""Vector stores: FAISS (embedded default, a folder) and Milvus (Milvus Lite file or server).

:func:`open_store` picks the backend from the location:

- ``None``: an in-memory FAISS store (``dim`` required), e.g. for deduplication;
- a folder path: a FAISS store on disk (created when absent and ``dim`` is given);
- a path ending in ``.db``: Milvus Lite, a real Milvus engine in a local file;
- ``http://host:19530`` / ``https://…`` (or ``milvus://host:port``): a Milvus server.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from qembed.errors import InputError, NotFoundError
from qembed.io import is_milvus_uri
from qembed.store.base import Filter, Hit, Record, VectorStore
from qembed.store.quantize import check_quantize

logger = logging.getLogger(__name__)

__all__ = ["Filter", "Hit", "Record", "VectorStore", "check_store_options", "open_store", "is_milvus_uri",
           "FaissStore"]


#: Options a FAISS store takes when it is created, and those that also apply when it is opened.
FAISS_CREATE_OPTIONS = frozenset({"index", "metric", "hnsw_m", "ef_construction", "ef_search", "hnsw_threshold",
                                  "lock_timeout", "quantize", "rescore", "ivf_threshold", "nprobe"})
FAISS_OPEN_OPTIONS = frozenset({"ef_search", "lock_timeout", "rescore", "nprobe"})
#: Options a Milvus store takes.
MILVUS_OPTIONS = frozenset({"collection", "token", "index_type", "quantize", "rescore"})


def check_store_options(uri: str | os.PathLike[str] | None, opts: dict[str, Any]) -> None:
    """Refuse options the backend at ``uri`` would not use (rather than ignore them silently)."""
    milvus = is_milvus_uri(uri)
    allowed = MILVUS_OPTIONS if milvus else FAISS_CREATE_OPTIONS
    unknown = sorted(set(opts) - allowed)
    if not unknown:
        return
    where = "a Milvus index" if milvus else ("an in-memory index" if uri is None else "a FAISS index folder")
    other = [k for k in unknown if k in (FAISS_CREATE_OPTIONS if milvus else MILVUS_OPTIONS)]
    hint = f" ({', '.join(other)} applies to {'FAISS folders' if milvus else 'Milvus'} only)" if other else ""
    takes = ", ".join(sorted(allowed))
    raise InputError(f"option(s) {', '.join(unknown)} do not apply to {where} at {uri}{hint}; it takes: {takes}",
                     param=unknown[0])


def check_recorded_quantize(where: str, recorded: str | None, asked: Any) -> None:
    """Refuse a ``quantize`` that differs from the one an existing index was created with."""
    asked = check_quantize(asked)
    if asked != recorded:
        raise InputError(
            f"index {where} holds {recorded or 'float32'} vectors; it cannot take --quantize "
            f"{asked or 'none'} (the quantization is fixed when an index is created: leave the option out "
            "or build a new index)", param="quantize")


def open_store(
    uri: str | os.PathLike[str] | None,
    dim: int | None = None,
    *,
    create: bool = True,
    **opts: Any,
) -> VectorStore:
    """Open (or create) the vector store at ``uri``.

    ``dim`` is required to create a store and checked against an existing one. With
    ``create=False`` a missing store raises :class:`NotFoundError`. Other options go to the
    backend: FAISS ``index`` (auto|flat|hnsw; quantized: auto|flat|ivf), ``metric``, ``hnsw_m``,
    ``ef_construction``, ``hnsw_threshold``, ``ivf_threshold`` (used when the folder is created),
    ``ef_search``, ``nprobe`` (inverted lists a quantized IVF store searches) and ``lock_timeout``
    (seconds a writer waits for another process' writer lock); Milvus ``collection`` (default
    ``qembed``), ``token``, ``index_type``. Both: ``quantize`` (``int8`` | ``binary``: codes in
    the index, float32 vectors on disk for rescoring; recorded when the store is created, and a
    different value for an existing store raises :class:`InputError`) and ``rescore`` (candidates
    per hit rescored, :mod:`qembed.store.quantize`). An option the backend does not take raises
    :class:`InputError`; a FAISS creation option given for a folder that already exists is
    logged as a warning (the folder keeps what it was created with).
    """
    check_store_options(uri, opts)
    if is_milvus_uri(uri):
        from qembed.store.milvus_store import MilvusStore

        return MilvusStore.connect(str(uri), dim=dim, create=create, **opts)
    from qembed.store.faiss_store import FaissStore

    if uri is None:
        if dim is None:
            raise InputError("an in-memory store needs dim=")
        return FaissStore.create(None, dim, **opts)
    from qembed.store.faiss_store import IndexExistsError, is_empty_folder

    path = Path(uri)
    if not path.exists() or is_empty_folder(path):
        if not create:
            raise NotFoundError(f"index not found: {path} does not exist")
        if dim is None:
            raise NotFoundError(f"index not found: {path} does not exist (give dim= to create it)")
        try:
            return FaissStore.create(path, dim, **opts)
        except IndexExistsError:
            pass  # another process created it meanwhile: open theirs
    open_opts = {k: opts[k] for k in FAISS_OPEN_OPTIONS if k in opts}
    quantize = opts.get("quantize")
    unused = sorted(set(opts) - FAISS_OPEN_OPTIONS - {"quantize"})
    if unused:
        logger.warning("%s already exists: %s only apply when an index is created; it keeps its own settings",
                       path, ", ".join(f"{k}={opts[k]!r}" for k in unused))
    if quantize is not None:
        check_quantize(quantize)
    store = FaissStore.open(path, **open_opts)
    if quantize is not None:
        try:
            check_recorded_quantize(str(path), store.quantize, quantize)
        except InputError:
            store.close()
            raise
    if dim is not None and store.dim != dim:
        store.close()
        raise InputError(
            f"index {path} holds vectors of size {store.dim}, not {dim} "
            "(it was built with another model or --dimensions)")
    return store


def __getattr__(name: str) -> Any:
    if name == "FaissStore":
        from qembed.store.faiss_store import FaissStore

        return FaissStore
    if name == "MilvusStore":
        from qembed.store.milvus_store import MilvusStore

        return MilvusStore
    raise AttributeError(name)
