"""API keys, readiness while the model loads, and Prometheus metrics."""

from __future__ import annotations

import threading

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from qembed.models.local import LocalEncoder
from qembed.server.testing import running_server

from .helpers import assert_error


def test_api_key(tiny_encoder):
    with running_server(encoder=tiny_encoder, api_key="s3cret") as url:
        assert_error(httpx.post(f"{url}/v1/embeddings", json={"input": "hi"}), 401, code="invalid_api_key",
                     contains="missing API key")
        wrong = {"Authorization": "Bearer nope"}
        assert_error(httpx.post(f"{url}/v1/embeddings", json={"input": "hi"}, headers=wrong), 401,
                     contains="invalid API key")
        assert_error(httpx.post(f"{url}/v1/embeddings", json={"input": "hi"}, headers={"Authorization": "s3cret"}), 401)
        assert_error(httpx.get(f"{url}/v1/models"), 401)
        assert_error(httpx.post(f"{url}/tokenize", json={"prompt": "hi"}), 401)
        # a bad body without a key is refused for the key first
        assert_error(httpx.post(f"{url}/v1/embeddings", content=b"{oops"), 401)
        assert httpx.get(f"{url}/health").status_code == 200  # health stays open
        assert httpx.get(f"{url}/metrics").status_code == 200
        good = {"Authorization": "Bearer s3cret"}
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "hi"}, headers=good).status_code == 200
        with openai.Client(base_url=f"{url}/v1", api_key="s3cret", max_retries=0) as client:
            assert len(client.embeddings.create(model=tiny_encoder.name, input="hi").data) == 1
        with openai.Client(base_url=f"{url}/v1", api_key="EMPTY", max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError):
                client.embeddings.create(model=tiny_encoder.name, input="hi")


def test_health_503_while_loading_then_200(tiny_model_path):
    gate = threading.Event()

    def slow_loader():
        gate.wait(60)
        return LocalEncoder(str(tiny_model_path), device="cpu", dtype="float32")

    with running_server(loader=slow_loader, wait_ready=False) as url:
        r = httpx.get(f"{url}/health")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        assert_error(httpx.post(f"{url}/v1/embeddings", json={"input": "hi"}), 503, code="model_loading")
        gate.set()
        assert url.app.state.server.ready_event.wait(60)
        r = httpx.get(f"{url}/health")
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "hi"}).status_code == 200


def test_health_reports_a_failed_load(tmp_path):
    with running_server(model=str(tmp_path / "missing-model"), wait_ready=False) as url:
        assert url.app.state.server.ready_event.wait(60)
        r = httpx.get(f"{url}/health")
        assert r.status_code == 503 and r.json()["status"] == "failed"
        assert "does not exist" in r.json()["error"]
        assert_error(httpx.post(f"{url}/v1/embeddings", json={"input": "hi"}), 503, code="model_load_failed")
    with pytest.raises(RuntimeError, match="failed to load"):
        with running_server(model=str(tmp_path / "missing-model")):
            pass


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_requests_tokens_and_batches(tiny_encoder):
    with running_server(encoder=tiny_encoder) as url:
        with httpx.Client(base_url=url) as http:
            for _ in range(3):
                assert http.post("/v1/embeddings", json={"input": ["alpha", "beta gamma"]}).status_code == 200
            assert http.post("/v1/embeddings", json={"input": ""}).status_code == 400
            assert http.get("/v1/nothing/here").status_code == 404
            m = _samples(http.get("/metrics").text)
    ok = (("endpoint", "/v1/embeddings"), ("status", "200"))
    assert m[("qembed_requests_total", ok)] == 3
    assert m[("qembed_requests_total", (("endpoint", "/v1/embeddings"), ("status", "400")))] == 1
    assert m[("qembed_requests_total", (("endpoint", "unmatched"), ("status", "404")))] == 1
    assert m[("qembed_request_duration_seconds_count", (("endpoint", "/v1/embeddings"),))] == 4
    tokens = sum(tiny_encoder.count_tokens(["alpha", "beta gamma"])) * 3
    model = (("model", "tiny-qwen3-embedding"),)  # per-model figures carry the served name
    assert m[("qembed_tokens_embedded_total", model)] == tokens
    assert m[("qembed_inputs_embedded_total", model)] == 6
    assert m[("qembed_batch_size_count", model)] == 3
    assert m[("qembed_batch_size_sum", model)] == 6
    assert m[("qembed_queue_depth", ())] == 0
    assert ("qembed_requests_in_progress", ()) in m
