"""One served model, spelled once: :class:`ModelSpec`, and :func:`load_model`, which loads it.

A spec is built once — from the settings and the command line (:func:`specs_from_settings`), or
from a ``--config`` file (:func:`specs_from_config`) — and travels unchanged to where the model is
loaded: the engine process (:func:`qembed.server.engine.engine_main`) and the in-process loaders
(``engine=thread``, tests) both call :func:`load_model` with it. Nothing else reads the model
options, so a new option is one field here and one line in :func:`load_model`.

    spec = ModelSpec(path="./Qwen3-Embedding-0.6B", dtype="bfloat16")
    encoder = load_model(spec)           # a LocalEncoder (a Reranker for kind="reranker")
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

from qembed.errors import InputError
from qembed.io import is_http_url

#: What a served model does: embed texts, or score (query, document) pairs.
Kind = Literal["embedding", "reranker"]
KINDS = ("embedding", "reranker")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to load and serve one model (frozen: built once, passed as is).

    Args:
        path: model folder, Hub id, or ``http(s)://`` URL of an endpoint (proxied).
        kind: ``"embedding"`` or ``"reranker"``.
        name: the name clients pass as ``model`` (None: the folder's name or the Hub id).
        backend, dtype, device: the runtime (see :func:`qembed.models.load_encoder`).
        max_input_tokens, truncate: the longest input and what happens to longer ones.
        max_batch_tokens, max_batch_size: limits of one forward pass (None: the device defaults).
        threads: torch threads of the model's engine process (None: see
            :func:`qembed.server.supervisor.engine_threads`).
        compile: torch.compile the packed passes (``qembed.models.compile``), resolved already.
        omp_wait_policy: OpenMP's wait policy in the engine process (``OMP_WAIT_POLICY``).
        adapters: LoRA adapters over this model, ``name -> folder`` (served under their names).
        upstream_model, upstream_api_key: the model name and key at a proxied endpoint.
    """

    path: str
    kind: Kind = "embedding"
    name: str | None = None
    backend: str | None = None
    dtype: str | None = None
    device: str | None = None
    max_input_tokens: int | None = None
    truncate: bool = True
    max_batch_tokens: int | None = None
    max_batch_size: int | None = None
    threads: int | None = None
    compile: bool | None = None
    omp_wait_policy: str | None = None
    adapters: Mapping[str, str] = field(default_factory=dict)
    upstream_model: str | None = None
    upstream_api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"model kind {self.kind!r}: expected one of {', '.join(KINDS)}", param="kind")
        if not str(self.path).strip():
            raise InputError("a model needs a path (folder, Hub id or URL)", param="path")
        object.__setattr__(self, "adapters", dict(self.adapters or {}))

    @property
    def remote(self) -> bool:
        """Whether the model is another server's endpoint (proxied, no engine here)."""
        return is_http_url(self.path)

    @property
    def served_name(self) -> str:
        """``name``, else the folder's name (when the folder exists), else the path or Hub id."""
        if self.name:
            return self.name
        path = self.path.rstrip("/")
        if is_http_url(path):
            return path
        local = Path(path).expanduser()
        return local.name if local.exists() else path

    def replace(self, **changes: Any) -> "ModelSpec":
        """A copy with ``changes`` (the spec itself never changes)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["adapters"] = dict(self.adapters)
        return data


def specs_from_settings(settings: Any, models: Iterable[str] = (), rerankers: Iterable[str] = ()) -> list[ModelSpec]:
    """The served models of ``settings``: ``models`` (default: ``settings.model``) as embedding
    models, then ``rerankers`` (default: ``settings.reranker`` when set), every one with the
    settings' options. ``settings.served_model_name`` names the first embedding model."""
    from qembed.models.compile import server_compile

    models = list(models) or [settings.model]
    rerankers = list(rerankers) or ([settings.reranker] if getattr(settings, "reranker", None) else [])
    common = dict(backend=settings.backend, dtype=settings.dtype, device=settings.device,
                  max_batch_tokens=settings.max_batch_tokens, max_batch_size=settings.max_batch_size,
                  threads=settings.engine_threads, compile=server_compile(settings.compile),
                  omp_wait_policy=settings.omp_wait_policy, upstream_api_key=settings.upstream_api_key)
    specs = [ModelSpec(path=m, kind="embedding", name=settings.served_model_name if i == 0 else None,
                       max_input_tokens=settings.max_input_tokens, truncate=settings.truncate,
                       upstream_model=settings.upstream_model, **common)
             for i, m in enumerate(models)]
    # a reranker takes the device, dtype and limits; the backend (int8 export) is the embedding model's
    specs += [ModelSpec(path=r, kind="reranker", **{**common, "backend": None}) for r in rerankers]
    check_names(specs)
    return specs


#: The options a model may set in a ``--config`` file (the fields of :class:`ModelSpec`).
CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(ModelSpec) if f.name != "upstream_api_key")


def specs_from_config(data: Mapping[str, Any], defaults: ModelSpec | None = None) -> list[ModelSpec]:
    """Specs from a parsed ``--config`` file: ``{"models": [{"path": ..., "kind": ..., ...}, ...]}``.

    Each entry takes :data:`CONFIG_FIELDS` (``model`` is accepted for ``path``, ``engine_threads``
    for ``threads``); what it leaves out comes from ``defaults`` (the command line's options).
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("models"), list) or not data["models"]:
        raise InputError("the config file needs a non-empty list 'models' (one table per model: "
                         "path, and optionally kind, name, dtype, …)", param="config")
    unknown_top = set(data) - {"models"}
    if unknown_top:
        raise InputError(f"unknown key(s) in the config file: {', '.join(sorted(unknown_top))} "
                         "(only 'models')", param="config")
    base = (defaults or ModelSpec(path="-")).as_dict()
    specs = []
    for i, entry in enumerate(data["models"]):
        if not isinstance(entry, Mapping):
            raise InputError(f"models[{i}] must be a table of options", param="config")
        entry = dict(entry)
        for old, new in (("model", "path"), ("engine_threads", "threads"), ("served_model_name", "name")):
            if old in entry:
                entry.setdefault(new, entry.pop(old))
        unknown = set(entry) - set(CONFIG_FIELDS)
        if unknown:
            raise InputError(f"models[{i}]: unknown option(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(CONFIG_FIELDS)}", param="config")
        if "path" not in entry:
            raise InputError(f"models[{i}] has no path", param="config")
        values = {**base, "name": None, "adapters": {}, **entry}
        if values.get("kind") == "reranker" and "backend" not in entry:
            values["backend"] = None
        try:
            specs.append(ModelSpec(**values))
        except TypeError as exc:
            raise InputError(f"models[{i}]: {exc}", param="config") from None
        except InputError as exc:
            raise InputError(f"models[{i}]: {exc.message}", param="config") from None
    check_names(specs)
    return specs


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A ``--config`` file (TOML) as data."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise InputError(f"config file {str(path)!r} not found", param="config")
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise InputError("--config files need Python 3.11 or later (tomllib)", param="config") from None
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"config file {file.name} is not valid TOML: {exc}", param="config") from None


def check_names(specs: list[ModelSpec]) -> None:
    """Two served models (or adapters) may not answer to the same name."""
    seen: dict[str, str] = {}
    for spec in specs:
        for name in (spec.served_name, *spec.adapters):
            if name in seen:
                raise InputError(f"two served models are named {name!r} ({seen[name]} and {spec.path}); "
                                 "give one another name (--served-model-name, or 'name' in --config)",
                                 param="model")
            seen[name] = spec.path


def load_model(spec: ModelSpec) -> Any:
    """Load the model ``spec`` describes in this process: an encoder (``kind="embedding"``: a
    :class:`~qembed.models.local.LocalEncoder`, a compiled-backend encoder, or a
    :class:`~qembed.models.remote.RemoteEncoder` for a URL) or a reranker
    (:class:`~qembed.rerank.local.Reranker`, or :class:`~qembed.rerank.remote.RemoteReranker`)."""
    if spec.adapters and (spec.kind != "embedding" or spec.remote):
        raise InputError(f"{spec.served_name}: LoRA adapters are served over local embedding models only",
                         param="adapters")
    if spec.kind == "reranker":
        if spec.remote:
            from qembed.rerank.remote import RemoteReranker

            return RemoteReranker(spec.path, api_key=spec.upstream_api_key)
        from qembed.rerank.local import Reranker

        return Reranker(spec.path, device=spec.device, dtype=spec.dtype, max_input_tokens=spec.max_input_tokens,
                        max_batch_tokens=spec.max_batch_tokens, max_batch_size=spec.max_batch_size,
                        name=spec.name, compile=spec.compile)
    from qembed.models import load_encoder

    if spec.remote:
        return load_encoder(spec.path, api_key=spec.upstream_api_key, model=spec.upstream_model)
    # the compiled backends size their own thread pools (torch's is set by the engine)
    extra = {"backend": spec.backend, "threads": spec.threads} if spec.backend else {}
    encoder = load_encoder(spec.path, device=spec.device, dtype=spec.dtype, max_input_tokens=spec.max_input_tokens,
                           truncate=spec.truncate, max_batch_tokens=spec.max_batch_tokens,
                           max_batch_size=spec.max_batch_size, name=spec.name, compile=spec.compile, **extra)
    for name, folder in spec.adapters.items():  # LoRA adapters over the base, loaded once
        if not callable(getattr(encoder, "load_adapter", None)):
            raise InputError(f"{spec.served_name}: LoRA adapters need the torch backend", param="adapters")
        encoder.load_adapter(name, folder)
    return encoder


__all__ = ["CONFIG_FIELDS", "KINDS", "ModelSpec", "check_names", "load_model", "read_config",
           "specs_from_config", "specs_from_settings"]
