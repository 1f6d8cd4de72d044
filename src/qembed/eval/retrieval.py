"""Retrieval evaluation on BEIR-format data, through the same knowledge base users search.

Data (BEIR layout): ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
``text``), ``qrels.tsv`` (header ``query-id corpus-id score``; a score > 0 is relevant, higher is
more relevant). Metrics follow ``pytrec_eval`` as MTEB uses it: nDCG@k with linear gain
(``rel / log2(rank + 1)``) against the ideal ordering of the judged documents, Recall@k (share
of the relevant documents found in the top k), MRR@k (1 / rank of the first relevant document,
0 beyond k), averaged over the queries that have at least one relevant document.

The default protocol is MTEB's: one vector per document, embedded as ``title + " " + text``
(just ``text`` without a title), truncated at the model's input limit, exact inner-product
search; queries get the retrieval instruction. ``chunk_tokens`` switches to chunked documents,
scored by their best chunk.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from qembed.deprecated import old_keywords
from qembed.errors import InputError
from qembed.io import read_records

logger = logging.getLogger(__name__)

CUTOFFS = {"ndcg@10": 10, "recall@10": 10, "recall@100": 100, "mrr@10": 10}


@dataclass
class BeirData:
    """A BEIR data set: corpus records, queries by id, and graded judgements by query id."""

    corpus: list[dict[str, Any]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_beir(corpus: str | Path, queries: str | Path, qrels: str | Path) -> BeirData:
    """Read and cross-check a BEIR data set; :class:`InputError` names the first problem."""
    docs = read_records(corpus)
    seen: set[str] = set()
    out_docs = []
    for i, rec in enumerate(docs, 1):
        did = rec.get("_id", rec.get("id"))
        text = rec.get("text")
        if did is None:
            raise InputError(f"{corpus}: record {i} has no _id")
        did = str(did)
        if did in seen:
            raise InputError(f"{corpus}: _id {did!r} appears twice")
        seen.add(did)
        title = rec.get("title") or None
        if (not isinstance(text, str) or not text.strip()) and not title:
            raise InputError(f"{corpus}: document {did!r} (record {i}) has no text")
        out_docs.append({"id": did, "title": title, "text": text if isinstance(text, str) and text.strip() else title})
    qs: dict[str, str] = {}
    for i, rec in enumerate(read_records(queries), 1):
        qid = rec.get("_id", rec.get("id"))
        text = rec.get("text")
        if qid is None or not isinstance(text, str) or not text.strip():
            raise InputError(f"{queries}: record {i} needs _id and a non-empty text")
        qs[str(qid)] = text
    judged = read_qrels(qrels)
    unknown_q = [q for q in judged if q not in qs]
    if unknown_q:
        raise InputError(f"{qrels}: query id {unknown_q[0]!r} is not in {queries}")
    unknown_d = [d for rel in judged.values() for d in rel if d not in seen]
    if unknown_d:
        raise InputError(f"{qrels}: corpus id {unknown_d[0]!r} is not in {corpus}")
    return BeirData(out_docs, qs, judged)


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """``query-id corpus-id score`` TSV (header row) → ``{query: {doc: score}}``."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"file not found: {p}")
    out: dict[str, dict[str, int]] = {}
    with p.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise InputError(f"{p}: the first line must be the header 'query-id<TAB>corpus-id<TAB>score'")
        for lineno, row in enumerate(reader, 2):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 3:
                raise InputError(f"{p}:{lineno}: expected 3 tab-separated fields, got {len(row)}")
            try:
                score = int(float(row[2]))
            except ValueError:
                raise InputError(f"{p}:{lineno}: score {row[2]!r} is not a number") from None
            out.setdefault(row[0].strip(), {})[row[1].strip()] = score
    if not out:
        raise InputError(f"{p} has no judgements")
    return out


# ---------------------------------------------------------------------- metrics


def ndcg_at(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """nDCG@k with linear gain (as trec_eval / pytrec_eval): DCG = Σ rel_i / log2(i + 1)."""
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if rels.get(d, 0) > 0)
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """Share of the relevant (score > 0) documents found in the top ``k``."""
    relevant = {d for d, r in rels.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mrr_at(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """1 / rank of the first relevant document within the top ``k`` (0 if none)."""
    for i, d in enumerate(ranked[:k]):
        if rels.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def _quantized_copy(kb: Any, quantize: str, rescore: int | None, **options: Any) -> Any:
    """A knowledge base over an in-memory ``quantize`` store holding ``kb``'s vectors, texts and metadata."""
    from qembed.search.knowledge_base import KnowledgeBase
    from qembed.store import open_store

    store = open_store(None, dim=kb.store.dim, quantize=quantize,
                       **({"rescore": rescore} if rescore is not None else {}))
    for batch in kb.store.scan(batch_size=4096):
        records = kb.store.get([r.id for r in batch], with_vectors=True)
        store.upsert([r.id for r in records], np.stack([r.vector for r in records]),
                     texts=[r.text for r in records], metadata=[r.metadata for r in records])
    return KnowledgeBase(kb.encoder, store, query_instruction=options["instruction"],
                         chunk_tokens=options["chunk_tokens"], chunk_overlap=options["chunk_overlap"],
                         dimensions=kb.dimensions)


def score_rankings(rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Mean nDCG@10, Recall@10, Recall@100, MRR@10 over judged queries with a relevant document."""
    judged = [q for q, rels in qrels.items() if any(r > 0 for r in rels.values())]
    if not judged:
        raise InputError("no query has a relevant document in the qrels")
    totals = dict.fromkeys(CUTOFFS, 0.0)
    for q in judged:
        ranked = list(rankings.get(q, []))
        totals["ndcg@10"] += ndcg_at(ranked, qrels[q], 10)
        totals["recall@10"] += recall_at(ranked, qrels[q], 10)
        totals["recall@100"] += recall_at(ranked, qrels[q], 100)
        totals["mrr@10"] += mrr_at(ranked, qrels[q], 10)
    return {name: value / len(judged) for name, value in totals.items()}


# ---------------------------------------------------------------------- running


@old_keywords
def evaluate_retrieval(
    encoder: Any,
    data: BeirData,
    *,
    modes: Sequence[str] = ("dense",),
    chunk_tokens: int | None = None,
    chunk_overlap: int = 64,
    instruction: str | None = None,
    batch_size: int = 256,
    progress: bool | None = False,
    index: str | None = None,
    reranker: Any = None,
    candidates: int = 100,
    quantize: Sequence[str] = (),
    rescore: int | None = None,
) -> dict[str, Any]:
    """Index ``data.corpus`` in a :class:`~qembed.search.knowledge_base.KnowledgeBase` and score each mode.

    ``instruction``: the queries' (``None``: the web-search retrieval default, ``""``: none);
    ``index``: where to build it (default an in-memory exact FAISS store). With a ``reranker``
    each mode is scored a second time as a two-stage search (its top ``candidates`` chunks
    reordered by the reranker), under ``"{mode}+rerank"``: same data, same protocol. Each of
    ``quantize`` (``int8``, ``binary``) scores the vector modes once more on a quantized copy of the
    same vectors (an in-memory FAISS store: codes searched, ``rescore × k`` candidates rescored with
    the float vectors), under ``"{mode}[{quantize}]"``, with ``ndcg@10_vs_float`` (its nDCG@10 over
    the float one). Returns
    ``{"protocol", "documents", "queries", "chunks", "results": {mode: metrics}, "seconds"}``.
    """
    from qembed.search.knowledge_base import KnowledgeBase
    from qembed.store.quantize import check_quantize, check_rescore

    quantize = [check_quantize(q) for q in quantize]
    if None in quantize:
        raise InputError("quantize takes int8 and/or binary (float is always scored)", param="quantize")
    if rescore is not None:
        check_rescore(rescore)

    from qembed.io import is_milvus_uri

    exact = {} if is_milvus_uri(index) else {"index": "flat"}  # Milvus Lite searches exactly (FLAT) itself
    kb = KnowledgeBase.open(index, encoder, store_options=exact, chunk_tokens=chunk_tokens,
                            chunk_overlap=chunk_overlap,
                            query_instruction=instruction)
    try:
        t0 = time.perf_counter()
        added = kb.add(data.corpus, batch_size=batch_size, progress=progress, save=False)
        index_s = time.perf_counter() - t0
        qids = [q for q in data.qrels if q in data.queries]
        results: dict[str, Any] = {}
        runs = [(mode, False) for mode in modes]
        if reranker is not None:
            runs = [run for mode in modes for run in ((mode, False), (mode, True))]
        plan = [(kb, mode, second, "") for mode, second in runs]
        for q in quantize:
            qkb = _quantized_copy(kb, q, rescore, chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap,
                                  instruction=instruction)
            plan += [(qkb, mode, False, f"[{q}]") for mode in modes if mode != "bm25"]
        for base, mode, second, suffix in plan:
            t0 = time.perf_counter()
            rankings: dict[str, list[str]] = {}
            rerank_args = {"rerank": reranker, "candidates": candidates} if second else {}
            for start in range(0, len(qids), batch_size):
                part = qids[start:start + batch_size]
                hits = base.search([data.queries[q] for q in part], top_k=100, mode=mode, unique_documents=True,
                                   **rerank_args)
                for q, row in zip(part, hits):
                    rankings[q] = [str(h.metadata.get("doc_id", h.id)) for h in row]
            metrics = score_rankings(rankings, {q: data.qrels[q] for q in qids})
            metrics["seconds"] = time.perf_counter() - t0
            name = (f"{mode}+rerank" if second else mode) + suffix
            if suffix:
                float_ndcg = results[mode]["ndcg@10"]
                metrics["ndcg@10_vs_float"] = metrics["ndcg@10"] / float_ndcg if float_ndcg else None
                metrics["rescore"] = base.store.rescore
            results[name] = metrics
            logger.info("%s: nDCG@10 %.4f", name, metrics["ndcg@10"])
        for base, *_ in plan:
            if base is not kb:
                base.store.close()
        protocol = ("MTEB: one vector per document (title + ' ' + text), truncated at the model limit, exact search"
                    if chunk_tokens is None else f"chunked: {chunk_tokens}-token chunks, {chunk_overlap} overlap, "
                    "best chunk per document, exact search")
        return {"protocol": protocol, "documents": added["documents"], "chunks": added["chunks"],
                "queries": len(qids), "index_seconds": index_s, "results": results}
    finally:
        kb.close()
