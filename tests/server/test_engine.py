"""The engine process: same vectors as in process, 429 when full, death and recovery, restarts."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from qembed.server.testing import running_server

from .helpers import assert_error

SENTENCES = ["花呗怎么还款", "借呗能分期吗", "如何归还蚂蚁花呗", "借呗支持分几期还款",
             "The quick brown fox jumps over the lazy dog", "ok", "今天天气真不错,适合出去散步"]


@pytest.fixture(scope="module")
def engine_server(tiny_model_path):
    """``qembed serve``'s layout: the tiny model in an engine process of its own."""
    with running_server(model=str(tiny_model_path), dtype="float32", device="cpu") as url:
        yield url


def _texts(n: int) -> list[str]:
    return [f"{SENTENCES[i % len(SENTENCES)]} {'很好 ' * (i % 9)}#{i}" for i in range(n)]


def test_the_model_runs_in_another_process(engine_server):
    health = httpx.get(f"{engine_server}/health").json()
    assert health["status"] == "ok"
    assert health["engine"]["kind"] == "process" and health["engine"]["alive"]
    assert health["engine"]["pid"] != os.getpid()


def test_served_vectors_equal_in_process_ones_under_concurrency(engine_server, tiny_encoder):
    import openai

    texts = _texts(96)
    expected = tiny_encoder.encode(texts)
    client = openai.Client(base_url=f"{engine_server}/v1", api_key="EMPTY", max_retries=0)

    def one(i: int) -> np.ndarray:
        return np.asarray(client.embeddings.create(model=tiny_encoder.name, input=texts[i]).data[0].embedding, dtype=np.float32)

    def many(k: int) -> np.ndarray:
        part = texts[k * 12:(k + 1) * 12]
        return np.asarray([d.embedding for d in client.embeddings.create(model=tiny_encoder.name, input=part).data], dtype=np.float32)

    with ThreadPoolExecutor(64) as pool:
        singles = list(pool.map(one, range(len(texts))))
        groups = list(pool.map(many, range(8)))  # 8 clients x 12 texts, interleaved with each other
    np.testing.assert_allclose(np.stack(singles), expected, atol=1e-5)
    np.testing.assert_allclose(np.concatenate(groups), expected, atol=1e-5)
    metrics = httpx.get(f"{engine_server}/metrics").text
    assert "qembed_batch_size_count" in metrics and "qembed_batch_size_count 0.0" not in metrics


def test_token_ids_and_dimensions_through_the_engine(engine_server, tiny_encoder):
    ids = tiny_encoder.tokenize(["花呗怎么还款"])[0]
    r = httpx.post(f"{engine_server}/v1/embeddings", json={"input": [ids], "encoding_format": "float",
                                                         "dimensions": 32})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["data"][0]["embedding"],
                               tiny_encoder.encode("花呗怎么还款", dimensions=32)[0], atol=1e-5)
    bad = httpx.post(f"{engine_server}/v1/embeddings", json={"input": [[10**9]]})
    assert_error(bad, 400, param="input")


def test_full_server_answers_429_at_once(tiny_model_path):
    with running_server(model=str(tiny_model_path), dtype="float32", device="cpu",
                        max_queued_requests=2) as url:
        pid = httpx.get(f"{url}/health").json()["engine"]["pid"]
        results: list[int] = []

        def post() -> None:
            results.append(httpx.post(f"{url}/v1/embeddings", json={"input": "waits"}, timeout=60).status_code)

        os.kill(pid, signal.SIGSTOP)  # the engine holds still: admitted requests stay in the server
        try:
            threads = [threading.Thread(target=post) for _ in range(2)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 30
            while "qembed_queue_depth 2.0" not in httpx.get(f"{url}/metrics").text:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            # answered while the engine is stopped: the refusal waits for nothing
            r = httpx.post(f"{url}/v1/embeddings", json={"input": "one too many"}, timeout=5)
            assert_error(r, 429, code="queue_full", contains="max_queued_requests=2")
            assert r.headers["retry-after"] == "1"
        finally:
            os.kill(pid, signal.SIGCONT)
        for t in threads:
            t.join(60)
        assert results == [200, 200]


@pytest.mark.slow
def test_engine_killed_mid_load_answers_503_then_recovers(tiny_model_path, tiny_encoder):
    with running_server(model=str(tiny_model_path), dtype="float32", device="cpu") as url:
        pid = httpx.get(f"{url}/health").json()["engine"]["pid"]
        statuses: list[int] = []
        errors: list[str] = []
        stop = threading.Event()
        big = {"input": _texts(400)}

        def load() -> None:
            with httpx.Client(base_url=url, timeout=60) as http:
                while not stop.is_set():
                    try:
                        r = http.post("/v1/embeddings", json=big)
                    except httpx.HTTPError as exc:  # a hang or a dropped connection fails the test
                        errors.append(repr(exc))
                        return
                    statuses.append(r.status_code)
                    if r.status_code == 503:
                        assert r.json()["error"]["code"] in ("engine_unavailable",), r.text
                        time.sleep(0.05)

        threads = [threading.Thread(target=load) for _ in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while len(statuses) < 2:
            assert time.monotonic() < deadline and not errors, errors
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}/health").status_code == 200:
            assert time.monotonic() < deadline, "/health did not notice the dead engine"
            time.sleep(0.02)
        body = httpx.get(f"{url}/health").json()
        assert body["status"] == "restarting" and "exit" in body["error"]
        deadline = time.monotonic() + 120
        while httpx.get(f"{url}/health").status_code != 200:
            assert time.monotonic() < deadline, "the engine was not restarted"
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert 503 in statuses and set(statuses) <= {200, 503}, statuses
        health = httpx.get(f"{url}/health").json()
        assert health["engine"]["pid"] != pid and health["engine"]["restarts"] == 1
        assert 'qembed_engine_restarts_total{model="tiny-qwen3-embedding"} 1.0' in httpx.get(f"{url}/metrics").text
        r = httpx.post(f"{url}/v1/embeddings", json={"input": SENTENCES, "encoding_format": "float"})
        got = np.asarray([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
        np.testing.assert_allclose(got, tiny_encoder.encode(SENTENCES), atol=1e-5)


def test_engine_that_cannot_come_back_marks_the_server_failed(tiny_model_path):
    with running_server(model=str(tiny_model_path), dtype="float32", device="cpu",
                        engine_restart_limit=0) as url:
        fatal: list[str] = []
        url.app.state.server.on_fatal = fatal.append
        os.kill(httpx.get(f"{url}/health").json()["engine"]["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not fatal:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        health = httpx.get(f"{url}/health")
        assert health.status_code == 503 and health.json()["status"] == "failed"
        assert_error(httpx.post(f"{url}/v1/embeddings", json={"input": "x"}), 503, code="model_load_failed")
