"""Compiled CPU backends: the encoder contract on OpenVINO or ONNX Runtime instead of torch.

:class:`CompiledEncoder` keeps everything :class:`~qembed.models.local.LocalEncoder` does around
the forward pass (instruction formatting, tokenisation that keeps the end token, length-aware
batches, Matryoshka truncation, the NaN check) and swaps only the pass itself: right-padded token
ids go into an exported graph (:mod:`qembed.models.export`) that returns the pooled sentence
embeddings. It reports ``packed=False``, so the serving engine drives it with padded batches.

The backend names (:data:`BACKENDS`) and precisions (:data:`PRECISIONS`) are checked here, and a
backend whose runtime package is missing says which package to install.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from qembed.errors import InputError, ModelLoadError
from qembed.models.encoder import check_finite, check_positive_ints
from qembed.models.inputs import InputPreparer, suffix_special_ids
from qembed.models.local import QWEN_DEFAULT_MAX_TOKENS, LocalEncoder, model_source_of
from qembed.models.prompts import is_instruct_prompt
from qembed.models.resolve import (
    EXPORT_MANIFEST,
    default_model,
    read_manifest,
    resolve_model_path,
)
from qembed.models.runtimes import (
    BACKENDS,
    CALIBRATED_PRECISIONS,
    DEFAULT_PRECISION,
    PRECISIONS,
    check_backend,
    auto_backend,
    check_precision,
    cpu_has_native_bf16,
    cpu_kind,
    require_runtime,
)

logger = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "DEFAULT_PRECISION",
    "EXPORT_MANIFEST",
    "PRECISIONS",
    "CompiledEncoder",
    "check_backend",
    "check_precision",
    "read_manifest",
    "require_runtime",
]

#: Padded batch limits (tokens = inputs x longest, inputs per pass) on the compiled backends.
BATCH_LIMITS = (4096, 32)


#: Input channels per dynamic int8 scale of the activations of int8-weight products on OpenVINO
#: (``DYNAMIC_QUANTIZATION_GROUP_SIZE``; ``QEMBED_OPENVINO_DQ_GROUP`` overrides, 0 turns it off).
#: all-MiniLM-L6-v2 int8: worst cosine to torch fp32 0.9977 (group 32), 0.9966 (128), 0.9916 (384,
#: one scale per token); the random-weight 0.6B ran 1.19x torch bf16 at 128, 1.25x at 1024 (1 thread)
#: (docs/cpu-backends.md).
OPENVINO_DQ_GROUP = 128


def openvino_dq_group() -> int:
    """The dynamic-quantization group size: ``QEMBED_OPENVINO_DQ_GROUP`` or :data:`OPENVINO_DQ_GROUP`."""
    raw = os.environ.get("QEMBED_OPENVINO_DQ_GROUP", "").strip()
    if not raw:
        return OPENVINO_DQ_GROUP
    if not raw.isdigit() or int(raw) % 16:
        raise InputError(f"QEMBED_OPENVINO_DQ_GROUP must be 0 (off) or a multiple of 16, got {raw!r}",
                         param="QEMBED_OPENVINO_DQ_GROUP")
    return int(raw)


def openvino_config(precision: str, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """The OpenVINO CPU properties qembed compiles a ``precision`` export with on this CPU.

    float32 runs f32 (parity with torch), bfloat16 bf16, the others the CPU's fastest float type
    (bf16 on AMX/AVX512-BF16, f32 elsewhere) — except on AVX-512-BF16 without AMX (AMD Zen 4/5),
    where the int8-weight products of ``int8`` exports (and of ``w8a8`` exports marked
    ``dynamic_int8``) run int8 compute (VNNI) with their activations quantized at run time in groups
    of :func:`openvino_dq_group` channels: OpenVINO does that only for f32 activations, so qembed
    asks for f32 there (bf16 products would decompress the weights and compute in bf16).
    Elsewhere OpenVINO's own choice stands (on VNNI CPUs without bf16 it quantizes in groups of 32).
    """
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    dynamic = precision == "int8" or (precision in CALIBRATED_PRECISIONS and bool((manifest or {}).get("dynamic_int8")))
    group = openvino_dq_group() if dynamic and cpu_kind() == "avx512_bf16" else 0
    if precision == "float32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    elif precision == "bfloat16":
        config["INFERENCE_PRECISION_HINT"] = "bf16"
    elif group:
        config["INFERENCE_PRECISION_HINT"] = "f32"
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = group
    elif not cpu_has_native_bf16():
        # OpenVINO picks bf16 from the CPU's flags, but under ONEDNN_MAX_CPU_ISA=AVX2 (which its
        # oneDNN obeys) bf16 kernels are missing and compiling fails: keep f32 there
        config["INFERENCE_PRECISION_HINT"] = "f32"
    if os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA"):
        # the plugin turns on dynamic int8 quantization of the activations of int8-weight
        # products by the CPU's own flags (VNNI), which its capped oneDNN cannot run: compiling
        # fails ("FullyConnectedCompressed ... could not create a primitive descriptor")
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = 0
    return config


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class CompiledEncoder(LocalEncoder):
    """Encode texts with an exported OpenVINO or ONNX Runtime graph on the CPU.

    Args:
        model: an exported folder (``qembed export``), or a sentence-transformers folder / Hub id,
            which is exported on first use and cached (see :func:`qembed.models.export.export_model`).
        backend: ``"openvino"`` or ``"onnx"``.
        device: ``None``, ``"auto"`` or ``"cpu"`` (these backends run on the CPU).
        dtype: ``None``/``"auto"`` (the backend's default, :data:`DEFAULT_PRECISION`), ``"int8"``,
            ``"float32"`` or ``"bfloat16"`` (OpenVINO).
        threads: CPU threads of the runtime (default: one per core).
        max_input_tokens, truncate, max_batch_tokens, max_batch_size, name: as for
            :class:`~qembed.models.local.LocalEncoder` (batches are padded; default 4096 padded
            tokens and 32 inputs per pass).

    ``packed`` and ``compile`` are accepted for the same signature; packed passes are torch's.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        backend: str = "openvino",
        device: str | None = None,
        dtype: str | None = None,
        max_input_tokens: int | None = None,
        truncate: bool = True,
        max_batch_tokens: int | None = None,
        max_batch_size: int | None = None,
        padding_side: str = "right",
        name: str | None = None,
        packed: bool | None = None,
        compile: bool | None = None,
        threads: int | None = None,
    ) -> None:
        del compile  # torch.compile has no part in a compiled graph
        self.backend = check_backend(backend)
        if self.backend == "auto":
            self.backend = auto_backend(device)
        if self.backend == "torch":
            raise InputError("CompiledEncoder runs the openvino or onnx backend; use LocalEncoder "
                             "for torch", param="backend")
        if device not in (None, "", "auto", "cpu"):
            raise InputError(f"the {self.backend} backend runs on the CPU; device {device!r} is not "
                             "available with it (use backend='torch' for accelerators)", param="device")
        if packed:
            raise InputError(f"the {self.backend} backend runs padded passes; packed passes are "
                             "torch's", param="packed")
        if padding_side != "right":
            raise InputError(f"the {self.backend} backend pads on the right (its graph pools the "
                             "last real token of each row)", param="padding_side")
        check_positive_ints(max_batch_tokens=max_batch_tokens, max_batch_size=max_batch_size, threads=threads)
        model = str(model if model is not None else default_model())
        source = resolve_model_path(model)
        manifest = read_manifest(source)
        if manifest is not None:
            if manifest["backend"] != self.backend:
                raise InputError(f"{model} is a {manifest['backend']} export; load it with "
                                 f"backend={manifest['backend']!r} (or without a backend)",
                                 param="backend")
            if dtype not in (None, "", "auto") and check_precision(self.backend, dtype) != manifest.get("precision"):
                raise InputError(f"{model} holds a {manifest.get('precision')} export; dtype {dtype!r} "
                                 "needs another export (qembed export … --dtype)", param="dtype")
            folder = source
        else:
            check_precision(self.backend, dtype)
            require_runtime(self.backend)
            from qembed.models.export import export_model

            folder = export_model(model, self.backend, dtype)
            manifest = read_manifest(folder)
            assert manifest is not None
        require_runtime(self.backend)
        self.path = folder
        self.source = str(manifest.get("source", folder))
        self.name = name or (model.rstrip("/") if not Path(model).exists() else Path(model).name)
        self.model_source = model_source_of(model)
        self.device = "cpu"
        self.precision = str(manifest.get("precision"))
        self._manifest = manifest
        self.dtype = self.precision
        self.truncate = bool(truncate)
        self.threads = threads
        self._packed = None
        self._pad_left = False

        from transformers import AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"could not load the tokenizer of {folder}: {exc}") from None
        self.pooling = str(manifest.get("pooling", "mean"))
        self._last_token = self.pooling == "lasttoken"
        self._dim = int(manifest["dim"])
        self._inputs_names = list(manifest.get("inputs", ["input_ids", "attention_mask"]))
        self._pad_id = self.tokenizer.pad_token_id
        if self._pad_id is None:
            self._pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        end_ids = suffix_special_ids(self.tokenizer)

        config = _json(folder / "config.json")
        self.model_type = str(config.get("model_type", ""))
        prompts = {k: v for k, v in (_json(folder / "config_sentence_transformers.json").get("prompts") or {}).items()
                   if isinstance(v, str)}
        instruct_style = any(is_instruct_prompt(p) for p in prompts.values()) or (
            self.model_type.startswith("qwen") and self._last_token)
        limits = [manifest.get("max_seq_length"), config.get("max_position_embeddings")]
        self.model_max_tokens = min(int(x) for x in limits if x)
        default = min(QWEN_DEFAULT_MAX_TOKENS, self.model_max_tokens) if instruct_style else self.model_max_tokens
        if max_input_tokens is None:
            max_input_tokens = default
        else:
            if isinstance(max_input_tokens, bool) or not isinstance(max_input_tokens, int):
                raise InputError("max_input_tokens must be an integer")
            if not len(end_ids) + 1 <= max_input_tokens <= self.model_max_tokens:
                raise InputError(f"max_input_tokens must be between {len(end_ids) + 1} and "
                                 f"{self.model_max_tokens} for {self.name}, got {max_input_tokens}")
        self.inputs = InputPreparer(
            self.tokenizer, name=self.name, max_input_tokens=max_input_tokens, truncate=self.truncate,
            instruct_style=instruct_style, prompt_style=bool(instruct_style or any(prompts.values())),
            prompts=prompts, end_ids=end_ids, last_token=self._last_token)
        self.max_batch_tokens = int(max_batch_tokens or BATCH_LIMITS[0])
        self.max_batch_size = int(max_batch_size or BATCH_LIMITS[1])
        self._lock = threading.Lock()
        graph = folder / str(manifest["graph"])
        if not graph.is_file():
            raise ModelLoadError(f"{folder} has no {manifest['graph']}: the export is incomplete; "
                                 "export the model again")
        logger.info("loading %s on %s (%s)", graph, self.backend, self.precision)
        try:
            self._run = self._load_openvino(graph) if self.backend == "openvino" else self._load_onnx(graph)
        except (RuntimeError, OSError) as exc:
            raise ModelLoadError(f"the {self.backend} runtime could not load {graph}: {exc}") from None

    # ------------------------------------------------------------------ runtimes
    def _load_openvino(self, graph: Path) -> Any:
        ov = require_runtime("openvino")
        config = openvino_config(self.precision, self._manifest)
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        compiled = ov.Core().compile_model(str(graph), "CPU", config)
        request = compiled.create_infer_request()
        names = self._inputs_names

        def run(arrays: list[np.ndarray]) -> np.ndarray:
            with self._lock:  # one infer request: passes run one at a time
                result = request.infer(dict(zip(names, arrays)))
                return np.array(result[0], dtype=np.float32, copy=True)

        return run

    def _load_onnx(self, graph: Path) -> Any:
        ort = require_runtime("onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        names = self._inputs_names

        def run(arrays: list[np.ndarray]) -> np.ndarray:
            return np.asarray(session.run(None, dict(zip(names, arrays)))[0], dtype=np.float32)

        return run

    # ------------------------------------------------------------------ ids -> vectors
    def forward_batch(self, batch: list[list[int]]) -> np.ndarray:
        """One padded pass over token-id sequences; float32 vectors at full size."""
        width = max(len(x) for x in batch)
        ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        arrays = [ids, mask] + [np.zeros_like(ids)] * (len(self._inputs_names) - 2)
        vectors = self._run(arrays)
        check_finite(vectors)
        return vectors

    def info(self) -> dict[str, Any]:
        """What ``qembed info`` reports."""
        info = super().info()
        info.update(backend=self.backend, dtype=self.precision, precision=self.precision,
                    source=self.source, packed=False, compiled=True, padding_side="right",
                    threads=self.threads)
        return info

    def __repr__(self) -> str:
        return (f"CompiledEncoder(name={self.name!r}, backend={self.backend!r}, "
                f"precision={self.precision!r}, dim={self.dim}, pooling={self.pooling!r})")
