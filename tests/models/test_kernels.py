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


needs_int8 = pytest.mark.skipif(not kernels.int8_usable(), reason="this torch build has no oneDNN int8 linear")


@needs_int8
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [False, True])
def test_int8_linear_follows_f_linear_row_by_row(dtype, bias):
    torch.manual_seed(0)
    weight = torch.randn(96, 64) * 0.05
    b = torch.randn(96) if bias else None
    x = torch.randn(7, 64) * torch.logspace(-2, 2, 7)[:, None]  # rows of very different sizes
    x[3, 5] = 40.0  # an outlier costs its own row only
    linear = kernels.make_linear(weight, "int8", b)
    assert isinstance(linear, kernels.Int8Linear) and linear.kind == "int8"
    got = linear(x.to(dtype))
    want = F.linear(x, weight, b)
    assert got.dtype == dtype and got.shape == want.shape
    cos = F.cosine_similarity(got.float(), want, dim=1)
    assert cos.min() > 0.998, cos
    # the eager quantizer gives the same codes and scales as the compiled one
    ones = torch.ones(64)
    eager = kernels.row_quantizer(False)(x.to(dtype), ones)
    fused = kernels.row_quantizer(True)(x.to(dtype), ones)
    assert torch.equal(eager[0], fused[0])
    torch.testing.assert_close(eager[1], fused[1])
    # a zero row stays zero (no division by zero)
    zero = kernels.Int8Linear(weight)(torch.zeros(2, 64, dtype=dtype))
    assert torch.isfinite(zero.float()).all() and zero.abs().max() == 0


@needs_int8
def test_smoothing_moves_a_large_input_channel_into_the_weights():
    """SmoothQuant: a channel that is large in every token sets every token's scale; dividing it
    out (and into the weight's column) gives the other channels their precision back."""
    torch.manual_seed(1)
    weight = torch.randn(128, 256) * 0.05
    x = torch.randn(64, 256)
    x[:, 7] *= 200.0  # one channel ~200x the others, in every token
    want = F.linear(x, weight)
    recorder = kernels.RangeRecorder(weight, None, kernels.make_linear(weight, "aten"))
    torch.testing.assert_close(recorder(x), want)  # recording leaves the float product as it was
    assert recorder.input_max is not None and recorder.input_max.argmax() == 7
    plain = kernels.Int8Linear(weight)
    smoothed = recorder.quantized(None, alpha=0.5)
    assert smoothed.smoothed and not plain.smoothed
    err_plain = (plain(x) - want).norm() / want.norm()
    err_smoothed = (smoothed(x) - want).norm() / want.norm()
    assert err_smoothed < 0.5 * err_plain, (err_smoothed, err_plain)
    # the factors: max|X|**a / max|W|**(1-a), per input channel
    factors = kernels.smooth_factors(recorder.input_max, weight, 0.5)
    expected = recorder.input_max.sqrt() / weight.abs().amax(0).sqrt()
    torch.testing.assert_close(factors, expected)


@needs_int8
def test_int8_dtype_runs_packed_passes_close_to_float32(tiny_model_path, tiny_encoder):
    enc = LocalEncoder(str(tiny_model_path), device="cpu", dtype="int8")
    info = enc.info()
    assert info["dtype"] == "int8" and info["packed"]
    assert info["activation_dtype"] in ("bfloat16", "float32")
    assert all(isinstance(layer.gate_up, kernels.Int8Linear) and layer.gate_up.smoothed
               for layer in enc._packed.layers)  # calibrated at load
    texts = ["怎么还花呗", "如何归还蚂蚁花呗", "借呗能分期吗", "a longer sentence " * 12]
    cos = np.sum(enc.encode(texts) * tiny_encoder.encode(texts), axis=1)
    assert cos.min() > 0.99, cos
    with pytest.raises(InputError, match="int8 runs the packed passes"):
        LocalEncoder(str(tiny_model_path), device="cpu", dtype="int8", packed=False)


@needs_int8
def test_int8_keeps_minilm_meaning(minilm_path, minilm_encoder):
    """all-MiniLM-L6-v2 (real weights): smoothed int8 products stay within 0.99 cosine of fp32
    (0.9956 worst over 600 AFQMC sentences when measured; unsmoothed per-token scales 0.991)."""
    from qembed.testing import afqmc_sentences

    texts = afqmc_sentences(48) + ["A man is playing a guitar.", "Someone plays an instrument.",
                                   "The stock market fell sharply today."]
    int8 = LocalEncoder(str(minilm_path), device="cpu", dtype="int8")
    a, b = int8.encode(texts), minilm_encoder.encode(texts)
    assert np.sum(a * b, axis=1).min() > 0.993
    assert all(layer.qkv.smoothed for layer in int8._packed.layers)
    # meaning: the paraphrase still outranks the unrelated sentence
    assert a[-3] @ a[-2] > a[-3] @ a[-1] + 0.2


@needs_int8
def test_int8_is_refused_where_the_kernels_saturate(tiny_model_path):
    """Capped to AVX2 (an AVX2-only CPU), oneDNN's u8 x s8 kernels saturate: the check at load
    catches the wrong products and dtype int8 is refused with what to use instead."""
    import subprocess
    import sys

    code = ("from qembed.models.kernels import int8_usable; from qembed import load_encoder\n"
            f"print(int8_usable())\nload_encoder({str(tiny_model_path)!r}, dtype='int8')\n")
    env = {**__import__("os").environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "False"
    assert "fail qembed's check" in done.stderr and "backend openvino" in done.stderr
