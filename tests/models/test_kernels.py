"""The packed passes' matrix products: oneDNN prepacked weights equal ``F.linear``; the choice per CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from qembed.errors import InputError
from qembed.models import kernels
from qembed.models.local import LocalEncoder

needs_onednn = pytest.mark.skipif(not kernels.onednn_usable(torch.bfloat16),
                                  reason="this torch build or CPU has no oneDNN bf16 prepacked linear")


@needs_onednn
@pytest.mark.parametrize("rows", [1, 5, 64])
def test_prepacked_linear_equals_f_linear(rows):
    torch.manual_seed(0)
    weight = (torch.randn(96, 64) * 0.05).bfloat16()
    x = torch.randn(rows, 64).bfloat16()
    linear = kernels.make_linear(weight, "onednn")
    assert isinstance(linear, kernels.PrepackedLinear)
    assert (linear.out_features, linear.in_features) == (96, 64)
    got, want = linear(x), F.linear(x, weight)
    assert got.shape == want.shape and got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), atol=1e-2, rtol=1e-2)
    # a non-contiguous input (a transposed view) gives the same rows
    torch.testing.assert_close(linear(x.t().contiguous().t()).float(), want.float(), atol=1e-2, rtol=1e-2)


def test_kernel_choice(monkeypatch):
    monkeypatch.delenv("QEMBED_CPU_GEMM", raising=False)
    assert kernels.gemm_setting() == "auto"
    assert kernels.linear_kernel("cpu", torch.bfloat16, "aten") == "aten"
    assert kernels.linear_kernel("cpu", torch.float32) == "aten"  # MKL's sgemm keeps fp32
    assert kernels.linear_kernel("cuda", torch.bfloat16, "onednn") == "aten"
    expected = "onednn" if kernels.onednn_usable(torch.bfloat16) else "aten"
    assert kernels.linear_kernel("cpu", torch.bfloat16) == expected
    monkeypatch.setenv("QEMBED_CPU_GEMM", "ATEN")
    assert kernels.linear_kernel("cpu", torch.bfloat16) == "aten"
    monkeypatch.setenv("QEMBED_CPU_GEMM", "fast")
    with pytest.raises(InputError, match="QEMBED_CPU_GEMM must be one of auto, onednn, aten"):
        kernels.linear_kernel("cpu", torch.bfloat16)
    assert isinstance(kernels.make_linear(torch.zeros(3, 2), "aten"), kernels.PlainLinear)


@needs_onednn
def test_packed_pass_on_prepacked_weights_keeps_parity(tiny_model_path, monkeypatch):
    """bf16 packed passes on oneDNN prepacked weights give the vectors of ``F.linear`` ones."""
    texts = ["花呗怎么还款", "a", "The quick brown fox jumps over the lazy dog " * 4, "借呗能分期吗"]
    monkeypatch.setenv("QEMBED_CPU_GEMM", "auto")
    fast = LocalEncoder(str(tiny_model_path), device="cpu", dtype="bfloat16", compile=False)
    monkeypatch.setenv("QEMBED_CPU_GEMM", "aten")
    plain = LocalEncoder(str(tiny_model_path), device="cpu", dtype="bfloat16", compile=False)
    assert fast._packed.gemm == "onednn" and plain._packed.gemm == "aten"
    assert isinstance(fast._packed.layers[0].gate_up, kernels.PrepackedLinear)
    a, b = fast.encode(texts), plain.encode(texts)
    assert float(np.min(np.sum(a * b, axis=1))) >= 0.9999
    singles = np.concatenate([fast.encode([t]) for t in texts])
    assert float(np.min(np.sum(singles * a, axis=1))) >= 0.9999
