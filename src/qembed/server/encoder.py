"""The encoder the server's handlers use: tokenise in the front, embed in the engine.

:class:`BatchedEncoder` is the :class:`~qembed.models.encoder.Encoder` behind every route. Its
requests pass three stages:

1. **admission** — at most ``max_queued_requests`` requests are in the server at once; one more is
   refused at the door with a 429 (no thread, tokenizer or queue is touched first);
2. **tokenisation** on the front's :class:`~qembed.server.tokenizer.TokenizerWorker` thread, many
   requests per tokenizer call;
3. **the engine** (:mod:`qembed.server.engine`), which batches token ids across requests and
   returns float32 unit rows.

Routes written with ``async`` await :meth:`embed_async`; task code running on worker threads
calls the blocking :meth:`encode`. Any other encoder (a
:class:`~qembed.models.remote.RemoteEncoder` in proxy mode) is called per request, under the
same admission limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future, InvalidStateError
from typing import Any, Iterator, Sequence

import numpy as np

from qembed.deprecated import old_keywords
from qembed.models.encoder import Encoder, check_dimensions, truncate_dimensions, validate_texts
from qembed.models.inputs import InputPreparer
from qembed.server.errors import QueueFullError
from qembed.server.tokenizer import TokenizerWorker


class BatchedEncoder:
    """An :class:`Encoder` whose work goes through admission, the tokenizer thread and the engine.

    Args:
        engine: a :class:`~qembed.server.engine.ProcessEngine` or
            :class:`~qembed.server.engine.ThreadEngine` (``None`` with ``inner``: proxy mode).
        inputs: the preparer that turns texts into the engine's token ids.
        info: the engine's description of its model (:func:`~qembed.server.engine.describe`).
        inner: an encoder called per request instead (proxy mode).
        max_queued_requests: requests in the server at once before 429s.
        metrics: optional :class:`~qembed.server.metrics.ServerMetrics`.
        admission: the server's admission limit, shared by every served model
            (:class:`~qembed.server.registry.Admission`, or a
            :class:`~qembed.server.fronts.SharedAdmission` across the front processes of
            ``qembed serve --api-workers N``); default: one of this encoder's own.

    Thread-safe. Never call the blocking methods from the event loop.
    """

    def __init__(self, engine: Any = None, inputs: InputPreparer | None = None,
                 info: dict[str, Any] | None = None, *, inner: Encoder | None = None,
                 max_queued_requests: int = 512, metrics: Any = None, admission: Any = None) -> None:
        if engine is None and inner is None:
            raise ValueError("BatchedEncoder needs an engine or an inner encoder")
        self.engine = engine
        self.inner = inner
        self.metrics = metrics
        self.max_queued_requests = int(max_queued_requests)
        if admission is None:
            from qembed.server.registry import Admission

            admission = Admission(self.max_queued_requests)
        self.admission = admission
        self.info_data = dict(info or {})
        self.batched = engine is not None
        self.tokenizer_worker = TokenizerWorker(inputs) if (self.batched and inputs is not None) else None
        self.inputs = inputs
        if self.batched and inputs is None:
            raise ValueError("an engine needs an InputPreparer")
        self.name = str(self.info_data.get("name") or getattr(inner, "name", "model"))

    # ------------------------------------------------------------------ Encoder protocol
    @property
    def dim(self) -> int:
        return int(self.info_data["dim"]) if self.batched else self.inner.dim

    @property
    def max_input_tokens(self) -> int | None:
        return self.info_data.get("max_input_tokens") if self.batched else self.inner.max_input_tokens

    @property
    def supports_instructions(self) -> bool:
        return bool(self.info_data.get("supports_instructions")) if self.batched \
            else self.inner.supports_instructions

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (chunking reads it); ``None`` in proxy mode."""
        if self.inputs is not None:
            return self.inputs.tokenizer
        return getattr(self.inner, "tokenizer", None)

    @property
    def path(self) -> str:
        return str(self.info_data.get("path") or getattr(self.inner, "path", self.name))

    @property
    def batcher(self) -> Any:
        """The in-process batcher (thread engines only; tests pause it)."""
        return getattr(self.engine, "batcher", None)

    def info(self) -> dict[str, Any]:
        if self.batched:
            return dict(self.info_data.get("info") or {})
        return self.inner.info() if callable(getattr(self.inner, "info", None)) else {"name": self.name}

    def count_tokens(self, texts: str | Sequence[str]) -> list[int]:
        """Tokens per text with special tokens, before truncation."""
        if not self.batched:
            return self.inner.count_tokens(texts)
        return self.tokenizer_worker.call(lambda inputs: inputs.count_tokens(texts)).result()

    @old_keywords
    def encode(
        self,
        texts: str | Sequence[str],
        instruction: str | None = None,
        dimensions: int | None = None,
        *,
        progress: bool = False,
    ) -> np.ndarray:
        """Texts to ``(n, dimensions or dim)`` float32 unit rows (blocking; not on the event loop)."""
        dimensions = check_dimensions(dimensions, self.dim)
        with self.admit():
            if not self.batched:
                validate_texts(texts)
                return self.inner.encode(texts, instruction=instruction, dimensions=dimensions)
            texts = validate_texts(texts)
            ids = self.tokenizer_worker.tokenize(texts, instruction).result()
            return truncate_dimensions(self.engine.submit(ids).result(), dimensions)

    # ------------------------------------------------------------------ admission
    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Count a request in the server while inside; 429 at once when the server is full (the
        limit is the server's, shared with its other models' requests)."""
        try:
            self.admission.enter()
        except QueueFullError:
            if self.metrics is not None:
                self.metrics.rejected.inc()
            raise
        self._set_depth()
        try:
            yield
        finally:
            self.admission.leave()
            self._set_depth()

    def _set_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self.admission.mine())

    # ------------------------------------------------------------------ async path (routes)
    async def embed_async(self, kind: str, items: list, instruction: str | None,
                          adapter: str | None = None) -> tuple[np.ndarray, int]:
        """Full-size unit vectors and the token count for a request's texts or token ids.

        The caller holds :meth:`admit`. Awaits the tokenizer thread, then the engine. ``adapter``:
        the LoRA adapter the request's ``model`` named (it rides with the ids to the engine).
        """
        if not self.batched:
            vectors = await asyncio.to_thread(self.inner.encode, items, instruction)
            return vectors, 0
        if kind == "text":
            tokenized = self.tokenizer_worker.tokenize(items, instruction)
        else:
            tokenized = self.tokenizer_worker.prepare_token_ids(items)
        return await asyncio.wrap_future(self._then_embed(tokenized, adapter))

    def _then_embed(self, tokenized: Future, adapter: str | None = None) -> Future:
        """``(vectors, tokens)`` once the ids are ready: the tokenizer thread hands them to the
        engine itself, without a round trip through the event loop."""
        done: Future = Future()

        def embedded(ids: list[list[int]], future: Future) -> None:
            try:
                done.set_result((future.result(), sum(len(x) for x in ids)))
            except BaseException as exc:  # noqa: BLE001 - the caller's error
                _set_exception(done, exc)

        def tokens_ready(future: Future) -> None:
            try:
                ids = future.result()
                submitted = self.engine.submit(ids, adapter) if adapter is not None else self.engine.submit(ids)
                submitted.add_done_callback(lambda f: embedded(ids, f))
            except BaseException as exc:  # noqa: BLE001 - the caller's error
                _set_exception(done, exc)

        tokenized.add_done_callback(tokens_ready)
        return done

    async def token_ids_async(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """One text's token ids, untruncated (``POST /tokenize``)."""
        return await asyncio.wrap_future(self.tokenizer_worker.call(
            lambda inputs: inputs.token_ids(text, add_special_tokens)))

    # ------------------------------------------------------------------ token-level API
    def tokenize(self, texts: str | Sequence[str], instruction: str | None = None) -> list[list[int]]:
        """Format and tokenise (truncating or rejecting long inputs, per the model's settings)."""
        return self.tokenizer_worker.tokenize(validate_texts(texts), instruction).result()

    def prepare_token_ids(self, ids: Sequence[Sequence[int]]) -> list[list[int]]:
        """Check pre-tokenised inputs (ids in range, end token, length limit)."""
        return self.tokenizer_worker.prepare_token_ids(ids).result()

    def submit(self, ids: Sequence[Sequence[int]]) -> Future:
        """Queue token ids with the engine; the future gives full-size unit vectors."""
        if self.engine is None:
            raise TypeError(f"{type(self.inner).__name__} does not take token ids")
        return self.engine.submit(ids)

    def close(self) -> None:
        """Finish queued work and stop the engine and the tokenizer thread."""
        if self.engine is not None:
            self.engine.close()
        if self.tokenizer_worker is not None:
            self.tokenizer_worker.close()

    def __repr__(self) -> str:
        return f"BatchedEncoder({self.name!r}, engine={type(self.engine).__name__})"


def _set_exception(future: Future, exc: BaseException) -> None:
    try:
        future.set_exception(exc)
    except InvalidStateError:  # already settled
        pass
