"""Packed forward passes for encoder-only models (BERT, RoBERTa, XLM-RoBERTa, NomicBERT): real tokens only.

The models most sentence-transformers users serve — all-MiniLM-L6-v2, bge, e5, gte (BERT) and
multilingual-e5, bge-m3 (XLM-RoBERTa) — are bidirectional encoders with absolute positions;
nomic-embed-text (NomicBERT) has rotary positions and a gated MLP.
:class:`PackedEncoder` runs them over the sequences of a pass concatenated into one ``(tokens,
hidden)`` matrix, as :class:`~qembed.models.packed.PackedQwen3` does for Qwen3:

- embeddings, projections, GELU and LayerNorms run on the packed tokens (no padding);
- positions restart for each sequence — at 0 for BERT, and after ``padding_idx`` for the RoBERTa
  family (``padding_idx + 1`` for the first token, pad tokens keeping ``padding_idx``, as
  ``create_position_ids_from_input_ids`` numbers them); NomicBERT's rotary positions at 0; token
  types default to 0;
- attention is non-causal within each sequence: on CUDA through flash-attention's varlen kernel
  (``flash_attn_varlen_func``) when it is installed; otherwise short sequences are laid back to
  back in chunks of :data:`CHUNK_TOKENS` slots under a block-diagonal mask (on a CPU as explicit
  matrix products with a float32 softmax, on CUDA with
  :func:`torch.nn.functional.scaled_dot_product_attention`), and longer ones are laid out
  ``(batch, longest)`` with a key-padding mask for SDPA;
- pooling is the model's own (the sentence-transformers ``Pooling`` module's modes: ``cls``,
  ``mean``, ``mean_sqrt_len_tokens``, ``max``, ``weightedmean``, ``lasttoken``, or several
  concatenated), per sequence; with ``cls`` or ``lasttoken`` alone the last layer runs its
  queries, output projection and MLP for the pooled tokens only;
- residual add + LayerNorm are fused with :func:`torch.compile` when ``compile=True``.

The weights are the loaded Hugging Face model's (q/k/v fused by concatenation, a one-time copy).
The output is the pooled vector of each sequence, before normalisation.
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
from qembed.models.kernels import LayerProducts, Linear

logger = logging.getLogger(__name__)

#: Slots per attention chunk for passes of short sequences, and the longest sequence laid out
#: that way; passes with longer sequences pad to the longest. Encoders have small heads (MiniLM:
#: 12 x 32), so on a CPU a chunk's attention runs as two batched matrix products under an additive
#: mask: for 64 one-sentence inputs this took half the time of SDPA's CPU kernel over chunks of 128
#: slots, and 64 slots beat 48, 96 and 128 (2-core AMD EPYC Zen 4, bf16, one thread).
CHUNK_TOKENS = 64
CHUNK_MAX_SEQUENCE = 256

#: transformers model types whose layers this module runs, and whether positions start after the
#: padding index (the RoBERTa family) rather than at 0 (BERT, NomicBERT).
ENCODER_TYPES = {"bert": False, "roberta": True, "xlm-roberta": True, "camembert": True, "nomic_bert": False}
#: the model types with rotary positions (no position table), a gated MLP and no biases
ROTARY_TYPES = ("nomic_bert",)

#: sentence-transformers pooling modes the packed path computes per sequence.
POOLING_MODES = ("cls", "mean", "mean_sqrt_len_tokens", "max", "weightedmean", "lasttoken")


@dataclass
class _Layer:
    qkv: Linear  # 3 hidden x hidden, with its bias
    o: Linear
    attn_norm: tuple[torch.Tensor, torch.Tensor]
    up: Linear  # intermediate x hidden; gated MLPs: 2 intermediate x hidden (gate, then up)
    down: Linear
    out_norm: tuple[torch.Tensor, torch.Tensor]


def _bias(linear: Any) -> torch.Tensor | None:
    bias = getattr(linear, "bias", None)
    return bias.detach() if bias is not None else None


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def _add_layer_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    eps: float) -> torch.Tensor:
    """``LayerNorm(x + residual)`` (one fused kernel when compiled)."""
    return F.layer_norm(x + residual, (x.shape[-1],), weight, bias, eps)


def pooling_modes(pooling: Any) -> tuple[str, ...]:
    """The modes of a sentence-transformers ``Pooling`` module (or a mode name, or a tuple of them)."""
    mode = getattr(pooling, "pooling_mode", pooling)
    modes = (mode,) if isinstance(mode, str) else tuple(mode or ())
    return tuple(str(m) for m in modes)


def supports_packed_encoder(model: Any, pooling: Any = "mean") -> bool:
    """Whether ``model`` (a transformers model) is an encoder the packed path runs, with ``pooling``
    (a sentence-transformers ``Pooling`` module or mode names)."""
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    modes = pooling_modes(pooling)
    if kind not in ENCODER_TYPES or not modes or any(m not in POOLING_MODES for m in modes):
        return False
    if getattr(pooling, "include_prompt", True) is False:  # prompt tokens left out of pooling
        return False
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return False
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        return False
    embeddings = getattr(model, "embeddings", None)
    if kind in ROTARY_TYPES:
        rope = getattr(config, "rope_parameters", None) or {}
        layers = getattr(model, "layers", None)
        return (embeddings is not None and bool(layers) and rope.get("rope_type", "default") == "default"
                and int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
                * config.num_attention_heads == config.hidden_size)
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if embeddings is None or layers is None or not len(layers):
        return False
    if getattr(embeddings, "word_embeddings", None) is None or \
            embeddings.word_embeddings.weight.shape[1] != config.hidden_size:  # ELECTRA-style projection
        return False
    return all(hasattr(layer, "attention") and hasattr(layer.attention, "self") for layer in layers)


class PackedEncoder:
    """Pooled vectors of a BERT-family encoder over packed sequences.

    Args:
        model: a loaded ``transformers`` ``BertModel``, ``RobertaModel``, ``XLMRobertaModel`` …
            (eval mode); its weights are used in place.
        pooling: the sentence-transformers ``Pooling`` module, or its mode name(s).
        compile: fuse residual add + LayerNorm with :func:`torch.compile` (a C++ compiler is
            needed on CPU; on failure the eager functions are used and a warning is logged).
        static_shapes: compile for fixed token counts (the caller fills passes to
            :data:`~qembed.models.encoder.TOKEN_BUCKETS`, as :class:`~qembed.models.local.LocalEncoder`
            does on CUDA) instead of dynamic shapes.
        int8, int8_compiled, int8_calibration, smooth_alpha: int8 products, as for
            :class:`~qembed.models.packed.PackedQwen3`.
    """

    def __init__(self, model: Any, pooling: Any = "mean", *, compile: bool = False,
                 static_shapes: bool = False, int8: bool = False, int8_compiled: bool = True,
                 int8_calibration: Sequence[Sequence[int]] | None = None,
                 smooth_alpha: float = SMOOTH_ALPHA) -> None:
        if not supports_packed_encoder(model, pooling):
            raise ValueError(f"{type(model).__name__} with pooling {pooling_modes(pooling)} is not supported "
                             "by the packed encoder path")
        config = model.config
        self.modes = pooling_modes(pooling)
        self.rotary = config.model_type in ROTARY_TYPES
        self.hidden = int(config.hidden_size)
        self.heads = int(config.num_attention_heads)
        self.head_dim = self.hidden // self.heads
        self.scale = self.head_dim ** -0.5
        self.eps = float(config.layer_norm_eps)
        emb = model.embeddings
        weight = emb.word_embeddings.weight
        self.device = weight.device
        self.dtype = weight.dtype
        self.word = weight.detach()
        self.position = None if self.rotary else emb.position_embeddings.weight.detach()
        token_types = getattr(emb, "token_type_embeddings", None)
        self.token_type = token_types.weight.detach() if token_types is not None else None
        self.embed_norm = (emb.LayerNorm.weight.detach(), emb.LayerNorm.bias.detach())
        self.pad_id = getattr(config, "pad_token_id", None)
        #: RoBERTa-family positions start after the padding index (``padding_idx + 1``).
        self.position_offset = ENCODER_TYPES[config.model_type] and self.pad_id is not None
        self.max_positions = int(config.max_position_embeddings)
        self.layers: list[_Layer] = []
        self.int8 = bool(int8)
        self._products = LayerProducts("aten", int8=self.int8, compiled=int8_compiled,
                                       calibrating=bool(int8_calibration))
        if self.rotary:
            self._load_rotary(model)
        else:
            self._load_bert(model)
        #: with CLS or last-token pooling alone, the last layer only runs for the pooled tokens
        self.pooled_tokens_only = self.modes in (("cls",), ("lasttoken",))
        self._flash = self._find_flash_varlen()
        self._add_norm: Callable = _add_layer_norm
        self.static_shapes = bool(static_shapes)
        #: the token count each pass is filled up to (:func:`~qembed.models.encoder.row_buckets`;
        #: not with static shapes, whose caller fills passes itself)
        self.fill_rows = None if static_shapes else row_buckets(self.device, self.dtype)
        self.compiled = False
        if self._products.calibrating:
            assert int8_calibration is not None
            self.forward(int8_calibration)
            self._products.quantize_layers(self.layers, ("qkv", "o", "up", "down"), smooth_alpha)
        if compile:
            self._compile()

    # ------------------------------------------------------------------ setup
    def _load_bert(self, model: Any) -> None:
        self.gated = False
        self.act: Callable = model.encoder.layer[0].intermediate.intermediate_act_fn
        with torch.no_grad():
            for layer in model.encoder.layer:
                att, out = layer.attention.self, layer.attention.output
                self.layers.append(_Layer(
                    qkv=self._products(torch.cat([att.query.weight, att.key.weight, att.value.weight]),
                                       torch.cat([att.query.bias, att.key.bias, att.value.bias])),
                    o=self._products(out.dense.weight, out.dense.bias),
                    attn_norm=(out.LayerNorm.weight.detach(), out.LayerNorm.bias.detach()),
                    up=self._products(layer.intermediate.dense.weight, layer.intermediate.dense.bias),
                    down=self._products(layer.output.dense.weight, layer.output.dense.bias),
                    out_norm=(layer.output.LayerNorm.weight.detach(), layer.output.LayerNorm.bias.detach()),
                ))

    def _load_rotary(self, model: Any) -> None:
        """NomicBERT: q/k/v/o and a gated MLP without biases, post-norm, rotary positions."""
        self.gated = True
        self.act = model.layers[0].mlp.act_fn
        theta = float(model.config.rope_parameters.get("rope_theta", 10000.0))
        d = self.head_dim
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float32, device=self.device) / d))
        with torch.no_grad():
            for layer in model.layers:
                att, mlp = layer.self_attn, layer.mlp
                biases = [_bias(x) for x in (att.q_proj, att.k_proj, att.v_proj)]
                self.layers.append(_Layer(
                    qkv=self._products(torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight]),
                                       torch.cat(biases) if all(b is not None for b in biases) else None),
                    o=self._products(att.o_proj.weight, _bias(att.o_proj)),
                    attn_norm=(layer.post_attention_layernorm.weight.detach(),
                               layer.post_attention_layernorm.bias.detach()),
                    up=self._products(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]), None),
                    down=self._products(mlp.down_proj.weight, _bias(mlp.down_proj)),
                    out_norm=(layer.post_mlp_layernorm.weight.detach(), layer.post_mlp_layernorm.bias.detach()),
                ))

    def _find_flash_varlen(self) -> Callable | None:
        from qembed.models.packed import flash_varlen_kernel

        return flash_varlen_kernel(self.device, self.dtype)

    def _compile(self) -> None:
        from qembed.models.compile import use_persistent_cache

        use_persistent_cache()
        try:
            self._add_norm = torch.compile(_add_layer_norm, dynamic=not self.static_shapes, fullgraph=True)
            self.compiled = True
        except Exception as exc:  # noqa: BLE001 - fall back to eager
            logger.warning("torch.compile is unavailable (%s); using unfused element-wise ops", exc)

    def enable_compile(self) -> bool:
        """Compile the fused ops now and warm them up; ``False`` when compilation is unavailable."""
        if not self.compiled:
            self._compile()
            if self.compiled:
                self.warmup()
        return self.compiled

    def warmup(self, lengths: Sequence[int] = (7, 3)) -> None:
        """Run (and compile) passes so the first request does not pay for it."""
        token = 0 if self.pad_id != 0 else 1
        seqs = [[token] * n for n in lengths]
        try:
            self.forward(seqs)
            if self.compiled:
                self.forward(seqs[:1])
        except Exception as exc:  # noqa: BLE001 - compilation can fail without a compiler
            if not self.compiled:
                raise
            logger.warning("compiled pass failed (%s); falling back to unfused element-wise ops", exc)
            self._add_norm = _add_layer_norm
            self.compiled = False
            self.forward(seqs)

    # ------------------------------------------------------------------ forward
    @torch.inference_mode()
    def forward(self, seqs: Sequence[Sequence[int]],
                token_types: Sequence[Sequence[int]] | None = None, lora: LoraPass | None = None) -> torch.Tensor:
        """``(len(seqs), hidden x modes)`` pooled vectors (before normalisation).

        ``token_types``: per-token segment ids, like ``seqs`` (default: all 0); ``lora``: the LoRA
        adapters of the sequences (:mod:`qembed.models.adapters`)."""
        lengths = [len(s) for s in seqs]
        if not lengths or min(lengths) < 1:
            raise ValueError("every sequence needs at least one token")
        asked = len(seqs)
        if self.fill_rows is not None and lora is None:  # a LoRA plan counts the caller's rows
            # filler sequences (the padding token, segment 0) bring the pass to a bucket's token count
            seqs = fill_to(seqs, self.pad_id or 0, self.fill_rows(sum(lengths)))
            if token_types is not None and len(seqs) > asked:
                token_types = [*token_types, *([0] * len(s) for s in seqs[asked:])]
            lengths = [len(s) for s in seqs]
        n, longest, total = len(lengths), max(lengths), sum(lengths)
        dev = self.device
        flat = torch.tensor([t for s in seqs for t in s], dtype=torch.long)
        lens = torch.tensor(lengths, dtype=torch.long)
        starts = torch.cumsum(lens, 0) - lens
        seq_of = torch.repeat_interleave(torch.arange(n), lens)
        positions = torch.arange(total) - starts[seq_of]  # 0 … len-1 within each sequence
        if self.position_offset:
            real = (flat != self.pad_id).long()
            counted = torch.cumsum(real, 0)
            before = (counted - real)[starts]  # real tokens before each sequence
            emb_positions = (counted - before[seq_of]) * real + self.pad_id
        else:
            emb_positions = positions
        if int(emb_positions.max()) >= self.max_positions:
            raise ValueError(f"a sequence is longer than the model's {self.max_positions} positions")

        x = F.embedding(flat.to(dev), self.word)
        rope = None
        if self.position is not None:
            x = x + F.embedding(emb_positions.to(dev), self.position)
        else:  # rotary: cos/sin of each token's position, computed in float32 as transformers does
            freqs = positions.to(dev, torch.float32).unsqueeze(1) * self.inv_freq
            emb = torch.cat((freqs, freqs), dim=-1)
            rope = (emb.cos().to(self.dtype).unsqueeze(1), emb.sin().to(self.dtype).unsqueeze(1))
        if self.token_type is not None:
            if token_types is None:
                x = x + self.token_type[0]
            else:
                types = torch.tensor([t for s in token_types for t in s], dtype=torch.long)
                if types.numel() != total:
                    raise ValueError("token_types must have one id per token")
                x = x + F.embedding(types.to(dev), self.token_type)
        x = F.layer_norm(x, (self.hidden,), *self.embed_norm, self.eps)

        if self._flash is not None:
            cu = torch.zeros(n + 1, dtype=torch.int32)
            cu[1:] = torch.cumsum(lens, 0)
            attend = self._flash_attention(cu.to(dev), longest)
        elif n > 1 and longest <= CHUNK_MAX_SEQUENCE:
            attend = self._chunked_attention(lengths, seq_of, positions)
        else:
            attend = self._padded_attention(seq_of, positions, lens, n, longest)

        pooled_rows = None
        if self.pooled_tokens_only:
            pooled_rows = (starts if self.modes == ("cls",) else starts + lens - 1).to(dev)
        last = len(self.layers) - 1
        delta = lora_hook(lora)
        for i, layer in enumerate(self.layers):
            qkv = delta(i, "qkv", x, layer.qkv(x))
            if rope is not None:
                q, k, v = qkv.view(-1, 3, self.heads, self.head_dim).unbind(1)
                qkv = torch.stack((_rotate(q, *rope), _rotate(k, *rope), v), dim=1).view(-1, 3 * self.hidden)
            if i == last and pooled_rows is not None:
                # only the pooled tokens leave the model: the rest of it runs for them alone
                out = self._query_attention(qkv, pooled_rows, lens, n, longest)
                x = x.index_select(0, pooled_rows)
            else:
                out = attend(qkv)
            # the pooled-tokens-only layer has one row per sequence: no fixed shape to compile for
            add_norm = _add_layer_norm if self.static_shapes and x.shape[0] != total else self._add_norm
            x = add_norm(delta(i, "o", out, layer.o(out)), x, *layer.attn_norm, self.eps)
            h = delta(i, "up", x, layer.up(x))
            if self.gated:
                gate, up = h.chunk(2, dim=-1)
                h = self.act(gate) * up
            else:
                h = self.act(h)
            x = add_norm(delta(i, "down", h, layer.down(h)), x, *layer.out_norm, self.eps)
        if pooled_rows is not None:
            return x[:asked]
        return self._pool(x, seq_of.to(dev), positions.to(dev), starts.to(dev), lens.to(dev), n)[:asked]

    __call__ = forward

    def _pool(self, x: torch.Tensor, seq_of: torch.Tensor, positions: torch.Tensor, starts: torch.Tensor,
              lens: torch.Tensor, n: int) -> torch.Tensor:
        """The sentence-transformers pooling modes over each sequence's tokens, concatenated
        (sums in float32 for half-precision weights, results in the weights' dtype)."""
        acc = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        outputs: list[torch.Tensor] = []
        sums: torch.Tensor | None = None
        for mode in self.modes:
            if mode == "cls":
                outputs.append(x.index_select(0, starts))
            elif mode == "lasttoken":
                outputs.append(x.index_select(0, starts + lens - 1))
            elif mode in ("mean", "mean_sqrt_len_tokens"):
                if sums is None:
                    sums = x.new_zeros(n, self.hidden, dtype=acc).index_add_(0, seq_of, x.to(acc))
                count = lens.to(acc).unsqueeze(1)
                outputs.append((sums / (count if mode == "mean" else count.sqrt())).to(x.dtype))
            elif mode == "max":
                index = seq_of.unsqueeze(1).expand(-1, self.hidden)
                top = x.new_full((n, self.hidden), float("-inf"))
                outputs.append(top.scatter_reduce(0, index, x, reduce="amax", include_self=True))
            elif mode == "weightedmean":
                weights = (positions + 1).to(acc).unsqueeze(1)
                total = x.new_zeros(n, self.hidden, dtype=acc).index_add_(0, seq_of, x.to(acc) * weights)
                norm = (lens * (lens + 1) // 2).to(acc).unsqueeze(1)
                outputs.append((total / norm).to(x.dtype))
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)

    # ------------------------------------------------------------------ attention
    def _laid_out_attention(self, slots: torch.Tensor, rows: int, width: int,
                            mask: torch.Tensor | None) -> Callable:
        """Attention over packed q/k/v copied into ``rows`` rows of ``width`` slots (``slots``:
        each token's slot), under ``mask`` (None: every slot sees every slot of its row). A
        floating-point ``mask`` is added to the scores of explicit matrix products (the CPU's
        fast path for small heads); a boolean one goes to SDPA."""
        heads, d = self.heads, self.head_dim
        explicit = mask is not None and mask.dtype != torch.bool

        def attend(qkv: torch.Tensor) -> torch.Tensor:
            laid = qkv.new_zeros(rows * width, 3 * heads, d)
            laid.index_copy_(0, slots, qkv.view(-1, 3 * heads, d))
            laid = laid.view(rows, width, 3 * heads, d).transpose(1, 2)
            q, k, v = laid.split([heads, heads, heads], dim=1)
            if explicit:
                scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale + mask
                o = torch.matmul(torch.softmax(scores, -1, dtype=torch.float32).to(v.dtype), v)
            else:
                o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
            return o.transpose(1, 2).reshape(rows * width, heads * d).index_select(0, slots)

        return attend

    def _padded_attention(self, seq_of: torch.Tensor, positions: torch.Tensor, lens: torch.Tensor, n: int,
                          longest: int) -> Callable:
        """Each sequence in a row of its own, padded to the longest; padding keys are masked."""
        slots = (seq_of * longest + positions).to(self.device)
        mask = None
        if n > 1 and int(lens.min()) < longest:
            valid = torch.arange(longest).unsqueeze(0) < lens.unsqueeze(1)
            mask = valid.view(n, 1, 1, longest).to(self.device)
        return self._laid_out_attention(slots, n, longest, mask)

    def _chunked_attention(self, lengths: list[int], seq_of: torch.Tensor, positions: torch.Tensor) -> Callable:
        """Many short sequences back to back in chunks of :data:`CHUNK_TOKENS` slots; each chunk
        attends under a block-diagonal mask (a token sees the tokens of its own sequence)."""
        from qembed.models.packed import chunk_layout

        width, chunks, slots, segment = chunk_layout(lengths, seq_of, positions, CHUNK_TOKENS)
        segment = segment.view(chunks, width)
        # padding slots (segment -1) see each other only, so no row is fully masked
        mask = (segment.unsqueeze(2) == segment.unsqueeze(1)).unsqueeze(1)
        if self.device.type == "cpu":  # additive, for the explicit products
            mask = torch.zeros(mask.shape, dtype=self.dtype).masked_fill_(~mask, float("-inf"))
        mask = mask.to(self.device)
        return self._laid_out_attention(slots.to(self.device), chunks, width, mask)

    def _flash_attention(self, cu: torch.Tensor, longest: int) -> Callable:
        flash, heads, d = self._flash, self.heads, self.head_dim

        def attend(qkv: torch.Tensor) -> torch.Tensor:
            q, k, v = qkv.view(-1, 3 * heads, d).split([heads, heads, heads], dim=1)
            o = flash(q, k, v, cu, cu, longest, longest, softmax_scale=self.scale, causal=False)
            return o.reshape(-1, heads * d)

        return attend

    def _query_attention(self, qkv: torch.Tensor, rows: torch.Tensor, lens: torch.Tensor, n: int,
                         longest: int) -> torch.Tensor:
        """Attention of one query per sequence (the token at ``rows``) over all of its keys."""
        heads, d = self.heads, self.head_dim
        dev = qkv.device
        qkv = qkv.view(-1, 3, heads, d)
        lens_d = lens.to(dev)
        starts = torch.cumsum(lens_d, 0) - lens_d
        pos = torch.arange(longest, device=dev)
        index = (starts.unsqueeze(1) + pos.unsqueeze(0)).clamp(max=qkv.shape[0] - 1).reshape(-1)
        kp = qkv[:, 1].index_select(0, index).view(n, longest, heads, d).transpose(1, 2)
        vp = qkv[:, 2].index_select(0, index).view(n, longest, heads, d).transpose(1, 2)
        qp = qkv[:, 0].index_select(0, rows).view(n, heads, 1, d)
        mask = (pos.unsqueeze(0) < lens_d.unsqueeze(1)).view(n, 1, 1, longest)
        o = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=mask, scale=self.scale)
        return o.reshape(n, heads * d)
