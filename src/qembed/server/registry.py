"""The served models of one server, and how a request's ``model`` finds one.

:class:`ModelRegistry` holds one :class:`ServedModel` per :class:`~qembed.models.spec.ModelSpec`,
in the order they were given (the first embedding model is the default of every embedding route,
the first reranker that of ``/v1/rerank``). Every route reads the registry — ``/v1/embeddings``,
``/v1/models``, ``/tokenize``, ``/health``, ``/metrics``, the task routes — and the
:class:`~qembed.server.supervisor.ModelSupervisor` of each model writes its state (status, engine,
front, restarts). :meth:`ModelRegistry.resolve` turns a request's ``model`` into the served model
(and, for a LoRA adapter's name, the adapter), or OpenAI's 404 ``model_not_found``.

:class:`Admission` is the server's one admission limit: every model's requests count against
``max_queued_requests`` together (:class:`~qembed.server.fronts.SharedAdmission` is the same
across front processes).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from qembed.errors import EngineUnavailableError, QembedError
from qembed.models.spec import ModelSpec
from qembed.server.errors import ModelNotServedError, NotReadyError, QueueFullError


class Admission:
    """At most ``limit`` requests in the server at once (every model together); one more is 429."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self._count = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if self._count >= self.limit:
                raise QueueFullError(
                    f"the server is busy: {self._count} requests are already queued "
                    f"(max_queued_requests={self.limit}); retry shortly", code="queue_full")
            self._count += 1

    def leave(self) -> None:
        with self._lock:
            self._count -= 1

    def total(self) -> int:
        return self._count

    def mine(self) -> int:
        """Requests admitted by this process (the queue-depth gauge)."""
        return self._count


@dataclass(eq=False)
class ServedModel:
    """One served model: its spec and how it stands now.

    ``status``: ``loading`` → ``ready``; ``restarting`` while its engine is started again;
    ``failed`` when it could not be loaded or brought back (``error`` says why). ``front`` is what
    the routes call: a :class:`~qembed.server.encoder.BatchedEncoder` (embedding) or a
    :class:`~qembed.server.routes.rerank.RerankerFront` (reranker).
    """

    spec: ModelSpec
    name: str
    status: str = "loading"
    error: str | None = None
    engine: Any = None
    front: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0
    created: int = field(default_factory=lambda: int(time.time()))
    ready_event: threading.Event = field(default_factory=threading.Event)
    supervisor: Any = None

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def names(self) -> set[str]:
        """Every name a request may use for this model: the served name, the model's own name, the
        path as given, and the last part of each."""
        names = {self.name, str(self.info.get("name") or self.name), self.spec.path.rstrip("/")}
        return names | {n.rsplit("/", 1)[-1] for n in names}

    @property
    def adapter_names(self) -> list[str]:
        """The LoRA adapters served over this model now (the engine's, else the spec's)."""
        names = getattr(self.engine, "adapter_names", None)
        return list(names) if names is not None else list(self.spec.adapters)

    @property
    def dim(self) -> int | None:
        if self.kind != "embedding":
            return None
        if self.info.get("dim"):
            return int(self.info["dim"])
        return int(self.front.dim) if self.front is not None else None

    def require(self) -> Any:
        """The model's front, or 503 while it loads or restarts, or after it failed."""
        if self.status == "restarting":
            raise EngineUnavailableError(f"{self.error}; retry shortly", code="engine_unavailable")
        if self.front is None or self.status == "failed":
            if self.status == "failed":
                raise NotReadyError(f"the model {self.name!r} failed to load: {self.error}",
                                    code="model_load_failed")
            raise NotReadyError(f"the model {self.name!r} is still loading; retry when GET /health answers 200",
                                code="model_loading")
        return self.front

    def set_failed(self, exc: BaseException | str) -> str:
        self.status = "failed"
        self.error = exc if isinstance(exc, str) else (
            exc.message if isinstance(exc, QembedError) else f"{type(exc).__name__}: {exc}")
        self.ready_event.set()
        return self.error

    def card(self) -> dict[str, Any]:
        """The model's ``/v1/models`` entry."""
        front = self.front
        facts: dict[str, Any] = {}
        try:
            facts = front.info() if front is not None and callable(getattr(front, "info", None)) else {}
        except Exception:  # noqa: BLE001 - a proxy's upstream may not say; the card leaves them out
            facts = {}
        if not facts:
            facts = dict(self.info.get("info") or {})
        max_len = self.info.get("max_input_tokens")
        if max_len is None and front is not None:
            max_len = getattr(front, "max_input_tokens", None)
        return {"id": self.name, "created": self.created, "kind": self.kind,
                "root": str(self.info.get("path") or getattr(front, "path", None) or self.spec.path),
                "max_model_len": max_len, "dim": self.dim,
                **{k: str(facts[k]) for k in ("device", "dtype") if facts.get(k)}}

    def health(self) -> dict[str, Any]:
        """The model's entry in ``/health``."""
        body: dict[str, Any] = {"model": self.name, "kind": self.kind, "status": self.status}
        if self.error and self.status != "ready":
            body["error"] = self.error
        body["engine"] = engine_health(self)
        return body


def engine_health(served: ServedModel) -> dict[str, Any]:
    """How a model's engine runs: ``{"kind": "process", "pid", "alive", "restarts"}``, ``thread``
    or ``proxy``."""
    engine = served.engine
    if engine is not None and engine.pid != _own_pid():
        return {"kind": "process", "pid": engine.pid, "alive": engine.alive, "restarts": served.restarts}
    if engine is not None:
        return {"kind": "thread"}
    return {"kind": "proxy"} if served.front is not None else {"kind": "none"}


def _own_pid() -> int:
    import os

    return os.getpid()


class ModelRegistry:
    """The served models, in order; see the module docstring."""

    def __init__(self, specs: list[ModelSpec]) -> None:
        self.models = [ServedModel(spec=s, name=s.served_name) for s in specs]

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def of_kind(self, kind: str) -> list[ServedModel]:
        return [m for m in self.models if m.kind == kind]

    def default(self, kind: str = "embedding") -> ServedModel | None:
        """The first model of ``kind`` (what a request without ``model`` gets)."""
        found = self.of_kind(kind)
        return found[0] if found else None

    def find(self, name: str) -> tuple[ServedModel, str | None] | None:
        """The model (and adapter) answering to ``name``, else ``None``."""
        for served in self.models:
            if name in served.names:
                return served, None
        for served in self.models:
            if name in served.adapter_names:
                return served, name
        base, _, adapter = name.rpartition(":")  # BASE:ADAPTER
        for served in self.models:
            if base and base in served.names and adapter in served.adapter_names:
                return served, adapter
        return None

    def resolve(self, name: str | None, kind: str = "embedding") -> tuple[ServedModel, str | None]:
        """The served model of ``kind`` a request's ``model`` picks (``None``: the default) and
        the adapter it names; 404 ``model_not_found`` for a name nothing answers to."""
        if name is None:
            served = self.default(kind)
            if served is None:
                raise ModelNotServedError(f"this server serves no {kind} model (GET /v1/models)",
                                          param="model", code="model_not_found")
            return served, None
        found = self.find(name)
        if found is None or found[0].kind != kind:
            listed = ", ".join(repr(m.name) for m in self.of_kind(kind)) or "none"
            what = f"; it is a {found[0].kind}" if found is not None else ""
            article = "an" if kind[:1] in ("a", "e", "i", "o", "u") else "a"
            raise ModelNotServedError(f"model {name!r} is not served here as {article} {kind} model{what}; this "
                                      f"server's {kind} models: {listed} (GET /v1/models)",
                                      param="model", code="model_not_found")
        return found

    @property
    def status(self) -> str:
        """``ready`` when every model is; else ``failed``, ``restarting`` or ``loading``, the first
        that any model is, in that order."""
        statuses = {m.status for m in self.models}
        for status in ("failed", "restarting", "loading"):
            if status in statuses:
                return status
        return "ready"

    @property
    def error(self) -> str | None:
        for served in self.models:
            if served.status != "ready" and served.error:
                return served.error if len(self.models) == 1 else f"{served.name}: {served.error}"
        return None

    def loaded(self) -> bool:
        """Whether every model has finished loading (ready or failed)."""
        return all(m.ready_event.is_set() for m in self.models)
