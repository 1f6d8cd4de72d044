"""``POST /v1/rerank`` on a live server, called with the real ``httpx`` client; RemoteReranker
against it and against a loopback server answering in TEI's shape."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time

import httpx
import numpy as np
import pytest
from pydantic import BaseModel

from qembed.server.testing import running_server

KEY = "rerank-secret"
AUTH = {"Authorization": f"Bearer {KEY}"}
QUERY = "how do I reset my password?"
DOCS = ["Click 'Forgot password' on the sign-in page.", "Our shop opens at 9.", "重置密码请点击忘记密码",
        "The quick brown fox jumps over the lazy dog. " * 8, "ok"]


@pytest.fixture(scope="module")
def server(tiny_encoder, reranker_path):
    with running_server(encoder=tiny_encoder, reranker=str(reranker_path), engine="thread", dtype="float32",
                        compile=False, api_key=KEY, max_client_batch_size=16) as url:
        yield url


def _post(url, body, headers=AUTH, path="/v1/rerank"):
    return httpx.post(url + path, json=body, headers=headers, timeout=60)


def _error(response, status, param=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if param is not None:
        assert error["param"] == param
    return error


def test_results_are_sorted_scored_like_the_local_reranker(server, reranker):
    response = _post(server, {"query": QUERY, "documents": DOCS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny-qwen3-reranker" and body["object"] == "rerank"
    expected = reranker.score([(QUERY, d) for d in DOCS])
    results = body["results"]
    assert [r["index"] for r in results] == list(np.argsort(-expected, kind="stable"))
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_allclose([expected[r["index"]] for r in results], scores, atol=1e-5)
    assert all(r["document"] == {"text": DOCS[r["index"]]} for r in results)
    tokens = sum(len(x) for x in reranker.tokenize(QUERY, DOCS))
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_top_n_return_documents_object_documents_and_the_short_path(server):
    full = _post(server, {"query": QUERY, "documents": DOCS}).json()["results"]
    body = _post(server, {"query": QUERY, "documents": [{"text": d} for d in DOCS], "top_n": 2,
                          "return_documents": False}, path="/rerank").json()
    assert [r["index"] for r in body["results"]] == [r["index"] for r in full[:2]]
    assert all("document" not in r for r in body["results"])
    assert len(_post(server, {"query": QUERY, "documents": DOCS, "top_n": 50}).json()["results"]) == len(DOCS)


def test_instruction_and_model_name(server, reranker):
    instruction = "Find the help article that answers the customer"
    body = _post(server, {"query": QUERY, "documents": DOCS, "instruction": instruction,
                          "model": "tiny-qwen3-reranker"}).json()
    expected = reranker.score([(QUERY, d) for d in DOCS], instruction=instruction)
    np.testing.assert_allclose([r["relevance_score"] for r in body["results"]],
                               np.sort(expected)[::-1], atol=1e-5)
    assert _error(_post(server, {"query": QUERY, "documents": DOCS, "model": "other"}), 404,
                  "model")["code"] == "model_not_found"


def test_models_lists_the_reranker_beside_the_embedding_model(server):
    models = httpx.get(server + "/v1/models", headers=AUTH).json()["data"]
    assert len(models) == 2
    assert models[1]["id"] == "tiny-qwen3-reranker"
    assert models[1]["dim"] is None and models[1]["max_model_len"] > 0
    assert models[0]["dim"] > 0


@pytest.mark.parametrize("body, param", [
    ({"query": "", "documents": DOCS}, "query"),
    ({"query": "   ", "documents": DOCS}, "query"),
    ({"query": QUERY, "documents": []}, "documents"),
    ({"query": QUERY, "documents": ["fine", ""]}, "documents"),
    ({"query": QUERY, "documents": ["x"] * 17}, "documents"),
    ({"query": QUERY, "documents": DOCS, "top_n": 0}, "top_n"),
    ({"query": QUERY, "documents": DOCS, "top_n": "2"}, "top_n"),
    ({"query": QUERY, "documents": [3]}, "documents"),
    ({"documents": DOCS}, "query"),
    ({"query": QUERY, "documents": DOCS, "return_documents": "no"}, "return_documents"),
])
def test_bad_input_is_a_400_with_an_openai_error(server, body, param):
    _error(_post(server, body), 400, param)


def test_auth_is_required(server):
    assert _error(_post(server, {"query": QUERY, "documents": DOCS}, headers={}), 401)["type"] == \
        "authentication_error"
    _error(_post(server, {"query": QUERY, "documents": DOCS}, headers={"Authorization": "Bearer wrong"}), 401)


def test_admission_limit_answers_429_when_the_server_is_full(tiny_encoder, reranker_path):
    with running_server(encoder=tiny_encoder, reranker=str(reranker_path), engine="thread", compile=False,
                        max_queued_requests=1) as url:
        with url.app.state.encoder.admit():  # one request already in the server
            response = httpx.post(url + "/v1/rerank", json={"query": QUERY, "documents": DOCS}, timeout=60)
            _error(response, 429)
            assert response.headers["retry-after"] == "1"
        assert httpx.post(url + "/v1/rerank", json={"query": QUERY, "documents": DOCS}, timeout=60).status_code == 200


def test_metrics_count_rerank_requests(server):
    def count() -> float:
        text = httpx.get(server + "/metrics").text
        total = 0.0
        for line in text.splitlines():
            if line.startswith("qembed_requests_total{") and "/v1/rerank" in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    before = count()
    _post(server, {"query": QUERY, "documents": DOCS[:2]})
    assert count() == before + 1


def test_a_server_without_reranker_answers_404(tiny_encoder):
    with running_server(encoder=tiny_encoder) as url:
        error = _error(httpx.post(url + "/v1/rerank", json={"query": QUERY, "documents": DOCS}), 404)
        assert error["code"] == "no_reranker" and "--reranker" in error["message"]


def test_remote_reranker_against_the_live_server(server, reranker):
    from qembed.rerank import load_reranker

    remote = load_reranker(server + "/v1", api_key=KEY)
    results = remote.rerank(QUERY, DOCS, top_n=3)
    assert remote.name == "tiny-qwen3-reranker"  # as the server reports it
    local = reranker.rerank(QUERY, DOCS, top_n=3)
    assert [r.index for r in results] == [r.index for r in local]
    np.testing.assert_allclose([r.score for r in results], [r.score for r in local], atol=1e-5)
    pairs = [(QUERY, DOCS[0]), ("花呗怎么还款", DOCS[1]), (QUERY, DOCS[2])]
    np.testing.assert_allclose(remote.score(pairs), reranker.score(pairs), atol=1e-5)
    instruction = "Find the help article"
    np.testing.assert_allclose(remote.score(pairs, instruction), reranker.score(pairs, instruction), atol=1e-5)
    remote.close()


def test_remote_reranker_reports_server_errors(server):
    from qembed.errors import RemoteError
    from qembed.rerank.remote import RemoteReranker

    with pytest.raises(RemoteError, match="401"):
        RemoteReranker(server + "/v1", model="tiny-qwen3-reranker", api_key="wrong").rerank(QUERY, DOCS)
    with pytest.raises(RemoteError, match="connection|ConnectError|failed"):
        RemoteReranker("http://127.0.0.1:9/v1", model="m", max_retries=0).rerank(QUERY, DOCS)


class TEIRequest(BaseModel):
    query: str
    texts: list[str]
    return_text: bool = False


@contextlib.contextmanager
def tei_server(reranker):
    """A loopback server answering TEI's rerank shape: ``{"query", "texts"}`` → ``[{"index", "score"}]``."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    seen: list[dict] = []

    @app.post("/rerank")
    def rerank(body: TEIRequest) -> list[dict]:
        seen.append(body.model_dump())
        results = reranker.rerank(body.query, body.texts)
        return [{"index": r.index, "score": r.score} for r in results]

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", seen
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_remote_reranker_speaks_tei(reranker):
    from qembed.rerank.remote import RemoteReranker

    with tei_server(reranker) as (url, seen):
        remote = RemoteReranker(url, batch_size=3)
        results = remote.rerank(QUERY, DOCS)
        local = reranker.rerank(QUERY, DOCS)
        assert [r.index for r in results] == [r.index for r in local]
        np.testing.assert_allclose([r.score for r in results], [r.score for r in local], atol=1e-6)
        assert remote.info()["api"] == "tei"
        # split into requests of 3 documents, each in TEI's shape
        assert [len(s["texts"]) for s in seen] == [3, 2]


@pytest.mark.slow
def test_process_engine_serves_the_reranker(tiny_model_path, reranker_path, reranker):
    with running_server(model=str(tiny_model_path), reranker=str(reranker_path), dtype="float32",
                        compile=False) as url:
        health = httpx.get(url + "/health").json()
        assert health["engine"]["kind"] == "process"
        assert health["reranker"] == {"model": "tiny-qwen3-reranker", "status": "ready", "restarts": 0}
        served = url.app.state.reranker
        assert served.engine.pid not in (None, health["engine"]["pid"])
        body = httpx.post(url + "/v1/rerank", json={"query": QUERY, "documents": DOCS, "top_n": 3},
                          timeout=60).json()
        local = reranker.rerank(QUERY, DOCS, top_n=3)
        assert [r["index"] for r in body["results"]] == [r.index for r in local]
        np.testing.assert_allclose([r["relevance_score"] for r in body["results"]], [r.score for r in local],
                                   atol=1e-5)
        # embeddings still work beside it
        assert httpx.post(url + "/v1/embeddings", json={"input": "hello"}).status_code == 200
        # the reranker's engine dies: it is started again and answers as before
        first_pid = served.engine.pid
        os.kill(first_pid, signal.SIGKILL)
        deadline = time.monotonic() + 300
        while not (served.status == "ready" and served.engine.pid != first_pid and served.engine.alive):
            assert time.monotonic() < deadline, f"the reranker engine did not come back ({served.status})"
            time.sleep(0.2)
        assert served.restarts == 1
        again = httpx.post(url + "/v1/rerank", json={"query": QUERY, "documents": DOCS, "top_n": 3}, timeout=60)
        assert again.status_code == 200 and again.json()["results"] == body["results"]
    assert not served.engine.alive
