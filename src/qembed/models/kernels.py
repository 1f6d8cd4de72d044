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
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import Protocol

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

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight
        self.out_features, self.in_features = (int(s) for s in weight.shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


class PrepackedLinear:
    """oneDNN's inner product on a weight reordered once into oneDNN's blocked layout (CPU).

    The reordered copy is an opaque oneDNN tensor; the row-major weight is not kept by this object.
    """

    kind = "onednn"

    def __init__(self, weight: torch.Tensor) -> None:
        self.out_features, self.in_features = (int(s) for s in weight.shape)
        self.dtype = weight.dtype
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), PACK_ROWS_HINT)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_contiguous():
            x = x.contiguous()
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")


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


def make_linear(weight: torch.Tensor, kernel: str) -> Linear:
    """A :class:`Linear` for ``weight`` (``(out, in)``) with ``kernel`` (from :func:`linear_kernel`)."""
    if kernel == "onednn":
        return PrepackedLinear(weight)
    return PlainLinear(weight)
