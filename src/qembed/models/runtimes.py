"""Backend names, precisions and runtime packages (light: no torch, no runtime imported)."""

from __future__ import annotations

import importlib
import importlib.util
import os
from functools import lru_cache
from typing import Any

from qembed.errors import InputError

#: Runtimes a local model can run on: the ``--backend`` values, ``QEMBED_BACKEND``, ``backend=``
#: (``auto``: the fastest one for this CPU, :func:`auto_backend`).
BACKENDS = ("torch", "openvino", "onnx", "auto")
#: Other spellings every place that takes a backend accepts (they name the same runtime).
BACKEND_ALIASES = {"pytorch": "torch", "ov": "openvino", "onnxruntime": "onnx", "ort": "onnx"}
#: Precisions: the ``--dtype`` values, ``QEMBED_DTYPE``, ``dtype=`` (int8 on openvino/onnx only;
#: w8a8 — int8 weights and int8 activations, calibrated — on openvino only, made by ``qembed export``).
DTYPES = ("auto", "bfloat16", "float16", "float32", "w8a8", "int8")
#: Other spellings every place that takes a dtype accepts.
DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32",
                 "int8-static": "w8a8", "a8w8": "w8a8"}
#: Precisions of the exported graph, per compiled backend (``--dtype`` values).
PRECISIONS = {"openvino": ("int8", "float32", "bfloat16", "w8a8"), "onnx": ("int8", "float32")}
#: Precisions whose activations are quantized too: made with calibration text and a task-score
#: guard (:mod:`qembed.models.quality`), never on the fly.
CALIBRATED_PRECISIONS = ("w8a8",)
#: What ``dtype=None``/``"auto"`` picks: the fastest precision meeting the parity targets
#: (worst cosine >= 0.99 to torch fp32 on all-MiniLM-L6-v2), measured with
#: ``benchmarks/encode_throughput.py --backend`` (see docs/cpu-backends.md).
DEFAULT_PRECISION = {"openvino": "int8", "onnx": "int8"}
#: The module each runtime imports (its distribution is in the cpu extra, see qembed.extras).
_RUNTIME_MODULES = {"openvino": "openvino", "onnx": "onnxruntime", "nncf": "nncf"}


def _canonical(value: Any, what: str, names: tuple[str, ...], aliases: dict[str, str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{what} must be a string, one of {', '.join(names)}; got {type(value).__name__}",
                         param=what)
    key = value.strip().lower()
    key = aliases.get(key, key)
    if key not in names:
        raise InputError(f"unknown {what} {value!r}; use one of {', '.join(names)}", param=what)
    return key


#: The CPU kinds :func:`cpu_kind` tells apart, fastest first.
CPU_KINDS = ("amx", "avx512_bf16", "avx512_vnni", "avx512", "avx2", "other")
#: What ``--backend auto`` runs on each CPU kind, from benchmarks/encode_throughput.py and
#: benchmarks/server_load.py (docs/cpu-backends.md): where bf16 matrix products are native
#: (AMX, AVX-512-BF16) torch's packed bf16 passes on prepacked oneDNN weights; elsewhere torch
#: would run fp32, and OpenVINO with int8 weights (VNNI/AVX2 int8 kernels) is faster. AVX2 only
#: (benchmarks/cpu_int8.py --isa avx2, MiniLM): OpenVINO int8 2.0x torch fp32, OpenVINO fp32 1.85x,
#: torch bf16 0.33x.
AUTO_BACKEND = {"amx": "torch", "avx512_bf16": "torch", "avx512_vnni": "openvino", "avx512": "openvino",
                "avx2": "openvino", "other": "torch"}
#: What ``--dtype auto`` runs when ``--backend auto`` chose torch, by CPU kind (kinds not listed:
#: the model's float type, :func:`~qembed.models.local.pick_dtype`). On AVX-512-BF16 CPUs without
#: AMX torch's int8 products (smoothed, per-token activations) ran the random-weight 0.6B at
#: 1.53-1.61x torch bf16 and kept all-MiniLM-L6-v2's STS score (benchmarks/cpu_int8.py,
#: docs/benchmarks.md); not measured on AMX, which keeps bf16.
AUTO_TORCH_DTYPE = {"avx512_bf16": "int8"}
#: The ``ONEDNN_MAX_CPU_ISA`` / ``ATEN_CPU_CAPABILITY`` values that cap the kernels below a CPU
#: kind (a capped process runs like that kind, so ``auto`` decides as it would there).
_ISA_CAPS = {"avx2": "avx2", "avx2_vnni": "avx2", "avx2_vnni_2": "avx2", "avx512_core": "avx512",
             "avx512_core_vnni": "avx512_vnni", "avx512_core_bf16": "avx512_bf16", "default": "other",
             "sse41": "other", "avx": "other", "avx512": "avx512"}


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@lru_cache(maxsize=None)
def cpu_kind() -> str:
    """This CPU's kind (:data:`CPU_KINDS`) from its instruction sets, lowered to the cap that
    ``ONEDNN_MAX_CPU_ISA`` or ``ATEN_CPU_CAPABILITY`` set (the lower of the two wins)."""
    flags = _cpu_flags()
    if not flags:  # not Linux: what torch's own dispatch found
        import torch

        capability = str(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()).upper()
        kind = "amx" if "AMX" in capability else "avx512" if "AVX512" in capability else \
            "avx2" if "AVX2" in capability else "other"
    elif "amx_bf16" in flags:
        kind = "amx"
    elif "avx512_bf16" in flags:
        kind = "avx512_bf16"
    elif "avx512_vnni" in flags:
        kind = "avx512_vnni"
    elif "avx512f" in flags:
        kind = "avx512"
    elif "avx2" in flags:
        kind = "avx2"
    else:
        kind = "other"
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
        cap = _ISA_CAPS.get(os.environ.get(var, "").strip().lower())
        if cap is not None and CPU_KINDS.index(cap) > CPU_KINDS.index(kind):
            kind = cap
    return kind


def cpu_has_native_bf16() -> bool:
    """True when bf16 matrix products run natively here (AMX or AVX-512-BF16, not capped)."""
    return cpu_kind() in ("amx", "avx512_bf16")


def auto_backend(device: str | None = None) -> str:
    """The backend ``auto`` runs: torch on accelerators and on CPUs with native bf16; OpenVINO on other
    CPUs when its package is installed (:data:`AUTO_BACKEND`), else torch."""
    if device not in (None, "", "auto", "cpu"):
        return "torch"
    if device in (None, "", "auto"):
        try:
            import torch

            if torch.cuda.is_available():
                return "torch"
        except ImportError:  # pragma: no cover - torch is a base dependency
            pass
    choice = AUTO_BACKEND[cpu_kind()]
    if choice != "torch" and importlib.util.find_spec(_RUNTIME_MODULES[choice]) is None:
        return "torch"
    return choice


def auto_torch_dtype(device: str | None = None) -> str | None:
    """The precision ``--dtype auto`` runs when ``--backend auto`` picked torch (:data:`AUTO_TORCH_DTYPE`);
    ``None``: the model's float type. int8 only on a CPU where torch's int8 products pass their
    check (:func:`~qembed.models.kernels.int8_usable`)."""
    if device not in (None, "", "auto", "cpu"):
        return None
    choice = AUTO_TORCH_DTYPE.get(cpu_kind())
    if choice == "int8":
        import torch

        if device in (None, "", "auto") and torch.cuda.is_available():
            return None
        from qembed.models.kernels import int8_usable

        return "int8" if int8_usable() else None
    return choice


def canonical_backend(value: Any) -> str | None:
    """The canonical name of a backend (:data:`BACKENDS`; :data:`BACKEND_ALIASES` and any case accepted);
    ``None`` stays ``None``. Anything else raises :class:`InputError`. The command line, the settings,
    the server and the loaders all check names here."""
    return _canonical(value, "backend", BACKENDS, BACKEND_ALIASES)


def canonical_dtype(value: Any) -> str | None:
    """The canonical name of a precision (:data:`DTYPES`; :data:`DTYPE_ALIASES` and any case accepted);
    ``None`` stays ``None``. Anything else raises :class:`InputError`."""
    return _canonical(value, "dtype", DTYPES, DTYPE_ALIASES)


def check_backend(backend: Any) -> str:
    """The canonical backend name (``None`` means torch; ``auto`` is kept, see :func:`auto_backend`);
    anything else raises :class:`InputError`."""
    return canonical_backend(backend) or "torch"


def check_precision(backend: str, dtype: Any) -> str:
    """The stored precision for ``backend`` from a ``dtype`` value (``None``/``"auto"``: the default)."""
    if isinstance(dtype, str) and not dtype.strip():
        dtype = None
    elif type(dtype).__name__ == "dtype":  # a torch.dtype
        dtype = str(dtype).replace("torch.", "")
    key = canonical_dtype(dtype) or "auto"
    if backend not in PRECISIONS:
        raise InputError(f"the {backend} backend has no exported precisions; use openvino or onnx",
                         param="backend")
    if key == "auto":
        return DEFAULT_PRECISION[backend]
    if key not in PRECISIONS[backend]:
        raise InputError(f"dtype {dtype!r} is not available on the {backend} backend; use auto, "
                         f"{', '.join(PRECISIONS[backend])}", param="dtype")
    return key


def require_runtime(backend: str) -> Any:
    """Import the runtime package of ``backend`` (or ``"nncf"``); without it,
    :class:`~qembed.errors.MissingExtraError` names the ``cpu`` extra."""
    from qembed.extras import require

    module = _RUNTIME_MODULES[backend]
    require("cpu", f"the {backend} backend" if backend != "nncf" else "int8 weight compression", modules=(module,))
    return importlib.import_module(module)
