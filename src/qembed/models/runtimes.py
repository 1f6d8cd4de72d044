"""Backend names, precisions and runtime packages (light: no torch, no runtime imported)."""

from __future__ import annotations

import importlib
from typing import Any

from qembed.errors import InputError

#: Runtimes a local model can run on.
BACKENDS = ("torch", "openvino", "onnx")
_BACKEND_ALIASES = {"ov": "openvino", "onnxruntime": "onnx", "ort": "onnx", "pytorch": "torch"}
#: Precisions of the exported graph, per compiled backend (``--dtype`` values).
PRECISIONS = {"openvino": ("int8", "float32", "bfloat16"), "onnx": ("int8", "float32")}
#: What ``dtype=None``/``"auto"`` picks: the fastest precision meeting the parity targets
#: (worst cosine >= 0.99 to torch fp32 on all-MiniLM-L6-v2), measured with
#: ``benchmarks/encode_throughput.py --backend`` (see docs/cpu-backends.md).
DEFAULT_PRECISION = {"openvino": "int8", "onnx": "int8"}
_PRECISION_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "i8": "int8",
                      "qint8": "int8", "fp16": "float16", "half": "float16"}
#: Python packages each runtime needs, and the extra that installs them.
_RUNTIME_PACKAGES = {"openvino": ("openvino", "openvino"), "onnx": ("onnxruntime", "onnxruntime"),
                     "nncf": ("nncf", "nncf")}


def check_backend(backend: Any) -> str:
    """The canonical backend name (``None`` means torch); anything else raises :class:`InputError`."""
    if backend is None:
        return "torch"
    if not isinstance(backend, str):
        raise InputError(f"backend must be a string, one of {', '.join(BACKENDS)}; got "
                         f"{type(backend).__name__}", param="backend")
    key = backend.strip().lower()
    key = _BACKEND_ALIASES.get(key, key)
    if key not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}", param="backend")
    return key


def check_precision(backend: str, dtype: Any) -> str:
    """The stored precision for ``backend`` from a ``dtype`` value (``None``/``"auto"``: the default)."""
    if dtype is None or (isinstance(dtype, str) and dtype.strip().lower() in ("", "auto")):
        return DEFAULT_PRECISION[backend]
    key = str(dtype).strip().lower().replace("torch.", "")
    key = _PRECISION_ALIASES.get(key, key)
    if key not in PRECISIONS[backend]:
        raise InputError(f"dtype {dtype!r} is not available on the {backend} backend; use auto, "
                         f"{', '.join(PRECISIONS[backend])}", param="dtype")
    return key


def require_runtime(backend: str) -> Any:
    """Import the runtime package of ``backend`` (or ``"nncf"``); without it,
    :class:`~qembed.errors.MissingExtraError` names the ``cpu`` extra."""
    from qembed.extras import require

    module, _ = _RUNTIME_PACKAGES[backend]
    require("cpu", f"the {backend} backend" if backend != "nncf" else "int8 weight compression", modules=(module,))
    return importlib.import_module(module)
