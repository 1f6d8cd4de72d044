"""``--backend auto`` / ``--dtype auto`` by the CPU's instruction sets, and the kernel caps they obey."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qembed.models import runtimes
from qembed.models.local import pick_dtype


@pytest.fixture
def fresh_kind():
    runtimes.cpu_kind.cache_clear()
    yield
    runtimes.cpu_kind.cache_clear()


def test_isa_caps_lower_the_cpu_kind(monkeypatch, fresh_kind):
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
        monkeypatch.delenv(var, raising=False)
    native = runtimes.cpu_kind()
    assert native in runtimes.CPU_KINDS
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    runtimes.cpu_kind.cache_clear()
    capped = runtimes.cpu_kind()
    assert capped in ("avx2", "other")
    assert not runtimes.cpu_has_native_bf16()
    assert pick_dtype(None, "cpu") == torch.float32  # bf16 only where it runs natively
    # a cap above the CPU changes nothing; the lower of two caps wins
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    runtimes.cpu_kind.cache_clear()
    assert runtimes.cpu_kind() == "other"


def test_auto_backend_follows_the_cpu_kind(monkeypatch, fresh_kind):
    assert runtimes.auto_backend("cuda:0") == "torch"
    assert runtimes.check_backend("AUTO") == "auto"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    runtimes.cpu_kind.cache_clear()
    has_openvino = runtimes.importlib.util.find_spec("openvino") is not None
    assert runtimes.auto_backend("cpu") == ("openvino" if has_openvino else "torch")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    runtimes.cpu_kind.cache_clear()
    if runtimes.cpu_kind() == "avx512_bf16":
        assert runtimes.auto_backend("cpu") == "torch"


def test_auto_on_a_native_bf16_cpu_is_torch(tiny_model_path: Path, monkeypatch, fresh_kind):
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
        monkeypatch.delenv(var, raising=False)
    if not runtimes.cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16")
    from qembed.models import load_encoder

    enc = load_encoder(str(tiny_model_path), backend="auto", compile=False)
    assert type(enc).__name__ == "LocalEncoder" and enc.dtype == torch.bfloat16
    # int8 products where they measured fastest (AVX-512-BF16 without AMX), bf16 elsewhere
    from qembed.models.kernels import int8_usable

    wants_int8 = runtimes.cpu_kind() == "avx512_bf16" and int8_usable()
    assert enc.int8 == wants_int8 and enc.info()["dtype"] == ("int8" if wants_int8 else "bfloat16")
    assert runtimes.auto_torch_dtype("cpu") == ("int8" if wants_int8 else None)
    assert runtimes.auto_torch_dtype("cuda:0") is None
    # a dtype asked for is kept
    assert not load_encoder(str(tiny_model_path), backend="auto", dtype="bfloat16", compile=False).int8
    # the default backend (torch) keeps the model's float type
    assert not load_encoder(str(tiny_model_path), compile=False).int8
