"""RemoteEncoder against qembed's own server, and the batched encoder task routes receive."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

import qembed
from qembed import DEFAULT_QUERY_INSTRUCTION, Encoder
from qembed.models.remote import RemoteEncoder

TEXTS = ["花呗怎么还款", "借呗的额度可以提高吗", "今天天气真不错,适合出去散步", "How do I reset my password?"]


def test_remote_encoder_matches_local(server, tiny_encoder):
    remote = qembed.load_encoder(f"{server}/v1", model=tiny_encoder.name)
    assert isinstance(remote, RemoteEncoder)
    try:
        np.testing.assert_allclose(remote.encode(TEXTS), tiny_encoder.encode(TEXTS), atol=1e-5)
        np.testing.assert_allclose(
            remote.encode(TEXTS, instruction=DEFAULT_QUERY_INSTRUCTION, dimensions=48),
            tiny_encoder.encode(TEXTS, instruction=DEFAULT_QUERY_INSTRUCTION, dimensions=48), atol=1e-5)
        assert remote.dim == tiny_encoder.dim
        assert remote.count_tokens(TEXTS) == tiny_encoder.count_tokens(TEXTS)
    finally:
        remote.close()
    # without model=, the first model of /v1/models is used
    default = qembed.load_encoder(f"{server}/v1")
    assert default.name == tiny_encoder.name
    default.close()


def test_app_state_encoder_is_a_thread_safe_batched_encoder(server, tiny_encoder):
    enc = server.app.state.encoder
    assert isinstance(enc, Encoder)
    assert enc.dim == tiny_encoder.dim and enc.name == tiny_encoder.name
    assert enc.max_input_tokens == tiny_encoder.max_input_tokens and enc.supports_instructions
    expected = tiny_encoder.encode(TEXTS, instruction="Retrieve semantically similar text", dimensions=32)
    before = enc.batcher.batches_run
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(
            lambda i: enc.encode(TEXTS[i % 4], instruction="Retrieve semantically similar text", dimensions=32),
            range(32)))
    for i, r in enumerate(results):
        assert r.shape == (1, 32)
        np.testing.assert_allclose(r[0], expected[i % 4], atol=1e-5)
    assert enc.batcher.batches_run > before  # went through the queue
    assert enc.count_tokens(TEXTS) == tiny_encoder.count_tokens(TEXTS)


def test_proxy_mode_serves_a_remote_encoder(server, tiny_encoder):
    """A server whose encoder is a RemoteEncoder (proxy) answers text requests per request."""
    from qembed.server.testing import running_server

    upstream = RemoteEncoder(f"{server}/v1", model=tiny_encoder.name)
    try:
        with running_server(encoder=upstream, served_model_name="proxy") as url:
            import httpx

            r = httpx.post(f"{url}/v1/embeddings", json={"model": "proxy", "input": TEXTS, "encoding_format": "float"})
            assert r.status_code == 200, r.text
            got = np.asarray([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
            np.testing.assert_allclose(got, tiny_encoder.encode(TEXTS), atol=1e-5)
            r = httpx.post(f"{url}/v1/embeddings", json={"model": "proxy", "input": [1, 2, 3]})
            assert r.status_code == 400 and "text input only" in r.json()["error"]["message"]
    finally:
        upstream.close()
