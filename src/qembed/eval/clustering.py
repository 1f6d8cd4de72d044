"""Clustering quality against gold labels: V-measure, ARI, NMI (scikit-learn), with a baseline.

:func:`clustering_scores` compares two labelings. :func:`evaluate_clustering` embeds labelled
texts, clusters them with :func:`qembed.clustering.pipeline.cluster` and scores the result; as a
baseline it clusters the same texts by their words alone (TF-IDF over qembed's keyword tokenizer,
then K-Means with the same k), so the figure says what the embeddings add over lexical overlap.
Outliers (HDBSCAN's ``-1``) count as one more predicted cluster; their share is reported.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from qembed.clustering.pipeline import DEFAULT_N_INIT
from qembed.deprecated import old_argument_order, old_keywords
from qembed.errors import InputError
from qembed.models.encoder import Encoder

logger = logging.getLogger(__name__)


def clustering_scores(labels_true: Sequence[Any], labels_pred: Sequence[Any]) -> dict[str, float]:
    """``v_measure``, ``homogeneity``, ``completeness``, ``ari``, ``nmi`` of a predicted labeling.

    Labels may be any hashable values; both sequences must have the same length (≥ 1).
    """
    from sklearn import metrics

    y_true = np.asarray([str(x) for x in labels_true])
    y_pred = np.asarray(labels_pred)
    if len(y_true) != len(y_pred):
        raise InputError(f"{len(y_true)} gold labels but {len(y_pred)} predicted labels")
    if len(y_true) == 0:
        raise InputError("no labels to score")
    h, c, v = metrics.homogeneity_completeness_v_measure(y_true, y_pred)
    return {
        "v_measure": float(v),
        "homogeneity": float(h),
        "completeness": float(c),
        "ari": float(metrics.adjusted_rand_score(y_true, y_pred)),
        "nmi": float(metrics.normalized_mutual_info_score(y_true, y_pred)),
    }


def lexical_baseline(texts: Sequence[str], k: int, *, seed: int = 0) -> np.ndarray:
    """Cluster ids from TF-IDF word vectors (qembed's tokenizer: jieba, stop words) and K-Means."""
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    from qembed.clustering.keywords import Tokenizer

    vectorizer = TfidfVectorizer(tokenizer=Tokenizer.for_corpus(list(texts)), lowercase=False,
                                 token_pattern=None, sublinear_tf=True)
    try:
        x = vectorizer.fit_transform(list(texts))
    except ValueError:
        return np.zeros(len(texts), dtype=np.int64)
    k = min(k, x.shape[0])
    return KMeans(n_clusters=k, random_state=seed, n_init=DEFAULT_N_INIT).fit_predict(x).astype(np.int64)


@old_argument_order
@old_keywords
def evaluate_clustering(
    encoder: Encoder | None,
    texts: Sequence[str],
    labels: Sequence[Any],
    *,
    method: str = "kmeans",
    clusters: int | str | None = None,
    n_init: int = DEFAULT_N_INIT,
    min_cluster_size: int | None = None,
    seed: int = 0,
    instruction: str | None = None,
    dimensions: int | None = None,
    baseline: bool = True,
    progress: bool | None = False,
) -> dict[str, Any]:
    """Cluster ``texts`` with ``encoder`` and score the clusters against the gold ``labels``.

    For ``kmeans`` the default number of ``clusters`` is the number of gold classes (the usual
    protocol, e.g. MTEB clustering); ``clusters="auto"`` lets the silhouette choose. Returns
    ``{"n", "classes", "method", "k", "n_clusters", "outlier_fraction", "scores": {…},
    "baseline": {"name", "scores"}}``.
    """
    from qembed.clustering.pipeline import cluster

    gold = labels
    k = clusters
    texts = list(texts)
    gold = [str(g) for g in gold]
    if len(texts) != len(gold):
        raise InputError(f"{len(texts)} texts but {len(gold)} labels")
    classes = sorted(set(gold))
    if len(classes) < 2:
        raise InputError(f"the data has {len(classes)} distinct label(s); clustering needs at least 2")
    if method == "kmeans" and k is None:
        k = len(classes)
    result = cluster(encoder, texts, method=method, clusters=k, n_init=n_init,
                     min_cluster_size=min_cluster_size, seed=seed, instruction=instruction,
                     dimensions=dimensions, top_keywords=5, progress=progress)
    pred = result.labels
    out: dict[str, Any] = {
        "n": len(texts),
        "classes": len(classes),
        "method": result.method,
        "k": result.params.get("k"),
        "n_clusters": result.n_clusters,
        "outlier_fraction": float((pred == -1).mean()),
        "scores": clustering_scores(gold, pred),
    }
    if baseline:
        base_k = result.n_clusters if result.n_clusters >= 2 else len(classes)
        out["baseline"] = {
            "name": f"tfidf-kmeans (k={base_k})",
            "scores": clustering_scores(gold, lexical_baseline(texts, base_k, seed=seed)),
        }
    return out


__all__ = ["clustering_scores", "evaluate_clustering", "lexical_baseline"]
