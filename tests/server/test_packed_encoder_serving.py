"""A served encoder-only model (all-MiniLM-L6-v2) runs packed passes: many one-sentence requests
share one pass under the real-token budget, with the in-process vectors."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openai

from qembed.server.testing import running_server

SENTENCES = [f"request number {i} asks about {'credit cards ' * (i % 5)}repayment" for i in range(48)]


def test_one_sentence_requests_share_a_packed_pass(minilm_encoder):
    assert minilm_encoder.packed
    with running_server(encoder=minilm_encoder) as url:
        engine = url.app.state.server.encoder.engine  # a ThreadEngine over minilm_encoder
        assert engine.info["packed"] and engine.batcher.packed
        batcher = engine.batcher
        with openai.Client(base_url=f"{url}/v1", api_key="EMPTY", max_retries=0) as client, \
                ThreadPoolExecutor(len(SENTENCES)) as pool:
            before = batcher.batches_run
            with batcher.pause():  # let every request queue, then release them together
                futures = [pool.submit(client.embeddings.create, model=minilm_encoder.name, input=s)
                           for s in SENTENCES]
                while batcher.queue_depth < len(SENTENCES):
                    time.sleep(0.01)
            rows = np.array([f.result().data[0].embedding for f in futures], dtype=np.float32)
            # padded passes stop at 32 inputs on a CPU; packed ones hold up to 256
            assert batcher.batches_run - before == 1
        metrics = client_metrics(url)
    assert "qembed_batch_size_bucket" in metrics
    expected = minilm_encoder.encode(SENTENCES)
    assert np.sum(rows * expected, axis=1).min() >= 0.9999


def client_metrics(url: str) -> str:
    import httpx

    return httpx.get(f"{url}/metrics").text
