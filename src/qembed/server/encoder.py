"""The encoder the server's handlers use: the :class:`~qembed.models.encoder.Encoder` API over the queue.

:class:`BatchedEncoder` wraps the loaded encoder. With a
:class:`~qembed.models.local.LocalEncoder` (anything with ``tokenize``, ``prepare_token_ids`` and
``forward_batch``) texts are tokenised in the calling thread and the token ids go through the
:class:`~qembed.server.batcher.Batcher`, so every request — ``/v1/embeddings`` or a task route
calling :meth:`encode` from a worker thread — shares the same forward passes. Any other encoder
(e.g. a :class:`~qembed.models.remote.RemoteEncoder` in proxy mode) is called per request, with at
most ``max_queued_requests`` requests at once.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future
from typing import Any, Iterator, Sequence

import numpy as np

from qembed.models.encoder import Encoder, check_dimensions, truncate_dimensions, validate_texts
from qembed.server.batcher import Batcher
from qembed.server.errors import QueueFullError


class BatchedEncoder:
    """An :class:`Encoder` whose ``encode`` goes through the server's batching queue.

    Thread-safe: call :meth:`encode` from any thread (not from the event loop — it blocks).
    Attributes it does not define come from the wrapped encoder (``tokenizer``, ``info`` …).
    """

    def __init__(self, encoder: Encoder, *, max_batch_tokens: int = 16384, max_batch_size: int = 256,
                 max_queued_requests: int = 512, metrics: Any = None) -> None:
        self.inner = encoder
        self.name = encoder.name
        self.metrics = metrics
        self.batched = all(hasattr(encoder, a) for a in ("tokenize", "prepare_token_ids", "forward_batch"))
        # Fast tokenizers raise "Already borrowed" when threads change truncation settings at once.
        self._tokenizer_lock = threading.Lock()
        self.batcher: Batcher | None = None
        self._slots = threading.BoundedSemaphore(max_queued_requests)
        self.max_queued_requests = max_queued_requests
        self._incoming = 0
        self._incoming_lock = threading.Lock()
        if self.batched:
            self.batcher = Batcher(encoder.forward_batch, encoder.dim, max_batch_tokens=max_batch_tokens,
                                   max_batch_size=max_batch_size, max_queued_requests=max_queued_requests,
                                   metrics=metrics, incoming=lambda: self._incoming)

    # ------------------------------------------------------------------ Encoder protocol
    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def max_input_tokens(self) -> int | None:
        return self.inner.max_input_tokens

    @property
    def supports_instructions(self) -> bool:
        return self.inner.supports_instructions

    def count_tokens(self, texts: str | Sequence[str]) -> list[int]:
        """Tokens per text with special tokens, before truncation."""
        with self._tokenizer_lock:
            return self.inner.count_tokens(texts)

    def encode(
        self,
        texts: str | Sequence[str],
        instruction: str | None = None,
        dimensions: int | None = None,
        *,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """Texts to ``(n, dimensions or dim)`` float32 unit rows, through the shared queue."""
        dimensions = check_dimensions(dimensions, self.dim)
        if not self.batched:
            return self._call_inner(texts, instruction, dimensions)
        with self.arriving():
            future = self.submit(self.tokenize(texts, instruction))
        return truncate_dimensions(future.result(), dimensions)

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Mark a request on its way to the queue (being tokenised) while inside.

        The model worker waits briefly for such requests before running a batch that is not full.
        """
        with self._incoming_lock:
            self._incoming += 1
        try:
            yield
        finally:
            with self._incoming_lock:
                self._incoming -= 1
            if self.batcher is not None:
                self.batcher.wake()

    # ------------------------------------------------------------------ token-level API
    def tokenize(self, texts: str | Sequence[str], instruction: str | None = None) -> list[list[int]]:
        """Format and tokenise (truncating or rejecting long inputs, per the encoder's settings)."""
        with self._tokenizer_lock:
            return self.inner.tokenize(texts, instruction)

    def prepare_token_ids(self, ids: Sequence[Sequence[int]]) -> list[list[int]]:
        """Check pre-tokenised inputs (ids in range, end token, length limit)."""
        return self.inner.prepare_token_ids(ids)

    def token_ids(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """One text's token ids, untruncated (what ``POST /tokenize`` returns)."""
        with self._tokenizer_lock:
            return list(self.inner.tokenizer(text, add_special_tokens=add_special_tokens,
                                             truncation=False)["input_ids"])

    def submit(self, ids: Sequence[Sequence[int]]) -> Future:
        """Queue token ids; the future gives full-size unit vectors. Raises QueueFullError at once."""
        if self.batcher is None:
            raise TypeError(f"{type(self.inner).__name__} does not take token ids")
        return self.batcher.submit(ids)

    def _call_inner(self, texts: Any, instruction: str | None, dimensions: int | None) -> np.ndarray:
        validate_texts(texts)
        if not self._slots.acquire(blocking=False):
            raise QueueFullError(f"the server is busy: {self.max_queued_requests} requests are in "
                                 "progress; retry shortly", code="queue_full")
        try:
            if self.metrics is not None:
                self.metrics.queue_depth.inc()
            return self.inner.encode(texts, instruction=instruction, dimensions=dimensions)
        finally:
            if self.metrics is not None:
                self.metrics.queue_depth.dec()
            self._slots.release()

    def close(self) -> None:
        """Finish queued work and stop the model worker."""
        if self.batcher is not None:
            self.batcher.close()

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"BatchedEncoder({self.inner!r})"
