"""K-Means initialisations, MiniBatchKMeans and faiss back-ends, HDBSCAN's dimension reduction."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.metrics import v_measure_score

import qembed
from qembed.clustering import pipeline
from qembed.clustering.pipeline import DEFAULT_N_INIT, hdbscan_labels, kmeans_labels


def _groups(k: int, size: int, noise: float, seed: int, dim: int = 16):
    """``k`` labelled groups of ``size`` unit vectors around random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.repeat(np.arange(k), size)
    x = centres[y] + noise * rng.normal(size=(len(y), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


def test_default_initialisations_make_the_result_independent_of_the_seed():
    # Eight groups where a single k-means++ initialisation sometimes merges two of them.
    x, y = _groups(8, 6, 0.1, seed=0)
    texts = [f"text {i}" for i in range(len(y))]
    single = {round(v_measure_score(y, kmeans_labels(x, 8, seed=s, n_init=1, backend="sklearn")), 6)
              for s in range(10)}
    assert len(single) > 1 and min(single) < 0.99  # the data does depend on luck with one start
    assert DEFAULT_N_INIT == 10
    scores = []
    for seed in range(10):
        result = qembed.cluster(None, texts, embeddings=x, clusters=8, seed=seed)
        assert result.params["n_init"] == 10
        scores.append(v_measure_score(y, result.labels))
    assert scores == [1.0] * 10


def test_same_seed_same_clusters_with_several_initialisations():
    x, _ = _groups(5, 8, 0.2, seed=3)
    texts = [f"t{i}" for i in range(len(x))]
    a = qembed.cluster(None, texts, embeddings=x, clusters=5, seed=11, n_init=4)
    b = qembed.cluster(None, texts, embeddings=x, clusters=5, seed=11, n_init=4)
    assert a.labels.tolist() == b.labels.tolist()
    assert a.params["n_init"] == 4


@pytest.mark.parametrize("backend", ["minibatch", "faiss", "sklearn"])
def test_every_kmeans_backend_recovers_separate_groups(backend):
    x, y = _groups(4, 30, 0.05, seed=1)
    labels = kmeans_labels(x, 4, seed=0, backend=backend)
    assert v_measure_score(y, labels) == 1.0
    again = kmeans_labels(x, 4, seed=0, backend=backend)
    assert labels.tolist() == again.tolist()


def test_large_inputs_pick_a_scalable_backend(monkeypatch):
    monkeypatch.setattr(pipeline, "FAISS_THRESHOLD", 50)
    x, y = _groups(3, 30, 0.05, seed=2)
    assert pipeline.kmeans_backend(len(x)) == "faiss"
    result = qembed.cluster(None, [f"t{i}" for i in range(len(x))], embeddings=x, clusters=3,
                            backend="minibatch")
    assert result.params["backend"] == "minibatch"
    assert v_measure_score(y, result.labels) == 1.0


def test_hdbscan_reduces_large_inputs_with_pca(monkeypatch, caplog):
    x, y = _groups(3, 25, 0.05, seed=4, dim=48)
    monkeypatch.setattr(pipeline, "HDBSCAN_REDUCE_THRESHOLD", 50)
    seen: list[tuple[int, str]] = []
    reduce = pipeline.reduce_vectors

    def spy(vectors, dims, method="pca", seed=0):
        out = reduce(vectors, dims, method, seed)
        seen.append((out.shape[1], method))
        return out

    monkeypatch.setattr(pipeline, "reduce_vectors", spy)
    with caplog.at_level(logging.INFO, logger="qembed.clustering.pipeline"):
        labels = hdbscan_labels(x, min_cluster_size=5, reduce="auto", reduce_dims=5)
    assert seen == [(5, "pca")]
    assert "reducing 75 x 48 vectors to 5 dims with PCA" in caplog.text
    assert v_measure_score(y, labels) == 1.0
    # below the threshold the raw vectors are clustered
    seen.clear()
    small = hdbscan_labels(x[:40], min_cluster_size=5, reduce="auto")
    assert seen == [] and len(set(small.tolist()) - {-1}) >= 1
    # asked for explicitly, PCA runs at any size; an unknown method is refused
    hdbscan_labels(x[:40], min_cluster_size=5, reduce="pca", reduce_dims=3)
    assert seen == [(3, "pca")]
    with pytest.raises(qembed.InputError, match="unknown reduce 'tsne'"):
        hdbscan_labels(x, min_cluster_size=5, reduce="tsne")
