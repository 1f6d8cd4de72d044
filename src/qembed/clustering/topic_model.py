"""Topic models that last: fit once, save, place new texts later, fold them in, compare runs.

A :class:`TopicModel` is a clustering (:func:`qembed.clustering.pipeline.cluster`) kept with what
placing new texts needs: the embedding model's name and vector size, the instruction, the
settings, one centroid per topic, the topic ids, labels, keywords, sizes, the most central texts
(representatives) and a short summary of each topic. BERTopic's ``save``/``load``/``transform``/
``partial_fit`` are the model: here :meth:`TopicModel.fit`, :meth:`save`/:meth:`load`,
:meth:`assign` and :meth:`update`; :func:`diff` compares two saved runs.

**Placing a text** (:meth:`assign`): its cosine distance to every centroid; the nearest topic
wins, unless the distance passes that topic's *outlier threshold*; then the text is an outlier
(topic ``-1``) and the nearest topic is still reported. Both K-Means and HDBSCAN models place texts
by centroid (scikit-learn's HDBSCAN keeps no prediction data); it is one matrix product, so 100k
texts take seconds.

**The outlier threshold** of a topic comes from the fitted data. Every topic keeps a sample of
*held-out* distances: for each member at fit time, its cosine distance to the centroid of the
*other* members (leave-one-out, so the sample behaves like new texts); for texts folded in by
:meth:`update`, their distance to the centroid before they joined. With ``q`` the
``outlier_quantile`` (default 0.95), ``q_t`` the q-quantile of topic t's sample (``n_t`` values) and
``q_all`` the q-quantile of all topics' samples together, the threshold is the weighted mean
``(n_t * q_t + w * q_all) / (n_t + w)`` with ``w`` = :data:`PRIOR_WEIGHT` (20): a small topic leans
on every topic's spread, a large one on its own. About ``1 - q`` of the new texts that belong to a
topic are therefore called outliers; raise ``outlier_quantile`` to call fewer. Each topic keeps at
most :data:`MAX_DISTANCE_SAMPLE` distances (quantiles of the full set when it grows beyond).

**Folding texts in** (:meth:`update`): texts that fit a topic join it (its centroid, size,
keywords, label, representatives and summary are refreshed; ids never change). Outliers wait in a
pool (saved with the model, at most :data:`MAX_PENDING` texts); when some of them form a group
(HDBSCAN over the pool, at least ``min_topic_size`` texts — HDBSCAN's ``min_cluster_size``, for
K-Means half the smallest topic, from 3 to 10 — and as tight as the existing topics:
the group's median held-out distance no larger than the largest topic threshold), the group
becomes a new topic with the next unused id, reported as *proposed*; pending texts within the new
topic's threshold of its centroid join it too. Keywords are kept as term
counts per topic and language, so refreshing them needs no old texts.

**On disk** (:meth:`save`), a folder of JSON and ``.npy`` files only — no pickle, so loading a
folder from anywhere is safe (``numpy.load(allow_pickle=False)``; every shape is checked against
the JSON):

- ``topic_model.json``: ``format`` (``qembed.topic_model``), ``version``, the embedding model,
  its ``dim``, ``instruction``, ``dimensions``, ``method``/``params``/``settings``, the topics
  (id, label, keywords, size, representatives, summary, threshold, held-out distances), the
  vocabulary, the pending outliers' texts and the history of updates;
- ``centroids.npy`` (topics × dim), ``sums.npy`` (the members' vector sums),
  ``representatives.npy`` (the representatives' vectors, topic after topic), ``counts.npy``
  (term counts: rows of language, topic, term, count) and ``pending.npy`` (the pending outliers'
  vectors).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from qembed.config import resolve_instruction, want_progress
from qembed.errors import InputError, NotFoundError
from qembed.models.encoder import normalize, validate_texts
from qembed.models.prompts import SYMMETRIC_INSTRUCTION
from qembed.clustering.keywords import (
    OUTLIER_LABEL,
    Tokenizer,
    _select,
    detect_language,
    make_label,
)
from qembed.clustering.types import ClusterResult

logger = logging.getLogger(__name__)

FORMAT = "qembed.topic_model"
#: Version of the folder layout; :meth:`TopicModel.load` refuses a newer one.
VERSION = 1
MANIFEST = "topic_model.json"
ARRAYS = ("centroids", "sums", "representatives", "counts", "pending")

DEFAULT_OUTLIER_QUANTILE = 0.95
#: Weight of every topic's distances in a topic's outlier threshold (in texts; see the module docstring).
PRIOR_WEIGHT = 20
#: Held-out distances kept per topic.
MAX_DISTANCE_SAMPLE = 256
#: Outliers kept for proposing new topics.
MAX_PENDING = 5_000
DEFAULT_REPRESENTATIVES = 5
DEFAULT_SUMMARY_SENTENCES = 3
#: Rows per block when placing many vectors (keeps memory flat).
ASSIGN_BLOCK = 65_536


class TopicModelMismatchError(InputError):
    """The encoder or vectors given do not match the model the topic model was made with."""


# --------------------------------------------------------------------------- results


@dataclass
class Topic:
    """One topic: stable ``id``, ``label``, ``keywords``, ``size``, most central texts first
    (``representatives``), a short ``summary`` (sentences chosen by MMR among them), the outlier
    ``threshold`` (cosine distance), and where it came from (``origin``: ``fit`` or ``update``,
    ``revision``: the model revision that made it)."""

    id: int
    label: str
    keywords: list[str]
    size: int
    representatives: list[str]
    summary: list[str] = field(default_factory=list)
    threshold: float = 1.0
    keyword_scores: list[float] = field(default_factory=list)
    origin: str = "fit"
    revision: int = 0
    distances: list[float] = field(default_factory=list, repr=False)

    def to_dict(self, *, internal: bool = False) -> dict[str, Any]:
        out = {"topic": self.id, "label": self.label, "keywords": self.keywords, "size": self.size,
               "representatives": self.representatives, "summary": self.summary,
               "threshold": round(float(self.threshold), 6), "origin": self.origin, "revision": self.revision}
        if internal:
            out["keyword_scores"] = self.keyword_scores
            out["distances"] = [round(float(d), 6) for d in self.distances]
        return out


@dataclass
class TopicAssignment:
    """One placed text: its ``topic`` (``-1``: outlier), ``label``, cosine ``distance`` to the
    nearest topic, that ``nearest`` topic's id, and whether it is an ``outlier``."""

    index: int
    text: str | None
    topic: int
    label: str
    distance: float
    nearest: int
    outlier: bool

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "text": self.text, "topic": self.topic, "label": self.label,
                "distance": self.distance, "nearest": self.nearest, "outlier": self.outlier}


@dataclass
class UpdateResult:
    """What :meth:`TopicModel.update` did: the new texts' final ``assignments``, the topics it
    ``proposed`` (new ids), how many texts joined each topic (``joined``) and the size ``diff``."""

    assignments: list[TopicAssignment]
    proposed: list[Topic]
    joined: dict[int, int]
    diff: "TopicDiff"
    revision: int
    pending: int

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "pending_outliers": self.pending,
                "joined": {str(k): v for k, v in sorted(self.joined.items())},
                "proposed": [t.to_dict() for t in self.proposed], "changes": self.diff.to_dict()["data"],
                "data": [a.to_dict() for a in self.assignments]}


@dataclass
class TopicChange:
    """One topic in a :class:`TopicDiff`: ``status`` is ``grew``, ``shrank``, ``unchanged``,
    ``appeared`` or ``vanished``; ``before``/``after`` are the ids in each run (``None`` where absent)."""

    status: str
    before: int | None
    after: int | None
    label: str
    size_before: int
    size_after: int
    similarity: float | None = None

    @property
    def change(self) -> int:
        return self.size_after - self.size_before

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "topic_before": self.before, "topic_after": self.after,
                "label": self.label, "size_before": self.size_before, "size_after": self.size_after,
                "change": self.change, "similarity": self.similarity}


@dataclass
class TopicDiff:
    """Topics that grew, shrank, appeared or vanished between two runs; ``matched_by`` is ``id``
    (the same model, updated) or ``centroid`` (separate fits, topics paired by centroid cosine)."""

    matched_by: str
    changes: list[TopicChange]

    def count(self, status: str) -> int:
        return sum(1 for c in self.changes if c.status == status)

    def to_dict(self) -> dict[str, Any]:
        statuses = ("grew", "shrank", "unchanged", "appeared", "vanished")
        return {"matched_by": self.matched_by, "counts": {s: self.count(s) for s in statuses},
                "data": [c.to_dict() for c in self.changes]}


# --------------------------------------------------------------------------- helpers


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def held_out_distances(vectors: np.ndarray) -> np.ndarray:
    """Each unit row's cosine distance to the normalised mean of the *other* rows (leave-one-out)."""
    n = len(vectors)
    if n < 2:
        return np.zeros(0, dtype=np.float32)
    total = vectors.sum(axis=0, dtype=np.float64)
    dots = vectors.astype(np.float64) @ total  # x_i · S
    rest_sq = float(total @ total) - 2.0 * dots + (vectors.astype(np.float64) ** 2).sum(axis=1)
    cos = (dots - (vectors.astype(np.float64) ** 2).sum(axis=1)) / np.sqrt(np.maximum(rest_sq, 1e-12))
    return np.clip(1.0 - cos, 0.0, 2.0).astype(np.float32)


def _thin(sample: np.ndarray, cap: int = MAX_DISTANCE_SAMPLE) -> np.ndarray:
    """At most ``cap`` values with the same distribution: evenly spaced quantiles when longer."""
    if len(sample) <= cap:
        return np.sort(sample)
    return np.quantile(sample, np.linspace(0.0, 1.0, cap)).astype(np.float32)


def _check_quantile(q: Any) -> float:
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.5 <= q <= 1.0:
        raise InputError(f"outlier_quantile must be a number from 0.5 to 1, got {q!r}", param="outlier_quantile")
    return float(q)


def _texts(texts: Any, param: str = "texts") -> list[str]:
    texts = validate_texts(texts, param=param)
    for i, t in enumerate(texts):
        if not t.strip():
            raise InputError(f"{param}[{i}] is blank (only whitespace)", param=param)
    return texts


class _Counts:
    """Term counts per (language, topic, term), the raw material of c-TF-IDF keywords."""

    def __init__(self, vocab: list[str] | None = None, languages: list[str] | None = None,
                 table: dict[tuple[int, int, int], int] | None = None) -> None:
        self.vocab: list[str] = list(vocab or [])
        self.term_index = {t: i for i, t in enumerate(self.vocab)}
        self.languages: list[str] = list(languages or [])
        self.lang_index = {g: i for i, g in enumerate(self.languages)}
        self.table: dict[tuple[int, int, int], int] = dict(table or {})
        #: texts per (topic, language): the language shares of a topic's keyword slots
        self.docs: dict[tuple[int, str], int] = {}

    def add(self, texts: Sequence[str], topics: Sequence[int], tokenizer: Tokenizer,
            languages: Sequence[str] | None = None) -> None:
        for i, (text, topic) in enumerate(zip(texts, topics)):
            lang = languages[i] if languages is not None else detect_language(text)
            li = self.lang_index.setdefault(lang, len(self.languages))
            if li == len(self.languages):
                self.languages.append(lang)
            self.docs[(int(topic), lang)] = self.docs.get((int(topic), lang), 0) + 1
            for token in tokenizer(text):
                ti = self.term_index.get(token)
                if ti is None:
                    ti = self.term_index[token] = len(self.vocab)
                    self.vocab.append(token)
                key = (li, int(topic), ti)
                self.table[key] = self.table.get(key, 0) + 1

    def move(self, old: int, new: int, texts: Sequence[str], tokenizer: Tokenizer) -> None:
        """Move the counts of ``texts`` from topic ``old`` (the outliers) to ``new``."""
        for text in texts:
            lang = detect_language(text)
            li = self.lang_index.get(lang)
            if li is None:
                continue
            self.docs[(old, lang)] = max(0, self.docs.get((old, lang), 0) - 1)
            self.docs[(new, lang)] = self.docs.get((new, lang), 0) + 1
            for token in tokenizer(text):
                ti = self.term_index.get(token)
                if ti is None:
                    continue
                k_old, k_new = (li, old, ti), (li, new, ti)
                left = self.table.get(k_old, 0) - 1
                if left > 0:
                    self.table[k_old] = left
                else:
                    self.table.pop(k_old, None)
                self.table[k_new] = self.table.get(k_new, 0) + 1

    def array(self) -> np.ndarray:
        if not self.table:
            return np.zeros((0, 4), dtype=np.int64)
        return np.array([[li, t, ti, c] for (li, t, ti), c in sorted(self.table.items())], dtype=np.int64)

    def keywords(self, topic_ids: Sequence[int], top_n: int) -> dict[int, list[tuple[str, float]]]:
        """c-TF-IDF keywords of each topic (as :func:`~qembed.clustering.keywords.cluster_keywords`
        ranks them, with term counts in place of document frequencies for ties)."""
        classes = sorted({t for (_, t, _) in self.table} | set(topic_ids))
        if not classes or not self.vocab:
            return {int(t): [] for t in topic_ids}
        row = {c: i for i, c in enumerate(classes)}
        n_l, n_c, n_v = len(self.languages), len(classes), len(self.vocab)
        per_lang = np.zeros((max(n_l, 1), n_c, n_v), dtype=np.float64)
        for (li, t, ti), c in self.table.items():
            per_lang[li, row[t], ti] += c
        counts = per_lang.sum(axis=0)
        tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
        avg_words = counts.sum() / max(n_c, 1)
        idf = np.log1p(avg_words / np.maximum(counts.sum(axis=0), 1.0))
        scores = tf * idf
        out: dict[int, list[tuple[str, float]]] = {}
        for t in topic_ids:
            r = row[int(t)]
            s = scores[r]
            if not s.any():
                out[int(t)] = []
                continue
            present = [g for g in self.languages if self.docs.get((int(t), g), 0) > 0] or list(self.languages)
            idx = [self.lang_index[g] for g in present]
            term_lang = np.array(idx)[per_lang[idx, r, :].argmax(axis=0)]
            ranked = [int(i) for i in np.lexsort((-counts[r], -s)) if s[i] > 0]
            queues: dict[str, list[int]] = {g: [] for g in present}
            for i in ranked:
                queues[self.languages[term_lang[i]]].append(i)
            shares = {g: float(max(self.docs.get((int(t), g), 0), 1)) for g in present}
            chosen = _select(queues, shares, top_n)
            out[int(t)] = [(self.vocab[i], float(s[i])) for i in chosen]
        return out


def _summary_of(texts: Sequence[str], vectors: np.ndarray, centroid: np.ndarray, k: int) -> list[str]:
    """``k`` texts chosen by MMR around ``centroid`` (redundancy removed), in the order given."""
    from qembed.summarize.extractive import select

    if not texts:
        return []
    chosen, _ = select(vectors, k, method="mmr", reference=centroid, keys=list(texts))
    return [texts[i] for i in chosen]


def _central(vectors: np.ndarray, centroid: np.ndarray, texts: Sequence[str], k: int) -> list[int]:
    """Indices of the ``k`` rows closest to ``centroid``, closest first; repeated texts count once."""
    order = np.argsort(-(vectors @ centroid), kind="stable")
    out: list[int] = []
    seen: set[str] = set()
    for i in order:
        if texts[i] in seen:
            continue
        seen.add(texts[i])
        out.append(int(i))
        if len(out) == k:
            break
    return out


# --------------------------------------------------------------------------- the model


class TopicModel:
    """A fitted topic model (see the module docstring). Build it with :meth:`fit` (or
    :meth:`from_result` from a :func:`~qembed.clustering.pipeline.cluster` result), read it
    back with :meth:`load`."""

    def __init__(self, *, model: str, dim: int, topics: list[Topic], centroids: np.ndarray, sums: np.ndarray,
                 representatives: np.ndarray, counts: _Counts, instruction: str | None = None,
                 dimensions: int | None = None, model_source: str | None = None, method: str = "kmeans",
                 params: dict[str, Any] | None = None, settings: dict[str, Any] | None = None,
                 pending_texts: list[str] | None = None, pending: np.ndarray | None = None,
                 lineage: str | None = None, revision: int = 0, next_id: int | None = None,
                 history: list[dict[str, Any]] | None = None, created: str | None = None,
                 n_texts: int = 0) -> None:
        self.model = model
        self.model_source = model_source
        self.dim = int(dim)
        self.instruction = instruction
        self.dimensions = dimensions
        self.method = method
        self.params = dict(params or {})
        self.settings = dict(settings or {})
        self.topics = list(topics)
        self.centroids = np.asarray(centroids, dtype=np.float32).reshape(len(self.topics), self.dim)
        self.sums = np.asarray(sums, dtype=np.float32).reshape(len(self.topics), self.dim)
        self.representative_vectors = np.asarray(representatives, dtype=np.float32).reshape(-1, self.dim)
        self.counts = counts
        self.pending_texts = list(pending_texts or [])
        self.pending = (np.zeros((0, self.dim), dtype=np.float32) if pending is None
                        else np.asarray(pending, dtype=np.float32).reshape(-1, self.dim))
        self.lineage = lineage or uuid.uuid4().hex
        self.revision = int(revision)
        self.next_id = int(next_id if next_id is not None else max([t.id for t in self.topics], default=-1) + 1)
        self.history = list(history or [])
        self.created = created or _now()
        self.n_texts = int(n_texts)

    # ------------------------------------------------------------------ settings

    @property
    def outlier_quantile(self) -> float:
        return float(self.settings.get("outlier_quantile", DEFAULT_OUTLIER_QUANTILE))

    @property
    def min_topic_size(self) -> int:
        return int(self.settings.get("min_topic_size", 3))

    def topic(self, topic_id: int) -> Topic:
        """The topic with id ``topic_id`` (:class:`NotFoundError` when there is none)."""
        for t in self.topics:
            if t.id == topic_id:
                return t
        raise NotFoundError(f"no topic {topic_id} in this topic model", param="topic")

    def __len__(self) -> int:
        return len(self.topics)

    def __repr__(self) -> str:
        return (f"TopicModel(model={self.model!r}, dim={self.dim}, topics={len(self.topics)}, "
                f"revision={self.revision}, pending={len(self.pending_texts)})")

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(
        cls,
        encoder: Any,
        texts: Sequence[str],
        *,
        embeddings: np.ndarray | None = None,
        instruction: str | None = None,
        dimensions: int | None = None,
        outlier_quantile: float = DEFAULT_OUTLIER_QUANTILE,
        min_topic_size: int | None = None,
        n_representatives: int = DEFAULT_REPRESENTATIVES,
        summary_sentences: int = DEFAULT_SUMMARY_SENTENCES,
        progress: bool | None = False,
        **cluster_options: Any,
    ) -> "TopicModel":
        """Cluster ``texts`` (:func:`~qembed.clustering.pipeline.cluster`; ``cluster_options`` are
        its options: ``method``, ``clusters``, ``min_cluster_size``, ``seed`` …) and keep the result
        as a topic model. ``embeddings``: precomputed unit vectors (one per text) in place of
        ``encoder`` (then pass ``model=``/``dim`` through an encoder-like object or use
        :meth:`from_result`)."""
        from qembed.clustering.pipeline import cluster

        _check_quantile(outlier_quantile)
        result = cluster(encoder, texts, instruction=instruction, dimensions=dimensions, embeddings=embeddings,
                         progress=progress, **cluster_options)
        name = getattr(encoder, "name", None) or "unknown"
        return cls.from_result(result, model=name, model_source=_source_of(encoder),
                               instruction=resolve_instruction(instruction, SYMMETRIC_INSTRUCTION),
                               dimensions=dimensions, words=cluster_options.get("words", ()),
                               outlier_quantile=outlier_quantile, min_topic_size=min_topic_size,
                               n_representatives=n_representatives, summary_sentences=summary_sentences,
                               top_keywords=cluster_options.get("top_keywords", 10),
                               label_words=cluster_options.get("label_words", 3))

    @classmethod
    def from_result(
        cls,
        result: ClusterResult,
        *,
        model: str,
        instruction: str | None,
        dimensions: int | None = None,
        model_source: str | None = None,
        words: Iterable[str] = (),
        outlier_quantile: float = DEFAULT_OUTLIER_QUANTILE,
        min_topic_size: int | None = None,
        n_representatives: int = DEFAULT_REPRESENTATIVES,
        summary_sentences: int = DEFAULT_SUMMARY_SENTENCES,
        top_keywords: int = 10,
        label_words: int = 3,
    ) -> "TopicModel":
        """A topic model from a :class:`~qembed.clustering.types.ClusterResult` (with its
        embeddings), made by ``model`` with ``instruction`` (``None`` or ``""``: none)."""
        _check_quantile(outlier_quantile)
        if result.embeddings is None:
            raise InputError("this clustering result has no embeddings to keep")
        vectors = normalize(result.embeddings)
        labels = result.labels
        texts = [t.text for t in result.texts]
        ids = sorted(int(c) for c in np.unique(labels) if c >= 0)
        if not ids:
            raise InputError("the clustering found no topic (every text is an outlier): nothing to save; "
                             "lower min_cluster_size")
        sizes = [int((labels == c).sum()) for c in ids]
        if min_topic_size is None:  # HDBSCAN's smallest cluster; K-Means: half the smallest topic, 3..10
            min_topic_size = int(result.params.get("min_cluster_size") or max(3, min(10, min(sizes) // 2)))
        if isinstance(min_topic_size, bool) or not isinstance(min_topic_size, (int, np.integer)) \
                or min_topic_size < 2:
            raise InputError(f"min_topic_size must be an integer of at least 2, got {min_topic_size!r}",
                             param="min_topic_size")
        tokenizer = Tokenizer.for_corpus(texts, words)
        counts = _Counts()
        counts.add(texts, labels.tolist(), tokenizer)
        by_id = {c.cluster: c for c in result.clusters}
        topics: list[Topic] = []
        sums = np.zeros((len(ids), vectors.shape[1]), dtype=np.float32)
        reps: list[np.ndarray] = []
        for row, c in enumerate(ids):
            members = np.flatnonzero(labels == c)
            member_vectors = vectors[members]
            sums[row] = member_vectors.sum(axis=0)
            centroid = normalize(sums[row])
            member_texts = [texts[i] for i in members]
            central = _central(member_vectors, centroid, member_texts, n_representatives)
            reps.append(member_vectors[central])
            cl = by_id[c]
            topics.append(Topic(
                id=c, label=cl.label, keywords=list(cl.keywords), size=len(members),
                representatives=[member_texts[i] for i in central],
                summary=_summary_of(member_texts, member_vectors, centroid, summary_sentences),
                keyword_scores=list(cl.keyword_scores), origin="fit", revision=0,
                distances=_thin(held_out_distances(member_vectors)).tolist()))
        outliers = np.flatnonzero(labels == -1)[:MAX_PENDING]
        tm = cls(
            model=model, model_source=model_source, dim=vectors.shape[1], topics=topics,
            centroids=normalize(sums), sums=sums, representatives=np.concatenate(reps) if reps else None,
            counts=counts, instruction=instruction or None, dimensions=dimensions, method=result.method,
            params={k: v for k, v in result.params.items() if k != "silhouette"},
            settings={"outlier_quantile": float(outlier_quantile), "min_topic_size": int(min_topic_size),
                      "n_representatives": int(n_representatives), "summary_sentences": int(summary_sentences),
                      "top_keywords": int(top_keywords), "label_words": int(label_words),
                      "words": list(tokenizer.words)},
            pending_texts=[texts[i] for i in outliers], pending=vectors[outliers], n_texts=len(texts))
        tm._set_thresholds()
        tm.history.append({"revision": 0, "time": tm.created, "event": "fit", "texts": len(texts),
                           "topics": len(topics), "outliers": int((labels == -1).sum())})
        logger.info("topic model: %d topic(s) from %d text(s)", len(topics), len(texts))
        return tm

    def _set_thresholds(self) -> None:
        q = self.outlier_quantile
        pooled = np.concatenate([np.asarray(t.distances, dtype=np.float32) for t in self.topics] or
                                [np.zeros(0, dtype=np.float32)])
        overall = float(np.quantile(pooled, q)) if len(pooled) else 1.0
        for t in self.topics:
            t.threshold = self._threshold(t.distances, overall)

    def _threshold(self, distances: Sequence[float], overall: float) -> float:
        sample = np.asarray(distances, dtype=np.float32)
        n = len(sample)
        own = float(np.quantile(sample, self.outlier_quantile)) if n else overall
        return (n * own + PRIOR_WEIGHT * overall) / (n + PRIOR_WEIGHT)

    # ------------------------------------------------------------------ placing texts

    def check_encoder(self, encoder: Any) -> None:
        """Refuse an encoder other than the one the topic model was made with (name and size)."""
        name = getattr(encoder, "name", None)
        dim = getattr(encoder, "dim", None)
        if dim is not None and (int(dim) < self.dim if self.dimensions else int(dim) != self.dim):
            raise TopicModelMismatchError(
                f"the topic model was made with {self.model!r} (vectors of size {self.dim}), but {name!r} makes "
                f"vectors of size {dim}: place texts with {self.model!r}", param="model")
        ours = {Path(str(x)).name for x in (self.model, self.model_source) if x}
        theirs = {Path(str(x)).name for x in (name, getattr(encoder, "model_source", None),
                                             getattr(encoder, "path", None)) if x}
        if name is not None and not ours & theirs:
            raise TopicModelMismatchError(
                f"the topic model was made with {self.model!r}, not {name!r}: its centroids are not comparable "
                f"with this model's vectors; use {self.model!r} or fit a new topic model", param="model")

    def embed(self, encoder: Any, texts: Sequence[str], *, progress: bool | None = False) -> np.ndarray:
        """Unit vectors of ``texts`` as the topic model's texts were embedded (instruction, size)."""
        self.check_encoder(encoder)
        vectors = encoder.encode(list(texts), instruction=self.instruction, dimensions=self.dimensions,
                                 progress=want_progress(progress, len(texts)))
        return self._check_vectors(vectors, len(texts))

    def _check_vectors(self, vectors: Any, n: int | None) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or (n is not None and len(x) != n):
            raise InputError(f"embeddings must have shape ({n if n is not None else 'n'}, {self.dim}), "
                             f"got {x.shape}", param="embeddings")
        if x.shape[1] != self.dim:
            raise TopicModelMismatchError(
                f"the topic model holds vectors of size {self.dim} ({self.model}), got vectors of size "
                f"{x.shape[1]}", param="embeddings")
        if not np.isfinite(x).all():
            raise InputError("embeddings contain NaN or infinity", param="embeddings")
        return normalize(x)

    def _vectors(self, encoder: Any, texts: Sequence[str] | None, embeddings: Any,
                 progress: bool | None) -> tuple[list[str] | None, np.ndarray]:
        if embeddings is not None:
            n = None if texts is None else len(texts)
            texts_list = None if texts is None else _texts(texts)
            return texts_list, self._check_vectors(embeddings, n)
        if texts is None:
            raise InputError("give texts (and an encoder) or embeddings", param="texts")
        texts_list = _texts(texts)
        if encoder is None:
            raise InputError("placing texts needs the encoder the topic model was made with "
                             f"({self.model!r})", param="model")
        return texts_list, self.embed(encoder, texts_list, progress=progress)

    def nearest(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For unit ``vectors``: the row of the nearest centroid and the cosine distance to it."""
        rows = np.zeros(len(vectors), dtype=np.int64)
        dist = np.ones(len(vectors), dtype=np.float32)
        if not len(self.topics):
            return rows - 1, dist
        for start in range(0, len(vectors), ASSIGN_BLOCK):
            sims = vectors[start:start + ASSIGN_BLOCK] @ self.centroids.T
            best = sims.argmax(axis=1)
            rows[start:start + len(best)] = best
            dist[start:start + len(best)] = np.clip(1.0 - sims[np.arange(len(best)), best], 0.0, 2.0)
        return rows, dist

    def assign(
        self,
        texts: Sequence[str] | None = None,
        *,
        encoder: Any = None,
        embeddings: np.ndarray | None = None,
        progress: bool | None = False,
    ) -> list[TopicAssignment]:
        """Place new texts (BERTopic's ``transform``): one :class:`TopicAssignment` each, in order.

        Give ``texts`` and the ``encoder`` the model was made with (checked), or unit vectors as
        ``embeddings`` (``texts`` then optional). Nothing in the model changes."""
        texts_list, vectors = self._vectors(encoder, texts, embeddings, progress)
        rows, dist = self.nearest(vectors)
        thresholds = np.array([t.threshold for t in self.topics], dtype=np.float32)
        ids = np.array([t.id for t in self.topics], dtype=np.int64)
        labels = [t.label for t in self.topics] + [OUTLIER_LABEL]
        if not len(self.topics):
            return [TopicAssignment(i, None if texts_list is None else texts_list[i], -1, OUTLIER_LABEL, 1.0, -1, True)
                    for i in range(len(vectors))]
        outlier = dist > thresholds[rows]
        nearest = ids[rows]
        topic = np.where(outlier, -1, nearest).tolist()
        label_row = np.where(outlier, len(self.topics), rows).tolist()
        texts_or_none = texts_list if texts_list is not None else [None] * len(vectors)
        return [TopicAssignment(i, text, t, labels[lr], d, n, o) for i, (text, t, lr, d, n, o) in enumerate(zip(
            texts_or_none, topic, label_row, np.round(dist.astype(np.float64), 6).tolist(), nearest.tolist(),
            outlier.tolist()))]

    # ------------------------------------------------------------------ folding texts in

    def update(
        self,
        texts: Sequence[str],
        *,
        encoder: Any = None,
        embeddings: np.ndarray | None = None,
        propose: bool = True,
        progress: bool | None = False,
    ) -> UpdateResult:
        """Fold new texts in (BERTopic's ``partial_fit``); ids of existing topics never change.

        Texts that fit a topic join it; outliers join the pending pool, and groups in the pool
        become new topics when ``propose`` (see the module docstring). Centroids, sizes, keywords,
        labels, representatives, summaries and thresholds are refreshed. Returns an
        :class:`UpdateResult`; :meth:`save` keeps the change."""
        texts_list, vectors = self._vectors(encoder, texts, embeddings, progress)
        if texts_list is None:
            raise InputError("update needs the texts (their words refresh the keywords)", param="texts")
        before = self.copy_sizes()
        rows, dist = self.nearest(vectors)
        thresholds = np.array([t.threshold for t in self.topics], dtype=np.float32)
        fits = dist <= thresholds[rows] if len(self.topics) else np.zeros(len(vectors), dtype=bool)
        tokenizer = Tokenizer(self.settings.get("words", ()))
        final = np.where(fits, np.array([t.id for t in self.topics], dtype=np.int64)[rows] if len(self.topics)
                         else -1, -1)
        self.counts.add(texts_list, final.tolist(), tokenizer)
        joined: dict[int, int] = {}
        cand_texts: dict[int, list[str]] = {}
        cand_vecs: dict[int, list[np.ndarray]] = {}
        for r, topic in enumerate(self.topics):
            members = np.flatnonzero(fits & (rows == r))
            if not len(members):
                continue
            joined[topic.id] = len(members)
            topic.distances = _thin(np.concatenate([np.asarray(topic.distances, dtype=np.float32),
                                                    dist[members]])).tolist()
            self.sums[r] += vectors[members].sum(axis=0)
            topic.size += len(members)
            cand_texts[r] = [texts_list[i] for i in members]
            cand_vecs[r] = [vectors[members]]
        out_idx = np.flatnonzero(~fits)
        self.pending_texts += [texts_list[i] for i in out_idx]
        self.pending = np.concatenate([self.pending, vectors[out_idx]])
        proposed: list[Topic] = []
        moved: dict[int, int] = {}  # index in this call's texts -> new topic id
        if propose:
            first = len(self.pending_texts) - len(out_idx)  # this call's outliers come last, in order
            proposed, taken = self._propose(tokenizer)
            moved = {int(out_idx[j - first]): topic_id for j, topic_id in taken.items() if j >= first}
        if len(self.pending_texts) > MAX_PENDING:  # keep the newest
            drop = len(self.pending_texts) - MAX_PENDING
            self.pending_texts = self.pending_texts[drop:]
            self.pending = self.pending[drop:]
        self.centroids = normalize(self.sums)
        self._refresh(cand_texts, cand_vecs)
        self._set_thresholds()
        self.revision += 1
        self.n_texts += len(texts_list)
        by_id = {t.id: t for t in self.topics}
        rows_out = []
        ids = [t.id for t in self.topics]
        for i in range(len(texts_list)):
            r = int(rows[i])
            if i in moved:
                topic_id, outlier = moved[i], False
            elif fits[i]:
                topic_id, outlier = ids[r], False
            else:
                topic_id, outlier = -1, True
            rows_out.append(TopicAssignment(index=i, text=texts_list[i], topic=topic_id,
                                            label=by_id[topic_id].label if topic_id >= 0 else OUTLIER_LABEL,
                                            distance=round(float(dist[i]), 6), nearest=ids[r] if ids else -1,
                                            outlier=outlier))
        self.history.append({"revision": self.revision, "time": _now(), "event": "update",
                             "texts": len(texts_list), "joined": int(fits.sum()),
                             "outliers": int((~fits).sum()) - len(moved),
                             "proposed": [t.id for t in proposed]})
        diff = diff_sizes(before, self)
        logger.info("topic model update: %d text(s), %d joined a topic, %d new topic(s), %d pending outlier(s)",
                    len(texts_list), int(fits.sum()), len(proposed), len(self.pending_texts))
        return UpdateResult(assignments=rows_out, proposed=proposed, joined=joined, diff=diff,
                            revision=self.revision, pending=len(self.pending_texts))

    def copy_sizes(self) -> "TopicModel":
        """A light copy of the topics and centroids (for :func:`diff` against a later state)."""
        clone = TopicModel.__new__(TopicModel)
        clone.lineage = self.lineage
        clone.topics = [Topic(id=t.id, label=t.label, keywords=list(t.keywords), size=t.size,
                              representatives=[]) for t in self.topics]
        clone.centroids = self.centroids.copy()
        return clone

    def _propose(self, tokenizer: Tokenizer) -> tuple[list[Topic], dict[int, int]]:
        """New topics from groups in the pending pool; returns them and {pending row: new id}
        (rows as they were before the call, which removes the taken ones from the pool)."""
        from qembed.clustering.pipeline import hdbscan_labels

        n = len(self.pending_texts)
        size = self.min_topic_size
        if n < max(size, 2):
            return [], {}
        labels = hdbscan_labels(self.pending, min_cluster_size=size, min_samples=min(size, 5),
                                reduce="auto", allow_single_cluster=True)
        limit = max((t.threshold for t in self.topics), default=1.0)
        proposed: list[Topic] = []
        taken = np.zeros(n, dtype=bool)
        moved: dict[int, int] = {}
        for g in sorted(int(c) for c in np.unique(labels) if c >= 0):
            members = np.flatnonzero(labels == g)
            vecs = self.pending[members]
            held = held_out_distances(vecs)
            if len(members) < size or (len(held) and float(np.median(held)) > limit):
                continue
            # pending texts within the new topic's threshold of its centroid join it as well
            overall = float(np.quantile(np.concatenate([np.asarray(t.distances, dtype=np.float32)
                                                        for t in self.topics] or [held]), self.outlier_quantile))
            near = 1.0 - self.pending @ normalize(vecs.sum(axis=0))
            extra = np.flatnonzero((near <= self._threshold(held, overall)) & ~taken & (labels != g))
            extra = extra[labels[extra] < 0]  # from no other group
            if len(extra):
                held = np.concatenate([held, near[extra]]).astype(np.float32)
                members = np.concatenate([members, extra])
                vecs = self.pending[members]
            new_id = self.next_id
            self.next_id += 1
            member_texts = [self.pending_texts[i] for i in members]
            total = vecs.sum(axis=0)
            centroid = normalize(total)
            central = _central(vecs, centroid, member_texts, int(self.settings.get("n_representatives",
                                                                                 DEFAULT_REPRESENTATIVES)))
            topic = Topic(id=new_id, label="", keywords=[], size=len(members),
                          representatives=[member_texts[i] for i in central],
                          summary=_summary_of(member_texts, vecs, centroid,
                                              int(self.settings.get("summary_sentences", 3))),
                          origin="update", revision=self.revision + 1, distances=_thin(held).tolist())
            self.topics.append(topic)
            self.sums = np.concatenate([self.sums, total[None, :]])
            self.representative_vectors = np.concatenate([self.representative_vectors, vecs[central]])
            self.counts.move(-1, new_id, member_texts, tokenizer)
            taken[members] = True
            for i in members:
                moved[int(i)] = new_id
            proposed.append(topic)
        if taken.any():
            keep = np.flatnonzero(~taken)
            self.pending_texts = [self.pending_texts[i] for i in keep]
            self.pending = self.pending[keep]
        return proposed, moved

    def _refresh(self, cand_texts: dict[int, list[str]], cand_vecs: dict[int, list[np.ndarray]]) -> None:
        """Keywords, labels, representatives and summaries of every topic, after a change."""
        top_n = int(self.settings.get("top_keywords", 10))
        label_words = int(self.settings.get("label_words", 3))
        n_rep = int(self.settings.get("n_representatives", DEFAULT_REPRESENTATIVES))
        k_sum = int(self.settings.get("summary_sentences", DEFAULT_SUMMARY_SENTENCES))
        keywords = self.counts.keywords([t.id for t in self.topics], top_n)
        new_reps: list[np.ndarray] = []
        offset = 0
        for r, topic in enumerate(self.topics):
            kw = keywords.get(topic.id, [])
            topic.keywords = [w for w, _ in kw]
            topic.keyword_scores = [round(s, 6) for _, s in kw]
            topic.label = make_label(topic.keywords, label_words, cluster_id=topic.id)
            old_n = len(topic.representatives)
            old_vecs = self.representative_vectors[offset:offset + old_n]
            offset += old_n
            if r not in cand_texts:
                new_reps.append(old_vecs)
                continue
            texts = topic.representatives + cand_texts[r]
            vecs = np.concatenate([old_vecs, *cand_vecs[r]])
            centroid = self.centroids[r]
            central = _central(vecs, centroid, texts, n_rep)
            topic.representatives = [texts[i] for i in central]
            topic.summary = _summary_of(texts, vecs, centroid, k_sum)
            new_reps.append(vecs[central])
        self.representative_vectors = (np.concatenate(new_reps) if new_reps
                                       else np.zeros((0, self.dim), dtype=np.float32))

    # ------------------------------------------------------------------ saving

    def to_dict(self) -> dict[str, Any]:
        """What ``GET /v1/topics`` and ``qembed topics show --json`` print (no arrays)."""
        return {"model": self.model, "dim": self.dim, "instruction": self.instruction,
                "dimensions": self.dimensions, "method": self.method, "params": self.params,
                "settings": self.settings, "lineage": self.lineage, "revision": self.revision,
                "created": self.created, "n_texts": self.n_texts, "n_topics": len(self.topics),
                "pending_outliers": len(self.pending_texts), "history": self.history,
                "topics": [t.to_dict() for t in self.topics]}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model to the folder ``path`` (replaced whole, atomically); returns the path."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise InputError(f"{path} is a file; give a folder for the topic model", param="path")
        if path.is_dir() and any(path.iterdir()) and not (path / MANIFEST).is_file():
            raise InputError(f"{path} holds other files and no topic model; give a new or empty folder",
                             param="path")
        manifest = {
            "format": FORMAT, "version": VERSION, "model": self.model, "model_source": self.model_source,
            "dim": self.dim, "instruction": self.instruction, "dimensions": self.dimensions,
            "method": self.method, "params": self.params, "settings": self.settings,
            "lineage": self.lineage, "revision": self.revision, "next_id": self.next_id,
            "created": self.created, "saved": _now(), "n_texts": self.n_texts, "history": self.history,
            "topics": [t.to_dict(internal=True) for t in self.topics],
            "vocabulary": self.counts.vocab, "languages": self.counts.languages,
            "language_docs": [[t, g, n] for (t, g), n in sorted(self.counts.docs.items()) if n],
            "pending_texts": self.pending_texts,
        }
        arrays = {"centroids": self.centroids, "sums": self.sums, "representatives": self.representative_vectors,
                  "counts": self.counts.array(), "pending": self.pending}
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        try:
            for name, arr in arrays.items():
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
            (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            if path.exists():
                path.rename(old)
            tmp.rename(path)
            if old.exists():
                shutil.rmtree(old)
        except Exception:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info("saved the topic model (%d topics, revision %d) to %s", len(self.topics), self.revision, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], encoder: Any = None) -> "TopicModel":
        """Read a folder written by :meth:`save`, checking its format, version and every shape.

        ``encoder``: when given, refused unless it is the model the topic model was made with.
        Raises :class:`NotFoundError` (no such folder / no topic model in it) or
        :class:`InputError` (damaged, newer version, mismatch)."""
        path = Path(path)
        if not path.exists():
            raise NotFoundError(f"topic model folder not found: {path}", param="model", code="topic_model_not_found")
        if not path.is_dir() or not (path / MANIFEST).is_file():
            raise NotFoundError(f"{path} is not a topic model folder (no {MANIFEST}; make one with "
                                "'qembed cluster --save-model DIR')", param="model", code="topic_model_not_found")
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path / MANIFEST} is not readable JSON: {exc}", param="model") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise InputError(f"{path / MANIFEST} is not a qembed topic model (format {manifest.get('format')!r})"
                             if isinstance(manifest, dict) else f"{path / MANIFEST} is not a JSON object",
                             param="model")
        version = manifest.get("version")
        if not isinstance(version, int) or version < 1:
            raise InputError(f"{path}: topic model version {version!r} is not valid", param="model")
        if version > VERSION:
            raise InputError(f"{path} was saved by a newer qembed (topic model version {version}; this one "
                             f"reads up to {VERSION}): upgrade qembed", param="model")
        try:
            tm = cls._from_manifest(path, manifest)
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InputError(f"{path} is a damaged topic model: {type(exc).__name__}: {exc}", param="model") from None
        if encoder is not None:
            tm.check_encoder(encoder)
        return tm

    @classmethod
    def _from_manifest(cls, path: Path, m: dict[str, Any]) -> "TopicModel":
        dim = m["dim"]
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise InputError(f"{path}: dim {dim!r} is not a positive integer", param="model")
        arrays: dict[str, np.ndarray] = {}
        for name in ARRAYS:
            file = path / f"{name}.npy"
            if not file.is_file():
                raise InputError(f"{path} is a damaged topic model: {file.name} is missing", param="model")
            try:
                arrays[name] = np.load(file, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise InputError(f"{path}: {file.name} is not a plain .npy array ({exc})", param="model") from None
        topics = [Topic(id=int(t["topic"]), label=str(t["label"]), keywords=[str(w) for w in t["keywords"]],
                        size=int(t["size"]), representatives=[str(x) for x in t["representatives"]],
                        summary=[str(x) for x in t.get("summary", [])], threshold=float(t["threshold"]),
                        keyword_scores=[float(x) for x in t.get("keyword_scores", [])],
                        origin=str(t.get("origin", "fit")), revision=int(t.get("revision", 0)),
                        distances=[float(x) for x in t.get("distances", [])]) for t in m["topics"]]
        k = len(topics)
        n_rep = sum(len(t.representatives) for t in topics)
        pending_texts = [str(x) for x in m.get("pending_texts", [])]
        expect = {"centroids": (k, dim), "sums": (k, dim), "representatives": (n_rep, dim),
                  "pending": (len(pending_texts), dim)}
        for name, shape in expect.items():
            arr = arrays[name]
            if arr.dtype.kind != "f" or arr.shape != shape:
                raise InputError(f"{path}: {name}.npy has shape {arr.shape} ({arr.dtype}), expected {shape} "
                                 "floats: the folder is damaged or mixed from two models", param="model")
            if not np.isfinite(arr).all():
                raise InputError(f"{path}: {name}.npy holds NaN or infinity", param="model")
        if len({t.id for t in topics}) != k or any(t.id < 0 for t in topics):
            raise InputError(f"{path}: topic ids must be distinct and not negative", param="model")
        counts_arr = arrays["counts"]
        vocab = [str(x) for x in m.get("vocabulary", [])]
        languages = [str(x) for x in m.get("languages", [])]
        if counts_arr.dtype.kind not in "iu" or counts_arr.ndim != 2 or counts_arr.shape[1] != 4:
            raise InputError(f"{path}: counts.npy must be integer rows of 4, got {counts_arr.shape}", param="model")
        if len(counts_arr) and (counts_arr[:, 0].max() >= len(languages) or counts_arr[:, 2].max() >= len(vocab)
                                or counts_arr[:, [0, 2, 3]].min() < 0):
            raise InputError(f"{path}: counts.npy points past the vocabulary or languages", param="model")
        counts = _Counts(vocab, languages, {(int(a), int(b), int(c)): int(d) for a, b, c, d in counts_arr})
        counts.docs = {(int(t), str(g)): int(n) for t, g, n in m.get("language_docs", [])}
        return cls(model=str(m["model"]), model_source=m.get("model_source"), dim=dim, topics=topics,
                   centroids=arrays["centroids"], sums=arrays["sums"], representatives=arrays["representatives"],
                   counts=counts, instruction=m.get("instruction"), dimensions=m.get("dimensions"),
                   method=str(m.get("method", "kmeans")), params=m.get("params") or {},
                   settings=m.get("settings") or {}, pending_texts=pending_texts, pending=arrays["pending"],
                   lineage=m.get("lineage"), revision=int(m.get("revision", 0)), next_id=m.get("next_id"),
                   history=m.get("history") or [], created=m.get("created"), n_texts=int(m.get("n_texts", 0)))


def _source_of(encoder: Any) -> str | None:
    source = getattr(encoder, "model_source", None) or getattr(encoder, "path", None)
    return None if source is None else str(source)


# --------------------------------------------------------------------------- comparing runs

#: Separate fits: topics pair up when their centroids are at least this similar (cosine).
MATCH_SIMILARITY = 0.8


def diff_sizes(before: TopicModel, after: TopicModel) -> TopicDiff:
    """Topics of ``after`` against ``before``: by id when both come from the same fit (``lineage``),
    else paired by centroid cosine (mutual best match at least :data:`MATCH_SIMILARITY`)."""
    changes: list[TopicChange] = []
    if before.lineage == after.lineage:
        a = {t.id: t for t in before.topics}
        b = {t.id: t for t in after.topics}
        pairs = [(i, i, None) for i in sorted(set(a) & set(b))]
        matched_by = "id"
    else:
        a = {t.id: t for t in before.topics}
        b = {t.id: t for t in after.topics}
        pairs = []
        if a and b:
            sims = before.centroids @ after.centroids.T
            ia = [t.id for t in before.topics]
            ib = [t.id for t in after.topics]
            for r in range(len(ia)):
                c = int(sims[r].argmax())
                if int(sims[:, c].argmax()) == r and sims[r, c] >= MATCH_SIMILARITY:
                    pairs.append((ia[r], ib[c], round(float(sims[r, c]), 4)))
        matched_by = "centroid"
    seen_a = {p[0] for p in pairs}
    seen_b = {p[1] for p in pairs}
    for ida, idb, sim in pairs:
        sa, sb = a[ida].size, b[idb].size
        status = "grew" if sb > sa else "shrank" if sb < sa else "unchanged"
        changes.append(TopicChange(status, ida, idb, b[idb].label, sa, sb, sim))
    for idb in sorted(set(b) - seen_b):
        changes.append(TopicChange("appeared", None, idb, b[idb].label, 0, b[idb].size))
    for ida in sorted(set(a) - seen_a):
        changes.append(TopicChange("vanished", ida, None, a[ida].label, a[ida].size, 0))
    return TopicDiff(matched_by=matched_by, changes=changes)


def diff(before: str | os.PathLike[str] | TopicModel, after: str | os.PathLike[str] | TopicModel) -> TopicDiff:
    """Compare two topic models (folders or loaded): which topics grew, shrank, appeared, vanished."""
    a = before if isinstance(before, TopicModel) else TopicModel.load(before)
    b = after if isinstance(after, TopicModel) else TopicModel.load(after)
    if a.dim != b.dim or a.model != b.model:
        raise TopicModelMismatchError(f"the topic models come from different embedding models ({a.model!r}, "
                                      f"dim {a.dim} and {b.model!r}, dim {b.dim}): their topics cannot be "
                                      "compared", param="model")
    return diff_sizes(a, b)


__all__ = ["DEFAULT_OUTLIER_QUANTILE", "FORMAT", "Topic", "TopicAssignment", "TopicChange", "TopicDiff",
           "TopicModel", "TopicModelMismatchError", "UpdateResult", "VERSION", "diff", "held_out_distances"]
