"""Backend names, precisions and runtime packages (light: no torch, no runtime imported)."""

from __future__ import annotations

import importlib
from typing import Any

from qembed.errors import InputError

#: Runtimes a local model can run on: the ``--backend`` values, ``QEMBED_BACKEND``, ``backend=``.
BACKENDS = ("torch", "openvino", "onnx")
#: Other spellings every place that takes a backend accepts (they name the same runtime).
BACKEND_ALIASES = {"pytorch": "torch", "ov": "openvino", "onnxruntime": "onnx", "ort": "onnx"}
#: Precisions: the ``--dtype`` values, ``QEMBED_DTYPE``, ``dtype=`` (int8 on openvino/onnx only).
DTYPES = ("auto", "bfloat16", "float16", "float32", "int8")
#: Other spellings every place that takes a dtype accepts.
DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
#: Precisions of the exported graph, per compiled backend (``--dtype`` values).
PRECISIONS = {"openvino": ("int8", "float32", "bfloat16"), "onnx": ("int8", "float32")}
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
    """The canonical backend name (``None`` means torch); anything else raises :class:`InputError`."""
    return canonical_backend(backend) or "torch"


def check_precision(backend: str, dtype: Any) -> str:
    """The stored precision for ``backend`` from a ``dtype`` value (``None``/``"auto"``: the default)."""
    if isinstance(dtype, str) and not dtype.strip():
        dtype = None
    elif type(dtype).__name__ == "dtype":  # a torch.dtype
        dtype = str(dtype).replace("torch.", "")
    key = canonical_dtype(dtype) or "auto"
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
