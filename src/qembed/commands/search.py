"""``qembed index add|delete|info``, ``qembed search`` and ``qembed eval retrieval``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer

from qembed.commands._common import (
    ApiKeyOpt, DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, emit_json, fail, logger, open_encoder,
)
from qembed.errors import InputError

IndexOpt = typer.Option(..., "--index", "-x", help="Knowledge base: a folder (FAISS), a .db file "
                        "(Milvus Lite) or http://host:19530 (Milvus server).")
CollectionOpt = typer.Option(None, "--collection", help="Milvus collection (default 'qembed').")


def _store_opts(collection: Optional[str], kind: Optional[str] = None) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if collection:
        opts["collection"] = collection
    if kind:
        opts["index"] = kind
    return opts


# ---------------------------------------------------------------------- reading sources


def _safe_id(value: str) -> str:
    return value.replace("#", "_")


def read_documents(
    paths: List[Path],
    *,
    per_file: bool = False,
    text_column: Optional[str] = None,
    id_column: Optional[str] = None,
    title_column: Optional[str] = None,
) -> list[dict[str, Any]]:
    """Documents from .txt (a line each, or the file with ``per_file``), .md (the file),
    .jsonl/.json and .csv/.tsv records; each gets ``metadata.source`` = the file name."""
    from qembed.io import read_records

    docs: list[dict[str, Any]] = []
    for path in paths:
        if not path.is_file():
            raise InputError(f"file not found: {path}")
        suffix = path.suffix.lower()
        source = path.name
        if suffix in (".txt", ".md", ""):
            content = path.read_text(encoding="utf-8")
            if per_file or suffix == ".md":
                title = None
                if suffix == ".md":
                    first = content.lstrip().splitlines()[0] if content.strip() else ""
                    if first.startswith("#"):
                        title = first.lstrip("#").strip() or None
                docs.append({"id": _safe_id(str(path)), "text": content, "title": title,
                             "metadata": {"source": source}})
            else:
                for lineno, line in enumerate(content.splitlines(), 1):
                    if line.strip():
                        docs.append({"id": _safe_id(f"{path}:{lineno}"), "text": line.strip(),
                                     "metadata": {"source": source}})
        elif suffix in (".jsonl", ".json", ".ndjson", ".csv", ".tsv"):
            text_key = text_column or "text"
            for i, rec in enumerate(read_records(path), 1):
                if text_key not in rec:
                    have = ", ".join(map(str, rec)) or "nothing"
                    raise InputError(f"{path}: record {i} has no {text_key!r} field (it has: {have}); "
                                     "name the text field with --text-column")
                rec = dict(rec)
                doc: dict[str, Any] = {"text": rec.pop(text_key)}
                raw_id = rec.pop(id_column, None) if id_column else rec.pop("id", rec.pop("_id", None))
                doc["id"] = _safe_id(str(raw_id)) if raw_id not in (None, "") else _safe_id(f"{path}:{i}")
                title = rec.pop(title_column or "title", None)
                doc["title"] = title if isinstance(title, str) and title.strip() else None
                meta = rec.pop("metadata", None) or {}
                if not isinstance(meta, dict):
                    raise InputError(f"{path}: record {i}: 'metadata' must be an object")
                meta.update({k: v for k, v in rec.items() if v not in (None, "")})
                meta.setdefault("source", source)
                doc["metadata"] = meta
                if not isinstance(doc["text"], str) or not doc["text"].strip():
                    raise InputError(f"{path}: record {i} (id {doc['id']!r}) has no text")
                docs.append(doc)
        else:
            raise InputError(f"{path}: unsupported file type {suffix}; use .txt, .md, .jsonl, .json, .csv or .tsv")
    if not docs:
        raise InputError("the sources contain no documents")
    return docs


def parse_filters(items: Optional[List[str]]) -> Optional[dict[str, Any]]:
    """``key=value`` strings → a filter; values that parse as JSON numbers/booleans are typed,
    a repeated key means any of its values."""
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--filter {item!r} must look like key=value")
        value: Any = raw
        try:
            parsed = json.loads(raw)
            if isinstance(parsed, (int, float, bool, str)):
                value = parsed
        except ValueError:
            pass
        key = key.strip()
        if key in out:
            prev = out[key] if isinstance(out[key], list) else [out[key]]
            out[key] = prev + [value]
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------- commands


def index_add(
    sources: List[Path] = typer.Argument(..., help="Files: .txt (a document per line), .md, .jsonl, .csv."),
    index: str = IndexOpt,
    model: Optional[str] = ModelOpt,
    per_file: bool = typer.Option(False, "--per-file", help="A .txt file is one document (not one per line)."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Field/column holding the text (default 'text')."),
    id_column: Optional[str] = typer.Option(None, "--id-column", help="Field/column holding the id (default 'id' or '_id')."),
    title_column: Optional[str] = typer.Option(None, "--title-column", help="Field/column holding the title (default 'title')."),
    chunk_tokens: int = typer.Option(512, "--chunk-tokens", help="Longest chunk in tokens; 0 = no chunking."),
    chunk_overlap: int = typer.Option(64, "--chunk-overlap", help="Tokens shared by consecutive chunks."),
    kind: Optional[str] = typer.Option(None, "--kind", help="FAISS index kind for a new index: auto, flat or hnsw."),
    batch_size: int = typer.Option(256, "--batch-size", help="Chunks embedded and stored per step."),
    collection: Optional[str] = CollectionOpt,
    device: Optional[str] = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    api_key: Optional[str] = ApiKeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Add (or replace) documents in a knowledge base, creating it if needed."""
    from qembed.store import open_store
    from qembed.search.knowledge_base import KnowledgeBase

    docs = read_documents(sources, per_file=per_file, text_column=text_column, id_column=id_column,
                          title_column=title_column)
    model = model or _recorded_model(index, collection)  # else $QEMBED_MODEL or the default model
    encoder = open_encoder(model, device=device, dtype=dtype, api_key=api_key)
    store = open_store(index, dim=encoder.dim, create=True, **_store_opts(collection, kind))
    try:
        new = store.get_meta("model") is None
        kb = KnowledgeBase(encoder, store, chunk_tokens=chunk_tokens or None, chunk_overlap=chunk_overlap)
        if model and new:
            store.set_meta("model_source", model)  # as the user named it (Hub id, folder or URL)
        logger.info("adding %d document(s) from %d file(s) to %s", len(docs), len(sources), index)
        result = kb.add(docs, batch_size=batch_size, show_progress_bar=True)
        result["count"] = store.count()
    finally:
        store.close()
    if as_json:
        emit_json({"index": index, "model": encoder.name, **result})
    else:
        typer.echo(f"added {result['documents']} document(s) as {result['chunks']} chunk(s) "
                   f"({result['replaced']} replaced); {result['count']} chunk(s) in {index}")


def index_delete(
    ids: List[str] = typer.Argument(..., help="Document ids (all their chunks are removed)."),
    index: str = IndexOpt,
    collection: Optional[str] = CollectionOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Delete documents from a knowledge base by id."""
    from qembed.store import open_store
    from qembed.search.knowledge_base import delete_documents

    store = open_store(index, create=False, **_store_opts(collection))
    try:
        removed = delete_documents(store, ids)
        store.save()
        count = store.count()
    finally:
        store.close()
    if as_json:
        emit_json({"index": index, "deleted": removed, "requested": len(ids), "count": count})
    else:
        typer.echo(f"deleted {removed} of {len(ids)} document(s); {count} chunk(s) left")


def index_info(
    index: str = IndexOpt,
    collection: Optional[str] = CollectionOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show a knowledge base's backend, size, model and fields."""
    from qembed.store import open_store

    store = open_store(index, create=False, **_store_opts(collection))
    try:
        info = store.info()
    finally:
        store.close()
    if as_json:
        emit_json(info)
        return
    for key, value in info.items():
        typer.echo(f"{key:>16}: {value}")


def search(
    query: str = typer.Argument(..., help="The question (it gets the retrieval instruction)."),
    index: str = IndexOpt,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model (default: the one the index was built with)."),
    top_k: int = typer.Option(10, "--top-k", "-k", help="Results to show."),
    mode: str = typer.Option("dense", "--mode", help="dense (vectors), bm25 (words) or hybrid (both, fused by rank)."),
    filters: Optional[List[str]] = typer.Option(None, "--filter", "-f", help="key=value on metadata (repeatable)."),
    unique_documents: bool = typer.Option(False, "--unique-documents", help="Best chunk per document only."),
    instruction: Optional[str] = typer.Option(None, "--instruction", "-i", help="Query instruction (default: web-search retrieval)."),
    collection: Optional[str] = CollectionOpt,
    device: Optional[str] = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    api_key: Optional[str] = ApiKeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Search a knowledge base by meaning (dense), words (bm25) or both (hybrid)."""
    from qembed.models.prompts import DEFAULT_QUERY_INSTRUCTION
    from qembed.store import open_store
    from qembed.search.knowledge_base import KnowledgeBase

    if not query.strip():
        fail("the query is empty")
    flt = parse_filters(filters)
    store = open_store(index, create=False, **_store_opts(collection))
    try:
        if mode == "bm25" and model is None:
            encoder: Any = _NoEncoder(store)
        else:
            name = model or store.get_meta("model_source")  # else $QEMBED_MODEL or the default model
            encoder = open_encoder(name, device=device, dtype=dtype, api_key=api_key)
        kb = KnowledgeBase(encoder, store, query_instruction=instruction or DEFAULT_QUERY_INSTRUCTION)
        hits = kb.search(query, top_k, mode=mode, filter=flt, unique_documents=unique_documents)
    finally:
        store.close()
    if as_json:
        emit_json({"query": query, "mode": mode, "index": index, "results": [h.to_dict() for h in hits]})
        return
    if not hits:
        typer.echo("no results")
    for rank, h in enumerate(hits, 1):
        meta = {k: v for k, v in h.metadata.items() if k not in ("chunk",)}
        typer.echo(f"{rank:>2}. {h.score:.4f}  {h.id}  {h.text}")
        if meta:
            typer.echo(f"    {json.dumps(meta, ensure_ascii=False)}")


class _NoEncoder:
    """Stands in for the model in BM25-only searches, so no model is loaded."""

    def __init__(self, store: Any) -> None:
        self.name = store.get_meta("model") or "none"
        self.dim = store.dim

    def encode(self, *args: Any, **kwargs: Any):  # pragma: no cover - bm25 never embeds
        raise InputError("BM25 search does not embed; pass --model for dense or hybrid search")


def _recorded_model(index: str, collection: Optional[str]) -> Optional[str]:
    """The model an existing index was built with (``None`` for a new index)."""
    from qembed.errors import NotFoundError
    from qembed.store import open_store

    try:
        store = open_store(index, create=False, **_store_opts(collection))
    except NotFoundError:
        return None
    try:
        return store.get_meta("model_source")
    finally:
        store.close()


def eval_retrieval(
    model: Optional[str] = ModelOpt,
    corpus: Path = typer.Option(..., "--corpus", help="BEIR corpus.jsonl (_id, title, text)."),
    queries: Path = typer.Option(..., "--queries", help="BEIR queries.jsonl (_id, text)."),
    qrels: Path = typer.Option(..., "--qrels", help="qrels TSV with header 'query-id corpus-id score'."),
    mode: str = typer.Option("dense", "--mode", help="dense, bm25 or hybrid."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="'bm25': also score BM25 on the same data."),
    chunk_tokens: Optional[int] = typer.Option(None, "--chunk-tokens", help="Chunk documents (default: MTEB, one vector each)."),
    chunk_overlap: int = typer.Option(64, "--chunk-overlap"),
    instruction: Optional[str] = typer.Option(None, "--instruction", "-i", help="Query instruction (default: web-search retrieval)."),
    batch_size: int = typer.Option(256, "--batch-size"),
    device: Optional[str] = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    api_key: Optional[str] = ApiKeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """nDCG@10, Recall@10/100 and MRR@10 on BEIR data, through the knowledge-base search path."""
    from qembed.eval.retrieval import evaluate_retrieval, load_beir
    from qembed.search.knowledge_base import MODES

    if mode not in MODES:
        fail(f"--mode must be one of {', '.join(MODES)}")
    if baseline not in (None, "bm25"):
        fail("--baseline takes 'bm25'")
    data = load_beir(corpus, queries, qrels)
    encoder = open_encoder(model, device=device, dtype=dtype, api_key=api_key)
    modes = [mode] + (["bm25"] if baseline == "bm25" and mode != "bm25" else [])
    report = evaluate_retrieval(encoder, data, modes=modes, chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap,
                                query_instruction=instruction, batch_size=batch_size, show_progress_bar=True)
    report = {"model": encoder.name, **report}
    if as_json:
        emit_json(report)
        return
    typer.echo(f"{report['model']}: {report['documents']} documents ({report['chunks']} vectors), "
               f"{report['queries']} queries; {report['protocol']}")
    typer.echo(f"{'mode':<8} {'nDCG@10':>8} {'R@10':>8} {'R@100':>8} {'MRR@10':>8}")
    for name, m in report["results"].items():
        label = name if name == mode else f"{name} (baseline)"
        typer.echo(f"{label:<8} {m['ndcg@10']:>8.4f} {m['recall@10']:>8.4f} {m['recall@100']:>8.4f} {m['mrr@10']:>8.4f}")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """``index add|delete|info`` on the index group, ``search`` at the top, ``eval retrieval``."""
    groups["index"].command("add")(index_add)
    groups["index"].command("delete")(index_delete)
    groups["index"].command("info")(index_info)
    app.command("search")(search)
    groups["eval"].command("retrieval")(eval_retrieval)
