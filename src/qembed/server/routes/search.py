"""``POST /v1/search`` (a query, or ``like``: more like given documents), ``POST /v1/documents`` and
``DELETE /v1/documents/{id}``.

Mounted when the server runs with an index (``qembed serve --index DIR_OR_URI``): :func:`setup`
opens (or creates) the knowledge base with the server's batched encoder once the model is ready.
Searches run concurrently; writes are serialised and saved before the response is sent.
Queries and documents are embedded through the batching queue from a worker thread.

A ``POST /v1/documents`` is applied whole or not at all: every document is validated and every
chunk embedded before the index changes (a 400, a 429 from the queue, any failure: nothing
written). ``DELETE /v1/documents/{id}`` takes a document id (never a chunk id ``id#N``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from qembed.config import Settings
from qembed.envelope import search_body
from qembed.errors import InputError, NotFoundError
from qembed.server.routes import served_name, task_encoder
from qembed.server.schemas import Integer, Text

logger = logging.getLogger(__name__)

router = APIRouter(tags=["Search"])

Scalar = Text | StrictBool | StrictInt | StrictFloat


class LikeDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Text = Field(..., description="A stored document id.")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"query": "买了东西两天了怎么还不发快递?", "top_k": 3, "mode": "dense"}]})

    query: Text | None = Field(None, description="The question; it gets the retrieval instruction. Give "
                                                 "`query` or `like`.")
    like: list[Text | LikeDocument] | None = Field(
        None, description="More like this (Elasticsearch's `like`): stored documents as {\"id\": …} and/or "
                          "texts; the closest other documents come back, the given ones never.")
    diversity: StrictFloat | Integer | None = Field(None, description="With `like`: MMR diversity (0..1) "
                                                                      "over the first `candidates` hits.")
    top_k: Integer = Field(10, description="Results to return (1..1000).")
    mode: Text = Field("dense", description="dense, bm25 or hybrid (reciprocal rank fusion).")
    filter: dict[str, Scalar | None | list[Scalar | None]] | None = Field(
        None, description="Metadata filter {field: value or [values]}, applied before the top-k is cut; "
                          "null matches a field that is null or absent.")
    unique_documents: StrictBool = Field(False, description="Keep only the best chunk of each document.")
    model: Text | None = Field(None, description="The served model name (optional).")
    rerank: StrictBool = Field(False, description="Two-stage search: the server's reranker (qembed serve "
                                                  "--reranker) reorders the first stage's top `candidates` "
                                                  "chunks; scores are then the reranker's.")
    candidates: Integer | None = Field(None, description="First-stage chunks reranked when `rerank` is true "
                                       "(1..1000; default 10 with a reranker on a CPU, 100 on a GPU, never "
                                       "fewer than `top_k`), or the pool `like` with `diversity` draws from "
                                       "(default 100).")


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Text = Field(..., description="The document's text (long texts are chunked).")
    id: Text | None = Field(None, description="Document id (default: a hash of the text).")
    title: Text | None = Field(None, description="Title, embedded before the text.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Fields to filter on.")


class DocumentsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"documents": [{"id": "faq-17", "text": "订单超过48小时未发货怎么办", "metadata": {"topic": "shipping"}}]}]})

    documents: list[Text | DocumentIn] = Field(..., description="Texts or document objects.")


def setup(app: FastAPI, settings: Settings) -> None:
    """Open the knowledge base named by ``settings.index`` with the server's encoder."""
    app.state.knowledge_base = None
    app.state.knowledge_base_lock = threading.Lock()
    if not settings.index:
        return
    from qembed.search.knowledge_base import KnowledgeBase

    kb = KnowledgeBase.open(settings.index, app.state.encoder, create=True)
    app.state.knowledge_base = kb
    logger.info("serving knowledge base %s (%d chunks)", settings.index, kb.store.count())


def _kb(request: Request):
    kb = getattr(request.app.state, "knowledge_base", None)
    if kb is None:
        raise NotFoundError("this server has no knowledge base: start it with 'qembed serve --index DIR_OR_URI'",
                            code="no_index")
    return kb


@router.post("/v1/search", summary="Search the knowledge base")
async def search(body: SearchRequest, request: Request) -> dict[str, Any]:
    kb = _kb(request)
    task_encoder(request, body.model, None, bound_to="the knowledge base")
    if body.candidates is not None and not 1 <= body.candidates <= 1000:  # with or without rerank: one rule
        raise InputError(f"candidates must be an integer from 1 to 1000, got {body.candidates}",
                         param="candidates")
    reranker: Any = False
    if body.rerank:
        served = request.app.state.registry.default("reranker")
        if served is None:
            raise InputError("rerank needs a server started with a reranker ('qembed serve --reranker MODEL')",
                             param="rerank", code="no_reranker")
        reranker = served.require()
    if body.like is not None:
        if body.query is not None:
            raise InputError("give query or like, not both", param="like")
        if not body.like:
            raise InputError("like is empty: give document ids ({\"id\": …}) or texts", param="like")
        if body.mode != "dense":
            raise InputError("like finds documents by their vectors: mode must be dense", param="mode")
        ids = [x.id for x in body.like if not isinstance(x, str)]
        texts = [x for x in body.like if isinstance(x, str)]
        hits = await run_in_threadpool(kb.similar, ids or None, texts=texts or None, top_k=body.top_k,
                                       filter=body.filter, unique_documents=True,
                                       diversity=None if body.diversity is None else float(body.diversity),
                                       rerank=reranker, **({} if body.candidates is None
                                                           else {"candidates": body.candidates}))
        return search_body(hits, model=served_name(request), mode=body.mode)
    if body.query is None:
        raise InputError("give query (or like)", param="query")
    if body.diversity is not None:
        raise InputError("diversity goes with like", param="diversity")
    hits = await run_in_threadpool(kb.search, body.query, body.top_k, mode=body.mode, filter=body.filter,
                                   unique_documents=body.unique_documents, rerank=reranker,
                                   candidates=body.candidates)
    return search_body(hits, model=served_name(request), mode=body.mode)


@router.post("/v1/documents", summary="Add or replace documents")
async def add_documents(body: DocumentsRequest, request: Request) -> dict[str, Any]:
    kb = _kb(request)
    limit = request.app.state.settings.max_client_batch_size
    if not body.documents:
        raise InputError("documents is empty: pass at least one document", param="documents")
    if len(body.documents) > limit:
        raise InputError(f"at most {limit} documents per request, got {len(body.documents)}", param="documents")
    docs = [d if isinstance(d, str) else d.model_dump(exclude_none=True) for d in body.documents]

    def write() -> dict[str, Any]:
        from qembed.search.knowledge_base import as_documents

        parsed = as_documents(docs)
        with request.app.state.knowledge_base_lock:
            result = kb.add(parsed)
        return {**result, "ids": [d.id for d in parsed]}

    result = await run_in_threadpool(write)
    return {"object": "documents", **result, "count": kb.store.count()}


@router.delete("/v1/documents/{doc_id:any}", summary="Delete a document (all its chunks)")
async def delete_document(doc_id: str, request: Request) -> dict[str, Any]:
    kb = _kb(request)

    from qembed.search.knowledge_base import check_document_id

    check_document_id(doc_id, where="the document id", param="id")

    def remove() -> int:
        with request.app.state.knowledge_base_lock:
            return kb.delete([doc_id])

    removed = await run_in_threadpool(remove)
    if not removed:
        raise NotFoundError(f"no document with id {doc_id!r}", param="id", code="document_not_found")
    return {"object": "document", "id": doc_id, "deleted": True}
