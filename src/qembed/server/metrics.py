"""Prometheus metrics of one server instance (``GET /metrics``).

Each app owns a :class:`prometheus_client.CollectorRegistry`, so several servers in one process
(tests) keep separate counts. With several front processes (``qembed serve --api-workers N``,
:mod:`qembed.server.fronts`) ``PROMETHEUS_MULTIPROC_DIR`` is set: every process writes its values
there and :meth:`ServerMetrics.render` adds up all of them (counters and histograms summed, the
gauges summed over the live processes; the ``process_*`` figures are left out). What is measured:

- ``qembed_requests_total{endpoint,status}`` and ``qembed_request_duration_seconds{endpoint}``;
- ``qembed_requests_in_progress``;
- per served model (label ``model``, its served name): ``qembed_batch_size`` (inputs per forward
  pass), ``qembed_batch_tokens`` (real tokens per pass) and ``qembed_batch_duration_seconds``
  (wall time per pass); ``qembed_tokens_embedded_total`` and ``qembed_inputs_embedded_total``
  (a reranker's pairs count as inputs); ``qembed_engine_restarts_total`` (its engine process died
  and was started again);
- ``qembed_queue_depth`` (requests admitted and not yet answered, every model together) and
  ``qembed_queue_rejected_total``.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
PASS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536)


def multiprocess_metrics() -> bool:
    """Whether metrics go to prometheus_client's multiprocess files (several fronts)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class ServerMetrics:
    """The metric objects of one server, registered in their own registry."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = multiprocess_metrics()
        live = {"multiprocess_mode": "livesum"} if self.multiprocess else {}
        if not self.multiprocess:
            ProcessCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter("qembed_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("qembed_request_duration_seconds", "HTTP request latency",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_progress = Gauge("qembed_requests_in_progress", "HTTP requests being served", registry=r,
                                 **live)
        self.batch_size = Histogram("qembed_batch_size", "Inputs per forward pass", ["model"],
                                    buckets=SIZE_BUCKETS, registry=r)
        self.batch_tokens = Histogram("qembed_batch_tokens", "Real (unpadded) tokens per forward pass", ["model"],
                                      buckets=TOKEN_BUCKETS, registry=r)
        self.batch_duration = Histogram("qembed_batch_duration_seconds", "Wall time of each forward pass", ["model"],
                                        buckets=PASS_BUCKETS, registry=r)
        self.tokens = Counter("qembed_tokens_embedded", "Tokens embedded", ["model"], registry=r)
        self.inputs = Counter("qembed_inputs_embedded", "Inputs embedded", ["model"], registry=r)
        self.queue_depth = Gauge("qembed_queue_depth", "Requests admitted and not yet answered", registry=r,
                                 **live)
        self.rejected = Counter("qembed_queue_rejected", "Requests refused with 429 (queue full)", registry=r)
        self.engine_restarts = Counter("qembed_engine_restarts",
                                       "Restarts of the engine process after it died", ["model"], registry=r)

    def model(self, name: str) -> "ModelMetrics":
        """The per-model figures of served model ``name`` (what its engine reports to)."""
        return ModelMetrics(self, name)

    def observe_batch(self, size: int, tokens: int, seconds: float | None = None, *, model: str = "") -> None:
        """Record one forward pass of model ``model``: ``size`` inputs holding ``tokens`` real tokens."""
        if seconds is not None:
            self.batch_duration.labels(model=model).observe(seconds)
        self.batch_size.labels(model=model).observe(size)
        self.batch_tokens.labels(model=model).observe(tokens)
        self.tokens.labels(model=model).inc(tokens)
        self.inputs.labels(model=model).inc(size)

    def render(self) -> bytes:
        """The text exposition format of every metric."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


class ModelMetrics:
    """One served model's view of :class:`ServerMetrics`: what a batcher or engine reports to.

    Its passes are labelled with the model's name; queue depth and rejections belong to the
    server's admission (every model together), so its ``queue_depth`` gauge is left alone.
    """

    class _Unused:
        def set(self, value: float) -> None:
            pass

    def __init__(self, metrics: ServerMetrics, name: str) -> None:
        self.server = metrics
        self.name = name
        self.queue_depth = self._Unused()
        self.rejected = metrics.rejected

    def observe_batch(self, size: int, tokens: int, seconds: float | None = None) -> None:
        self.server.observe_batch(size, tokens, seconds, model=self.name)
