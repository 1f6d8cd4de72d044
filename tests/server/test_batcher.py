"""The batching queue on its own: order, token budget, backpressure, failures, shutdown."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from qembed.server.batcher import Batcher
from qembed.server.errors import QueueFullError, ServerClosingError
from qembed.server.metrics import ServerMetrics

TEXTS = ["a", "花呗怎么还款", "The quick brown fox jumps over the lazy dog " * 3, "借呗", "ok then", "x y z w"]


@pytest.fixture()
def recorded(tiny_encoder):
    """A batcher over the tiny model's forward pass that records every batch it runs."""
    batches: list[list[int]] = []

    def forward(seqs):
        batches.append([len(s) for s in seqs])
        return tiny_encoder.forward_batch(seqs)

    made: list[Batcher] = []

    def make(**kwargs) -> Batcher:
        b = Batcher(forward, tiny_encoder.dim, **kwargs)
        made.append(b)
        return b

    yield make, batches
    for b in made:
        b.close()


def test_requests_get_their_own_rows_in_order(recorded, tiny_encoder):
    make, batches = recorded
    batcher = make(max_batch_tokens=4096)
    ids = tiny_encoder.tokenize(TEXTS)
    expected = tiny_encoder.forward_batch(ids)  # one pass; batched equals one-at-a-time (core tests)
    with batcher.pause():
        futures = [batcher.submit([ids[i]]) for i in range(len(ids))] + [batcher.submit(ids[::-1])]
    assert len(batches) <= 2
    for i, f in enumerate(futures[:-1]):
        np.testing.assert_allclose(f.result(30)[0], expected[i], atol=1e-5)
    np.testing.assert_allclose(futures[-1].result(30), expected[::-1], atol=1e-5)


def test_padded_token_budget_and_batch_size(recorded, tiny_encoder):
    make, batches = recorded
    ids = tiny_encoder.tokenize([f"sentence number {i} " * (1 + i % 5) for i in range(40)])
    batcher = make(max_batch_tokens=100, max_batch_size=6)
    with batcher.pause():
        futures = [batcher.submit(ids[i:i + 8]) for i in range(0, 40, 8)]
    out = np.concatenate([f.result(30) for f in futures])
    np.testing.assert_allclose(out, tiny_encoder.forward_batch(ids), atol=1e-5)
    assert sum(len(b) for b in batches) == 40
    for b in batches:
        assert len(b) <= 6
        assert len(b) == 1 or len(b) * max(b) <= 100, b
    # an input longer than the budget runs alone
    long = tiny_encoder.tokenize(["word " * 150])
    batcher.embed(long + ids[:2], timeout=30)
    assert [len(long[0])] in batches


def test_queue_bound_and_metrics(tiny_encoder):
    metrics = ServerMetrics()
    batcher = Batcher(lambda s: tiny_encoder.forward_batch(s), tiny_encoder.dim, max_queued_requests=3,
                      metrics=metrics)
    try:
        ids = tiny_encoder.tokenize(["one", "two"])
        with batcher.pause():
            futures = [batcher.submit(ids) for _ in range(3)]
            assert batcher.queue_depth == 3 and metrics.queue_depth._value.get() == 3
            with pytest.raises(QueueFullError) as info:
                batcher.submit(ids)
            assert info.value.status_code == 429
        for f in futures:
            assert f.result(30).shape == (2, tiny_encoder.dim)
        assert metrics.rejected._value.get() == 1
        assert metrics.inputs.labels(model="")._value.get() == 6  # a bare batcher reports no model name
    finally:
        batcher.close()


def test_failed_forward_fails_only_its_callers(tiny_encoder):
    def forward(seqs):
        if any(len(s) > 50 for s in seqs):
            raise FloatingPointError("the model produced non-finite embeddings")
        return tiny_encoder.forward_batch(seqs)

    batcher = Batcher(forward, tiny_encoder.dim, max_batch_size=1)
    try:
        bad = batcher.submit(tiny_encoder.tokenize(["short", "long " * 100]))
        good = batcher.submit(tiny_encoder.tokenize(["fine"]))
        with pytest.raises(FloatingPointError):
            bad.result(30)
        assert good.result(30).shape == (1, tiny_encoder.dim)
    finally:
        batcher.close()


def test_close_finishes_queued_work_then_refuses(tiny_encoder):
    batcher = Batcher(tiny_encoder.forward_batch, tiny_encoder.dim, max_batch_size=2)
    ids = tiny_encoder.tokenize(TEXTS)
    futures = [batcher.submit(ids) for _ in range(5)]
    closer = threading.Thread(target=batcher.close)
    closer.start()
    closer.join(60)
    assert all(f.done() and f.result().shape == (len(TEXTS), tiny_encoder.dim) for f in futures)
    with pytest.raises(ServerClosingError):
        batcher.submit(ids)


def test_worker_waits_for_requests_being_tokenised(recorded, tiny_encoder):
    """While a request is on its way in, a partial batch waits for it instead of running alone."""
    make, batches = recorded
    incoming = {"n": 1}
    batcher = make(incoming=lambda: incoming["n"], max_wait=30.0)
    ids = tiny_encoder.tokenize(["first request", "second request"])
    first = batcher.submit([ids[0]])
    threading.Event().wait(0.2)  # the worker is up and waiting for the request on its way
    assert batches == [] and not first.done()
    second = batcher.submit([ids[1]])
    incoming["n"] = 0
    batcher.wake()
    np.testing.assert_allclose(first.result(30)[0], tiny_encoder.forward_batch([ids[0]])[0], atol=1e-5)
    second.result(30)
    assert batches == [[len(ids[0]), len(ids[1])]] or batches == [[len(ids[1]), len(ids[0])]]


def test_waiting_inputs_are_grouped_by_length(recorded, tiny_encoder):
    """Requests of mixed lengths waiting together run in length-homogeneous passes (less padding)."""
    make, batches = recorded
    texts = ["long text " * 30 if k % 2 == 0 else "short" for k in range(8)]
    ids = tiny_encoder.tokenize(texts)
    batcher = make(max_batch_size=4, max_batch_tokens=100_000)
    with batcher.pause():
        futures = [batcher.submit([x]) for x in ids]
    got = np.stack([f.result(30)[0] for f in futures])
    np.testing.assert_allclose(got, tiny_encoder.forward_batch(ids), atol=1e-5)
    long, short = len(ids[0]), len(ids[1])
    assert batches == [[long] * 4, [short] * 4]  # the oldest (long) request's group runs first
