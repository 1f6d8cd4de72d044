"""Bad input gets an OpenAI-shaped 4xx (never a 500), and the server keeps serving after each."""

from __future__ import annotations

import threading

import httpx
import numpy as np
import openai
import pytest

from qembed.server.testing import running_server

from .helpers import assert_error

BAD_BODIES = [
    # (raw body or JSON object, status, param, substring of the message)
    (b"{not json", 400, None, "not valid JSON"),
    (b"", 400, None, None),
    (b"[1, 2]", 400, None, "JSON object"),
    ({}, 400, "input", "input is required"),
    ({"input": ""}, 400, "input", "empty string"),
    ({"input": []}, 400, "input", "empty list"),
    ({"input": ["ok", ""]}, 400, "input", "input[1] is an empty string"),
    ({"input": 42}, 400, "input", "got a number"),
    ({"input": None}, 400, "input", "null"),
    ({"input": {"text": "hi"}}, 400, "input", "an object"),
    ({"input": ["a", 1]}, 400, "input", "input[1]"),
    ({"input": [1.5, 2]}, 400, "input", "input[0]"),
    ({"input": [[1, 2], []]}, 400, "input", "input[1] is an empty list"),
    ({"input": [[1, "x"]]}, 400, "input", "integers"),
    ({"input": [True, False]}, 400, "input", None),
    ({"input": [-1, 5]}, 400, "input", "invalid token id"),
    ({"input": [10**9]}, 400, "input", "invalid token id"),
    ({"input": "hi", "encoding_format": "binary"}, 400, "encoding_format", None),
    ({"input": "hi", "dimensions": 8}, 400, "dimensions", "between 32 and 64"),
    ({"input": "hi", "dimensions": 65}, 400, "dimensions", "between 32 and 64"),
    ({"input": "hi", "dimensions": "64"}, 400, "dimensions", None),
    ({"input": "hi", "model": 7}, 400, "model", None),
    ({"input": "hi", "user": ["x"]}, 400, "user", None),
    ({"input": "hi", "input_type": "passage"}, 400, "input_type", None),
    ({"input": "hi", "instruction": 3}, 400, "instruction", None),
    ({"input": [1, 2, 3], "input_type": "query"}, 400, "instruction", "text input only"),
    ({"input": "hi", "model": "gpt-4"}, 404, "model", "not served"),
]


@pytest.fixture(scope="module")
def small_server(tiny_encoder):
    with running_server(encoder=tiny_encoder, max_client_batch_size=4, max_request_bytes=4096) as url:
        yield url


@pytest.mark.parametrize("body,status,param,contains", BAD_BODIES,
                         ids=[str(b)[:40] for b, *_ in BAD_BODIES])
def test_bad_embedding_requests(server, body, status, param, contains):
    with httpx.Client(base_url=server) as http:
        if isinstance(body, bytes):
            r = http.post("/v1/embeddings", content=body, headers={"content-type": "application/json"})
        else:
            r = http.post("/v1/embeddings", json=body)
        assert_error(r, status, param=param, contains=contains)
        ok = http.post("/v1/embeddings", json={"input": "still serving"})
        assert ok.status_code == 200 and len(ok.json()["data"]) == 1


def test_openai_client_raises_typed_errors(client, tiny_encoder):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=tiny_encoder.name, input="")
    assert "empty string" in info.value.message
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="hi")
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=tiny_encoder.name, input="hi", dimensions=4)


def test_too_many_inputs_and_body_too_large(small_server):
    r = httpx.post(f"{small_server}/v1/embeddings", json={"input": ["a", "b", "c", "d", "e"]})
    assert_error(r, 400, param="input", code="too_many_inputs", contains="limit of 4")
    assert httpx.post(f"{small_server}/v1/embeddings", json={"input": ["a", "b", "c", "d"]}).status_code == 200
    r = httpx.post(f"{small_server}/v1/embeddings", json={"input": ["x" * 5000]})
    assert_error(r, 413, contains="4096 bytes")

    def chunks():  # no content-length: the streamed size is counted
        yield b'{"input": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    r = httpx.post(f"{small_server}/v1/embeddings", content=chunks(), headers={"content-type": "application/json"})
    assert_error(r, 413)
    assert httpx.post(f"{small_server}/v1/embeddings", json={"input": "fine"}).status_code == 200


def test_unknown_route_and_method(server):
    assert_error(httpx.get(f"{server}/v1/nothing"), 404)
    assert_error(httpx.get(f"{server}/v1/embeddings"), 405)
    assert_error(httpx.post(f"{server}/tokenize", json={"prompt": ""}), 400, param="prompt")
    assert_error(httpx.post(f"{server}/tokenize", json={"text": "hi"}), 400, param="prompt")
    assert_error(httpx.post(f"{server}/tokenize", json={"prompt": "hi", "model": "other"}), 404)


def test_too_long_inputs_with_and_without_truncation(tiny_model_path, tiny_encoder):
    long_text = "花呗怎么还款 " * 40
    with running_server(model=str(tiny_model_path), dtype="float32", device="cpu",
                        max_input_tokens=16, truncate=False) as url:
        r = httpx.post(f"{url}/v1/embeddings", json={"input": ["short", long_text]})
        assert_error(r, 400, param="input", code="input_too_long", contains="input 1 has")
        r = httpx.post(f"{url}/v1/embeddings", json={"input": list(range(100, 140))})
        assert_error(r, 400, code="input_too_long")
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "short"}).status_code == 200
    with running_server(model=str(tiny_model_path), dtype="float32", device="cpu",
                        max_input_tokens=16, truncate=True) as url:
        r = httpx.post(f"{url}/v1/embeddings", json={"input": [long_text], "encoding_format": "float"})
        assert r.status_code == 200
        assert r.json()["usage"]["prompt_tokens"] == 16  # the tokens actually embedded
        ids = tiny_encoder.tokenize(long_text)[0]
        expected = tiny_encoder.forward_batch([ids[:15] + [151643]])[0]
        np.testing.assert_allclose(r.json()["data"][0]["embedding"], expected, atol=1e-5)
        assert httpx.post(f"{url}/tokenize", json={"prompt": long_text}).json()["count"] == len(ids)


def test_queue_full_answers_429_at_once(tiny_encoder):
    with running_server(encoder=tiny_encoder, max_queued_requests=2) as url:
        batcher = url.app.state.encoder.batcher
        results: list[httpx.Response] = []

        def post() -> None:
            results.append(httpx.post(f"{url}/v1/embeddings", json={"input": "queued"}, timeout=60))

        with batcher.pause():
            threads = [threading.Thread(target=post) for _ in range(2)]
            for t in threads:
                t.start()
            while batcher.queue_depth < 2:
                threading.Event().wait(0.01)
            r = httpx.post(f"{url}/v1/embeddings", json={"input": "one too many"}, timeout=5)
            assert_error(r, 429, code="queue_full", contains="max_queued_requests=2")
            assert r.headers["retry-after"] == "1"
        for t in threads:
            t.join(30)
        assert [x.status_code for x in results] == [200, 200]
        metrics = httpx.get(f"{url}/metrics").text
        assert "qembed_queue_rejected_total 1.0" in metrics
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "after"}).status_code == 200
