"""What ``qembed doctor`` reports: the facts of this installation a bug report needs.

:func:`report` returns one dictionary (the ``--json`` body of ``qembed doctor``):

- ``versions``: qembed, Python, torch, transformers, sentence-transformers and the platform;
- ``extras``: each optional extra (:mod:`qembed.extras`), installed or not, with what is missing;
- ``backends``: each runtime of a local model (torch, openvino, onnx) and whether it imports;
- ``cpu``: the processor, its instruction sets (AVX2, AVX-512, AVX-512-BF16, AVX-512-VNNI, AMX),
  torch's kernel level, and the dtype qembed picks on it;
- ``gpu``: CUDA devices, CUDA version and flash-attention, when present;
- ``models``: the default model (``$QEMBED_MODEL``), the cache folders, where models come from
  (Hugging Face, an ``HF_ENDPOINT`` mirror, or ModelScope), whether the default model is cached, and
  whether that hub answers (skipped offline).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

#: CPU flags (as ``/proc/cpuinfo`` names them) that decide the fast paths, with their common names.
CPU_FLAGS = {
    "avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX-512-BF16", "avx512_vnni": "AVX-512-VNNI",
    "avx512_fp16": "AVX-512-FP16", "amx_tile": "AMX", "amx_bf16": "AMX-BF16", "amx_int8": "AMX-INT8",
}
#: The runtimes of a local model and the module each imports.
BACKEND_IMPORTS = {"torch": "torch", "openvino": "openvino", "onnx": "onnxruntime"}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, Any]:
    """Versions of qembed, Python and the libraries the model path runs on."""
    from qembed import __version__

    return {
        "qembed": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{dist: _version(dist) for dist in ("torch", "transformers", "sentence-transformers",
                                              "huggingface-hub", "numpy", "faiss-cpu")},
    }


def extras() -> dict[str, Any]:
    """Each extra: installed or not, the versions of its packages, what it enables."""
    from qembed.extras import EXTRAS, missing

    out = {}
    for name, extra in EXTRAS.items():
        absent = missing(name)
        out[name] = {"installed": not absent, "missing": absent, "enables": extra.enables,
                     "packages": {dist: _version(dist) for _, dist in extra.modules}}
    return out


def backends() -> dict[str, Any]:
    """Whether each runtime imports here (imported for real: an installed but broken one shows)."""
    out: dict[str, Any] = {}
    for name, module in BACKEND_IMPORTS.items():
        start = time.perf_counter()
        try:
            mod = importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure is what we report
            out[name] = {"imports": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
            continue
        out[name] = {"imports": True, "version": getattr(mod, "__version__", None),
                     "import_seconds": round(time.perf_counter() - start, 2)}
    return out


def _cpuinfo() -> tuple[str | None, set[str]]:
    name, flags = None, set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and name is None:
                    name = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
                if name and flags:
                    break
    except OSError:
        pass
    return name or platform.processor() or None, flags


def cpu() -> dict[str, Any]:
    """The processor, its instruction sets, torch's kernel level and the dtype qembed picks on it."""
    import torch

    from qembed.models.local import pick_dtype

    name, flags = _cpuinfo()
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)()
    return {
        "model": name,
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "instruction_sets": {label: flag in flags for flag, label in CPU_FLAGS.items()} if flags else None,
        "torch_capability": capability,
        "dtype": str(pick_dtype(None, "cpu")).replace("torch.", ""),
    }


def gpu() -> dict[str, Any]:
    """CUDA devices (name, memory, compute capability), CUDA's version and flash-attention."""
    import torch

    info: dict[str, Any] = {"cuda_available": torch.cuda.is_available(), "cuda_version": torch.version.cuda,
                            "devices": [], "flash_attn": _version("flash-attn") or _version("flash_attn")}
    if info["cuda_available"]:
        from qembed.models.local import pick_dtype

        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            info["devices"].append({"index": i, "name": props.name,
                                    "memory_gib": round(props.total_memory / 2**30, 1),
                                    "capability": f"{props.major}.{props.minor}"})
        info["dtype"] = str(pick_dtype(None, "cuda")).replace("torch.", "")
    mps = getattr(torch.backends, "mps", None)
    info["mps_available"] = bool(mps is not None and mps.is_available())
    return info


def _hub_reachable(endpoint: str, timeout: float) -> dict[str, Any]:
    import httpx

    start = time.perf_counter()
    try:
        response = httpx.head(endpoint, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as exc:
        return {"reachable": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    return {"reachable": response.status_code < 500, "status": response.status_code,
            "seconds": round(time.perf_counter() - start, 2)}


def models(check_hub: bool = True, timeout: float = 3.0) -> dict[str, Any]:
    """The default model, the cache folders, the model source and whether it answers."""
    from huggingface_hub import constants as hf

    from qembed.models.compile import inductor_cache_dir
    from qembed.models.resolve import cache_root, default_model, hub_offline, use_modelscope

    model = default_model()
    info: dict[str, Any] = {
        "default_model": model,
        "qembed_cache": str(cache_root()),
        "compiled_kernels": str(inductor_cache_dir()),
        "hf_cache": str(hf.HF_HUB_CACHE),
        "offline": hub_offline(),
    }
    local = Path(model).expanduser()
    if local.is_dir():
        info["source"] = "folder"
        info["cached"] = (local / "config.json").is_file()
        return info
    if use_modelscope():
        info["source"] = "modelscope"
        endpoint = os.environ.get("MODELSCOPE_DOMAIN", "https://www.modelscope.cn")
        endpoint = endpoint if endpoint.startswith("http") else f"https://{endpoint}"
    else:
        endpoint = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or hf.ENDPOINT
        info["source"] = "huggingface" if endpoint.rstrip("/") == "https://huggingface.co" else "mirror"
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
        info["cached"] = isinstance(cached, str)
    info["endpoint"] = endpoint
    if not check_hub or info["offline"]:
        info["hub"] = {"checked": False, "reason": "--no-network" if not check_hub else "offline (HF_HUB_OFFLINE)"}
    else:
        info["hub"] = {"checked": True, **_hub_reachable(endpoint, timeout)}
    return info


def report(check_hub: bool = True) -> dict[str, Any]:
    """Everything above in one dictionary (the body of ``qembed doctor --json``)."""
    return {"object": "doctor", "versions": versions(), "extras": extras(), "backends": backends(),
            "cpu": cpu(), "gpu": gpu(), "models": models(check_hub=check_hub),
            "executable": sys.executable}
