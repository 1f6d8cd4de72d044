# ruff: noqa: B008  (Typer declares options as argument defaults)
"""``qembed index add|delete|info``, ``qembed search`` and ``qembed eval retrieval``.

``qembed search --json`` prints the body of ``POST /v1/search`` (hits under ``data``), built by
:mod:`qembed.envelope`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from qembed.commands._common import (
    ApiKeyOpt,
    BackendOpt,
    DeviceOpt,
    DtypeOpt,
    JsonOpt,
    ModelOpt,
    NoInstructionOpt,
    ProgressOpt,
    deprecated_options,
    emit_json,
    fail,
    input_option,
    instruction_option,
    logger,
    open_encoder,
    positional_input,
    resolve_instruction,
    text_column_option,
    top_k_option,
    want_progress,
)
from qembed.envelope import search_body
from qembed.errors import InputError
from qembed.extras import require_store
from qembed.io import read_documents

IndexOpt = typer.Option(..., "--index", "-x", help="Knowledge base: a folder (FAISS), a .db file "
                        "(Milvus Lite) or http://host:19530 (Milvus server).")
CollectionOpt = typer.Option(None, "--collection", help="Milvus collection (default 'qembed').")
_QUERY_DEFAULT = "'Given a web search query, retrieve relevant passages that answer the query'"


QuantizeOpt = typer.Option(
    None, "--quantize", help="Keep int8 or binary codes in the index and the float32 vectors on disk for "
                             "rescoring (int8 | binary | none); recorded in a new index, which later adds and "
                             "searches follow.")
RescoreOpt = typer.Option(
    None, "--rescore", help="Quantized index: candidates per result read from the codes and ordered by the float "
                            "vectors (default int8 4, binary 10; recorded in a new index).")


def _store_opts(collection: str | None, kind: str | None = None, quantize: str | None = None,
                rescore: int | None = None) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if collection:
        opts["collection"] = collection
    if kind:
        opts["index"] = kind
    if quantize is not None:
        opts["quantize"] = quantize
    if rescore is not None:
        opts["rescore"] = rescore
    return opts


# ---------------------------------------------------------------------- reading sources


def parse_filters(items: list[str] | None) -> dict[str, Any] | None:
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


def _check_quantize_options(quantize: str | None, rescore: int | None) -> None:
    """Bad --quantize / --rescore values fail before any model is loaded."""
    from qembed.store.quantize import check_quantize, check_rescore

    check_quantize(quantize)
    if rescore is not None:
        check_rescore(rescore)


# ---------------------------------------------------------------------- commands


def index_add(
    sources: list[Path] | None = typer.Argument(None, hidden=True),
    input: list[Path] | None = input_option("Files to add (repeat -i for several): .txt (a document per "
                                            "line), .md, .jsonl, .csv."),
    index: str = IndexOpt,
    model: str | None = ModelOpt,
    per_file: bool = typer.Option(False, "--per-file", help="A .txt file is one document (not one per line)."),
    text_column: str | None = text_column_option(),
    id_column: str | None = typer.Option(None, "--id-column", help="Field/column holding the id (default 'id' or '_id')."),
    title_column: str | None = typer.Option(None, "--title-column", help="Field/column holding the title (default 'title')."),
    chunk_tokens: int = typer.Option(512, "--chunk-tokens", help="Longest chunk in tokens; 0 = no chunking."),
    chunk_overlap: int = typer.Option(64, "--chunk-overlap", help="Tokens shared by consecutive chunks."),
    kind: str | None = typer.Option(None, "--kind", help="FAISS index kind for a new index: auto, flat or hnsw; with --quantize auto, flat or ivf."),
    quantize: str | None = QuantizeOpt,
    rescore: int | None = RescoreOpt,
    batch_size: int = typer.Option(256, "--batch-size", help="Chunks embedded and stored per step."),
    collection: str | None = CollectionOpt,
    device: str | None = DeviceOpt,
    dtype: str | None = DtypeOpt,
    backend: str | None = BackendOpt,
    api_key: str | None = ApiKeyOpt,
    progress: bool | None = ProgressOpt,
    as_json: bool = JsonOpt,
    from_embeddings: Path | None = typer.Option(
        None, "--from-embeddings", metavar="DIR",
        help="Store precomputed vectors (the Parquet folder of qembed embed --ray) instead of embedding."),
    texts: Path | None = typer.Option(
        None, "--texts", help="With --from-embeddings: the input the vectors were made from; its texts, ids "
                              "and other fields are stored with them."),
) -> None:
    """Add (or replace) documents in a knowledge base, creating it if needed."""
    from qembed.search.knowledge_base import KnowledgeBase
    from qembed.store import open_store

    require_store(index)
    if from_embeddings is not None:
        from qembed.commands.scale import index_add_from_embeddings

        return index_add_from_embeddings(
            embeddings=from_embeddings, index=index, texts=texts, sources=positional_input(sources, input),
            model=model, kind=kind, collection=collection, batch_size=batch_size, as_json=as_json,
            quantize=quantize, rescore=rescore)
    if texts is not None:
        fail("--texts goes with --from-embeddings DIR")
    files = positional_input(sources, input)
    if not files:
        fail("give the files to add: --input FILE (repeat for several)")
    _check_quantize_options(quantize, rescore)
    docs = read_documents(files, per_file=per_file, text_column=text_column, id_column=id_column,
                          title_column=title_column)
    model = model or _recorded_model(index, collection)  # else $QEMBED_MODEL or the default model
    encoder = open_encoder(model, device=device, dtype=dtype, backend=backend, api_key=api_key)
    store = open_store(index, dim=encoder.dim, create=True, **_store_opts(collection, kind, quantize, rescore))
    try:
        kb = KnowledgeBase(encoder, store, chunk_tokens=chunk_tokens or None, chunk_overlap=chunk_overlap)
        logger.info("adding %d document(s) from %d file(s) to %s", len(docs), len(files), index)
        result = kb.add(docs, batch_size=batch_size,
                        progress=want_progress(progress, len(docs), batch=batch_size))
        result["count"] = store.count()
    finally:
        store.close()
    if as_json:
        emit_json({"object": "documents", "model": encoder.name, "index": index, **result})
    else:
        typer.echo(f"added {result['documents']} document(s) as {result['chunks']} chunk(s) "
                   f"({result['replaced']} replaced); {result['count']} chunk(s) in {index}")


def index_delete(
    ids: list[str] = typer.Argument(..., help="Document ids (all their chunks are removed)."),
    index: str = IndexOpt,
    collection: str | None = CollectionOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Delete documents from a knowledge base by id."""
    from qembed.search.knowledge_base import delete_documents
    from qembed.store import open_store

    require_store(index)
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
    collection: str | None = CollectionOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show a knowledge base's backend, size, model and fields."""
    from qembed.store import open_store

    require_store(index)
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


@deprecated_options("search")
def search(
    query: str | None = typer.Argument(None, help="The question (it gets the retrieval instruction); or --like."),
    index: str = IndexOpt,
    model: str | None = typer.Option(None, "--model", "-m", help="Model (default: the one the index was built with)."),
    top_k: int = top_k_option(10, "Results to show."),
    mode: str = typer.Option("dense", "--mode", help="dense (vectors), bm25 (words) or hybrid (both, fused by rank)."),
    filters: list[str] | None = typer.Option(None, "--filter", "-f", help="key=value on metadata (repeatable)."),
    unique_documents: bool = typer.Option(False, "--unique-documents", help="Best chunk per document only."),
    rerank: bool = typer.Option(False, "--rerank", help="Two-stage search: a reranker reorders the first "
                                                        "stage's top --candidates chunks."),
    reranker: str | None = typer.Option(
        None, "--reranker", help="Reranker for --rerank: folder, Hub id (default Qwen/Qwen3-Reranker-0.6B, or "
                                 "$QEMBED_RERANKER) or http(s):// URL of a /rerank endpoint."),
    candidates: int | None = typer.Option(
        None, "--candidates", help="First-stage chunks reranked with --rerank (default 10 with the reranker on a "
                                   "CPU, 100 on a GPU or behind a URL; never fewer than --top-k); with --like "
                                   "--diversity, the pool MMR draws from (default 100)."),
    like: list[str] | None = typer.Option(None, "--like", help="More like this: a stored document id (repeatable); "
                                          "the given documents never come back."),
    like_text: list[str] | None = typer.Option(None, "--like-text", help="More like this text (repeatable)."),
    diversity: float | None = typer.Option(None, "--diversity", help="With --like: MMR diversity, 0..1 "
                                           "(over the first --candidates hits)."),
    instruction: str | None = instruction_option(_QUERY_DEFAULT),
    no_instruction: bool = NoInstructionOpt,
    collection: str | None = CollectionOpt,
    rescore: int | None = typer.Option(None, "--rescore", help="Quantized index: candidates per result rescored "
                                                               "with the float vectors (default: the index's)."),
    device: str | None = DeviceOpt,
    dtype: str | None = DtypeOpt,
    backend: str | None = BackendOpt,
    api_key: str | None = ApiKeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Search a knowledge base by meaning (dense), words (bm25) or both (hybrid); --rerank adds a second stage;
    --like ID finds more like stored documents."""
    from qembed.models.prompts import DEFAULT_QUERY_INSTRUCTION
    from qembed.search.knowledge_base import KnowledgeBase
    from qembed.store import open_store

    liking = bool(like or like_text)
    if liking and query is not None:
        fail("give a query or --like/--like-text, not both")
    if not liking and (query is None or not query.strip()):
        fail("the query is empty" if query is not None else "give a query, or --like ID")
    if diversity is not None and not liking:
        fail("--diversity goes with --like or --like-text")
    if liking and mode != "dense":
        fail("--like finds documents by their vectors: --mode dense only")
    require_store(index)
    instr = resolve_instruction(instruction, no_instruction, DEFAULT_QUERY_INSTRUCTION)
    flt = parse_filters(filters)
    if reranker is not None and not rerank:
        fail("--reranker names the model of --rerank; add --rerank")
    if candidates is not None and not 1 <= candidates <= 1000:
        fail(f"--candidates must be from 1 to 1000, got {candidates}")
    _check_quantize_options(None, rescore)
    store = open_store(index, create=False, **_store_opts(collection, rescore=rescore))
    try:
        if mode == "bm25" and model is None:
            encoder: Any = _NoEncoder(store)
        else:
            name = model or store.get_meta("model_source")  # else $QEMBED_MODEL or the default model
            encoder = open_encoder(name, device=device, dtype=dtype, backend=backend, api_key=api_key)
        second: Any = False
        if rerank:
            from qembed.commands.rerank import open_reranker

            second = open_reranker(reranker, device=device, dtype=dtype, api_key=api_key, option="--reranker")
        kb = KnowledgeBase(encoder, store, query_instruction=instr)  # "" = none
        if liking:
            hits = kb.similar(like or None, texts=like_text or None, top_k=top_k, filter=flt,
                              unique_documents=True, diversity=diversity, rerank=second,
                              **({} if candidates is None else {"candidates": candidates}))
        else:
            hits = kb.search(query, top_k, mode=mode, filter=flt, unique_documents=unique_documents,
                             rerank=second, candidates=candidates)
    finally:
        store.close()
    if as_json:
        extra: dict[str, Any] = {"like": [*(like or []), *(like_text or [])]} if liking else {"query": query}
        emit_json(search_body(hits, model=encoder.name, mode=mode, index=index, **extra))
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


def _recorded_model(index: str, collection: str | None) -> str | None:
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


@deprecated_options("eval retrieval")
def eval_retrieval(
    model: str | None = ModelOpt,
    corpus: Path = typer.Option(..., "--corpus", help="BEIR corpus.jsonl (_id, title, text)."),
    queries: Path = typer.Option(..., "--queries", help="BEIR queries.jsonl (_id, text)."),
    qrels: Path = typer.Option(..., "--qrels", help="qrels TSV with header 'query-id corpus-id score'."),
    mode: str = typer.Option("dense", "--mode", help="dense, bm25 or hybrid."),
    baseline: str | None = typer.Option(None, "--baseline", help="'bm25': also score BM25 on the same data."),
    chunk_tokens: int | None = typer.Option(None, "--chunk-tokens", help="Chunk documents (default: MTEB, one vector each)."),
    chunk_overlap: int = typer.Option(64, "--chunk-overlap", help="Tokens shared by consecutive chunks."),
    instruction: str | None = instruction_option(_QUERY_DEFAULT),
    no_instruction: bool = NoInstructionOpt,
    batch_size: int = typer.Option(256, "--batch-size", help="Documents embedded per step."),
    rerank: bool = typer.Option(False, "--rerank", help="Also score a two-stage search (the first stage's top "
                                                        "--candidates reranked), side by side."),
    reranker: str | None = typer.Option(
        None, "--reranker", help="Reranker for --rerank: folder, Hub id (default Qwen/Qwen3-Reranker-0.6B, or "
                                 "$QEMBED_RERANKER) or http(s):// URL of a /rerank endpoint."),
    candidates: int = typer.Option(100, "--candidates", help="First-stage chunks reranked with --rerank."),
    quantize: list[str] | None = typer.Option(
        None, "--quantize", help="Also score the search over int8 or binary codes with float rescoring, beside "
                                 "float, in the same run (repeat for both)."),
    rescore: int | None = typer.Option(None, "--rescore", help="With --quantize: candidates per result rescored "
                                                               "with the float vectors (default int8 4, binary 10)."),
    device: str | None = DeviceOpt,
    dtype: str | None = DtypeOpt,
    backend: str | None = BackendOpt,
    api_key: str | None = ApiKeyOpt,
    progress: bool | None = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """nDCG@10, Recall@10/100 and MRR@10 on BEIR data, through the knowledge-base search path."""
    from qembed.eval.retrieval import evaluate_retrieval, load_beir
    from qembed.models.prompts import DEFAULT_QUERY_INSTRUCTION
    from qembed.search.knowledge_base import MODES

    if mode not in MODES:
        fail(f"--mode must be one of {', '.join(MODES)}")
    if baseline not in (None, "bm25"):
        fail("--baseline takes 'bm25'")
    instr = resolve_instruction(instruction, no_instruction, DEFAULT_QUERY_INSTRUCTION)
    if reranker is not None and not rerank:
        fail("--reranker names the model of --rerank; add --rerank")
    if rerank and not 1 <= candidates <= 1000:
        fail(f"--candidates must be from 1 to 1000, got {candidates}")
    quantize = [q for item in quantize or [] for q in item.split(",") if q.strip()]
    for q in quantize:
        if q not in ("int8", "binary"):
            fail(f"--quantize takes int8 or binary, got {q!r}")
    if rescore is not None and not quantize:
        fail("--rescore goes with --quantize")
    _check_quantize_options(None, rescore)
    data = load_beir(corpus, queries, qrels)
    encoder = open_encoder(model, device=device, dtype=dtype, backend=backend, api_key=api_key)
    second = None
    if rerank:
        from qembed.commands.rerank import open_reranker

        second = open_reranker(reranker, device=device, dtype=dtype, api_key=api_key, option="--reranker")
    modes = [mode] + (["bm25"] if baseline == "bm25" and mode != "bm25" else [])
    report = evaluate_retrieval(encoder, data, modes=modes, chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap,
                                instruction=instr, batch_size=batch_size, reranker=second, candidates=candidates,
                                quantize=quantize, rescore=rescore,
                                progress=want_progress(progress, len(data.corpus), batch=batch_size))
    report = {"object": "eval.retrieval", "model": encoder.name, **report}
    if second is not None:
        report["reranker"] = second.name
    if as_json:
        emit_json(report)
        return
    typer.echo(f"{report['model']}: {report['documents']} documents ({report['chunks']} vectors), "
               f"{report['queries']} queries; {report['protocol']}")
    typer.echo(f"{'mode':<16} {'nDCG@10':>8} {'R@10':>8} {'R@100':>8} {'MRR@10':>8}")
    for name, m in report["results"].items():
        label = name if name.split("+")[0].split("[")[0] == mode else f"{name} (baseline)"
        vs = f"  {m['ndcg@10_vs_float']:.3f}x float nDCG@10 (rescore {m['rescore']})" \
            if m.get("ndcg@10_vs_float") is not None else ""
        typer.echo(f"{label:<16} {m['ndcg@10']:>8.4f} {m['recall@10']:>8.4f} {m['recall@100']:>8.4f} "
                   f"{m['mrr@10']:>8.4f}{vs}")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """``index add|delete|info`` on the index group, ``search`` at the top, ``eval retrieval``."""
    groups["index"].command("add")(index_add)
    groups["index"].command("delete")(index_delete)
    groups["index"].command("info")(index_info)
    app.command("search")(search)
    groups["eval"].command("retrieval")(eval_retrieval)
