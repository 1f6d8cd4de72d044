"""qembed.cluster: recovers clear topics with all-MiniLM-L6-v2, names them, is repeatable, rejects bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import v_measure_score

import qembed
from .conftest import CHINESE, MULTILINGUAL, TOPICS, blobs, flatten
from qembed.errors import InputError
from qembed.clustering.pipeline import ClusterResult, auto_k

TOPIC_WORDS = {
    "cooking": {"bread", "oven", "recipe", "onions", "dough", "bake"},
    "football": {"football", "goal", "goalkeeper", "match", "scored", "striker", "team"},
    "astronomy": {"planet", "star", "stars", "telescope", "astronomers"},
    "programming": {"code", "program", "function", "python", "software", "compiler"},
}


def _majority(result: ClusterResult, gold: list[str]) -> dict[int, str]:
    out = {}
    for c in result.clusters:
        names = [g for g, t in zip(gold, result.texts) if t.cluster == c.cluster]
        out[c.cluster] = max(set(names), key=names.count)
    return out


@pytest.mark.parametrize("kwargs", [
    {"clusters": 4},
    {"clusters": "auto"},
    {"method": "hdbscan", "min_cluster_size": 4},
], ids=["kmeans-4", "kmeans-auto", "hdbscan"])
def test_minilm_recovers_topics_and_names_them(minilm_encoder, topic_texts, kwargs):
    texts, gold = topic_texts
    result = qembed.cluster(minilm_encoder, texts, **kwargs)
    assert v_measure_score(gold, result.labels) >= 0.8
    assert result.n_clusters == 4
    owner = _majority(result, gold)
    for c in result.clusters:
        if c.cluster < 0:
            continue
        assert set(c.keywords[:5]) & TOPIC_WORDS[owner[c.cluster]], (owner[c.cluster], c.keywords)
        assert c.label == "_".join(c.keywords[:3])
        assert len(c.examples) == 3 and all(e in TOPICS[owner[c.cluster]] for e in c.examples)
    # one row per text, in input order, with its cluster's label and a cosine distance
    assert [t.index for t in result.texts] == list(range(len(texts)))
    assert [t.text for t in result.texts] == texts
    labels = {c.cluster: c.label for c in result.clusters}
    assert all(t.label == labels[t.cluster] and 0.0 <= t.distance <= 2.0 for t in result.texts)
    # clusters come largest first and sizes add up
    sizes = [c.size for c in result.clusters if c.cluster >= 0]
    assert sizes == sorted(sizes, reverse=True) and sum(c.size for c in result.clusters) == len(texts)


def test_examples_are_the_texts_closest_to_the_centroid(topic_texts, topic_vectors):
    texts, _ = topic_texts
    result = qembed.cluster(None, texts, embeddings=topic_vectors, clusters=4, n_examples=2)
    for c in result.clusters:
        rows = sorted((t for t in result.texts if t.cluster == c.cluster), key=lambda t: t.distance)
        assert c.examples == [rows[0].text, rows[1].text]
        cent = result.centroids[c.cluster]
        sims = topic_vectors[[t.index for t in rows]] @ cent
        assert np.isclose(rows[0].distance, 1 - sims.max(), atol=1e-5)


def test_auto_k_picks_by_silhouette():
    x, groups = blobs([30, 30, 30, 30, 30])
    k, scores = auto_k(x, seed=0)
    assert k == 5 and scores[5] == max(scores.values()) and min(scores) == 2
    x2, _ = blobs([300] * 3, dim=16)
    k2, _ = auto_k(x2, seed=1, k_range=range(2, 6), sample_size=200)  # sampled silhouette
    assert k2 == 3


def test_same_seed_same_result_different_seed_runs(topic_texts, topic_vectors):
    texts, _ = topic_texts
    a = qembed.cluster(None, texts, embeddings=topic_vectors, clusters=6, seed=7).to_dict()
    b = qembed.cluster(None, texts, embeddings=topic_vectors, clusters=6, seed=7).to_dict()
    assert a == b
    x, _ = blobs([40, 40, 40], dim=16, spread=0.6, seed=3)
    names = [f"text {i}" for i in range(len(x))]
    r1 = qembed.cluster(None, names, embeddings=x, clusters=5, seed=1).labels
    r2 = qembed.cluster(None, names, embeddings=x, clusters=5, seed=1).labels
    assert (r1 == r2).all()


def _three_groups_and_strays() -> tuple[list[str], np.ndarray]:
    """Three tight groups of 12 near one pole, three strays near the opposite pole."""
    rng = np.random.default_rng(0)
    eye = np.eye(16)
    centres = np.array([eye[0] + 0.6 * eye[i] for i in (1, 2, 3)])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    groups = np.repeat([0, 1, 2], 12)
    x = np.vstack([centres[groups] + 0.02 * rng.normal(size=(36, 16)),
                   [-eye[0] + eye[i] for i in (4, 5, 6)]])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")
    texts = [f"group {g} item {i}" for i, g in enumerate(groups)] + ["stray one", "stray two", "stray three"]
    return texts, x


def test_hdbscan_outliers_and_reassignment():
    texts, x = _three_groups_and_strays()
    res = qembed.cluster(None, texts, embeddings=x, method="hdbscan", min_cluster_size=5)
    assert res.n_clusters == 3
    out = [t for t in res.texts if t.cluster == -1]
    assert {t.index for t in out} == {36, 37, 38}
    assert all(t.label == "outliers" for t in out)
    assert res.clusters[-1].cluster == -1 and res.clusters[-1].label == "outliers"
    assert res.to_dict()["n_outliers"] == len(out)
    again = qembed.cluster(None, texts, embeddings=x, method="hdbscan", min_cluster_size=5, reassign_outliers=True)
    assert (again.labels >= 0).all() and again.n_clusters == 3
    assert all(c.cluster >= 0 for c in again.clusters)
    # inliers keep their groups (ids may change: clusters are renumbered by their new sizes)
    keep = res.labels >= 0
    pairs = set(zip(res.labels[keep].tolist(), again.labels[keep].tolist()))
    assert len(pairs) == 3 and len({a for a, _ in pairs}) == len({b for _, b in pairs}) == 3
    sizes = [c.size for c in again.clusters]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == len(texts)


def test_multilingual_messages_share_clusters_and_keywords():
    texts, gold = flatten(MULTILINGUAL)
    # fixed vectors: one direction per topic, whatever the language (what a multilingual model gives)
    x, _ = blobs([5, 5], dim=16, spread=0.02, seed=2)
    res = qembed.cluster(None, texts, embeddings=x, clusters=2)
    assert v_measure_score(gold, res.labels) == 1.0
    pay = next(c for c in res.clusters if "My payment failed again" in [t.text for t in res.texts
                                                                      if t.cluster == c.cluster])
    assert {"payment", "pago", "الدفع"} <= set(pay.keywords)
    assert res.params["languages"] == {"ar": 2, "en": 4, "es": 4}


def test_chinese_cluster_keywords_with_tiny_model(tiny_encoder):
    texts, gold = flatten(CHINESE)
    res = qembed.cluster(tiny_encoder, texts, clusters=3, seed=0)
    assert len(res.texts) == len(texts) and res.n_clusters == 3
    # random weights assign arbitrarily; keywords follow the assignment: every keyword of a
    # cluster is a word of its own texts
    for c in res.clusters:
        members = "".join(t.text for t in res.texts if t.cluster == c.cluster)
        assert c.keywords and all(w in members for w in c.keywords), (c.keywords, members)
    # with vectors that separate the topics, the 花呗 topic is named by 花呗
    x = np.eye(3, 8, dtype="float32")[[sorted(CHINESE).index(g) for g in gold]]
    by_topic = qembed.cluster(None, texts, embeddings=x, clusters=3, seed=0)
    hua = next(c for c in by_topic.clusters if "花呗还款总是失败" in c.examples
               or any(t.text == "花呗还款总是失败" and t.cluster == c.cluster for t in by_topic.texts))
    assert hua.keywords[0] == "花呗"


@pytest.mark.parametrize("texts, kwargs, message", [
    (["a b", "c d", "e f"], {"clusters": 5}, "cannot make 5 clusters from 3 texts"),
    (["only one text"], {"clusters": 2}, "at least 2 texts"),
    (["a", "b", "c"], {"clusters": 1}, "clusters must be at least 2"),
    (["a", "b", "c"], {"method": "spectral"}, "unknown clustering method 'spectral'"),
    (["a", "  ", "c"], {"clusters": 2}, "texts[1] is blank"),
    (["a", "", "c"], {"clusters": 2}, "texts[1] is an empty string"),
    ([], {}, "texts is empty"),
    (["a", "b", "c"], {"method": "hdbscan", "clusters": 2}, "clusters applies to kmeans only"),
    (["a", "b", "c"], {"clusters": "many"}, "clusters must be an integer or 'auto'"),
    (["a", "b", "c"], {"clusters": 2, "n_init": 0}, "n_init must be a positive integer"),
    (["a", "b", "c"], {"method": "hdbscan", "min_cluster_size": 1}, "min_cluster_size must be"),
    (["a", "b", "c"], {"method": "hdbscan", "min_cluster_size": 9}, "larger than the 3 texts"),
])
def test_bad_input_gets_a_clear_message(texts, kwargs, message):
    x = np.eye(3, 8, dtype="float32")[: max(len(texts), 1)]
    with pytest.raises(InputError) as err:
        qembed.cluster(None, texts, embeddings=x if texts else None, **kwargs)
    assert message in str(err.value)


def test_embeddings_shape_is_checked():
    with pytest.raises(InputError, match=r"shape \(3, dim\)"):
        qembed.cluster(None, ["a", "b", "c"], embeddings=np.ones((2, 4)), clusters=2)
    with pytest.raises(InputError, match="encoder or precomputed embeddings"):
        qembed.cluster(None, ["a", "b", "c"], clusters=2)


def test_identical_texts_with_auto_k_report_clearly():
    with pytest.raises(InputError, match="identical"):
        qembed.cluster(None, ["same", "same", "same", "same"], embeddings=np.ones((4, 8)), clusters="auto")


def test_large_inputs_use_faiss_kmeans_repeatably():
    x, groups = blobs([1500] * 4, dim=16, spread=0.2, seed=4)
    texts = [f"item {i}" for i in range(len(x))]
    a = qembed.cluster(None, texts, embeddings=x, clusters=4, seed=2, top_keywords=1)
    assert a.params["backend"] == "faiss"
    assert v_measure_score(groups, a.labels) > 0.95
    b = qembed.cluster(None, texts, embeddings=x, clusters=4, seed=2, top_keywords=1)
    assert (a.labels == b.labels).all()
    small = qembed.cluster(None, texts[:100], embeddings=x[:100], clusters=2, backend="auto", top_keywords=1)
    assert small.params["backend"] == "sklearn"
    with pytest.raises(InputError, match="unknown k-means backend"):
        qembed.cluster(None, texts[:10], embeddings=x[:10], clusters=2, backend="gpu-magic")
