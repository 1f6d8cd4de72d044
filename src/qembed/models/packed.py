"""Packed forward passes for Qwen3 embedding models: real tokens only, fused element-wise ops.

A padded batch of one-sentence requests costs its longest input times its size; a packed batch
costs the tokens it holds. :class:`PackedQwen3` runs the Qwen3 decoder (the architecture of
Qwen3-Embedding 0.6B/4B/8B) over the sequences of a pass concatenated into one ``(tokens,
hidden)`` matrix:

- every projection, RMSNorm, rotary embedding and SiLU runs on the packed tokens (no padding);
- rotary positions restart at 0 for each sequence;
- attention runs per sequence, causal: on CUDA through flash-attention's varlen kernel when it is
  installed; otherwise short sequences are laid back to back in chunks of 128 slots attended
  under a block-diagonal causal mask, and longer ones are scattered into a ``(batch, longest)``
  layout for :func:`torch.nn.functional.scaled_dot_product_attention` with ``is_causal=True`` —
  with right padding a real query only sees real keys, so no mask is needed. Both are exact;
- only the last token of each sequence is pooled, so the last layer computes its queries, its
  attention output, its MLP and the final norm for those tokens only;
- the element-wise work of a layer (residual add + RMSNorm, q/k RMSNorm + rotary, SiLU x up) is
  compiled into fused kernels with :func:`torch.compile` when ``compile=True``; matrix products
  stay with the backend's GEMM (oneDNN on CPU, cuBLAS on CUDA).

The weights are the loaded Hugging Face ``Qwen3Model``'s, shared (q/k/v and gate/up are fused by
concatenation, a one-time copy). The output is the final hidden state at each sequence's last
token — what sentence-transformers' last-token pooling returns — before normalisation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from qembed.models.adapters import LoraPass, lora_hook
from qembed.models.encoder import fill_to, row_buckets
from qembed.models.calibration import SMOOTH_ALPHA
from qembed.models.kernels import LayerProducts, Linear, linear_kernel

logger = logging.getLogger(__name__)

#: Slots per attention chunk for passes of short sequences (the longest sequence widens it), and
#: the longest sequence laid out that way; passes with longer sequences pad each sequence to the
#: longest instead. A chunk of W slots costs W x W attention scores per head for about W tokens,
#: so narrow chunks waste less on the block-diagonal mask, and wide ones make fewer, larger
#: products: 128 ran fastest of 64/128/256 on a 2-core AMX CPU for 64 one-sentence inputs, and
#: 32 of 32/64/128 on a 2-core AMD EPYC (Zen 4, no AMX) for 128 AFQMC sentences (random
#: Qwen3-0.6B: bf16 3.38 -> 3.12 s, int8 2.34 -> 2.04 s). See :func:`chunk_tokens`.
CHUNK_TOKENS = 128
CHUNK_TOKENS_NO_AMX = 32
CHUNK_MAX_SEQUENCE = 256


@dataclass
class _Layer:
    input_norm: torch.Tensor
    qkv: Linear  # (q + 2 kv heads) * head_dim x hidden
    q_norm: torch.Tensor
    k_norm: torch.Tensor
    o: Linear
    post_norm: torch.Tensor
    gate_up: Linear  # 2 * intermediate x hidden
    down: Linear


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen3's RMSNorm: statistics in float32, scaled in the weight's dtype."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


def _add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                  eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``residual + x`` and its RMSNorm (one fused kernel when compiled)."""
    summed = residual + x
    return _rms_norm(summed, weight, eps), summed


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _qk_norm_rope(qkv: torch.Tensor, q_norm: torch.Tensor, k_norm: torch.Tensor, cos: torch.Tensor,
                  sin: torch.Tensor, heads: int, kv_heads: int, head_dim: int,
                  eps: float) -> torch.Tensor:
    """Per-head RMSNorm and rotary on the q and k heads of the fused projection.

    ``qkv`` is ``(tokens, (heads + 2 kv_heads) x head_dim)``; the result is ``(tokens, heads +
    2 kv_heads, head_dim)`` with q and k normed and rotated and v as it was — one tensor, so
    attention can lay out all three with one copy. ``cos``/``sin`` are ``(tokens, 1, head_dim)``.
    """
    t = qkv.shape[0]
    q, k, v = qkv.view(t, heads + 2 * kv_heads, head_dim).split([heads, kv_heads, kv_heads], dim=1)
    q = _rotate(_rms_norm(q, q_norm, eps), cos, sin)
    k = _rotate(_rms_norm(k, k_norm, eps), cos, sin)
    return torch.cat((q, k, v), dim=1)


def _silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


def flash_varlen_kernel(device: torch.device, dtype: torch.dtype) -> Callable | None:
    """flash-attention's ``flash_attn_varlen_func`` for half-precision passes on CUDA when the
    ``flash_attn`` package is installed, else None (the passes use SDPA)."""
    if device.type != "cuda" or dtype not in (torch.bfloat16, torch.float16):
        return None
    try:
        from flash_attn import flash_attn_varlen_func  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - optional
        return None
    return flash_attn_varlen_func


def chunk_tokens(device: torch.device | str) -> int:
    """Slots per attention chunk on ``device``: :data:`CHUNK_TOKENS_NO_AMX` on CPUs without AMX,
    :data:`CHUNK_TOKENS` on AMX CPUs and accelerators."""
    if torch.device(device).type != "cpu":
        return CHUNK_TOKENS
    from qembed.models.runtimes import cpu_kind

    return CHUNK_TOKENS if cpu_kind() == "amx" else CHUNK_TOKENS_NO_AMX


def chunk_layout(lengths: list[int], seq_of: torch.Tensor, positions: torch.Tensor,
                 min_width: int) -> tuple[int, int, torch.Tensor, torch.Tensor]:
    """Lay sequences of ``lengths`` back to back in chunks of ``max(min_width, longest)`` slots,
    a sequence never split across chunks. Returns ``(width, chunks, slots, segment)``: each
    packed token's slot, and each slot's sequence (-1 for padding slots)."""
    width = max(min_width, max(lengths))
    chunk_of, offset, c, used = [], [], 0, 0
    for length in lengths:
        if used and used + length > width:
            c, used = c + 1, 0
        chunk_of.append(c)
        offset.append(used)
        used += length
    chunks = c + 1
    slots = torch.tensor(chunk_of)[seq_of] * width + torch.tensor(offset)[seq_of] + positions
    segment = torch.full((chunks * width,), -1, dtype=torch.long)
    segment[slots] = seq_of
    return width, chunks, slots, segment


class PackedQwen3:
    """Last-token hidden states of a Qwen3 decoder over packed sequences.

    Args:
        model: a loaded ``transformers`` ``Qwen3Model`` (eval mode); its weights are used in place.
        compile: fuse the element-wise ops with :func:`torch.compile` (a C++ compiler is needed on
            CPU; on failure the eager functions are used and a warning is logged).
        int8: run the matrix products on int8 (:class:`~qembed.models.kernels.Int8Linear`: weights
            quantized per output channel at load, activations per token at run time; CPU).
        int8_compiled: quantize the activations in one compiled kernel (else eagerly).
        int8_calibration: token ids the float model runs once at load to smooth the int8
            products' inputs (SmoothQuant, :mod:`qembed.models.calibration`); none: not smoothed.
        smooth_alpha: SmoothQuant's migration strength.
    """

    def __init__(self, model: Any, *, compile: bool = False, int8: bool = False,
                 int8_compiled: bool = True, int8_calibration: Sequence[Sequence[int]] | None = None,
                 smooth_alpha: float = SMOOTH_ALPHA) -> None:
        config = model.config
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads)
        self.head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // self.heads)
        self.hidden = int(config.hidden_size)
        self.eps = float(config.rms_norm_eps)
        self.scale = self.head_dim ** -0.5
        weight = model.embed_tokens.weight
        self.device = weight.device
        self.dtype = weight.dtype
        self.embed = weight.detach()
        self.final_norm = model.norm.weight.detach()
        self.layers: list[_Layer] = []
        #: the matrix-product kernel (qembed.models.kernels: oneDNN prepacked weights on CPU bf16)
        self.gemm = linear_kernel(self.device, self.dtype)
        products = LayerProducts(self.gemm, int8=int8, compiled=int8_compiled, calibrating=bool(int8_calibration))
        #: the row count each product is filled up to (:func:`~qembed.models.encoder.row_buckets`)
        self.fill_rows = row_buckets(self.device, self.dtype)

        def linear(*weights: torch.Tensor) -> Linear:  # q/k/v and gate/up fused by concatenation
            return products(torch.cat(weights) if len(weights) > 1 else weights[0])

        with torch.no_grad():
            for layer in model.layers:
                attn, mlp = layer.self_attn, layer.mlp
                if getattr(attn.q_proj, "bias", None) is not None:
                    raise ValueError("Qwen3 attention with biases is not supported by the packed path")
                self.layers.append(_Layer(
                    input_norm=layer.input_layernorm.weight.detach(),
                    qkv=linear(attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight),
                    q_norm=attn.q_norm.weight.detach(),
                    k_norm=attn.k_norm.weight.detach(),
                    o=linear(attn.o_proj.weight),
                    post_norm=layer.post_attention_layernorm.weight.detach(),
                    gate_up=linear(mlp.gate_proj.weight, mlp.up_proj.weight),
                    down=linear(mlp.down_proj.weight),
                ))
        rope = getattr(config, "rope_parameters", None) or {}
        theta = float(rope.get("rope_theta", getattr(config, "rope_theta", 1_000_000.0)))
        rope_type = rope.get("rope_type", rope.get("type", "default")) or "default"
        if rope_type != "default":
            raise ValueError(f"rope type {rope_type!r} is not supported by the packed path")
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32,
                                                      device=self.device) / self.head_dim))
        self._rope_len = 0
        self._cos = self._sin = torch.empty(0)
        self._flash = self._find_flash_varlen()
        #: slots per attention chunk of short sequences (:func:`chunk_tokens`)
        self.chunk_tokens = chunk_tokens(self.device)
        self._add_norm: Callable = _add_rms_norm
        self._qk: Callable = _qk_norm_rope
        self._silu: Callable = _silu_mul
        self.compiled = False
        if products.calibrating:
            assert int8_calibration is not None
            self.forward(int8_calibration)
            products.quantize_layers(self.layers, ("qkv", "o", "gate_up", "down"), smooth_alpha)
        if int8:
            self.gemm = "int8"
        if compile:
            self._compile()

    # ------------------------------------------------------------------ setup
    def _find_flash_varlen(self) -> Callable | None:
        return flash_varlen_kernel(self.device, self.dtype)

    def _compile(self) -> None:
        from qembed.models.compile import use_persistent_cache

        use_persistent_cache()
        try:
            kwargs: dict[str, Any] = {"dynamic": True, "fullgraph": True}
            self._add_norm = torch.compile(_add_rms_norm, **kwargs)
            self._qk = torch.compile(_qk_norm_rope, **kwargs)
            self._silu = torch.compile(_silu_mul, **kwargs)
            self.compiled = True
        except Exception as exc:  # noqa: BLE001 - fall back to eager
            logger.warning("torch.compile is unavailable (%s); using unfused element-wise ops", exc)

    def enable_compile(self) -> bool:
        """Compile the fused ops now and warm them up (a model loaded eagerly, then given a large
        call); ``False`` when compilation is unavailable (the eager ops stay)."""
        if not self.compiled:
            self._compile()
            if self.compiled:
                self.warmup()
        return self.compiled

    def warmup(self, lengths: Sequence[int] = (7, 3)) -> None:
        """Run (and compile) passes so the first request does not pay for it: one of several
        sequences and, when compiled, one of a single sequence (a size torch specialises on)."""
        seqs = [[1] * n for n in lengths]
        try:
            self.forward(seqs)
            if self.compiled:
                self.forward(seqs[:1])
        except Exception as exc:  # noqa: BLE001 - compilation can fail without a compiler
            if not self.compiled:
                raise
            logger.warning("compiled pass failed (%s); falling back to unfused element-wise ops", exc)
            self._add_norm, self._qk, self._silu = _add_rms_norm, _qk_norm_rope, _silu_mul
            self.compiled = False
            self.forward(seqs)

    def _rope(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if n > self._rope_len:
            size = max(n, 2 * self._rope_len, 512)
            freqs = torch.outer(torch.arange(size, dtype=torch.float32, device=self.device), self.inv_freq)
            emb = torch.cat((freqs, freqs), dim=-1)
            self._cos, self._sin = emb.cos().to(self.dtype), emb.sin().to(self.dtype)
            self._rope_len = size
        return self._cos, self._sin

    # ------------------------------------------------------------------ forward
    @torch.inference_mode()
    def forward(self, seqs: Sequence[Sequence[int]], lora: LoraPass | None = None) -> torch.Tensor:
        """``(len(seqs), hidden)`` final hidden states at each sequence's last token (``lora``: the
        LoRA adapters of the sequences, :mod:`qembed.models.adapters`)."""
        asked = len(seqs)
        fill = self.fill_rows if lora is None else None  # a LoRA plan counts the caller's rows
        if fill is not None:  # filler sequences (token 0) bring the pass to a bucket's token count
            seqs = fill_to(seqs, 0, fill(sum(len(s) for s in seqs)))
        lengths = [len(s) for s in seqs]
        n, longest, total = len(lengths), max(lengths), sum(lengths)
        dev = self.device
        flat = torch.tensor([t for s in seqs for t in s], dtype=torch.long)
        lens = torch.tensor(lengths, dtype=torch.long)
        starts = torch.cumsum(lens, 0) - lens
        seq_of = torch.repeat_interleave(torch.arange(n), lens)
        positions = torch.arange(total) - starts[seq_of]
        last = (starts + lens - 1).to(dev)
        last_rows = fill(n) if fill is not None else n  # the last layer's rows, filled the same way
        flat, positions = flat.to(dev), positions.to(dev)
        cos_table, sin_table = self._rope(longest)
        cos = cos_table.index_select(0, positions).unsqueeze(1)
        sin = sin_table.index_select(0, positions).unsqueeze(1)
        if self._flash is not None:
            cu = torch.zeros(n + 1, dtype=torch.int32)
            cu[1:] = torch.cumsum(lens, 0)
            attend = self._flash_attention(cu.to(dev), longest)
        elif n > 1 and longest <= CHUNK_MAX_SEQUENCE:
            attend = self._chunked_attention(lengths, seq_of, positions.cpu())
        else:
            slots = (seq_of * longest + positions.cpu()).to(dev)
            attend = self._padded_attention(slots, n, longest)

        x = F.embedding(flat, self.embed)
        residual = torch.zeros_like(x)
        heads, kv_heads, d = self.heads, self.kv_heads, self.head_dim
        delta = lora_hook(lora)
        for i, layer in enumerate(self.layers):
            h, residual = self._add_norm(x, residual, layer.input_norm, self.eps)
            qkv = self._qk(delta(i, "qkv", h, layer.qkv(h)), layer.q_norm, layer.k_norm, cos, sin,
                           heads, kv_heads, d, self.eps)
            if i == len(self.layers) - 1:
                # Only the last tokens are pooled: the rest of the model runs for them alone.
                q, k, v = qkv.split([heads, kv_heads, kv_heads], dim=1)
                out = self._last_query_attention(q.index_select(0, last), k, v, n, longest, lens)
                if last_rows > n:
                    out = F.pad(out, (0, 0, 0, last_rows - n))
                    last = F.pad(last, (0, last_rows - n), value=0)
                x = delta(i, "o", out, layer.o(out))
                residual = residual.index_select(0, last)
            else:
                out = attend(qkv)
                x = delta(i, "o", out, layer.o(out))
            h, residual = self._add_norm(x, residual, layer.post_norm, self.eps)
            act = self._silu(delta(i, "gate_up", h, layer.gate_up(h)))
            x = delta(i, "down", act, layer.down(act))
        hidden, _ = self._add_norm(x, residual, self.final_norm, self.eps)
        return hidden[:asked]

    __call__ = forward

    def _laid_out_attention(self, slots: torch.Tensor, rows: int, width: int,
                            mask: torch.Tensor | None) -> Callable:
        """Attention over packed q/k/v copied into ``rows`` rows of ``width`` slots (``slots``:
        each token's slot): causal per row when ``mask`` is None, else under ``mask``."""
        heads, kv_heads, d = self.heads, self.kv_heads, self.head_dim

        def attend(qkv: torch.Tensor) -> torch.Tensor:
            # one copy lays q, k and v out as (rows, heads, width, head_dim)
            laid = qkv.new_zeros(rows * width, heads + 2 * kv_heads, d)
            laid.index_copy_(0, slots, qkv)
            laid = laid.view(rows, width, heads + 2 * kv_heads, d).transpose(1, 2)
            q, k, v = laid.split([heads, kv_heads, kv_heads], dim=1)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                               scale=self.scale, enable_gqa=heads != kv_heads)
            return o.transpose(1, 2).reshape(rows * width, heads * d).index_select(0, slots)

        return attend

    def _padded_attention(self, slots: torch.Tensor, n: int, longest: int) -> Callable:
        """Each sequence in a row of its own, padded to the longest (right padding: a real query
        only sees real keys under the causal mask)."""
        return self._laid_out_attention(slots, n, longest, None)

    def _chunked_attention(self, lengths: list[int], seq_of: torch.Tensor, positions: torch.Tensor) -> Callable:
        """Attention for many short sequences: they are laid out back to back in chunks of
        :attr:`chunk_tokens` slots, and each chunk attends under a block-diagonal causal mask
        (a token sees the earlier tokens of its own sequence only). A pass of one-sentence
        requests then costs a few well-filled chunks instead of every sequence padded to the
        longest one."""
        width, chunks, slots, segment = chunk_layout(lengths, seq_of, positions, self.chunk_tokens)
        place = torch.zeros(chunks * width, dtype=torch.long)
        place[slots] = positions
        segment, place = segment.view(chunks, width), place.view(chunks, width)
        # padding slots (segment -1) see each other only, so no row is fully masked
        mask = (segment.unsqueeze(2) == segment.unsqueeze(1)) & (place.unsqueeze(2) >= place.unsqueeze(1))
        mask = mask.unsqueeze(1).to(self.device)
        return self._laid_out_attention(slots.to(self.device), chunks, width, mask)

    def _flash_attention(self, cu: torch.Tensor, longest: int) -> Callable:
        flash = self._flash
        heads, kv_heads, d = self.heads, self.kv_heads, self.head_dim

        def attend(qkv: torch.Tensor) -> torch.Tensor:
            q, k, v = qkv.split([heads, kv_heads, kv_heads], dim=1)
            o = flash(q, k, v, cu, cu, longest, longest, softmax_scale=self.scale, causal=True)
            return o.reshape(-1, heads * d)

        return attend

    def _last_query_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n: int,
                              longest: int, lens: torch.Tensor) -> torch.Tensor:
        """Attention of each sequence's last query over all of its keys (no causal mask needed)."""
        heads, kv_heads, d = self.heads, self.kv_heads, self.head_dim
        dev = k.device
        lens_d = lens.to(dev)
        starts = torch.cumsum(lens_d, 0) - lens_d
        pos = torch.arange(longest, device=dev)
        valid = pos.unsqueeze(0) < lens_d.unsqueeze(1)  # (n, longest)
        index = (starts.unsqueeze(1) + pos.unsqueeze(0)).clamp(max=k.shape[0] - 1)
        kp = k.index_select(0, index.reshape(-1)).view(n, longest, kv_heads, d).transpose(1, 2)
        vp = v.index_select(0, index.reshape(-1)).view(n, longest, kv_heads, d).transpose(1, 2)
        qp = q.reshape(n, heads, 1, d)
        mask = valid.view(n, 1, 1, longest)
        o = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=mask, scale=self.scale,
                                           enable_gqa=heads != kv_heads)
        return o.reshape(n, heads * d)


def supports_packed(model: Any) -> bool:
    """Whether ``model`` (a transformers model) is a Qwen3 decoder the packed path can run."""
    config = getattr(model, "config", None)
    return (
        getattr(config, "model_type", None) == "qwen3"
        and type(model).__name__ == "Qwen3Model"
        and not getattr(config, "attention_bias", False)
        and getattr(config, "hidden_act", "silu") == "silu"
        and not getattr(config, "use_sliding_window", False)
    )
