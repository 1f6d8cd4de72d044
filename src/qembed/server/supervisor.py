"""One supervisor per served model: start it, watch its engine, restart it, report it.

:class:`ModelSupervisor` does the same for every model, embedding model or reranker:

- **start**: an engine process of its own (:class:`~qembed.server.engine.ProcessEngine`, the
  default), a connection to the engine a ``--api-workers`` supervisor runs
  (:class:`~qembed.server.fronts.AttachedEngine`), or the model loaded in this process on a
  :class:`~qembed.server.engine.ThreadEngine` (``engine=thread``, tests), or an upstream endpoint
  called per request (an ``http(s)://`` path). Then it builds the model's *front* — the
  tokenizer thread and admission the routes call (:class:`~qembed.server.encoder.BatchedEncoder`
  or :class:`~qembed.server.routes.rerank.RerankerFront`) — once; a restart only swaps the engine.
- **health**: the engine reports its own death (``on_exit``); meanwhile the model answers 503
  ``engine_unavailable`` and ``/health`` says ``restarting``.
- **restart**: up to ``engine_restart_limit`` tries in a row, each counted in
  ``qembed_engine_restarts_total{model=…}``; after that the model is ``failed`` and ``on_fatal``
  is called (``qembed serve`` then exits with code 1).

:func:`start_models` starts every model of a registry, loading them side by side (every engine
process is launched before the first is waited for). :func:`engine_threads` sizes the engines'
thread pools when several share the machine.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import time
from typing import Any, Callable

from qembed.errors import QembedError
from qembed.models.spec import ModelSpec, load_model
from qembed.server.registry import ServedModel

logger = logging.getLogger(__name__)


def cpu_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def engine_threads(specs: list[ModelSpec], engine: str = "process") -> list[ModelSpec]:
    """The specs with the engines' thread pools sized for one machine.

    One local model in an engine process: as given (None: torch's default, one thread per core).
    Several: each engine whose ``threads`` is unset keeps one thread per core — so a model under
    load while the others idle runs as fast as alone — and its OpenMP threads sleep when a pass
    ends (``OMP_WAIT_POLICY=PASSIVE``, unless set) instead of spinning on cores another engine
    needs. Set ``threads`` per model (``--config``) to split the cores instead when every model is
    busy at once.
    """
    local = [s for s in specs if not s.remote]
    if engine != "process" or len(local) < 2:
        return specs
    return [s if s.remote or s.omp_wait_policy else s.replace(omp_wait_policy="PASSIVE") for s in specs]


class ModelSupervisor:
    """Start, watch, restart and report one :class:`~qembed.server.registry.ServedModel`.

    Args:
        served: the model (its spec, and the state this supervisor keeps up to date).
        settings: the server's :class:`~qembed.config.Settings` (engine kind, timeouts, restart
            limit, batching linger, log level).
        metrics: the server's :class:`~qembed.server.metrics.ServerMetrics` (or None).
        admission: the server's one admission limit, shared by every model's front.
        attach: ``(socket, key)`` of an engine another process runs (``--api-workers``).
        listen: ``(socket, key)``: the engine also takes front processes there.
        loaded: a model already loaded in this process (served on a thread engine).
        build_front: False in the ``--api-workers`` supervisor, which only keeps engines.
        count_restarts: False in a front attached to a supervisor's engine (it counts them).
        on_fatal: called with the reason when the model cannot be brought back.
        on_restart: called on each restart attempt.
    """

    def __init__(self, served: ServedModel, settings: Any, *, metrics: Any = None, admission: Any = None,
                 attach: tuple[str, bytes] | None = None, listen: tuple[str, bytes] | None = None,
                 loaded: Any = None, build_front: bool = True, count_restarts: bool = True,
                 on_fatal: Callable[[str], None] | None = None,
                 on_restart: Callable[[ServedModel], None] | None = None) -> None:
        self.served = served
        self.settings = settings
        self.metrics = metrics
        self.admission = admission
        self.attach = attach
        self.listen = listen
        self.loaded = loaded
        self.build_front = build_front
        self.count_restarts = count_restarts
        self.on_fatal = on_fatal
        self.on_restart = on_restart
        self.closing = False
        self._launched: Any = None
        served.supervisor = self

    @property
    def in_process(self) -> bool:
        """Whether the model runs in this process (a thread engine or a proxy)."""
        spec = self.served.spec
        return self.loaded is not None or spec.remote or (self.settings.engine != "process" and not self.attach)

    # ------------------------------------------------------------------ starting
    def _new_engine(self) -> Any:
        s, spec, name = self.settings, self.served.spec, self.served.name
        model_metrics = self.metrics.model(name) if self.metrics is not None else None
        if self.attach:
            from qembed.server.fronts import AttachedEngine

            return AttachedEngine(*self.attach, metrics=model_metrics, on_exit=self._exited)
        from qembed.server.engine import ProcessEngine

        if self.listen:  # a socket left by an engine that died
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.listen[0])
        return ProcessEngine(spec, max_batch_tokens=spec.max_batch_tokens, max_batch_size=spec.max_batch_size,
                             metrics=model_metrics if self.build_front else None, on_exit=self._exited,
                             log_level=s.log_level, linger=s.batch_linger_ms / 1000, listen=self.listen)

    def launch(self) -> None:
        """Start the engine process without waiting (it loads while the others start too)."""
        if not self.in_process and self._launched is None:
            self._launched = self._new_engine()
            self._launched.launch()

    def start(self) -> None:
        """Start the model and build its front (blocking until it is loaded).

        Raises :class:`~qembed.errors.QembedError` (or the loader's error) when it cannot be
        loaded; the model is then ``failed``.
        """
        try:
            self._start_once()
        except BaseException as exc:
            self.served.set_failed(exc)
            raise

    def _start_once(self) -> None:
        served = self.served
        if self.in_process:
            self._start_in_process()
        else:
            engine, self._launched = self._launched or self._new_engine(), None
            info = engine.start(timeout=self.settings.engine_start_timeout)
            if self.closing:
                engine.close()
                return
            served.engine = engine
            served.info = info
            if served.front is not None:  # a restart: the front keeps its tokenizer thread and admission
                served.front.engine = engine
                logger.info("the engine of %s is back (pid %s)", served.name, engine.pid)
            elif self.build_front:
                served.front = self._front(engine, info)
        served.status = "ready"
        served.error = None
        served.ready_event.set()

    def _front(self, engine: Any, info: dict[str, Any]) -> Any:
        """The routes' side of a model in an engine process: tokenizer thread and admission."""
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(info["path"])
        if self.served.kind == "reranker":
            from qembed.rerank.inputs import RerankInputs
            from qembed.server.routes.rerank import RerankerFront

            return RerankerFront(self.served.name, engine=engine, inputs=RerankInputs.from_spec(tokenizer, info["inputs"]),
                                 admission=self.admission, metrics=self.metrics)
        from qembed.models.inputs import InputPreparer
        from qembed.server.encoder import BatchedEncoder

        return BatchedEncoder(engine, InputPreparer.from_spec(tokenizer, info["inputs"]), info,
                              max_queued_requests=self.settings.max_queued_requests, metrics=self.metrics,
                              admission=self.admission)

    def _start_in_process(self) -> None:
        from qembed.server.engine import ThreadEngine

        served, spec = self.served, self.served.spec
        model = self.loaded if self.loaded is not None else load_model(spec)
        model_metrics = self.metrics.model(served.name) if self.metrics is not None else None
        if served.kind == "reranker":
            from qembed.server.routes.rerank import RerankerFront

            if spec.remote:
                served.info = {"name": model.name, "remote": True}
                served.front = RerankerFront(served.name, inner=model, admission=self.admission, metrics=self.metrics)
                return
            from qembed.rerank.inputs import RerankInputs

            engine = ThreadEngine(model, max_batch_tokens=model.max_batch_tokens, max_batch_size=model.max_batch_size,
                                  metrics=model_metrics)
            served.engine, served.info = engine, engine.info
            inputs = RerankInputs.from_spec(copy.deepcopy(model.tokenizer), model.inputs.spec())
            served.front = RerankerFront(served.name, engine=engine, inputs=inputs, admission=self.admission,
                                         metrics=self.metrics)
            return
        from qembed.models.inputs import InputPreparer
        from qembed.server.encoder import BatchedEncoder

        common = dict(max_queued_requests=self.settings.max_queued_requests, metrics=self.metrics,
                      admission=self.admission)
        if isinstance(model, BatchedEncoder):
            front = model
        elif all(hasattr(model, a) for a in ("inputs", "forward_batch")):
            engine = ThreadEngine(
                model, metrics=model_metrics,
                # unset limits follow the encoder's device defaults (LocalEncoder.BATCH_LIMITS)
                max_batch_tokens=spec.max_batch_tokens or getattr(model, "max_batch_tokens", 16384),
                max_batch_size=spec.max_batch_size or getattr(model, "max_batch_size", 256))
            served.engine = engine
            # The front gets its own tokenizer: the encoder's stays free for its other users.
            inputs = InputPreparer.from_spec(copy.deepcopy(model.inputs.tokenizer), model.inputs.spec())
            front = BatchedEncoder(engine, inputs, engine.info, **common)
        else:
            front = BatchedEncoder(inner=model, **common)
        served.info = dict(front.info_data) if front.batched else {"name": model.name}
        served.front = front

    # ------------------------------------------------------------------ restarts
    def _exited(self, code: int | None) -> None:
        """The engine died: answer 503 meanwhile, start it again, give up after the limit."""
        served = self.served
        if self.closing:
            return
        served.status = "restarting"
        served.error = f"the model engine exited (exit code {code}); restarting it"
        limit = self.settings.engine_restart_limit
        for attempt in range(1, limit + 1):
            served.restarts += 1
            if self.count_restarts and self.metrics is not None:
                self.metrics.engine_restarts.labels(model=served.name).inc()
            if self.on_restart is not None:
                self.on_restart(served)
            logger.warning("%s the engine of %s (attempt %d of %d)",
                           "reconnecting to" if self.attach else "restarting", served.name, attempt, limit)
            try:
                self._start_once()
                return
            except Exception as exc:  # noqa: BLE001 - retried, then fatal
                served.error = exc.message if isinstance(exc, QembedError) else f"{type(exc).__name__}: {exc}"
                logger.error("the engine of %s did not restart: %s", served.name, served.error)
                if self.closing:
                    return
                time.sleep(min(2.0 ** attempt, 30.0))
        reason = served.set_failed(f"the model engine exited and could not be restarted: {served.error}")
        logger.critical("%s: %s", served.name, reason)
        if self.on_fatal is not None:
            self.on_fatal(f"{served.name}: {reason}")

    # ------------------------------------------------------------------ stopping
    def close(self) -> None:
        """Finish the model's queued work and stop its engine (and its front's threads)."""
        self.closing = True
        served = self.served
        if self._launched is not None:
            self._launched.close()
            self._launched = None
        if served.front is not None and self.build_front:
            served.front.close()
        elif served.engine is not None:
            served.engine.close()


def start_models(supervisors: list[ModelSupervisor]) -> None:
    """Start every model: launch every engine process, then wait for each (they load side by side).

    Raises the first model's error that could not be loaded (after stopping the others).
    """
    for sup in supervisors:
        sup.launch()
    try:
        for sup in supervisors:
            sup.start()
    except BaseException:
        for sup in supervisors:
            sup.close()
        raise
