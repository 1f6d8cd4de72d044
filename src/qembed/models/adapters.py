"""LoRA adapters over one loaded base model, applied per sequence inside packed passes.

``qembed finetune embedding`` without ``--merge`` writes a PEFT LoRA adapter (``adapter_config.json``
and ``adapter_model.safetensors``): for each adapted linear layer ``W`` two small matrices, ``A``
(``r x in``) and ``B`` (``out x r``), and a scale (``lora_alpha / r``, or ``lora_alpha / sqrt(r)``
with rsLoRA). The tuned model computes ``y = x W^T + scale * (x A^T) B^T``. Serving many adapters
over one base keeps the base weights once and adds each adapter's small products for the rows
that asked for it:

- :class:`AdapterSet` reads adapter folders (with ``safetensors``, no ``peft`` needed), checks them
  against the base (the recorded base model, every target module present and supported, every
  shape and rank) and keeps each adapter's matrices in the pass's dtype and device. Loading and
  unloading never touch the base weights.
- A :class:`LoraPass` is planned per forward pass from the adapter of each sequence. The packed
  runners (:class:`~qembed.models.packed.PackedQwen3`, :class:`~qembed.models.packed_encoder.PackedEncoder`)
  fuse q/k/v (and gate/up) into one matrix; the pass adds each adapter's delta to the slice of the
  fused output its module owns. Rows of one adapter are one contiguous run when the caller orders
  the sequences by adapter (:class:`AdaptersMixin` does), so each adapter costs two small matrix
  products per adapted matrix on a slice of the pass — the "segmented gather matrix product" of
  Punica and S-LoRA, with plain torch operations. Unordered rows are gathered per adapter
  (``index_select``/``index_add_``) instead.
- :class:`AdaptersMixin` gives an encoder ``load_adapter``, ``unload_adapter``, ``adapters`` and
  the per-text ``adapter`` argument of ``encode``/``embed_token_ids``, in two modes: ``mixed`` (one
  pass holds rows of several adapters) and ``grouped`` (one pass per adapter).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from qembed.errors import InputError, ModelNotServedError

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
#: What ``qembed finetune embedding`` records beside the adapter (its ``base_model``).
TUNE_MANIFEST = "qembed_embedding_tune.json"
#: The two ways of running passes that hold rows of several adapters.
ADAPTER_MODES = ("mixed", "grouped")
#: Adapter names: what ``model`` can carry in a request (no ``:`` or ``/``).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# Where each architecture's adapted modules land in the packed passes: the layers' prefix, and for
# each fused matrix ("slot") the modules concatenated into it, in order.
_QWEN3 = ("layers.{}.", {"qkv": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
                         "o": ("self_attn.o_proj",), "gate_up": ("mlp.gate_proj", "mlp.up_proj"),
                         "down": ("mlp.down_proj",)})
_BERT = ("encoder.layer.{}.", {"qkv": ("attention.self.query", "attention.self.key", "attention.self.value"),
                               "o": ("attention.output.dense",), "up": ("intermediate.dense",),
                               "down": ("output.dense",)})
_NOMIC = ("layers.{}.", {"qkv": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
                         "o": ("self_attn.o_proj",), "up": ("mlp.gate_proj", "mlp.up_proj"),
                         "down": ("mlp.down_proj",)})
LAYOUTS = {"qwen3": _QWEN3, "bert": _BERT, "roberta": _BERT, "xlm-roberta": _BERT, "camembert": _BERT,
           "nomic_bert": _NOMIC}
#: Modules whose output never reaches the embedding (BERT's pooler: sentence-transformers pools the
#: token states): a LoRA on them is skipped, as merging it would change nothing either.
UNUSED_PREFIXES = ("pooler.",)


class AdapterNotLoadedError(ModelNotServedError):
    """A request names an adapter that is not loaded (HTTP 404 ``model_not_found``, exit 2)."""

    def __init__(self, name: str, loaded: Sequence[str]) -> None:
        have = ", ".join(sorted(loaded)) or "none"
        super().__init__(f"adapter {name!r} is not loaded (loaded adapters: {have})", param="adapter",
                         code="model_not_found")
        self.name = name
        self.loaded = tuple(loaded)

    def __reduce__(self) -> tuple:
        return type(self), (self.name, self.loaded)


def _bad(path: Path | str, why: str) -> InputError:
    return InputError(f"adapter {path}: {why}", param="adapter", code="invalid_adapter")


@dataclass(frozen=True)
class _Site:
    """Where one base module's output lands: a layer, a fused matrix, a column range."""

    layer: int
    slot: str
    start: int
    size: int
    in_features: int


class AdapterLayout:
    """The modules of a base model whose LoRA the packed passes apply, by full module name.

    ``model``: the loaded ``transformers`` model the packed runner was built from (``Qwen3Model``,
    ``BertModel`` …); only its module names and weight shapes are read.
    """

    def __init__(self, model: Any) -> None:
        kind = str(getattr(getattr(model, "config", None), "model_type", ""))
        if kind not in LAYOUTS:
            raise InputError(f"LoRA adapters are served for {', '.join(sorted(LAYOUTS))} models, not {kind!r}",
                             param="adapter")
        prefix, slots = LAYOUTS[kind]
        self.model_type = kind
        self.sites: dict[str, _Site] = {}
        #: the output width of each fused matrix, by (layer, slot)
        self.widths: dict[tuple[int, str], int] = {}
        modules = dict(model.named_modules())
        self.module_names = frozenset(modules)
        layer = 0
        while prefix.format(layer).rstrip(".") in modules:
            for slot, parts in slots.items():
                start = 0
                for part in parts:
                    module = modules[prefix.format(layer) + part]
                    out, inp = (int(s) for s in module.weight.shape)
                    self.sites[prefix.format(layer) + part] = _Site(layer, slot, start, out, inp)
                    start += out
                self.widths[(layer, slot)] = start
            layer += 1
        self.layers = layer
        self.supported = tuple(sorted({p.rsplit(".", 1)[-1] for parts in slots.values() for p in parts}))


@dataclass
class _Delta:
    """One adapter's LoRA on one fused matrix: ``y += (x @ a) @ b``.

    ``a`` holds the A matrices of the fused modules side by side, ``b`` their scaled B matrices
    block-diagonally (q/k/v: each module's rank block feeds its own output columns; a module the
    adapter leaves alone has zero columns). Two products per adapter and matrix: at the few rows of
    one adapter in a pass, the number of calls costs more than the zeros of the blocks.
    """

    a: torch.Tensor  # (in, total rank)
    b: torch.Tensor  # (total rank, out)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        y.add_((x @ self.a) @ self.b)


@dataclass
class LoraAdapter:
    """A loaded adapter: its matrices by ``(layer, slot)`` and what :meth:`info` reports."""

    name: str
    path: Path
    base_model: str | None
    rank: int
    alpha: float
    targets: tuple[str, ...]
    parameters: int
    deltas: dict[tuple[int, str], _Delta] = field(repr=False)
    prompt: str | None = None

    def info(self) -> dict[str, Any]:
        """``name``, ``path``, ``base_model``, ``rank``, ``alpha``, ``targets``, ``parameters``, ``bytes``
        (in memory) and ``prompt`` (the training prompt ``qembed finetune`` recorded)."""
        size = sum(d.a.numel() * d.a.element_size() + d.b.numel() * d.b.element_size()
                   for d in self.deltas.values())
        return {"name": self.name, "path": str(self.path), "base_model": self.base_model, "rank": self.rank,
                "alpha": self.alpha, "targets": list(self.targets), "parameters": self.parameters,
                "bytes": size, "prompt": self.prompt}


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's ``rank_pattern``/``alpha_pattern`` lookup: a key matches a module name's tail."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def same_base(recorded: str, path: Path, source: str) -> bool:
    """Whether ``recorded`` (the base an adapter was trained on: a folder or a Hub id) names the
    model loaded from folder ``path`` (asked for as ``source``): the same folder, or the same last
    name (``Qwen/Qwen3-Embedding-0.6B`` and a local ``Qwen3-Embedding-0.6B`` folder)."""
    recorded = recorded.rstrip("/")
    candidate = Path(recorded).expanduser()
    try:
        if candidate.exists() and candidate.resolve() == Path(path).resolve():
            return True
    except OSError:
        pass
    names = {Path(path).name.lower(), Path(source.rstrip("/")).name.lower()}
    return Path(recorded).name.lower() in names


def read_adapter_config(path: Path) -> dict[str, Any]:
    """``adapter_config.json`` of a PEFT LoRA folder, checked for what packed passes can apply."""
    if not path.exists():
        raise _bad(path, "no such folder")
    if not path.is_dir():
        raise _bad(path, "is a file; give the adapter folder (adapter_config.json + adapter_model.safetensors)")
    file = path / ADAPTER_CONFIG
    if not file.is_file():
        raise _bad(path, f"no {ADAPTER_CONFIG}: not a PEFT adapter folder (`qembed finetune embedding` "
                         "without --merge writes one)")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _bad(path, f"{ADAPTER_CONFIG} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise _bad(path, f"{ADAPTER_CONFIG} is not a JSON object")
    kind = str(config.get("peft_type", "LORA")).upper()
    if kind != "LORA":
        raise _bad(path, f"a {kind} adapter; only LoRA adapters are served")
    unsupported = {
        "use_dora": "DoRA", "modules_to_save": "modules_to_save (fully trained extra modules)",
        "fan_in_fan_out": "fan_in_fan_out", "layer_replication": "layer_replication",
        "trainable_token_indices": "trainable token embeddings", "lora_bias": "LoRA biases",
        "use_qalora": "QA-LoRA", "target_parameters": "target_parameters",
    }
    for key, what in unsupported.items():
        if config.get(key):
            raise _bad(path, f"uses {what}, which adapter serving does not apply; merge it instead "
                             "(`qembed finetune embedding --merge`)")
    if str(config.get("bias", "none")) != "none":
        raise _bad(path, f"trains biases (bias={config.get('bias')!r}); adapter serving applies bias='none' only")
    rank = config.get("r")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise _bad(path, f"rank r must be a positive integer, got {rank!r}")
    alpha = config.get("lora_alpha", rank)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise _bad(path, f"lora_alpha must be a number, got {alpha!r}")
    return config


def recorded_base(path: Path, config: dict[str, Any]) -> str | None:
    """The base model an adapter was trained on: ``qembed finetune``'s record, else PEFT's."""
    manifest = path / TUNE_MANIFEST
    if manifest.is_file():
        try:
            base = json.loads(manifest.read_text(encoding="utf-8")).get("base_model")
        except (OSError, ValueError, AttributeError):
            base = None
        if base:
            return str(base)
    base = config.get("base_model_name_or_path")
    return str(base) if base else None


def _recorded_prompt(path: Path) -> str | None:
    manifest = path / TUNE_MANIFEST
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("prompt") if manifest.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None


def read_lora_weights(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    """``{module name: {"A": (r, in), "B": (out, r)}}`` from ``adapter_model.safetensors``."""
    file = path / ADAPTER_WEIGHTS
    if not file.is_file():
        bin_only = (path / "adapter_model.bin").exists()
        other = " (only adapter_model.bin: re-save it with safetensors)" if bin_only else ""
        raise _bad(path, f"no {ADAPTER_WEIGHTS}{other}")
    from safetensors import SafetensorError, safe_open

    out: dict[str, dict[str, torch.Tensor]] = {}
    try:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                match = re.fullmatch(r"(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight", key)
                if not match:
                    raise _bad(path, f"holds {key!r}, which is not a LoRA A/B matrix of a linear layer "
                                     "(DoRA magnitudes, embeddings and biases are not served)")
                out.setdefault(match.group(1), {})[match.group(2)] = f.get_tensor(key)
    except SafetensorError as exc:
        raise _bad(path, f"{ADAPTER_WEIGHTS} cannot be read ({exc})") from None
    if not out:
        raise _bad(path, f"{ADAPTER_WEIGHTS} holds no LoRA matrices")
    return out


class AdapterSet:
    """Adapters by name over one base model, ready for :class:`LoraPass`.

    Args:
        model: the ``transformers`` model the packed runner uses (its module names and shapes).
        device, dtype: where and in which precision the passes run (the adapters' matrices follow).
        base_path, base_source: the base model's folder and how it was asked for, for the check
            that an adapter was trained on this base (:func:`same_base`).
    """

    def __init__(self, model: Any, *, device: torch.device | str, dtype: torch.dtype, base_path: Path,
                 base_source: str) -> None:
        self.layout = AdapterLayout(model)
        self.device = torch.device(device)
        self.dtype = dtype
        self.base_path = Path(base_path)
        self.base_source = str(base_source)
        self._adapters: dict[str, LoraAdapter] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ registry
    def names(self) -> list[str]:
        return sorted(self._adapters)

    def __contains__(self, name: object) -> bool:
        return name in self._adapters

    def __len__(self) -> int:
        return len(self._adapters)

    def get(self, name: str) -> LoraAdapter:
        adapter = self._adapters.get(name)
        if adapter is None:
            raise AdapterNotLoadedError(name, list(self._adapters))
        return adapter

    def info(self) -> list[dict[str, Any]]:
        return [self._adapters[n].info() for n in self.names()]

    def load(self, name: str, path: str | Path, *, check_base: bool = True, replace: bool = False) -> LoraAdapter:
        """Read, check and keep the adapter in folder ``path`` under ``name``; returns it.

        Raises :class:`~qembed.errors.InputError` (``code="invalid_adapter"``) naming what is wrong:
        a missing folder or file, another base model (unless ``check_base=False``), a target module
        the base lacks or the packed passes cannot apply, a shape or rank that does not fit.
        A name already loaded is refused unless ``replace``.
        """
        check_name(name)
        if name in self._adapters and not replace:
            raise InputError(f"adapter {name!r} is already loaded (from {self._adapters[name].path}); unload it "
                             "first or pass replace", param="adapter", code="adapter_exists")
        adapter = self._read(name, Path(path).expanduser(), check_base)
        with self._lock:
            if name in self._adapters and not replace:
                raise InputError(f"adapter {name!r} is already loaded", param="adapter", code="adapter_exists")
            self._adapters = {**self._adapters, name: adapter}  # passes in flight keep their copy
        logger.info("adapter %s loaded from %s: rank %d on %d modules, %s parameters", name, adapter.path,
                    adapter.rank, len(adapter.targets), f"{adapter.parameters:,d}")
        return adapter

    def unload(self, name: str) -> None:
        """Forget adapter ``name`` (:class:`AdapterNotLoadedError` when it is not loaded)."""
        with self._lock:
            if name not in self._adapters:
                raise AdapterNotLoadedError(name, list(self._adapters))
            self._adapters = {k: v for k, v in self._adapters.items() if k != name}
        logger.info("adapter %s unloaded", name)

    def _read(self, name: str, path: Path, check_base: bool) -> LoraAdapter:
        config = read_adapter_config(path)
        base = recorded_base(path, config)
        if check_base and base and not same_base(base, self.base_path, self.base_source):
            raise _bad(path, f"was trained on base model {base!r}, but the loaded model is {self.base_source!r}; "
                             "load it over its own base (or skip this check: check_base=False)")
        weights = read_lora_weights(path)
        layout = self.layout
        use_rslora = bool(config.get("use_rslora"))
        parts: dict[tuple[int, str], list[tuple[_Site, torch.Tensor, torch.Tensor]]] = {}
        ranks, alphas, targets, parameters = set(), set(), set(), 0
        for module, pair in sorted(weights.items()):
            if set(pair) != {"A", "B"}:
                raise _bad(path, f"{module} has lora_{next(iter(pair))} without lora_{'B' if 'A' in pair else 'A'}")
            site = layout.sites.get(module)
            if site is None and module.startswith("model.") and module[len("model."):] in layout.sites:
                module = module[len("model."):]
                site = layout.sites[module]
            if site is None:
                if any(module.startswith(p) for p in UNUSED_PREFIXES) and module in layout.module_names:
                    continue
                if module not in layout.module_names:
                    raise _bad(path, f"targets {module}, which the base model ({layout.model_type}) does not have")
                raise _bad(path, f"targets {module}; adapters are served on {', '.join(layout.supported)} "
                                 f"of {layout.model_type} models only")
            a, b = pair["A"], pair["B"]
            if a.dim() != 2 or b.dim() != 2:
                raise _bad(path, f"{module}: LoRA matrices must be 2-D, got {tuple(a.shape)} and {tuple(b.shape)}")
            rank = int(a.shape[0])
            if rank < 1:
                raise _bad(path, f"{module}: rank 0")
            want_rank = _pattern_value(config.get("rank_pattern") or {}, module, config["r"])
            if int(a.shape[1]) != site.in_features or tuple(b.shape) != (site.size, rank) or rank != want_rank:
                raise _bad(path, f"{module}: shapes A {tuple(a.shape)} and B {tuple(b.shape)} do not fit the base "
                                 f"layer ({site.size} x {site.in_features}) at rank {want_rank}")
            if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
                raise _bad(path, f"{module}: non-finite values")
            alpha = float(_pattern_value(config.get("alpha_pattern") or {}, module, config.get("lora_alpha", rank)))
            scale = alpha / (math.sqrt(rank) if use_rslora else rank)
            parts.setdefault((site.layer, site.slot), []).append((site, a, b * scale))
            ranks.add(rank)
            alphas.add(alpha)
            targets.add(module.rsplit(".", 1)[-1])
            parameters += a.numel() + b.numel()
        if not parts:
            raise _bad(path, "adapts no layer the embedding uses")
        deltas: dict[tuple[int, str], _Delta] = {}
        for (layer, slot), items in parts.items():
            items.sort(key=lambda item: item[0].start)
            a_cat = torch.cat([a for _, a, _ in items]).t().contiguous()
            width = self.layout.widths[(layer, slot)]
            b_blocks = torch.zeros(a_cat.shape[1], width, dtype=torch.float32)
            r0 = 0
            for site, a, b in items:
                r1 = r0 + int(a.shape[0])
                b_blocks[r0:r1, site.start:site.start + site.size] = b.t()
                r0 = r1
            deltas[(layer, slot)] = _Delta(a_cat.to(self.device, self.dtype), b_blocks.to(self.device, self.dtype))
        return LoraAdapter(name=name, path=path.resolve(), base_model=base, rank=max(ranks),
                           alpha=max(alphas), targets=tuple(sorted(targets)), parameters=parameters,
                           deltas=deltas, prompt=_recorded_prompt(path))

    # ------------------------------------------------------------------ passes
    def plan(self, adapters: Sequence[str | None], lengths: Sequence[int]) -> LoraPass | None:
        """The :class:`LoraPass` of a pass over sequences of ``lengths`` whose first
        ``len(adapters)`` sequences use those adapters (None: the base; further sequences, e.g.
        fillers: the base). None when no sequence uses an adapter."""
        registry = self._adapters
        chosen: list[LoraAdapter | None] = []
        for name in adapters:
            if name is None:
                chosen.append(None)
            elif name in registry:
                chosen.append(registry[name])
            else:
                raise AdapterNotLoadedError(name, list(registry))
        if all(a is None for a in chosen):
            return None
        chosen += [None] * (len(lengths) - len(chosen))
        return LoraPass(chosen, lengths, self.device)


class LoraPass:
    """The LoRA deltas of one packed pass: which rows use which adapter.

    The runners call :meth:`add` after each fused matrix product with the product's input ``x`` and
    output ``y``; rows are the pass's tokens, or one per sequence where a runner computes its last
    layer for the pooled tokens only.
    """

    def __init__(self, adapters: Sequence[LoraAdapter | None], lengths: Sequence[int],
                 device: torch.device) -> None:
        self.sequences = len(lengths)
        self.tokens = int(sum(lengths))
        self.token_groups = self._groups(adapters, lengths, device)
        self.sequence_groups = self._groups(adapters, [1] * len(lengths), device)

    @staticmethod
    def _groups(adapters: Sequence[LoraAdapter | None], lengths: Sequence[int],
                device: torch.device) -> list[tuple[LoraAdapter, slice | torch.Tensor]]:
        """Per adapter, its rows: one slice when they are contiguous, else an index tensor."""
        runs: dict[str, list[tuple[int, int]]] = {}
        by_name: dict[str, LoraAdapter] = {}
        start = 0
        for adapter, length in zip(adapters, lengths):
            if adapter is not None:
                spans = runs.setdefault(adapter.name, [])
                by_name[adapter.name] = adapter
                if spans and spans[-1][1] == start:
                    spans[-1] = (spans[-1][0], start + length)
                else:
                    spans.append((start, start + length))
            start += length
        groups: list[tuple[LoraAdapter, slice | torch.Tensor]] = []
        for name, spans in runs.items():
            if len(spans) == 1:
                groups.append((by_name[name], slice(*spans[0])))
            else:
                rows = torch.cat([torch.arange(s, e) for s, e in spans]).to(device)
                groups.append((by_name[name], rows))
        return groups

    def add(self, layer: int, slot: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``y`` (the base product of ``x``) plus each adapter's delta on its rows, in place."""
        rows = x.shape[0]
        groups = self.token_groups if rows == self.tokens else self.sequence_groups
        if rows != self.tokens and rows != self.sequences:
            raise RuntimeError(f"a pass of {self.tokens} tokens in {self.sequences} sequences got {rows} rows")
        for adapter, where in groups:
            delta = adapter.deltas.get((layer, slot))
            if delta is None:
                continue
            if isinstance(where, slice):
                delta.add(x[where], y[where])
            else:
                part = y.index_select(0, where)
                delta.add(x.index_select(0, where), part)
                y.index_copy_(0, where, part)
        return y


def no_lora(layer: int, slot: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The hook of a pass without adapters: ``y`` unchanged."""
    return y


def lora_hook(lora: LoraPass | None) -> Callable[[int, str, torch.Tensor, torch.Tensor], torch.Tensor]:
    """What the packed runners call after each fused product: :meth:`LoraPass.add` or :func:`no_lora`."""
    return lora.add if lora is not None else no_lora


def check_name(name: Any) -> str:
    """An adapter name: letters, digits, ``.``, ``_``, ``-`` (no ``:`` or ``/``), up to 128 characters."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InputError(f"adapter name {name!r} is not valid: use letters, digits, '.', '_' and '-' (up to 128 "
                         "characters, starting with a letter or digit)", param="adapter")
    return name


def per_text_adapters(adapter: str | Sequence[str | None] | None, n: int) -> list[str | None]:
    """``adapter`` (one name or None for every text, or one per text) as a list of ``n``."""
    if adapter is None or isinstance(adapter, str):
        return [adapter] * n
    if not isinstance(adapter, Sequence):
        raise InputError(f"adapter must be a name, None or a list of them, got {type(adapter).__name__}",
                         param="adapter")
    names = list(adapter)
    if len(names) != n:
        raise InputError(f"adapter lists {len(names)} names for {n} inputs; give one per input or one for all",
                         param="adapter")
    for name in names:
        if name is not None and not isinstance(name, str):
            raise InputError(f"adapter names must be strings or None, got {type(name).__name__}", param="adapter")
    return names


class AdaptersMixin:
    """LoRA adapters for an encoder with a packed runner (``self._packed``): mixed into
    :class:`~qembed.models.local.LocalEncoder`.

    ``adapter_mode``: ``"mixed"`` (default: one pass holds the rows of several adapters) or
    ``"grouped"`` (a pass per adapter).
    """

    _adapter_set: AdapterSet | None = None
    adapter_mode: str = "mixed"

    def _adapter_registry(self) -> AdapterSet:
        if self._adapter_set is None:
            runner = getattr(self, "_packed", None)
            model = getattr(getattr(self, "_transformer", None), "auto_model", None)
            if runner is None or model is None:
                raise InputError(f"{getattr(self, 'name', 'this model')} runs padded passes; LoRA adapters are "
                                 "served on packed passes (Qwen3 and BERT-family encoders, torch backend)",
                                 param="adapter")
            self._adapter_set = AdapterSet(model, device=runner.device, dtype=runner.dtype,
                                           base_path=getattr(self, "path"),
                                           base_source=getattr(self, "model_source", str(getattr(self, "path"))))
        return self._adapter_set

    def load_adapter(self, name: str, path: str | Path, *, check_base: bool = True,
                     replace: bool = False) -> dict[str, Any]:
        """Load the PEFT LoRA adapter in folder ``path`` as ``name`` over this model's weights (which
        stay untouched); returns its :meth:`LoraAdapter.info`. See :meth:`AdapterSet.load`."""
        return self._adapter_registry().load(name, path, check_base=check_base, replace=replace).info()

    def unload_adapter(self, name: str) -> None:
        """Forget adapter ``name``; later requests naming it get :class:`AdapterNotLoadedError`."""
        if self._adapter_set is None:
            raise AdapterNotLoadedError(name, [])
        self._adapter_set.unload(name)

    def adapters(self) -> list[dict[str, Any]]:
        """The loaded adapters' :meth:`LoraAdapter.info`, by name."""
        return self._adapter_set.info() if self._adapter_set is not None else []

    def _check_adapters(self, names: list[str | None]) -> list[str | None]:
        """``names`` with every named adapter loaded (else :class:`AdapterNotLoadedError`)."""
        if any(n is not None for n in names):
            registry = self._adapter_set
            for n in names:
                if n is not None and (registry is None or n not in registry):
                    raise AdapterNotLoadedError(n, registry.names() if registry is not None else [])
        return names

    def _adapter_batches(self, names: list[str | None], batches: list[list[int]],
                         plan: Callable[[list[int]], list[list[int]]]) -> list[list[int]]:
        """Batches of input indices: as planned (``mixed``), or planned per adapter (``grouped``)."""
        if self.adapter_mode != "grouped" or len(set(names)) < 2:
            return batches
        groups: dict[str | None, list[int]] = {}
        for i, n in enumerate(names):
            groups.setdefault(n, []).append(i)
        out: list[list[int]] = []
        for members in groups.values():
            out += [[members[j] for j in batch] for batch in plan(members)]
        return out

    def _adapter_forward(self, batch: list[list[int]], names: list[str | None],
                         run: Callable[[list[list[int]], list[str | None]], torch.Tensor]) -> torch.Tensor:
        """Hidden states of ``batch`` with each sequence through its adapter: ``run(seqs, names)``
        once over the batch ordered by adapter (``mixed``) or once per adapter (``grouped``)."""
        rank = {n: k for k, n in enumerate(dict.fromkeys([None, *sorted(n for n in names if n is not None)]))}
        order = sorted(range(len(batch)), key=lambda i: rank[names[i]])
        if self.adapter_mode == "grouped":
            pieces, start = [], 0
            while start < len(order):
                end = start
                while end < len(order) and names[order[end]] == names[order[start]]:
                    end += 1
                idx = order[start:end]
                pieces.append(run([batch[i] for i in idx], [names[i] for i in idx]))
                start = end
            hidden = torch.cat(pieces)
        else:
            hidden = run([batch[i] for i in order], [names[i] for i in order])
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return hidden.index_select(0, inverse.to(hidden.device))

    def set_adapter_mode(self, mode: str) -> None:
        """``mixed`` or ``grouped`` (see the class)."""
        if mode not in ADAPTER_MODES:
            raise InputError(f"adapter mode must be one of {', '.join(ADAPTER_MODES)}, got {mode!r}",
                             param="adapter_mode")
        self.adapter_mode = mode
