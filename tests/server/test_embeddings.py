"""/v1/embeddings through the real openai client against a live server on the tiny model."""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from qembed import DEFAULT_QUERY_INSTRUCTION

SCENARIO = "今天天气真不错,适合出去散步"
SENTENCES = [
    "今天天气真不错,适合出去散步",
    "花呗怎么还款",
    "借呗的额度可以提高吗",
    "How do I reset my password?",
    "The quick brown fox jumps over the lazy dog, again and again, until it gets tired.",
    "蚂蚁借呗逾期一天会影响征信吗？如果影响的话多久能恢复",
    "ok",
    "支付宝",
]


def test_scenario_default_base64(client, tiny_encoder):
    r = client.embeddings.create(model=tiny_encoder.name, input=SCENARIO)
    assert r.object == "list" and r.model == tiny_encoder.name
    assert len(r.data) == 1 and r.data[0].index == 0 and r.data[0].object == "embedding"
    vector = np.asarray(r.data[0].embedding, dtype=np.float32)
    assert vector.shape == (tiny_encoder.dim,)
    np.testing.assert_allclose(vector, tiny_encoder.encode(SCENARIO)[0], atol=1e-5)
    assert r.usage.prompt_tokens == r.usage.total_tokens == tiny_encoder.count_tokens(SCENARIO)[0]


def test_float_and_base64_agree_and_keep_order(client, server, tiny_encoder):
    as_float = client.embeddings.create(model=tiny_encoder.name, input=SENTENCES, encoding_format="float")
    assert [d.index for d in as_float.data] == list(range(len(SENTENCES)))
    floats = np.asarray([d.embedding for d in as_float.data], dtype=np.float32)
    np.testing.assert_allclose(floats, tiny_encoder.encode(SENTENCES), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(floats, axis=1), 1.0, atol=1e-5)
    # the raw base64 body decodes as little-endian float32
    raw = httpx.post(f"{server}/v1/embeddings", json={"input": SENTENCES, "encoding_format": "base64"}).json()
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in raw["data"]])
    np.testing.assert_array_equal(decoded, floats)
    assert raw["usage"]["prompt_tokens"] == sum(tiny_encoder.count_tokens(SENTENCES))


def test_dimensions(client, tiny_encoder):
    r = client.embeddings.create(model=tiny_encoder.name, input=SENTENCES[:3], dimensions=32)
    vectors = np.asarray([d.embedding for d in r.data], dtype=np.float32)
    assert vectors.shape == (3, 32)
    np.testing.assert_allclose(vectors, tiny_encoder.encode(SENTENCES[:3], dimensions=32), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_token_id_inputs(client, tiny_encoder):
    ids = tiny_encoder.tokenize(SENTENCES[:3])
    expected = tiny_encoder.encode(SENTENCES[:3])
    one = client.embeddings.create(model=tiny_encoder.name, input=ids[0], encoding_format="float")
    np.testing.assert_allclose(one.data[0].embedding, expected[0], atol=1e-5)
    assert one.usage.prompt_tokens == len(ids[0])
    many = client.embeddings.create(model=tiny_encoder.name, input=ids)
    np.testing.assert_allclose([d.embedding for d in many.data], expected, atol=1e-5)
    # the end token is appended when the caller leaves it out
    bare = [x[:-1] for x in ids]
    again = client.embeddings.create(model=tiny_encoder.name, input=bare)
    np.testing.assert_allclose([d.embedding for d in again.data], expected, atol=1e-5)
    assert again.usage.prompt_tokens == sum(len(x) for x in ids)


def test_instruction_and_input_type(server, tiny_encoder):
    texts = SENTENCES[:2]
    query = tiny_encoder.encode(texts, instruction=DEFAULT_QUERY_INSTRUCTION)
    document = tiny_encoder.encode(texts)
    custom = tiny_encoder.encode(texts, instruction="Find the matching FAQ entry")

    def post(**extra):
        r = httpx.post(f"{server}/v1/embeddings", json={"input": texts, "encoding_format": "float", **extra})
        assert r.status_code == 200, r.text
        return np.asarray([d["embedding"] for d in r.json()["data"]], dtype=np.float32), r.json()["usage"]

    got, usage = post(input_type="query")
    np.testing.assert_allclose(got, query, atol=1e-5)
    assert usage["prompt_tokens"] == sum(len(x) for x in tiny_encoder.tokenize(texts, DEFAULT_QUERY_INSTRUCTION))
    np.testing.assert_allclose(post(input_type="document")[0], document, atol=1e-5)
    np.testing.assert_allclose(post(instruction="Find the matching FAQ entry")[0], custom, atol=1e-5)
    np.testing.assert_allclose(post(instruction="Find the matching FAQ entry", input_type="query")[0],
                               custom, atol=1e-5)
    assert not np.allclose(query, document, atol=1e-3)
    np.testing.assert_allclose(post(user="user-42")[0], document, atol=1e-5)


def test_64_concurrent_requests_match_single_requests(client, tiny_encoder):
    texts = [f"{SENTENCES[i % len(SENTENCES)]} #{i}" for i in range(64)]
    alone = tiny_encoder.encode(texts)  # one at a time equals batched (checked by the core tests)
    singles = np.stack([tiny_encoder.encode(t)[0] for t in texts[:4]])
    np.testing.assert_allclose(singles, alone[:4], atol=1e-5)

    def one(i: int) -> np.ndarray:
        r = client.embeddings.create(model=tiny_encoder.name, input=texts[i])
        return np.asarray(r.data[0].embedding, dtype=np.float32)

    with ThreadPoolExecutor(64) as pool:
        got = np.stack(list(pool.map(one, range(64))))
    np.testing.assert_allclose(got, alone, atol=1e-5)


def test_concurrent_requests_share_forward_passes(server, tiny_encoder):
    """64 queued one-sentence requests are served by a few forward passes, each caller its own rows."""
    batcher = server.app.state.encoder.batcher
    texts = [f"request {i}: {SENTENCES[i % len(SENTENCES)]}" for i in range(64)]
    expected = tiny_encoder.encode(texts)
    with ThreadPoolExecutor(64) as pool, httpx.Client(base_url=server, timeout=60) as http:
        with batcher.pause():
            futures = [pool.submit(http.post, "/v1/embeddings", json={"input": [t], "encoding_format": "float"})
                       for t in texts]
            start = time.monotonic()
            while batcher.queue_depth < 64 and time.monotonic() - start < 30:
                time.sleep(0.01)
            assert batcher.queue_depth == 64
            before = batcher.batches_run
        responses = [f.result() for f in futures]
    assert all(r.status_code == 200 for r in responses)
    got = np.asarray([r.json()["data"][0]["embedding"] for r in responses], dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    passes = batcher.batches_run - before
    assert 1 <= passes <= 2, passes  # ~20 tokens each: one pass under the 16k-token budget


def test_models_and_tokenize(server, tiny_encoder):
    models = httpx.get(f"{server}/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == [tiny_encoder.name]
    assert models["data"][0]["dim"] == tiny_encoder.dim
    r = httpx.post(f"{server}/tokenize", json={"model": tiny_encoder.name, "prompt": SCENARIO})
    assert r.status_code == 200
    body = r.json()
    assert body["tokens"] == tiny_encoder.tokenize(SCENARIO)[0]
    assert body["count"] == len(body["tokens"]) == tiny_encoder.count_tokens(SCENARIO)[0]
    assert body["tokens"][-1] == 151643  # <|endoftext|>
    assert body["max_model_len"] == tiny_encoder.max_input_tokens


def test_openapi_documents_extensions(server):
    docs = httpx.get(f"{server}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = httpx.get(f"{server}/openapi.json").json()
    assert "/v1/embeddings" in schema["paths"]
    request = schema["components"]["schemas"]["EmbeddingRequest"]["properties"]
    assert {"input", "model", "encoding_format", "dimensions", "user", "instruction", "input_type"} <= set(request)
    assert request["input_type"]["anyOf"][0]["enum"] == ["query", "document"]


@pytest.mark.parametrize("path", ["/v1/embeddings", "/embeddings"])
def test_both_paths(server, path):
    r = httpx.post(f"{server}{path}", json={"input": "hello"})
    assert r.status_code == 200 and len(r.json()["data"]) == 1
