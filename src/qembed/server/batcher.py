"""Dynamic batching: a bounded request queue and one model worker thread.

The HTTP layer tokenises each request and :meth:`Batcher.submit` s its token-id lists; the call
returns a :class:`concurrent.futures.Future` at once (or raises
:class:`~qembed.server.errors.QueueFullError` when ``max_queued_requests`` requests are waiting —
backpressure instead of unbounded memory). One worker thread owns the model: it takes inputs from
the head of the queue, across requests, until the next one would push the padded batch
(``batch size x longest input``) past ``max_batch_tokens`` or the batch reaches
``max_batch_size``, runs one forward pass, and hands each request its own rows. A request's inputs
are taken longest first, so a large request is cut into batches of similar lengths; a large request
may span several passes, and small ones share a pass. Futures resolve to full-size float32 unit
vectors in the request's input order; callers (asyncio via :func:`asyncio.wrap_future`, or plain
threads via ``future.result()``) never touch the model themselves, so the event loop never blocks
on it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from qembed.models.encoder import plan_batches
from qembed.server.errors import QueueFullError, ServerClosingError
from qembed.server.memory import MemoryTrimmer

logger = logging.getLogger(__name__)

#: A forward pass: token-id lists in, ``(len(batch), dim)`` float32 unit vectors out.
ForwardFn = Callable[[list[list[int]]], np.ndarray]


@dataclass
class _Job:
    ids: list[list[int]]
    future: Future
    order: list[int]
    out: np.ndarray
    next: int = 0  # order[:next] are all taken
    taken: set[int] = field(default_factory=set)
    left: int = 0  # inputs not yet taken into a batch
    remaining: int = 0  # rows not yet computed
    failed: bool = False
    adapter: str | None = None  # the LoRA adapter the request named (None: the base model)
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    """Queue of tokenised requests served by one model worker thread.

    Args:
        forward: one forward pass (e.g. :meth:`qembed.models.local.LocalEncoder.forward_batch`).
        dim: size of the vectors ``forward`` returns.
        max_batch_tokens: padded tokens per pass (inputs x longest input); an input longer than
            the budget runs alone.
        max_batch_size: inputs per pass (1 turns batching off).
        max_queued_requests: requests waiting at most; more are refused at once.
        metrics: optional :class:`~qembed.server.metrics.ServerMetrics`.
        incoming: how many requests are on their way in (received, still being tokenised). While
            some are and the next batch is not full, the worker waits for them, up to
            ``max_wait`` seconds, so a burst of simultaneous requests is not split into a batch of
            one followed by the rest. With nothing on its way the worker never waits.
        max_wait: the longest such wait, in seconds.
        packed: ``forward`` runs packed passes (no padding): the budget counts real tokens and
            inputs are taken oldest first, whatever their lengths.
        start: start the worker thread now; with ``False`` the caller runs the loop itself with
            :meth:`run` (the engine process runs it on its main thread: torch's OpenMP passes
            measured ~30% faster there than on a secondary thread).
        linger: under load — when requests arrived while the previous pass ran — a batch that is
            not full waits up to this many seconds for more inputs before it runs. Fewer, fuller
            passes leave more of a small machine to the HTTP front; a lone client never waits.
    """

    def __init__(
        self,
        forward: ForwardFn,
        dim: int,
        *,
        max_batch_tokens: int = 16384,
        max_batch_size: int = 256,
        max_queued_requests: int = 512,
        metrics: object | None = None,
        incoming: Callable[[], int] | None = None,
        max_wait: float = 0.02,
        name: str = "qembed-model-worker",
        packed: bool = False,
        linger: float = 0.0,
        start: bool = True,
    ) -> None:
        if max_batch_tokens < 1 or max_batch_size < 1 or max_queued_requests < 1:
            raise ValueError("max_batch_tokens, max_batch_size and max_queued_requests must be positive")
        self._forward = forward
        self.dim = int(dim)
        self.max_batch_tokens = int(max_batch_tokens)
        self.max_batch_size = int(max_batch_size)
        self.max_queued_requests = int(max_queued_requests)
        self._metrics = metrics
        self._incoming = incoming
        self.max_wait = float(max_wait)
        self.packed = bool(packed)
        self.linger = float(linger)
        self._arrivals = 0  # requests submitted so far
        self._busy = False  # requests arrived while the last pass ran
        self._trimmer = MemoryTrimmer()
        self.window_factor = 1 if self.packed else 4
        self._queued_inputs = 0
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._paused = 0
        self.batches_run = 0
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        if start:
            self._thread = threading.Thread(target=self.run, name=name, daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ producer side
    @property
    def queue_depth(self) -> int:
        """Requests waiting for (some of) their inputs to reach the model."""
        return len(self._queue)

    def submit(self, ids: Sequence[Sequence[int]], adapter: str | None = None) -> Future:
        """Queue one request's token-id lists; the future gives its ``(n, dim)`` vectors in order.
        ``adapter``: the LoRA adapter they run through (requests for different ones share passes).

        Raises :class:`QueueFullError` at once when the queue is full, and
        :class:`ServerClosingError` after :meth:`close`.
        """
        ids = [list(x) for x in ids]
        future: Future = Future()
        if not ids:
            future.set_result(np.empty((0, self.dim), dtype=np.float32))
            return future
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        job = _Job(ids=ids, future=future, order=order,
                   out=np.empty((len(ids), self.dim), dtype=np.float32), remaining=len(ids), left=len(ids),
                   adapter=adapter)
        with self._cond:
            if self._closing:
                raise ServerClosingError("the server is shutting down", code="shutting_down")
            if len(self._queue) >= self.max_queued_requests:
                if self._metrics is not None:
                    self._metrics.rejected.inc()
                raise QueueFullError(
                    f"the server is busy: {len(self._queue)} requests are already queued "
                    f"(max_queued_requests={self.max_queued_requests}); retry shortly",
                    code="queue_full",
                )
            self._queue.append(job)
            self._arrivals += 1
            self._queued_inputs += len(ids)
            self._set_depth()
            self._cond.notify()
        return future

    def embed(self, ids: Sequence[Sequence[int]], timeout: float | None = None) -> np.ndarray:
        """Blocking :meth:`submit`: wait for and return the vectors."""
        return self.submit(ids).result(timeout)

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        """Stop forming batches while inside (requests still queue, up to the bound)."""
        with self._cond:
            self._paused += 1
        try:
            yield
        finally:
            with self._cond:
                self._paused -= 1
                self._cond.notify_all()

    def stop(self) -> None:
        """Refuse new requests; the worker finishes the queued ones, then :meth:`run` returns."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def close(self, timeout: float | None = 60.0) -> None:
        """Refuse new requests, finish the queued ones, stop the worker."""
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self._stopped.wait(timeout)
        with self._cond:
            for job in self._queue:  # only left when the worker did not finish in time
                _fail(job.future, ServerClosingError("the server shut down before this request ran"))
            self._queue.clear()

    # ------------------------------------------------------------------ worker side
    def _set_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.set(len(self._queue))

    def _drop(self, job: _Job) -> None:
        self._queued_inputs -= job.left
        job.left = 0

    def wake(self) -> None:
        """Tell a waiting worker that the number of incoming requests changed."""
        with self._cond:
            self._cond.notify_all()

    def _take_batch(self) -> list[tuple[_Job, int]] | None:
        """Inputs for the next pass, from the queue head; None when closing and drained."""
        with self._cond:
            while True:
                while self._queue and (self._queue[0].failed or self._queue[0].future.cancelled()):
                    self._drop(self._queue.popleft())
                if self._queue and not self._paused:
                    break
                if self._closing and not self._queue:
                    return None
                self._cond.wait()
            if self.linger > 0 and self._busy:
                deadline = time.perf_counter() + self.linger
                while self._queued_inputs < self.max_batch_size and not self._closing:
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            if self._incoming is not None and self.max_wait > 0:
                deadline = time.perf_counter() + self.max_wait
                while (self._queued_inputs < self.max_batch_size and self._incoming() > 0
                       and not self._closing):
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            batch = self._pick()
            for job, i in batch:
                job.taken.add(i)
                job.left -= 1
                while job.next < len(job.order) and job.order[job.next] in job.taken:
                    job.next += 1
            self._queued_inputs -= len(batch)
            if any(job.left == 0 for job in self._queue):
                self._queue = deque(job for job in self._queue if job.left > 0)
            self._set_depth()
            return batch

    def _pick(self) -> list[tuple[_Job, int]]:
        """Choose the next batch: the oldest waiting input plus inputs of similar length.

        Packed passes cost their real tokens whatever the lengths, so they simply take the
        oldest waiting inputs (up to ``max_batch_size`` and ``max_batch_tokens``).

        The first ``window_factor x max_batch_size`` waiting inputs (oldest requests first) are
        sorted by length and cut into groups under the budgets by
        :func:`~qembed.models.encoder.plan_batches` (least padding plus passes); the group
        holding the oldest input runs.
        Padding stays low when requests of mixed lengths wait together, and the oldest input is
        in every pass, so nothing starves.
        """
        limit = self.max_batch_size * self.window_factor
        window: list[tuple[_Job, int]] = []
        for job in self._queue:
            if job.failed or job.future.cancelled():
                continue
            for k in range(job.next, len(job.order)):
                i = job.order[k]
                if i not in job.taken:
                    window.append((job, i))
                    if len(window) >= limit:
                        break
            if len(window) >= limit:
                break
        if not window:
            return []
        if self.packed:  # cost = real tokens: oldest first until the budget is spent
            taken: list[tuple[_Job, int]] = []
            total = 0
            for item in window:
                n = len(item[0].ids[item[1]])
                if taken and total + n > self.max_batch_tokens:
                    break
                taken.append(item)
                total += n
            return taken
        groups = plan_batches([len(job.ids[i]) for job, i in window], self.max_batch_tokens,
                              self.max_batch_size)
        return [window[k] for k in next(g for g in groups if 0 in g)]

    def run(self) -> None:
        """The worker loop: form batches and run them until :meth:`close` and the queue is empty."""
        try:
            self._loop()
        finally:
            self._stopped.set()

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if not batch:  # everything waiting was cancelled meanwhile
                continue
            seqs = [job.ids[i] for job, i in batch]
            arrivals = self._arrivals
            started = time.perf_counter()
            try:
                names = [job.adapter for job, _ in batch]
                vectors = self._forward(seqs, names) if any(names) else self._forward(seqs)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
                logger.exception("forward pass over %d inputs failed", len(seqs))
                with self._cond:
                    for job, _ in batch:
                        job.failed = True
                        _fail(job.future, exc)
                continue
            self.batches_run += 1
            self._busy = self._arrivals > arrivals
            if self._metrics is not None:
                self._metrics.observe_batch(len(seqs), sum(len(s) for s in seqs),
                                            time.perf_counter() - started)
            for row, (job, i) in enumerate(batch):
                if job.failed:
                    continue
                job.out[i] = vectors[row]
                job.remaining -= 1
                if job.remaining == 0:
                    try:
                        job.future.set_result(job.out)
                    except InvalidStateError:  # cancelled by its caller meanwhile
                        pass
            self._trimmer.maybe_trim()  # hand freed memory back, at most once a second (server/memory.py)


def _fail(future: Future, exc: BaseException) -> None:
    try:
        future.set_exception(exc)
    except InvalidStateError:
        pass
