"""The one JSON envelope of qembed's answers, shared by the REST endpoints and ``qembed … --json``.

Every answer puts its items under ``data`` beside ``object`` (what kind of result), ``model`` and,
where tokens were counted, ``usage``; fields that belong to one operation sit beside ``data``.
The builders below are the only place these bodies are made, so ``qembed search --json`` and
``POST /v1/search`` (and so on for similarity, classify, dedup, cluster, topics and summarize) cannot
drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def envelope(object: str, data: Iterable[Any], *, model: str | None, usage: Mapping[str, int] | None = None,
             **fields: Any) -> dict[str, Any]:
    """``{"object", "model", **fields, "data"[, "usage"]}``; ``fields`` never replace those four."""
    clash = {"object", "model", "data", "usage"} & set(fields)
    if clash:
        raise ValueError(f"operation fields may not be named {sorted(clash)}")
    body: dict[str, Any] = {"object": object, "model": model, **fields, "data": list(data)}
    if usage is not None:
        body["usage"] = dict(usage)
    return body


def embeddings_body(vectors: Any, *, model: str | None, usage: Mapping[str, int] | None = None,
                    **fields: Any) -> dict[str, Any]:
    """``/v1/embeddings``: ``data`` = ``{"object": "embedding", "index", "embedding"}`` per input."""
    data = [{"object": "embedding", "index": i, "embedding": [float(x) for x in v]} for i, v in enumerate(vectors)]
    return envelope("list", data, model=model, usage=usage, **fields)


def search_body(hits: Sequence[Any], *, model: str | None, mode: str, **fields: Any) -> dict[str, Any]:
    """``/v1/search``: ``data`` = the hits, best first (``id``, ``score``, ``text``, ``metadata``)."""
    return envelope("list", [h.to_dict() if hasattr(h, "to_dict") else dict(h) for h in hits],
                    model=model, mode=mode, **fields)


def similarity_body(scores: Iterable[float], *, model: str | None, min_similarity: float | None,
                    **fields: Any) -> dict[str, Any]:
    """``/v1/similarity``: ``data`` = ``{"index", "score"[, "same"]}`` per pair (``same`` with a threshold)."""
    data = []
    for i, s in enumerate(scores):
        item: dict[str, Any] = {"index": i, "score": float(s)}
        if min_similarity is not None:
            item["same"] = bool(s >= min_similarity)
        data.append(item)
    return envelope("list", data, model=model, min_similarity=min_similarity, **fields)


def classify_body(predictions: Iterable[Mapping[str, Any]], *, model: str | None, labels: Sequence[str],
                  **fields: Any) -> dict[str, Any]:
    """``/v1/classify``: ``data`` = ``{"index", "label", "score", …}`` per text."""
    return envelope("list", [{"index": i, **p} for i, p in enumerate(predictions)], model=model,
                    labels=list(labels), **fields)


def dedup_body(result: Any, *, model: str | None, texts: Sequence[str] | None = None,
               **fields: Any) -> dict[str, Any]:
    """``/v1/dedup``: ``data`` = the groups of near-duplicates (representative first), ``keep`` = the
    indices a deduplicated list keeps, ``n_groups`` = how many groups; ``texts`` adds member texts."""
    min_similarity = getattr(result, "min_similarity", None)
    if min_similarity is None:
        min_similarity = getattr(result, "threshold", None)
    extra: dict[str, Any] = {k: v for k, v in (getattr(result, "stats", None) or {}).items()
                             if k not in ("groups", "object", "model", "data", "usage", "keep")}
    extra.update(min_similarity=min_similarity, n_groups=len(result.groups))  # the list is data
    extra.update(fields)
    body = envelope("dedup.result", [g.to_dict(texts) for g in result.groups], model=model, **extra)
    body["keep"] = list(result.keep)
    return body


def cluster_body(result: Any, *, model: str | None, **fields: Any) -> dict[str, Any]:
    """``/v1/cluster``: ``data`` = one row per input (``index``, ``text``, ``cluster``, ``label``,
    ``distance``), ``clusters`` = the clusters (``cluster``, ``label``, ``keywords``, ``size``,
    ``examples``), with ``method``, ``params``, ``n_clusters`` and ``n_outliers``."""
    doc = dict(result.to_dict())
    rows = doc.pop("texts", [])
    for key in ("object", "model", "data", "usage"):
        doc.pop(key, None)
    return envelope("cluster.result", rows, model=model, **doc, **fields)


def topics_body(tm: Any, *, model: str | None, **fields: Any) -> dict[str, Any]:
    """``GET /v1/topics``: ``data`` = the topics (``topic``, ``label``, ``keywords``, ``size``,
    ``representatives``, ``summary``, ``threshold``, ``origin``, ``revision``), with the topic
    model's ``revision``, ``lineage``, ``dim``, ``method``, ``settings``, ``n_texts``,
    ``pending_outliers`` and ``history``; ``model`` is the embedding model it was made with."""
    doc = dict(tm.to_dict())
    topics = doc.pop("topics", [])
    doc.pop("model", None)
    return envelope("topics", topics, model=model, **doc, **fields)


def topic_assign_body(assignments: Sequence[Any], *, model: str | None, **fields: Any) -> dict[str, Any]:
    """``/v1/topics/assign``: ``data`` = one row per text (``index``, ``text``, ``topic`` — ``-1`` for an
    outlier —, ``label``, ``distance``, ``nearest``, ``outlier``), ``counts`` = texts per topic id,
    ``n_outliers``."""
    rows = [a.to_dict() for a in assignments]
    counts: dict[str, int] = {}
    for r in rows:
        counts[str(r["topic"])] = counts.get(str(r["topic"]), 0) + 1
    return envelope("topics.assignment", rows, model=model, n_outliers=sum(1 for r in rows if r["outlier"]),
                    counts=counts, **fields)


def topic_update_body(result: Any, *, model: str | None, **fields: Any) -> dict[str, Any]:
    """``/v1/topics/update``: ``data`` = the new texts' final rows (as for assign), ``proposed`` = new
    topics, ``joined`` = texts added per topic id, ``changes`` = the size diff, ``revision``,
    ``pending_outliers``."""
    doc = dict(result.to_dict())
    rows = doc.pop("data", [])
    return envelope("topics.update", rows, model=model, **doc, **fields)


def topic_diff_body(diff: Any, *, model: str | None, **fields: Any) -> dict[str, Any]:
    """``qembed topics diff``: ``data`` = one change per topic (``status``: grew, shrank, unchanged,
    appeared, vanished; ids and sizes before and after), ``matched_by``, ``counts`` per status."""
    doc = dict(diff.to_dict())
    rows = doc.pop("data", [])
    return envelope("topics.diff", rows, model=model, **doc, **fields)


def summary_body(summary: Any, *, model: str | None, **fields: Any) -> dict[str, Any]:
    """``/v1/summarize``: ``data`` = the chosen sentences in input order (``index``, ``document``,
    ``text``, ``start``, ``end``, ``score``), ``summary`` = them joined, ``method``, ``k``,
    ``n_sentences``, ``params``."""
    doc = dict(summary.to_dict())
    rows = doc.pop("sentences", [])
    return envelope("summary", rows, model=model, **doc, **fields)
