"""Semantic search over a knowledge base: documents → chunks → vectors in a store, plus BM25.

``KnowledgeBase(encoder, store)`` ties an :class:`~qembed.models.encoder.Encoder` to a
:class:`~qembed.store.base.VectorStore`:

- :meth:`KnowledgeBase.add` chunks each document by tokens (with overlap), embeds the chunks with
  no instruction, and upserts them as ``docid`` (one chunk) or ``docid#0``, ``docid#1`` … with the
  document id in ``metadata["doc_id"]`` (:func:`chunk_ids`: ids near the 512-character limit get
  a bounded form). Re-adding a document first removes its old chunks.
- :meth:`KnowledgeBase.search` embeds the query with the retrieval instruction and returns the
  nearest chunks (``mode="dense"``), BM25 matches (``"bm25"``), or both fused by reciprocal rank
  (``"hybrid"``, k=60). Metadata filters apply before the top-k is cut in every mode.
- :meth:`KnowledgeBase.similar` ("more like this") returns the chunks nearest to given documents
  (stored ids or new texts), the given ones left out; optional MMR diversity and rerank.
- The store's manifest records the encoder's name and vector size; opening a knowledge base with
  another encoder is refused, since its vectors would not be comparable.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager, Iterable, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from qembed.config import resolve_instruction, want_progress
from qembed.deprecated import old_keywords
from qembed.errors import InputError
from qembed.io import is_milvus_server, is_milvus_uri
from qembed.models.prompts import DEFAULT_QUERY_INSTRUCTION
from qembed.store import open_store
from qembed.store.base import (
    MAX_ID_LENGTH,
    Filter,
    Hit,
    VectorStore,
    check_field_name,
    check_filter,
    check_id,
    check_metadata_value,
    check_texts,
)
from qembed.search.chunking import Chunker, check_chunking
from qembed.search.lexical import BM25Index

logger = logging.getLogger(__name__)

MODES = ("dense", "bm25", "hybrid")
#: Reciprocal-rank-fusion constant (Cormack et al., 2009).
RRF_K = 60
#: Candidates taken from each retriever before fusing.
HYBRID_DEPTH = 100
#: First-stage chunks a two-stage search reranks by default: the published protocol's 100 for a
#: reranker on a GPU or behind a URL, and 10 for one on a CPU, where each candidate costs a
#: reranker pass of ~0.13 s (0.6B, 2 cores) and 10 keep a query under 2 s (docs/rerank.md#speed).
#: Never fewer than ``top_k``. ``similar``'s MMR pool is 100 wherever the reranker runs.
RERANK_CANDIDATES = 100
RERANK_CANDIDATES_CPU = 10
DOC_ID = "doc_id"
CHUNK = "chunk"
RESERVED_FIELDS = (DOC_ID, CHUNK)
MAX_QUERY_CHARS = 32_768


@dataclass
class Document:
    """A document to index: ``text`` plus optional ``id`` (default: a hash of the text), ``title``, ``metadata``."""

    text: str
    id: str | None = None
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def check_document_id(value: Any, *, where: str = "document id", param: str = "documents") -> str:
    """A document id: a valid store id (:func:`~qembed.store.base.check_id`) without ``#``,
    which separates a document id from its chunk number."""
    check_id(value, where=where, param=param)
    if "#" in value:
        raise InputError(f"{where} {value!r} contains '#', which separates a document id from its chunk "
                         "number; document ids may not hold it", param=param)
    return value


#: Hex digits of SHA-256 in the bounded chunk ids of long document ids (:func:`chunk_ids`).
CHUNK_DIGEST = 32


def chunk_ids(doc_id: str, n: int) -> list[str]:
    """The store ids of a document's ``n`` chunks, never longer than ``MAX_ID_LENGTH``.

    One chunk: the document id itself. Several: ``doc_id#0``, ``doc_id#1`` …; when the last of
    those would pass the limit (a document id near 512 characters), every chunk of the document
    gets ``<first characters of doc_id>#<32 hex digits of SHA-256 of doc_id>#<N>`` instead, cut to
    the limit. Chunk ids hold ``#``, which document ids may not, so they never collide with one;
    the bounded form has two, so it never collides with the short form. The document id of a
    chunk is always ``metadata["doc_id"]``.
    """
    if n == 1:
        return [doc_id]
    if len(doc_id) + 1 + len(str(n - 1)) <= MAX_ID_LENGTH:
        return [f"{doc_id}#{i}" for i in range(n)]
    digest = hashlib.sha256(doc_id.encode("utf-8")).hexdigest()[:CHUNK_DIGEST]
    keep = MAX_ID_LENGTH - len(digest) - 2 - len(str(n - 1))
    return [f"{doc_id[:keep]}#{digest}#{i}" for i in range(n)]


def document_id(text: str) -> str:
    """A stable id for a document without one: the first 16 hex digits of SHA-1 of its text."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def as_documents(items: Iterable[Any]) -> list[Document]:
    """Strings, dicts (``text``, ``id``, ``title``, ``metadata`` or other fields) or Documents → Documents.

    Raises :class:`InputError` naming the first document without text.
    """
    docs: list[Document] = []
    for i, item in enumerate(items):
        if isinstance(item, Document):
            doc = item
        elif isinstance(item, str):
            doc = Document(text=item)
        elif isinstance(item, Mapping):
            extra = {k: v for k, v in item.items() if k not in {"text", "id", "_id", "title", "metadata"}}
            meta = item.get("metadata") or {}
            if not isinstance(meta, Mapping):
                raise InputError(f"document {i}: metadata must be an object", param="documents")
            meta = dict(meta)
            meta.update(extra)
            raw_id = item.get("id", item.get("_id"))
            doc = Document(text=item.get("text"), id=None if raw_id is None else str(raw_id),
                           title=item.get("title") or None, metadata=meta)
        else:
            raise InputError(f"document {i} is {type(item).__name__}; pass strings or objects with 'text'")
        if not isinstance(doc.text, str) or not doc.text.strip():
            where = f" (id {doc.id!r})" if doc.id else ""
            raise InputError(f"document {i}{where} has no text", param="documents")
        if doc.title is not None and not isinstance(doc.title, str):
            raise InputError(f"document {i}: title must be a string", param="documents")
        if doc.id is not None:
            check_document_id(doc.id, where=f"document {i}: id")
        try:
            check_texts([doc.text, doc.title], 2)
        except InputError as exc:
            raise InputError(f"document {i}: " + exc.message.replace("texts[0]", "text").replace(
                "texts[1]", "title"), param="documents") from None
        for key in doc.metadata:
            if key in RESERVED_FIELDS:
                raise InputError(f"document {i}: metadata field {key!r} is reserved", param="documents")
            check_field_name(key, where=f"document {i}: metadata", param="documents")
        check_metadata_value(doc.metadata, where=f"document {i}: metadata", param="documents")
        if doc.title is not None:
            check_metadata_value(doc.title, where=f"document {i}: title", param="documents")
        docs.append(doc)
    if not docs:
        raise InputError("no documents to add", param="documents")
    seen: dict[str, int] = {}
    for i, doc in enumerate(docs):
        doc.id = doc.id or document_id(doc.text)
        if doc.id in seen:
            raise InputError(f"documents {seen[doc.id]} and {i} have the same id {doc.id!r}", param="documents")
        seen[doc.id] = i
    return docs


def default_candidates(reranker: Any, top_k: int = 10) -> int:
    """First-stage chunks to rerank when the call names none: :data:`RERANK_CANDIDATES_CPU` for a
    reranker on a CPU (its ``device``, or a served reranker's reported device), else
    :data:`RERANK_CANDIDATES`; never fewer than ``top_k``."""
    device = getattr(reranker, "device", None)
    info = getattr(reranker, "info_data", None)
    if device is None and isinstance(info, dict):
        device = info.get("device") or (info.get("info") or {}).get("device")
    cpu = str(device or "").split(":")[0] == "cpu"
    return min(1000, max(int(top_k), RERANK_CANDIDATES_CPU if cpu else RERANK_CANDIDATES))


class KnowledgeBase:
    """An encoder and a vector store: add documents, delete them, search by meaning or words.

    Args:
        encoder: any :class:`~qembed.models.encoder.Encoder` (local model or remote endpoint).
        store: a :class:`~qembed.store.base.VectorStore` whose ``dim`` matches the encoder's
            (or ``dimensions``).
        query_instruction: instruction given to queries (``None``: the web-search retrieval
            default, ``""``: none); documents get none.
        chunk_tokens / chunk_overlap: token windows for long documents (``None``: no chunking;
            documents are then truncated at the model's limit).
        dimensions: Matryoshka size to store (default the model's full size).
        reranker: a reranker (:func:`qembed.load_reranker`) for two-stage search
            (``search(..., rerank=True)``); optional.
    """

    def __init__(
        self,
        encoder: Any,
        store: VectorStore,
        *,
        query_instruction: str | None = None,
        chunk_tokens: int | None = 512,
        chunk_overlap: int = 64,
        dimensions: int | None = None,
        reranker: Any = None,
    ) -> None:
        check_chunking(chunk_tokens, chunk_overlap)
        self.encoder = encoder
        self.reranker = reranker
        self.store = store
        self.query_instruction = resolve_instruction(query_instruction, DEFAULT_QUERY_INSTRUCTION)
        self.dimensions = dimensions
        dim = dimensions or encoder.dim
        if store.dim != dim:
            raise InputError(f"the index holds vectors of size {store.dim} but {encoder.name} makes vectors "
                             f"of size {dim}; use the model the index was built with")
        recorded = store.get_meta("model")
        if recorded is not None and recorded != encoder.name:
            raise InputError(f"the index was built with model {recorded!r}, not {encoder.name!r}: its vectors "
                             f"are not comparable; search it with {recorded!r} or build a new index")
        if recorded is None:
            store.set_meta("model", encoder.name)
            store.set_meta("dimensions", dim)
            # what loads the same model again (Hub id, absolute folder or endpoint URL); never the
            # Hugging Face snapshot folder, whose name is a hash
            source = getattr(encoder, "model_source", None) or getattr(encoder, "path", None)
            if source is not None and store.get_meta("model_source") is None:
                store.set_meta("model_source", str(source))
        self._chunk_tokens = chunk_tokens
        self._chunk_overlap = chunk_overlap
        self._chunker: Chunker | None = None
        self._bm25: BM25Index | None = None
        self._bm25_lock = threading.Lock()

    # ------------------------------------------------------------------ construction

    @classmethod
    def open(
        cls,
        location: str | os.PathLike[str] | None,
        encoder: Any,
        *,
        create: bool = True,
        dimensions: int | None = None,
        store_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> "KnowledgeBase":
        """Open (or create) the knowledge base at a FAISS folder, Milvus ``.db`` file or URI."""
        store = open_store(location, dim=dimensions or encoder.dim, create=create, **dict(store_options or {}))
        try:
            kb = cls(encoder, store, dimensions=dimensions, **kwargs)
            kb.store.save()  # a new knowledge base records its model now (and frees the writer lock)
            return kb
        except Exception:
            store.close()
            raise

    # ------------------------------------------------------------------ writing

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            self._chunker = Chunker(self.encoder, self._chunk_tokens, self._chunk_overlap)
        return self._chunker

    @old_keywords
    def add(
        self,
        documents: Iterable[Any],
        *,
        batch_size: int = 256,
        progress: bool | None = False,
        save: bool = True,
    ) -> dict[str, int]:
        """Chunk, embed and store documents; a document already present is replaced.

        ``documents``: strings, dicts with ``text`` (+ ``id``, ``title``, ``metadata`` or other
        fields, which go to metadata) or :class:`Document`. All or nothing: everything is
        validated and every chunk embedded before the store changes, in one write (on FAISS one
        transaction), so a call that fails anywhere — bad input, a 429 from a remote encoder, a
        full disk — leaves the documents as they were. Returns ``{"documents", "chunks", "replaced"}``.
        """
        docs = as_documents(documents)
        pieces: list[tuple[str, str, dict[str, Any]]] = []  # (chunk id, text, metadata)
        for doc in docs:
            full = f"{doc.title} {doc.text}" if doc.title else doc.text
            chunks = self.chunker.split(full)
            for cid, ch in zip(chunk_ids(doc.id, len(chunks)), chunks):
                meta = dict(doc.metadata)
                if doc.title:
                    meta.setdefault("title", doc.title)
                meta[DOC_ID] = doc.id
                meta[CHUNK] = ch.index
                pieces.append((cid, ch.text, meta))
        show = want_progress(progress, len(pieces), batch_size)
        bar = tqdm(total=len(pieces), desc="embedding", unit="chunk", disable=not show)
        parts: list[np.ndarray] = []
        try:
            for start in range(0, len(pieces), batch_size):
                batch = pieces[start:start + batch_size]
                parts.append(self.encoder.encode([p[1] for p in batch], dimensions=self.dimensions))
                bar.update(len(batch))
        finally:
            bar.close()
        vectors = np.concatenate(parts) if len(parts) > 1 else parts[0]
        new_ids = {p[0] for p in pieces}
        with write_lock(self.store):  # the chunks to replace are read under the same lock
            clean = not getattr(self.store, "has_unsaved_changes", True)
            replaced = self._existing_chunks([d.id for d in docs])
            n_replaced = len(documents_of(self.store, replaced)) if replaced else 0
            stale = [c for c in replaced if c not in new_ids]
            self.store.upsert([p[0] for p in pieces], vectors, texts=[p[1] for p in pieces],
                              metadata=[p[2] for p in pieces], delete=stale)
            self._changed()
            if save:
                self._save_or_discard(clean)
        logger.info("indexed %d document(s) as %d chunk(s) (%d replaced)", len(docs), len(pieces), n_replaced)
        return {"documents": len(docs), "chunks": len(pieces), "replaced": n_replaced}

    def delete(self, ids: str | Sequence[str], *, save: bool = True) -> int:
        """Remove documents (all their chunks) by document id; returns how many documents were removed."""
        with write_lock(self.store):
            clean = not getattr(self.store, "has_unsaved_changes", True)
            removed = delete_documents(self.store, ids)
            if removed:
                self._bm25 = None
                if save:
                    self._save_or_discard(clean)
        return removed

    def save(self) -> None:
        """Persist the store and the BM25 index beside it."""
        self.store.save()
        if self._bm25 is not None:
            self._save_bm25(self._bm25)

    def _save_or_discard(self, clean: bool) -> None:
        """Save; if that fails and the store held nothing unsaved before this write, drop the
        write too, so a failed call leaves the store as the folder has it (FAISS)."""
        try:
            self.save()
        except Exception:
            discard = getattr(self.store, "discard", None)
            if clean and discard is not None:
                discard()
                self._bm25 = None
            raise

    def close(self) -> None:
        """Close the store (call :meth:`save` first to keep unsaved changes)."""
        self.store.close()

    def __enter__(self) -> "KnowledgeBase":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        return self.store.count()

    def info(self) -> dict[str, Any]:
        """Store information plus the number of documents and chunks."""
        info = dict(self.store.info())
        info["chunks"] = info.get("count")
        try:
            info["documents"] = len({_document_of(r) for batch in self.store.scan() for r in batch})
        except InputError:
            info["documents"] = info.get("count")
        info["model"] = self.store.get_meta("model")
        return info

    # ------------------------------------------------------------------ reading

    def search(
        self,
        query: str | Sequence[str],
        top_k: int = 10,
        *,
        mode: str = "dense",
        filter: Filter | None = None,
        unique_documents: bool = False,
        rerank: Any = False,
        candidates: int | None = None,
        rerank_instruction: str | None = None,
    ) -> list[Hit] | list[list[Hit]]:
        """Nearest chunks for a query (or a list of queries → a list of hit lists).

        ``mode``: ``dense`` (vectors), ``bm25`` (words) or ``hybrid`` (reciprocal rank fusion of
        both). ``filter``: ``{field: value or [values]}`` on metadata. ``unique_documents`` keeps
        only the best chunk of each document. Hit scores: inner product (dense), BM25 score
        (bm25), fused RRF score (hybrid).

        Two-stage search: ``rerank=True`` (the knowledge base's ``reranker``) or ``rerank=`` a
        reranker reads the query with each of the first stage's top ``candidates`` chunks and
        orders them by its score, which becomes the hits' ``score``; the best ``top_k`` of them
        come back (so at most ``candidates``; ``None``: :func:`default_candidates`).
        ``rerank_instruction`` is the reranker's instruction (``None``: its default).
        """
        single = isinstance(query, str)
        queries = [query] if single else list(query)
        if not queries:
            raise InputError("no query given", param="query")
        for i, q in enumerate(queries):
            if not isinstance(q, str) or not q.strip():
                raise InputError("the query is empty" if single else f"query {i} is empty", param="query")
            if len(q) > MAX_QUERY_CHARS:
                raise InputError(f"the query is longer than {MAX_QUERY_CHARS} characters", param="query")
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}", param="mode")
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= 1000:
            raise InputError(f"top_k must be an integer from 1 to 1000, got {top_k!r}", param="top_k")
        flt = check_filter(filter)
        reranker = self._reranker_for(rerank)
        depth = top_k * 4 if unique_documents else top_k
        if reranker is not None:
            if candidates is None:
                candidates = default_candidates(reranker, int(top_k))
            if isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer)) \
                    or not 1 <= candidates <= 1000:
                raise InputError(f"candidates must be an integer from 1 to 1000, got {candidates!r}",
                                 param="candidates")
            depth = int(candidates)
        if mode == "dense":
            results = self._dense(queries, depth, filter)
        elif mode == "bm25":
            results = [self._lexical(q, depth, flt) for q in queries]
        else:
            wide = max(depth, HYBRID_DEPTH)
            dense = self._dense(queries, wide, filter)
            results = [rrf([d, self._lexical(q, wide, flt)], depth) for q, d in zip(queries, dense)]
        if reranker is not None:
            results = [_rerank_hits(reranker, q, r[:depth], rerank_instruction) for q, r in zip(queries, results)]
        if unique_documents:
            results = [_best_per_document(r, top_k) for r in results]
        else:
            results = [r[:top_k] for r in results]
        return results[0] if single else results

    def similar(
        self,
        ids: str | Sequence[str] | None = None,
        *,
        texts: str | Sequence[str] | None = None,
        top_k: int = 10,
        filter: Filter | None = None,
        unique_documents: bool = True,
        diversity: float | None = None,
        rerank: Any = False,
        candidates: int = RERANK_CANDIDATES,
        rerank_instruction: str | None = None,
    ) -> list[Hit]:
        """More like this: the stored chunks closest to given documents, the given ones left out.

        ``ids``: stored document ids (their chunk vectors are averaged, each document weighing the
        same); ``texts``: documents that need not be stored (embedded as documents are, with no
        instruction); both may be given. The query is the normalised mean of those vectors; hits
        score by inner product with it. Never returned: the chunks of the given ``ids``, and stored
        chunks whose text equals one of the given ``texts``. ``filter`` and ``unique_documents``
        (default on: the best chunk per document) as in :meth:`search`.

        ``diversity`` (0..1, optional): maximal marginal relevance over the first ``candidates``
        hits, ``(1 - diversity) * cos(hit, query) - diversity * max cos(hit, chosen)``. ``rerank``
        (as in :meth:`search`): the reranker reads the given documents' text as the query with each of
        the first ``candidates`` hits. Raises :class:`InputError` for bad input and
        :class:`~qembed.errors.NotFoundError` for an unknown id.
        """
        from qembed.errors import NotFoundError
        from qembed.summarize.extractive import rank

        id_list = [] if ids is None else [ids] if isinstance(ids, str) else list(ids)
        text_list = [] if texts is None else [texts] if isinstance(texts, str) else list(texts)
        if not id_list and not text_list:
            raise InputError("give the documents to find more like: ids and/or texts", param="like")
        for i, value in enumerate(id_list):
            check_document_id(value, where=f"like id {i}" if len(id_list) > 1 else "the like id", param="like")
        for i, t in enumerate(text_list):
            if not isinstance(t, str) or not t.strip():
                raise InputError(f"like text {i} is empty" if len(text_list) > 1 else "the like text is empty",
                                 param="like")
            if len(t) > MAX_QUERY_CHARS:
                raise InputError(f"like text {i} is longer than {MAX_QUERY_CHARS} characters", param="like")
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= 1000:
            raise InputError(f"top_k must be an integer from 1 to 1000, got {top_k!r}", param="top_k")
        if diversity is not None and (isinstance(diversity, bool) or not isinstance(diversity, (int, float))
                                      or not 0.0 <= diversity <= 1.0):
            raise InputError(f"diversity must be a number from 0 to 1, got {diversity!r}", param="diversity")
        if isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer)) \
                or not 1 <= candidates <= 1000:
            raise InputError(f"candidates must be an integer from 1 to 1000, got {candidates!r}",
                             param="candidates")
        check_filter(filter)
        reranker = self._reranker_for(rerank)
        parts: list[np.ndarray] = []
        given_text: list[str] = []
        exclude: set[str] = set()
        for doc in dict.fromkeys(id_list):
            chunks = chunks_of(self.store, [doc])
            records = [r for r in self.store.get(chunks, with_vectors=True) if r is not None]
            if not records:
                raise NotFoundError(f"no document with id {doc!r}", param="like", code="document_not_found")
            exclude.update(r.id for r in records)
            vecs = np.stack([np.asarray(r.vector, dtype=np.float32) for r in records])
            parts.append(_unit(vecs.mean(axis=0)))
            records.sort(key=lambda r: int((r.metadata or {}).get(CHUNK, 0) or 0))
            given_text.append(" ".join(r.text or "" for r in records).strip())
        if text_list:
            vecs = self.encoder.encode(text_list, dimensions=self.dimensions)
            parts += [_unit(v) for v in np.asarray(vecs, dtype=np.float32)]
            given_text += text_list
        query = _unit(np.mean(np.stack(parts), axis=0))
        same_text = {t.strip() for t in text_list}
        want = int(candidates) if (reranker is not None or diversity is not None) else int(top_k)
        hits = self._nearest_except(query, max(want, top_k), filter, exclude, same_text, unique_documents)
        if diversity is not None and hits:
            records = self.store.get([h.id for h in hits], with_vectors=True)
            vecs = np.stack([np.asarray(r.vector, dtype=np.float32) for r in records])
            order, _ = rank(vecs, len(hits) if reranker is not None else top_k, method="mmr",
                            diversity=float(diversity), max_similarity=1.0, reference=query)
            hits = [hits[i] for i in order]
        if reranker is not None:
            text = "\n".join(t for t in given_text if t)[:MAX_QUERY_CHARS]
            hits = _rerank_hits(reranker, text, hits, rerank_instruction)
        return hits[:top_k]

    def _nearest_except(self, query: np.ndarray, k: int, filter: Filter | None, exclude: set[str],
                        same_text: set[str], unique_documents: bool) -> list[Hit]:
        """The ``k`` best hits for ``query`` once the excluded chunks are left out (searching deeper
        until ``k`` remain or the store is exhausted)."""
        total = self.store.count()
        if total == 0:
            return []
        depth = min(total, k + len(exclude) + (k * 3 if unique_documents else 0) + len(same_text))
        while True:
            found = self.store.search(query[None, :], k=min(depth, 16384), filter=filter)[0]
            kept = [h for h in found if h.id not in exclude and (h.text or "").strip() not in same_text]
            if unique_documents:
                kept = _best_per_document(kept, k)
            if len(kept) >= k or len(found) < depth or depth >= min(total, 16384):
                return kept[:k]
            depth = min(total, depth * 2)

    def _reranker_for(self, rerank: Any) -> Any:
        """The reranker ``rerank`` names: ``False``/``None`` none, ``True`` the knowledge base's own."""
        if rerank is None or rerank is False:
            return None
        if rerank is True:
            if self.reranker is None:
                raise InputError("rerank=True needs a reranker: open the knowledge base with reranker=... "
                                 "or pass the reranker as rerank=", param="rerank")
            return self.reranker
        if not callable(getattr(rerank, "rerank", None)):
            raise InputError(f"rerank must be True, False or a reranker, got {type(rerank).__name__}",
                             param="rerank")
        return rerank

    def _dense(self, queries: list[str], k: int, filter: Filter | None) -> list[list[Hit]]:
        if self.store.count() == 0:
            return [[] for _ in queries]
        vectors = self.encoder.encode(queries, instruction=self.query_instruction, dimensions=self.dimensions)
        return self.store.search(vectors, k=min(k, 16384), filter=filter)

    def _lexical(self, query: str, k: int, flt: Mapping[str, list[Any]] | None) -> list[Hit]:
        index = self.bm25()
        allowed = set(self.store.ids(flt)) if flt else None
        found = index.search(query, k, allowed)
        if not found:
            return []
        records = self.store.get([d for d, _ in found])
        return [Hit(id=d, score=s, text=r.text, metadata=r.metadata)
                for (d, s), r in zip(found, records) if r is not None]

    # ------------------------------------------------------------------ BM25 beside the vectors

    def bm25(self) -> BM25Index:
        """The BM25 index over the stored chunk texts, loaded from beside the store or rebuilt."""
        with self._bm25_lock:
            return self._load_bm25()

    def _load_bm25(self) -> BM25Index:
        version = self.store.get_meta("bm25_version", 0)
        if self._bm25 is not None and self._bm25.version == version:
            return self._bm25
        folder = self._bm25_folder()
        index = BM25Index.load(folder) if folder is not None else None
        if index is None or index.version != version:
            ids: list[str] = []
            texts: list[str | None] = []
            for batch in self.store.scan():
                for r in batch:
                    ids.append(r.id)
                    texts.append(r.text)
            logger.info("building the BM25 index over %d chunk(s)", len(ids))
            index = BM25Index(ids, texts, version=version)
            self._save_bm25(index)
        self._bm25 = index
        return index

    def _bm25_folder(self) -> Path | None:
        loc = self.store.location
        if loc is None or is_milvus_server(loc):
            return None
        path = Path(loc)
        return path / "bm25" if path.is_dir() and not is_milvus_uri(loc) else path.with_name(path.name + ".bm25")

    def _save_bm25(self, index: BM25Index) -> None:
        folder = self._bm25_folder()
        if folder is None:
            return
        try:
            index.save(folder)
        except OSError as exc:  # the BM25 index is derived data: it is rebuilt when missing
            logger.warning("could not save the BM25 index to %s: %s", folder, exc)

    def _changed(self) -> None:
        _bump_bm25(self.store)
        self._bm25 = None

    # ------------------------------------------------------------------ helpers

    def _existing_chunks(self, doc_ids: Sequence[str]) -> list[str]:
        return chunks_of(self.store, doc_ids)

    @staticmethod
    def _doc_of(chunk_id: str) -> str:
        """The document id a chunk id starts with (chunks of short ids; see :func:`documents_of`)."""
        return chunk_id.split("#", 1)[0]


def _document_of(record: Any) -> str:
    """A stored chunk's document id: ``metadata["doc_id"]``, else the id up to its first ``#``."""
    doc = (record.metadata or {}).get(DOC_ID)
    return doc if isinstance(doc, str) else record.id.split("#", 1)[0]


def documents_of(store: VectorStore, chunk_ids: Sequence[str]) -> set[str]:
    """The document ids of stored chunks (by ``metadata["doc_id"]``; unknown chunk ids are skipped)."""
    out: set[str] = set()
    ids = list(chunk_ids)
    for start in range(0, len(ids), 1000):
        out |= {_document_of(r) for r in store.get(ids[start:start + 1000]) if r is not None}
    return out


def chunks_of(store: VectorStore, doc_ids: Sequence[str]) -> list[str]:
    """Ids of the stored chunks of the given documents (by ``metadata.doc_id`` or equal id)."""
    if not doc_ids or store.count() == 0:
        return []
    out: list[str] = []
    for start in range(0, len(doc_ids), 200):
        part = list(doc_ids[start:start + 200])
        try:
            out += store.ids({DOC_ID: part})
        except InputError:  # no stored chunk carries doc_id (a store filled outside a KnowledgeBase)
            pass
        rest = [d for d in part if d not in set(out)]
        if rest:
            out += [r.id for r in store.get(rest) if r is not None]
    return list(dict.fromkeys(out))


def delete_documents(store: VectorStore, ids: str | Sequence[str]) -> int:
    """Delete documents (every chunk) from ``store`` without an encoder; returns documents removed.

    Used by :meth:`KnowledgeBase.delete` and ``qembed index delete``; marks the BM25 index stale.
    """
    if isinstance(ids, str):
        ids = [ids]
    ids = list(ids)
    if not ids:
        raise InputError("give at least one non-empty document id", param="ids")
    for i, value in enumerate(ids):
        check_document_id(value, where=f"document id {i}" if len(ids) > 1 else "the document id", param="id")
    with write_lock(store):
        chunks = chunks_of(store, ids)
        if not chunks:
            return 0
        found = documents_of(store, chunks)
        store.delete(chunks)
        _bump_bm25(store)
    return len(found & set(ids)) or len(found)


def write_lock(store: VectorStore) -> ContextManager[None]:
    """The store's writer lock (:meth:`~qembed.store.base.VectorStore.write_lock`); a store
    without one (written before it joined the interface) gets none."""
    lock = getattr(store, "write_lock", None)
    return lock() if lock is not None else contextlib.nullcontext()


def _bump_bm25(store: VectorStore) -> None:
    store.set_meta("bm25_version", int(store.get_meta("bm25_version", 0)) + 1)


def rrf(rankings: Sequence[Sequence[Hit]], k: int, constant: int = RRF_K) -> list[Hit]:
    """Reciprocal rank fusion: score(d) = Σ 1 / (constant + rank_i(d)), ranks from 1; top ``k``."""
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, 1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (constant + rank)
            first.setdefault(hit.id, hit)
    order = sorted(scores, key=lambda d: (-scores[d], d))[:k]
    return [Hit(id=d, score=scores[d], text=first[d].text, metadata=first[d].metadata) for d in order]


def _rerank_hits(reranker: Any, query: str, hits: Sequence[Hit], instruction: str | None) -> list[Hit]:
    """``hits`` ordered by ``reranker``'s score of (query, chunk text), which becomes their score."""
    if not hits:
        return []
    missing = next((h.id for h in hits if not h.text or not h.text.strip()), None)
    if missing is not None:
        raise InputError(f"chunk {missing!r} has no stored text to rerank", param="rerank")
    ranked = reranker.rerank(query, [h.text for h in hits], instruction)
    return [Hit(id=hits[r.index].id, score=float(r.score), text=hits[r.index].text,
                metadata=hits[r.index].metadata) for r in ranked]


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _best_per_document(hits: Sequence[Hit], k: int) -> list[Hit]:
    seen: set[str] = set()
    out: list[Hit] = []
    for h in hits:
        doc = str(h.metadata.get(DOC_ID, h.id.split("#", 1)[0]))
        if doc not in seen:
            seen.add(doc)
            out.append(h)
        if len(out) == k:
            break
    return out
