"""Clustering texts with named topics: K-Means or HDBSCAN over embeddings, c-TF-IDF keywords.

In: an :class:`~qembed.models.encoder.Encoder` and texts (or precomputed unit vectors). Out: a
:class:`~qembed.clustering.types.ClusterResult` with one :class:`TextAssignment` per input text (its cluster, label and
cosine distance to the cluster centroid) and one :class:`Cluster` per cluster (label, keywords,
size, the most representative texts — those closest to the centroid).

Algorithms (scikit-learn does the clustering):

* ``kmeans``: ``clusters`` clusters; ``clusters="auto"`` (or ``None``) tries k in a range and
  keeps the best silhouette (cosine; sampled above :data:`SILHOUETTE_SAMPLE` texts). Every run
  makes ``n_init`` initialisations (default :data:`DEFAULT_N_INIT` = 10) and keeps the lowest
  inertia. Up to :data:`FAISS_THRESHOLD` vectors scikit-learn's ``KMeans`` (k-means++); above it
  faiss's spherical k-means (trained on at most 256 points per centroid, then every vector is
  assigned), or ``MiniBatchKMeans`` when faiss is missing. The embeddings are unit vectors, so
  Euclidean K-Means ranks like cosine.
* ``hdbscan``: density clusters, no k; texts in no dense region are outliers (cluster ``-1``,
  label ``outliers``), optionally reassigned to the nearest centroid. Above
  :data:`HDBSCAN_REDUCE_THRESHOLD` vectors the embeddings are first reduced with PCA to
  ``reduce_dims`` (default 10) dimensions — HDBSCAN's tree-based neighbour search degrades to
  brute force in hundreds of dimensions (10k x 384: about 1.5 s at 10 dims, 10 s at 50 dims on
  2 cores); ``reduce="umap"`` uses UMAP instead (slower, keeps local structure better).
  ``min_samples`` defaults to ``min(min_cluster_size, 10)``.

Clusters are numbered by size, largest first; the same ``seed`` gives the same result.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from qembed.config import resolve_instruction, want_progress
from qembed.deprecated import old_argument_order, old_keywords
from qembed.errors import InputError
from qembed.models.encoder import Encoder, normalize, validate_texts
from qembed.models.prompts import SYMMETRIC_INSTRUCTION
from qembed.clustering.keywords import OUTLIER_LABEL, Tokenizer, cluster_keywords, detect_language, make_label
from qembed.clustering.types import Cluster, ClusterResult, TextAssignment
from qembed.summarize.extractive import select

logger = logging.getLogger(__name__)

METHODS = ("kmeans", "hdbscan")
#: Above this many vectors K-Means runs on faiss (or MiniBatchKMeans without faiss).
FAISS_THRESHOLD = 5_000
KMEANS_BACKENDS = ("auto", "sklearn", "faiss", "minibatch")
#: Silhouette for ``k="auto"`` is computed on a sample of this many vectors.
SILHOUETTE_SAMPLE = 5_000
#: Above this many vectors HDBSCAN runs on PCA-reduced vectors (``reduce="auto"``).
HDBSCAN_REDUCE_THRESHOLD = 5_000
#: HDBSCAN's ``min_samples`` when not given: ``min(min_cluster_size, this)``.
DEFAULT_MIN_SAMPLES = 10
#: Largest k tried by ``k="auto"``.
MAX_AUTO_K = 30
#: K-Means initialisations by default (scikit-learn's ``n_init=10``): the best inertia is kept.
DEFAULT_N_INIT = 10

Method = Literal["kmeans", "hdbscan"]


# --------------------------------------------------------------------------- validation


def _check_method(method: str) -> str:
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise InputError(f"unknown clustering method {method!r}; use one of: {', '.join(METHODS)}",
                         param="method")
    return method.lower()


def _check_k(k: Any, n: int, method: str) -> int | str | None:
    """The number of clusters asked for: an integer in [2, n], ``"auto"`` (kmeans) or ``None`` (hdbscan)."""
    if k is None or (isinstance(k, str) and k.strip().lower() == "auto"):
        return "auto" if method == "kmeans" else None
    if method == "hdbscan":
        raise InputError("clusters applies to kmeans only; hdbscan finds the number of clusters itself "
                         "(tune it with min_cluster_size)", param="clusters")
    if isinstance(k, str):
        try:
            k = int(k)
        except ValueError:
            raise InputError(f"clusters must be an integer or 'auto', got {k!r}", param="clusters") from None
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InputError(f"clusters must be an integer or 'auto', got {type(k).__name__}", param="clusters")
    if k < 2:
        raise InputError(f"clusters must be at least 2, got {k}", param="clusters")
    if k > n:
        raise InputError(f"cannot make {k} clusters from {n} texts: give clusters at most {n} or more texts",
                         param="clusters")
    return int(k)


check_clusters = _check_k


def _check_texts(texts: Any) -> list[str]:
    texts = validate_texts(texts)
    for i, t in enumerate(texts):
        if not t.strip():
            raise InputError(f"texts[{i}] is blank (only whitespace); remove empty lines", param="texts")
    if len(texts) < 2:
        raise InputError(f"clustering needs at least 2 texts, got {len(texts)}", param="texts")
    return texts


# --------------------------------------------------------------------------- algorithms


def kmeans_backend(n: int, backend: str = "auto") -> str:
    """The K-Means implementation ``backend="auto"`` picks for ``n`` vectors.

    ``sklearn`` (``KMeans``) up to :data:`FAISS_THRESHOLD` vectors; above it ``faiss`` (spherical
    k-means, several times faster) when faiss is installed, else ``minibatch``
    (scikit-learn's ``MiniBatchKMeans``).
    """
    backend = (backend or "auto").lower()
    if backend not in KMEANS_BACKENDS:
        raise InputError(f"unknown k-means backend {backend!r}; use one of: {', '.join(KMEANS_BACKENDS)}",
                         param="backend")
    if backend != "auto":
        return backend
    if n <= FAISS_THRESHOLD:
        return "sklearn"
    try:
        import faiss  # noqa: F401
    except ImportError:
        return "minibatch"
    return "faiss"


def kmeans_labels(vectors: np.ndarray, k: int, *, seed: int = 0, n_init: int = DEFAULT_N_INIT,
                  backend: str = "auto") -> np.ndarray:
    """K-Means cluster ids for ``vectors``; ``backend`` as in :func:`kmeans_backend`.

    ``n_init`` initialisations from seeds derived from ``seed``; the one with the lowest inertia
    is kept (scikit-learn's ``n_init``, faiss' ``nredo``).
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    n = len(vectors)
    how = kmeans_backend(n, backend)
    if how == "faiss":
        import faiss

        x = np.ascontiguousarray(vectors, dtype=np.float32)
        # faiss trains on at most 256 points per centroid (a seeded sample), then assigns all
        km = faiss.Kmeans(x.shape[1], k, niter=25, nredo=n_init, seed=int(seed) % (2**31 - 1),
                          spherical=True, verbose=False, min_points_per_centroid=1)
        km.train(x)
        _, assign = km.index.search(x, 1)
        return assign.ravel().astype(np.int64)
    if how == "minibatch":
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=n_init,
                                batch_size=min(n, 4096), max_no_improvement=20)
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=n_init)
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        labels = model.fit_predict(vectors).astype(np.int64)
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            logger.warning("k-means: %s", str(w.message).split(". ")[0])
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return labels


def auto_k(vectors: np.ndarray, *, seed: int = 0, k_range: Sequence[int] | None = None,
           sample_size: int = SILHOUETTE_SAMPLE, backend: str = "auto") -> tuple[int, dict[int, float]]:
    """Pick k by the best cosine silhouette over ``k_range`` (default 2..min(30, max(10, √n))).

    Returns ``(k, {k: silhouette})``; above ``sample_size`` vectors the silhouette is computed on a
    seeded random sample.
    """
    from sklearn.metrics import silhouette_score

    n = len(vectors)
    if n < 3:
        raise InputError(f"clusters='auto' needs at least 3 texts, got {n}; give the number of clusters",
                         param="clusters")
    if k_range is None:
        hi = min(n - 1, MAX_AUTO_K, max(10, int(np.sqrt(n))))
        k_range = range(2, hi + 1)
    ks = sorted({int(k) for k in k_range if 2 <= int(k) <= n - 1})
    if not ks:
        raise InputError(f"no number of clusters in the range to try for {n} texts", param="clusters")
    logger.info("k=auto: trying k=%d..%d on %d vectors%s", ks[0], ks[-1], n,
                f" (silhouette on a sample of {sample_size})" if n > sample_size else "")
    rng = np.random.default_rng(seed)
    sample = rng.choice(n, size=sample_size, replace=False) if n > sample_size else None
    scores: dict[int, float] = {}
    for k in ks:
        labels = kmeans_labels(vectors, k, seed=seed, n_init=2, backend=backend)
        x, y = (vectors, labels) if sample is None else (vectors[sample], labels[sample])
        if len(np.unique(y)) < 2:
            continue
        scores[k] = float(silhouette_score(x, y, metric="cosine"))
        logger.debug("k=%d silhouette=%.4f", k, scores[k])
    if not scores:
        raise InputError("could not choose the number of clusters: every k gave a single cluster "
                         "(are the texts identical?)", param="clusters")
    best = max(scores, key=lambda k: (scores[k], -k))
    logger.info("k=auto: silhouette picked k=%d (%.3f) among %d..%d", best, scores[best], ks[0], ks[-1])
    return best, scores


def reduce_vectors(vectors: np.ndarray, dims: int, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Reduce ``vectors`` to ``dims`` dimensions with PCA (default) or UMAP (cosine)."""
    dims = min(dims, vectors.shape[1], len(vectors) - 1)
    if method == "umap":
        from qembed.extras import require

        require("umap", "reduce='umap'")
        import umap

        return umap.UMAP(n_components=dims, metric="cosine", random_state=seed, n_jobs=1,
                         n_neighbors=min(15, len(vectors) - 1)).fit_transform(vectors).astype(np.float32)
    from sklearn.decomposition import PCA

    return PCA(n_components=dims, random_state=seed).fit_transform(vectors).astype(np.float32)


def hdbscan_labels(vectors: np.ndarray, *, min_cluster_size: int, min_samples: int | None = None,
                   reduce: str | None = "auto", reduce_dims: int = 10, seed: int = 0,
                   allow_single_cluster: bool = False) -> np.ndarray:
    """HDBSCAN cluster ids (``-1`` = outlier) with scikit-learn's ``HDBSCAN``.

    ``min_samples`` (the neighbourhood that estimates density) defaults to
    ``min(min_cluster_size, DEFAULT_MIN_SAMPLES)``: scikit-learn's default (= min_cluster_size)
    makes every neighbour query ask for hundreds of points on large inputs.
    ``reduce``: ``"auto"`` (PCA to ``reduce_dims`` above :data:`HDBSCAN_REDUCE_THRESHOLD`
    vectors), ``"pca"``, ``"umap"`` (umap-learn, cosine; slower, keeps local structure better) or
    ``None``/``"none"`` (raw vectors). ``allow_single_cluster``: one cluster may hold every
    non-outlier (scikit-learn's option; proposing a topic from a pool of outliers needs it).
    """
    from sklearn.cluster import HDBSCAN

    n, d = vectors.shape
    how = (reduce or "none").lower()
    if how == "auto":
        how = "pca" if n > HDBSCAN_REDUCE_THRESHOLD and d > reduce_dims else "none"
    if how not in ("pca", "umap", "none"):
        raise InputError(f"unknown reduce {reduce!r}; use auto, pca, umap or none", param="reduce")
    x = vectors
    if how != "none":
        logger.info("hdbscan: reducing %d x %d vectors to %d dims with %s", n, d, reduce_dims, how.upper())
        x = reduce_vectors(vectors, reduce_dims, how, seed)
    if min_samples is None:
        min_samples = min(min_cluster_size, DEFAULT_MIN_SAMPLES)
    model = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, metric="euclidean",
                    copy=True, allow_single_cluster=allow_single_cluster)
    return model.fit_predict(x).astype(np.int64)


def default_min_cluster_size(n: int) -> int:
    """HDBSCAN's default smallest cluster: 1% of the texts, between 3 and 500 (never above n/2)."""
    return int(max(2, min(max(3, n // 100), 500, max(2, n // 2))))


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters by size (largest = 0; ties by first appearance); -1 stays -1."""
    ids = [c for c in np.unique(labels) if c >= 0]
    first = {c: int(np.argmax(labels == c)) for c in ids}
    sizes = {c: int((labels == c).sum()) for c in ids}
    order = sorted(ids, key=lambda c: (-sizes[c], first[c]))
    mapping = {old: new for new, old in enumerate(order)}
    return np.array([mapping.get(int(c), -1) for c in labels], dtype=np.int64)


def centroids_of(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Unit-normalised mean vector of each cluster ``0..max(labels)`` (outliers excluded)."""
    k = int(labels.max()) + 1 if (labels >= 0).any() else 0
    cents = np.zeros((k, vectors.shape[1]), dtype=np.float32)
    for c in range(k):
        cents[c] = vectors[labels == c].mean(axis=0)
    return normalize(cents)


# --------------------------------------------------------------------------- public API


@old_argument_order
@old_keywords
def cluster(
    encoder: Encoder | None,
    texts: Sequence[str],
    *,
    method: Method | str = "kmeans",
    clusters: int | str | None = None,
    n_init: int = DEFAULT_N_INIT,
    min_cluster_size: int | None = None,
    min_samples: int | None = None,
    seed: int = 0,
    reassign_outliers: bool = False,
    instruction: str | None = None,
    dimensions: int | None = None,
    embeddings: np.ndarray | None = None,
    top_keywords: int = 10,
    n_examples: int = 3,
    label_words: int = 3,
    k_range: Sequence[int] | None = None,
    reduce: str | None = "auto",
    reduce_dims: int = 10,
    backend: str = "auto",
    words: Iterable[str] = (),
    progress: bool | None = False,
    n_summary: int = 3,
) -> ClusterResult:
    """Cluster ``texts`` and name each cluster by its keywords.

    ``encoder`` embeds the texts (with ``instruction``: ``None`` = the symmetric default, ``""`` =
    none; and optional MRL ``dimensions``); or pass ``encoder=None`` and unit vectors as
    ``embeddings`` (one row per text).
    ``method``: ``"kmeans"`` (``clusters``: an integer ≥ 2 or ``"auto"``/``None`` = best
    silhouette over ``k_range``; ``n_init`` initialisations, the one with the lowest inertia
    kept) or ``"hdbscan"`` (``min_cluster_size``, ``min_samples``; outliers get cluster -1
    unless ``reassign_outliers`` moves them to the nearest centroid). ``top_keywords`` keywords
    and ``n_examples`` examples per cluster (the most central members); the label joins the first
    ``label_words`` keywords; ``n_summary`` members make each cluster's summary (chosen by MMR
    around the centroid: central and not redundant, in input order).
    ``backend``: the K-Means implementation (:func:`kmeans_backend`); ``reduce``/``reduce_dims``:
    HDBSCAN's dimension reduction (:func:`hdbscan_labels`). ``words``: extra Chinese words for
    jieba. The same ``seed`` gives the same result. Raises :class:`InputError` for bad input.
    """
    k = clusters
    if isinstance(n_init, bool) or not isinstance(n_init, (int, np.integer)) or n_init < 1:
        raise InputError(f"n_init must be a positive integer, got {n_init!r}", param="n_init")
    texts = _check_texts(texts)
    n = len(texts)
    method = _check_method(method)
    k_checked = _check_k(k, n, method)
    kmeans_backend(n, backend)  # validates the name
    if top_keywords < 1 or n_examples < 1 or label_words < 1 or n_summary < 1:
        raise InputError("top_keywords, n_examples, label_words and n_summary must be at least 1")
    if method == "hdbscan":
        if min_cluster_size is None:
            min_cluster_size = default_min_cluster_size(n)
        if isinstance(min_cluster_size, bool) or not isinstance(min_cluster_size, (int, np.integer)) \
                or min_cluster_size < 2:
            raise InputError(f"min_cluster_size must be an integer of at least 2, got {min_cluster_size!r}",
                             param="min_cluster_size")
        if min_cluster_size > n:
            raise InputError(f"min_cluster_size {min_cluster_size} is larger than the {n} texts",
                             param="min_cluster_size")
        if min_samples is not None and (isinstance(min_samples, bool) or not isinstance(min_samples, (int, np.integer))
                                        or min_samples < 1):
            raise InputError(f"min_samples must be a positive integer, got {min_samples!r}",
                             param="min_samples")
        if min_samples is not None and min_samples > n:
            raise InputError(f"min_samples {min_samples} is larger than the {n} texts", param="min_samples")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise InputError(f"seed must be an integer from 0 to 2**32 - 1, got {seed!r}", param="seed")

    t0 = time.perf_counter()
    if embeddings is None:
        if encoder is None:
            raise InputError("pass an encoder or precomputed embeddings")
        logger.info("embedding %d text(s) with %s", n, getattr(encoder, "name", "encoder"))
        vectors = encoder.encode(texts, instruction=resolve_instruction(instruction, SYMMETRIC_INSTRUCTION),
                                 dimensions=dimensions, progress=want_progress(progress, n))
    else:
        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != n:
            raise InputError(f"embeddings must have shape ({n}, dim), got {vectors.shape}", param="embeddings")
        if not np.isfinite(vectors).all():
            raise InputError("embeddings contain NaN or infinity", param="embeddings")
    vectors = normalize(vectors)
    t1 = time.perf_counter()

    params: dict[str, Any] = {"seed": seed}
    if method == "kmeans":
        silhouettes: dict[int, float] | None = None
        if k_checked == "auto":
            k_final, silhouettes = auto_k(vectors, seed=seed, k_range=k_range, backend=backend)
        else:
            k_final = int(k_checked)  # type: ignore[arg-type]
        logger.info("k-means with k=%d on %d vectors", k_final, n)
        labels = kmeans_labels(vectors, k_final, seed=seed, n_init=int(n_init), backend=backend)
        params.update(k=k_final, k_requested="auto" if k_checked == "auto" else k_final,
                      n_init=int(n_init), backend=kmeans_backend(n, backend))
        if silhouettes:
            params["silhouette"] = {str(kk): round(v, 4) for kk, v in silhouettes.items()}
    else:
        logger.info("hdbscan with min_cluster_size=%d on %d vectors", min_cluster_size, n)
        labels = hdbscan_labels(vectors, min_cluster_size=int(min_cluster_size), min_samples=min_samples,
                                reduce=reduce, reduce_dims=reduce_dims, seed=seed)
        params.update(min_cluster_size=int(min_cluster_size),
                      min_samples=min_samples or min(int(min_cluster_size), DEFAULT_MIN_SAMPLES),
                      reassign_outliers=reassign_outliers)
    labels = _renumber(labels)
    cents = centroids_of(vectors, labels)
    if len(cents) == 0:
        logger.warning("hdbscan found no cluster: every text is an outlier (lower min_cluster_size)")
    sims = vectors @ cents.T if len(cents) else np.zeros((n, 0), dtype=np.float32)
    outliers = labels == -1
    if method == "hdbscan" and reassign_outliers and outliers.any() and len(cents):
        logger.info("reassigning %d outlier(s) to the nearest centroid", int(outliers.sum()))
        labels = labels.copy()
        labels[outliers] = sims[outliers].argmax(axis=1)
        labels = _renumber(labels)  # sizes changed: keep "largest first"
        cents = centroids_of(vectors, labels)
        sims = vectors @ cents.T
    t2 = time.perf_counter()

    # distance: cosine distance to the own centroid; outliers: to the nearest centroid
    if len(cents):
        own = np.where(labels >= 0, sims[np.arange(n), np.maximum(labels, 0)], sims.max(axis=1))
        distances = np.clip(1.0 - own, 0.0, 2.0)
    else:
        distances = np.ones(n, dtype=np.float32)

    languages = [detect_language(t) for t in texts]
    tokenizer = Tokenizer.for_corpus(texts, words)
    keywords = cluster_keywords(texts, labels, top_n=top_keywords, languages=languages, tokenizer=tokenizer)
    clusters: list[Cluster] = []
    ids = sorted(int(c) for c in np.unique(labels) if c >= 0) + ([-1] if (labels == -1).any() else [])
    label_of: dict[int, str] = {}
    for c in ids:
        members = np.flatnonzero(labels == c)
        if c >= 0:
            order = members[np.argsort(distances[members], kind="stable")]
        else:  # outliers: farthest from every cluster first
            order = members[np.argsort(-distances[members], kind="stable")]
        kw = keywords.get(c, [])
        label = make_label([w for w, _ in kw], label_words, cluster_id=c)
        label_of[c] = label
        summary: list[str] = []
        if c >= 0:  # a few members that cover the cluster (MMR around its centroid), in input order
            chosen, _ = select(vectors[members], n_summary, method="mmr", reference=cents[c],
                               keys=[texts[i] for i in members])
            summary = [texts[members[i]] for i in chosen]
        clusters.append(Cluster(cluster=c, label=label, keywords=[w for w, _ in kw], size=len(members),
                                examples=[texts[i] for i in order[:n_examples]],
                                keyword_scores=[round(s, 6) for _, s in kw], summary=summary))
    rows = [TextAssignment(index=i, text=texts[i], cluster=int(labels[i]), label=label_of[int(labels[i])],
                           distance=round(float(distances[i]), 6)) for i in range(n)]
    t3 = time.perf_counter()
    logger.info("%d cluster(s)%s; embed %.2fs, cluster %.2fs, keywords %.2fs", len(cents),
                f", {int((labels == -1).sum())} outlier(s)" if (labels == -1).any() else "",
                t1 - t0, t2 - t1, t3 - t2)
    params["languages"] = dict(sorted(_count(languages).items()))
    return ClusterResult(texts=rows, clusters=clusters, method=method, params=params,
                         embeddings=vectors, centroids=cents)


def _count(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out


__all__ = ["Cluster", "ClusterResult", "METHODS", "TextAssignment", "auto_k", "centroids_of", "cluster",
           "hdbscan_labels", "kmeans_backend", "kmeans_labels", "reduce_vectors", "OUTLIER_LABEL"]
