"""``POST /v1/cluster`` on a live server (uvicorn on a loopback port), called over HTTP."""

from __future__ import annotations

import httpx
import pytest
from sklearn.metrics import v_measure_score

import qembed
from qembed.server.routes.cluster import MAX_CLUSTER_TEXTS
from qembed.server.testing import running_server

from .conftest import CHINESE, TOPICS, flatten


@pytest.fixture(scope="module")
def minilm_server(minilm_encoder):
    with running_server(encoder=minilm_encoder) as url:
        yield url


def _error(response, status: int, contains: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert contains in body["error"]["message"], body
    if param is not None:
        assert body["error"]["param"] == param, body
    return body["error"]


def test_cluster_endpoint_recovers_topics(minilm_server, minilm_encoder):
    texts, gold = flatten(TOPICS)
    r = httpx.post(f"{minilm_server}/v1/cluster", json={"input": texts, "clusters": 4, "seed": 1}, timeout=120)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["object"] == "cluster.result" and data["model"]
    assert [row["index"] for row in data["data"]] == list(range(len(texts)))
    assert v_measure_score(gold, [row["cluster"] for row in data["data"]]) >= 0.8
    assert len(data["clusters"]) == 4 and all(c["keywords"] and c["examples"] for c in data["clusters"])
    # the same request through the Python API gives the same clusters
    local = qembed.cluster(minilm_encoder, texts, clusters=4, seed=1).to_dict()
    assert [row["cluster"] for row in data["data"]] == [row["cluster"] for row in local["texts"]]
    assert [c["label"] for c in data["clusters"]] == [c["label"] for c in local["clusters"]]


def test_cluster_endpoint_hdbscan_and_words(minilm_server):
    texts, _ = flatten(TOPICS)
    r = httpx.post(f"{minilm_server}/v1/cluster", timeout=120, json={
        "input": texts, "method": "hdbscan", "min_cluster_size": 4, "reassign_outliers": True,
        "top_keywords": 4, "examples": 2})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["method"] == "hdbscan" and data["n_outliers"] == 0
    assert all(len(c["keywords"]) <= 4 and len(c["examples"]) == 2 for c in data["clusters"])
    zh, _ = flatten(CHINESE)
    r = httpx.post(f"{minilm_server}/v1/cluster", timeout=120,
                   json={"input": zh, "clusters": 2, "words": ["借呗"]})
    assert r.status_code == 200, r.text
    keywords = {w for c in r.json()["clusters"] for w in c["keywords"]}
    assert {"花呗", "借呗"} <= keywords


@pytest.mark.parametrize("body, contains, param", [
    ({"input": ["a b", "c d"], "clusters": 3}, "cannot make 3 clusters from 2 texts", "clusters"),
    ({"input": ["a b", "c d"], "k": 3}, "cannot make 3 clusters from 2 texts", "clusters"),
    ({"input": ["a b", "c d"], "k": 2, "clusters": 2}, "not both", "clusters"),
    ({"input": ["one"]}, "at least 2 texts", "input"),
    ({"input": ["a", "", "c"], "clusters": 2}, "input[1] is an empty string", "input"),
    ({"input": ["a", "b", "c"], "method": "kmedoids"}, "unknown clustering method", "method"),
    ({"input": ["a", "b", "c"], "clusters": 1}, "clusters must be at least 2", "clusters"),
    ({"input": ["a", "b", "c"], "top_keywords": 500}, "top_keywords must be between", "top_keywords"),
    ({"input": ["a", "b", "c"], "model": "other-model"}, "is not served here", "model"),
])
def test_cluster_endpoint_bad_input(minilm_server, body, contains, param):
    r = httpx.post(f"{minilm_server}/v1/cluster", json=body, timeout=60)
    status = 404 if param == "model" else 400
    _error(r, status, contains, param)


def test_cluster_endpoint_bounds_and_validation(minilm_server):
    r = httpx.post(f"{minilm_server}/v1/cluster", json={"input": ["x"] * (MAX_CLUSTER_TEXTS + 1)}, timeout=60)
    err = _error(r, 400, f"limit of {MAX_CLUSTER_TEXTS}", "input")
    assert err["code"] == "too_many_inputs"
    r = httpx.post(f"{minilm_server}/v1/cluster", json={"input": "not a list"}, timeout=60)
    assert r.status_code == 400 and set(r.json()) == {"error"}
    r = httpx.post(f"{minilm_server}/v1/cluster", json={"input": ["a", "b"], "clusters": "several"}, timeout=60)
    assert r.status_code == 400 and set(r.json()) == {"error"}
    r = httpx.post(f"{minilm_server}/v1/cluster", json={"input": ["a", "b"], "n_init": 0}, timeout=60)
    assert r.status_code == 400 and set(r.json()) == {"error"}
    r = httpx.post(f"{minilm_server}/v1/cluster", json={"input": ["a", "b"], "colour": "red"}, timeout=60)
    assert r.status_code == 400 and set(r.json()) == {"error"}
    # the server still works after the failures
    assert httpx.get(f"{minilm_server}/health", timeout=10).status_code == 200
