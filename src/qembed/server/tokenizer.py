"""Batched tokenisation in the front process: one thread, one tokenizer call for many requests.

Requests hand their texts to :class:`TokenizerWorker` and get a future. The worker thread takes
every request waiting at that moment and tokenises all their texts in one call of the fast
(Rust) tokenizer — its batch encoding runs without the interpreter lock — so a burst of 64
one-sentence requests costs one tokenizer call, not 64, and the event loop never tokenises. While
the engine runs pass *n*, the worker prepares the ids of pass *n + 1*.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future, InvalidStateError
from typing import Any, Callable, Sequence

from qembed.models.inputs import InputPreparer

logger = logging.getLogger(__name__)

#: Most texts tokenised in one call (bounds the latency a huge request adds to small ones).
MAX_TEXTS_PER_CALL = 4096


class TokenizerWorker:
    """A thread that owns an :class:`~qembed.models.inputs.InputPreparer`.

    Every use of the preparer (and its tokenizer) goes through this thread, so the tokenizer is
    never used by two threads at once.
    """

    def __init__(self, inputs: InputPreparer, *, name: str = "qembed-tokenizer") -> None:
        self.inputs = inputs
        self._jobs: deque[tuple[str, Any, Future]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Requests waiting to be tokenised."""
        return len(self._jobs)

    def _put(self, kind: str, payload: Any) -> Future:
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the tokenizer worker is closed")
            self._jobs.append((kind, payload, future))
            self._cond.notify()
        return future

    def tokenize(self, texts: Sequence[str], instruction: str | None = None) -> Future:
        """Future of the texts' token ids (formatted, truncated or refused per the preparer)."""
        return self._put("text", (texts, instruction))

    def prepare_token_ids(self, ids: Sequence[Sequence[int]]) -> Future:
        """Future of checked pre-tokenised inputs (see :meth:`InputPreparer.prepare_token_ids`)."""
        return self._put("call", lambda: self.inputs.prepare_token_ids(ids))

    def call(self, fn: Callable[[InputPreparer], Any]) -> Future:
        """Run ``fn(inputs)`` on the worker thread (e.g. counting tokens)."""
        return self._put("call", lambda: fn(self.inputs))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(10)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs and self._closed:
                    return
                texts: list[tuple[Any, Future]] = []
                calls: list[tuple[Any, Future]] = []
                count = 0
                while self._jobs and count < MAX_TEXTS_PER_CALL:
                    kind, payload, future = self._jobs.popleft()
                    if kind == "text":
                        texts.append((payload, future))
                        count += len(payload[0]) if not isinstance(payload[0], str) else 1
                    else:
                        calls.append((payload, future))
            for fn, future in calls:
                _settle(future, fn)
            if texts:
                try:
                    results = self.inputs.tokenize_many([payload for payload, _ in texts])
                except Exception as exc:  # noqa: BLE001 - every waiting request gets it
                    results = [exc] * len(texts)
                for (_, future), result in zip(texts, results):
                    try:
                        if isinstance(result, Exception):
                            future.set_exception(result)
                        else:
                            future.set_result(result)
                    except InvalidStateError:
                        pass


def _settle(future: Future, fn: Callable[[], Any]) -> None:
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - handed to the caller
        try:
            future.set_exception(exc)
        except InvalidStateError:
            pass
        return
    try:
        future.set_result(result)
    except InvalidStateError:
        pass
