"""POST /v1/similarity, /v1/classify and /v1/dedup on a live server (uvicorn on a loopback port)."""

from __future__ import annotations

import httpx
import pytest

from qembed.server.testing import running_server

from .conftest import DEDUP_TEXTS, PAIRS, QUEUES, TICKETS


@pytest.fixture(scope="module")
def server(minilm_encoder):
    with running_server(encoder=minilm_encoder, max_client_batch_size=16) as url, \
            httpx.Client(base_url=url, timeout=60) as client:
        yield client


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]["message"]


def test_similarity_endpoint(server):
    r = server.post("/v1/similarity", json={"pairs": [[a, b] for a, b, _ in PAIRS], "min_similarity": 0.4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"]
    assert body["min_similarity"] == 0.4 and len(body["data"]) == len(PAIRS)
    assert [d["same"] for d in body["data"]] == [bool(y) for _, _, y in PAIRS]
    assert [d["index"] for d in body["data"]] == list(range(len(PAIRS)))
    plain = server.post("/v1/similarity", json={"pairs": [["a cat", "a cat"]]}).json()
    assert plain["data"][0]["score"] == pytest.approx(1.0, abs=1e-5) and "same" not in plain["data"][0]
    # the older field name still works for one release
    old = server.post("/v1/similarity", json={"pairs": [[a, b] for a, b, _ in PAIRS], "threshold": 0.4}).json()
    assert old["min_similarity"] == 0.4 and [d["same"] for d in old["data"]] == [d["same"] for d in body["data"]]


def test_classify_endpoint(server):
    r = server.post("/v1/classify", json={"input": [t for t, _ in TICKETS], "labels": QUEUES, "top_k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["labels"] == ["billing", "shipping", "login"]
    assert [d["label"] for d in body["data"]] == [q for _, q in TICKETS]
    assert all(len(d["labels"]) == 2 for d in body["data"])
    # the same label set again: served from the cache, same answer
    again = server.post("/v1/classify", json={"input": TICKETS[0][0], "labels": QUEUES}).json()
    assert again["data"][0]["label"] == "billing"
    assert again["data"][0]["score"] == pytest.approx(body["data"][0]["score"], abs=1e-5)


def test_dedup_endpoint(server):
    r = server.post("/v1/dedup", json={"input": DEDUP_TEXTS, "min_similarity": 0.9, "return_texts": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "dedup.result" and body["n_groups"] == 2 and body["min_similarity"] == 0.9
    assert [[m["index"] for m in g["members"]] for g in body["data"]] == [[0, 2, 4], [3, 6]]
    assert body["data"][0]["representative"] == 0 and body["data"][0]["members"][0]["text"] == DEDUP_TEXTS[0]
    assert body["keep"] == [0, 1, 3, 5, 7] and body["kept"] == 5
    # older fields: threshold is min_similarity, k is accepted and ignored
    old = server.post("/v1/dedup", json={"input": DEDUP_TEXTS, "threshold": 0.9, "k": 1}).json()
    assert old["keep"] == body["keep"] and old["n_groups"] == 2


@pytest.mark.parametrize("path, payload, status, fragment", [
    ("/v1/similarity", {"pairs": [["a", "b"]], "min_similarity": 2}, 400, "between -1 and 1"),
    ("/v1/similarity", {"pairs": [["a", "b"]], "min_similarity": 0.5, "threshold": 0.5}, 400, "not both"),
    ("/v1/similarity", {"pairs": [["a", "b", "c"]]}, 400, "exactly two"),
    ("/v1/similarity", {"pairs": []}, 400, "empty"),
    ("/v1/similarity", {"pairs": [["a", "b"]] * 17}, 400, "limit of 16"),
    ("/v1/similarity", {"pairs": [["a", ""]]}, 400, "empty"),
    ("/v1/similarity", {"pairs": "a"}, 400, ""),
    ("/v1/similarity", {"pairs": [["a", "b"]], "model": "other-model"}, 404, "not served"),
    ("/v1/classify", {"input": ["x"], "labels": ["only"]}, 400, "at least two labels"),
    ("/v1/classify", {"input": ["x"] * 17, "labels": ["a", "b"]}, 400, "limit of 16"),
    ("/v1/classify", {"input": ["x"], "labels": ["a", "b"], "top_k": 0}, 400, "top_k"),
    ("/v1/classify", {"input": ["x"], "labels": ["a", "b"], "temperature": 0}, 400, "temperature"),
    ("/v1/dedup", {"input": ["a", "b"], "min_similarity": -1.5}, 400, "between -1 and 1"),
    ("/v1/dedup", {"input": ["a", "b"], "threshold": -1.5}, 400, "between -1 and 1"),
    ("/v1/dedup", {"input": ["a"] * 17}, 400, "limit of 16"),
    ("/v1/dedup", {"input": ["a", "  "]}, 400, "empty"),
    ("/v1/dedup", {"input": ["a"], "dimensions": 5000}, 400, "dimensions"),
])
def test_bad_requests_get_openai_errors(server, path, payload, status, fragment):
    assert fragment in error_of(server.post(path, json=payload), status)
