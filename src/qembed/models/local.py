"""The in-process encoder: a sentence-transformers model folder driven with length-aware batching.

sentence-transformers loads the model and its modules (``modules.json``: transformer, pooling,
normalize), so any sentence-transformers folder works with its own pooling. qembed owns what
happens around the forward pass: Qwen3 instruction formatting, tokenisation that keeps the end
token under truncation, batches cut by a padded-token budget, padding on the side the pooling
needs, Matryoshka truncation and the NaN check.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from qembed.deprecated import old_keywords
from qembed.errors import InputError, QembedError
from qembed.models.adapters import AdaptersMixin, per_text_adapters
from qembed.models.compile import BREAK_EVEN_TOKENS, compile_setting, should_compile
from qembed.models.encoder import (
    check_dimensions,
    check_finite,
    check_positive_ints,
    fill_to_bucket,
    memory_batch_limits,
    plan_batches,
    truncate_dimensions,
)
from qembed.models.inputs import InputPreparer, suffix_special_ids
from qembed.models.packed import PackedQwen3, supports_packed
from qembed.models.packed_encoder import PackedEncoder, supports_packed_encoder
from qembed.models.prompts import is_instruct_prompt
from qembed.models.resolve import default_model, model_kind, resolve_model_path
from qembed.models.runtimes import canonical_dtype

logger = logging.getLogger(__name__)

#: Qwen3-Embedding's default input limit (its position limit is 32k; 8k is what it was tuned on).
QWEN_DEFAULT_MAX_TOKENS = 8192
#: Batch limits per device kind for padded passes: (padded tokens per pass, inputs per pass). On
#: CPUs, padded batches of about 32 short inputs run faster per token than larger ones (measured
#: with benchmarks/encode_throughput.py); GPUs want large batches.
BATCH_LIMITS = {"cuda": (16384, 256), "xpu": (16384, 256), "mps": (8192, 64), "cpu": (4096, 32)}
#: The same for packed passes (real tokens per pass, inputs per pass). Packed passes cost their
#: real tokens, so larger ones only amortise the weights better: on a 2-core AMX CPU, AFQMC
#: sentences ran at 98 / 110 / 131 / 138 sentences/s with 32 / 64 / 128 / 256 inputs per pass.
PACKED_BATCH_LIMITS = {"cuda": (16384, 256), "xpu": (16384, 256), "cpu": (4096, 256)}

#: The environment variable that lets Qwen3 models load in float16 (``allow_fp16``).
ALLOW_FP16_ENV = "QEMBED_ALLOW_FP16"

#: The torch dtype of each precision name torch runs (:data:`~qembed.models.runtimes.DTYPES`).
_TORCH_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


def pick_device(device: str | None) -> str:
    """``None``/``"auto"``: cuda, then mps, then cpu; anything else is checked and returned."""
    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available")
    if device == "mps" and not torch.backends.mps.is_available():
        raise InputError("device 'mps' requested but MPS is not available")
    if device.split(":")[0] not in {"cpu", "cuda", "mps", "xpu"}:
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has AMX or AVX512-BF16 (bf16 matmuls run natively) and no
    ``ONEDNN_MAX_CPU_ISA``/``ATEN_CPU_CAPABILITY`` cap below them (:func:`~qembed.models.runtimes.cpu_kind`)."""
    from qembed.models.runtimes import cpu_has_native_bf16

    return cpu_has_native_bf16()


def pick_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """``None``/``"auto"``: bf16 on CUDA and on CPUs with AMX/AVX512-BF16, fp32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        chosen = dtype
    elif dtype in (None, "", "auto"):
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        if device == "cpu" and cpu_has_fast_bf16():
            return torch.bfloat16
        return torch.float32
    else:
        key = canonical_dtype(dtype)
        if key == "auto":
            return pick_dtype(None, device)
        if key == "int8":  # LocalEncoder takes it before this; other torch models do not
            raise InputError("dtype int8 on torch runs embedding models (load_encoder, qembed serve); "
                             "use auto, bfloat16 or float32 here", param="dtype")
        if key not in _TORCH_DTYPES:
            raise InputError(f"dtype {dtype!r} runs on the openvino backend, not on torch; use auto, "
                             f"bfloat16, float32, float16 or int8", param="dtype")
        chosen = _TORCH_DTYPES[key]
    if chosen == torch.float16:
        logger.warning("float16 weights can overflow to NaN with Qwen3 models; bfloat16 is safer")
    return chosen


def pick_precision(dtype: str | torch.dtype | None, device: str, packed: bool | None) -> tuple[torch.dtype, bool]:
    """The torch loaders' precision: ``(float type of weights and activations, int8 products)``.
    ``dtype="int8"`` (checked by :func:`check_int8`) keeps the CPU's float type for everything but
    the matrix products; anything else is :func:`pick_dtype`'s."""
    int8 = isinstance(dtype, str) and canonical_dtype(dtype) == "int8"
    if int8:
        check_int8(device, packed)
    return pick_dtype(None if int8 else dtype, device), int8


def check_int8(device: str, packed: bool | None) -> None:
    """``dtype="int8"`` on torch: packed passes on a CPU whose torch runs oneDNN's int8 products
    (:func:`~qembed.models.kernels.int8_usable`); anything else raises :class:`InputError`."""
    from qembed.models.kernels import int8_usable

    if not device.startswith("cpu"):
        raise InputError(f"dtype int8 runs on the CPU; on {device} use bfloat16 (or auto)", param="dtype")
    if packed is False:
        raise InputError("dtype int8 runs the packed passes; do not turn packing off", param="dtype")
    if not int8_usable():
        raise InputError("dtype int8 needs torch's oneDNN int8 products, and here they are missing or "
                         "fail qembed's check (they need an x86 CPU with VNNI or AMX: AVX2's int8 "
                         "kernels saturate); use auto, bfloat16 or float32, or backend openvino",
                         param="dtype")


def check_fp16(dtype: torch.dtype, model_type: str, allow: bool | None = None) -> None:
    """Refuse float16 weights for Qwen3 models unless ``allow`` (``None``: ``$QEMBED_ALLOW_FP16``):
    their activations overflow float16's range (NaN vectors were reported elsewhere)."""
    if dtype != torch.float16 or not model_type.startswith("qwen"):
        return
    if allow is None:
        allow = os.environ.get(ALLOW_FP16_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    if not allow:
        raise InputError(f"float16 is refused for {model_type} models: their activations overflow float16 "
                         "(NaN embeddings); use bfloat16 (the default on GPUs) or float32, or pass "
                         f"allow_fp16=True ({ALLOW_FP16_ENV}=1 for `qembed serve` and the CLI) to run float16 "
                         "anyway", param="dtype")


def gpu_batch_limits(device: str, config: Any, dtype: torch.dtype) -> tuple[int, int] | None:
    """Batch limits sized from the card's free memory (:func:`~qembed.models.encoder.memory_batch_limits`),
    measured with :func:`torch.cuda.mem_get_info` after the weights are loaded; None off CUDA."""
    if not device.startswith("cuda"):
        return None
    try:
        free, _ = torch.cuda.mem_get_info(torch.device(device))
    except Exception as exc:  # noqa: BLE001 - keep the fixed defaults
        logger.warning("could not read the GPU's free memory (%s); using the default batch limits", exc)
        return None
    hidden = int(getattr(config, "hidden_size", 1024))
    intermediate = int(getattr(config, "intermediate_size", 4 * hidden))
    limits = memory_batch_limits(free, hidden, intermediate, torch.finfo(dtype).bits // 8)
    logger.info("%.1f GiB free on %s: up to %d tokens and %d inputs per pass", free / 2**30, device, *limits)
    return limits


def model_source_of(model: str) -> str:
    """How to name ``model`` to load it again from anywhere: an existing folder by its absolute path,
    anything else (a Hub id) as given. Loading either gives the same :attr:`LocalEncoder.name`."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model.rstrip("/")


class LocalEncoder(AdaptersMixin):
    """Encode texts with a model loaded in this process.

    Args:
        model: a local sentence-transformers (or plain transformers) folder, or a Hub id
            (default ``$QEMBED_MODEL``, else :data:`~qembed.models.resolve.DEFAULT_MODEL`).
        device: ``None``/``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        dtype: ``None``/``"auto"``, ``"bfloat16"``, ``"float32"`` or ``"float16"``.
        max_input_tokens: longest input in tokens (special tokens included); default 8192 for
            Qwen3-Embedding, the model's own limit otherwise.
        truncate: cut longer inputs (keeping the end token); with ``False`` they raise
            :class:`~qembed.errors.InputTooLongError`.
        max_batch_tokens: tokens per forward pass: real tokens for packed passes, batch size x
            longest input for padded ones; default by device (:data:`BATCH_LIMITS`).
        max_batch_size: most inputs per forward pass; default by device.
        padding_side: ``"right"`` (default; last-token pooling reads each row's last real
            position from the attention mask) or ``"left"``; padded passes only.
        name: the name reported by :attr:`name` (default: the folder or Hub id).
        packed: run packed passes (no padding, only real tokens): Qwen3 decoders
            (:mod:`qembed.models.packed`) and BERT / RoBERTa / XLM-RoBERTa / NomicBERT encoders with their own
            pooling (:mod:`qembed.models.packed_encoder`); ``None`` (default) packs whenever the
            model allows, ``False`` always uses the padded sentence-transformers forward.
        compile: fuse the packed passes' element-wise ops with :func:`torch.compile`: ``True``
            at load, ``False`` never, ``"auto"`` (and ``None``, the default, unless
            ``QEMBED_COMPILE`` says otherwise) on CPU and CUDA once one call brings enough tokens
            to repay it (:mod:`qembed.models.compile`; servers compile at start-up). Compiling
            takes ~3 s on 2 CPU cores with the kernels in the cache, ~25 s without.
        allow_fp16: load Qwen3 models in float16 even so (refused otherwise, see
            :func:`check_fp16`); ``None`` reads ``$QEMBED_ALLOW_FP16``.
        bucket_tokens: fill each packed pass up to one of a few token counts
            (:data:`~qembed.models.encoder.TOKEN_BUCKETS`) so compiled kernels see fixed shapes;
            ``None`` (default): on CUDA.

    On CUDA, unset batch limits are sized from the card's free memory once the weights are loaded
    (:func:`gpu_batch_limits`).

    LoRA adapters over the loaded weights (packed passes): :meth:`load_adapter`,
    :meth:`unload_adapter`, :meth:`adapters`, and ``adapter=`` in :meth:`encode` and
    :meth:`embed_token_ids` (:mod:`qembed.models.adapters`).
    """

    #: whether the packed passes run int8 products (``dtype="int8"``)
    int8 = False

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        max_input_tokens: int | None = None,
        truncate: bool = True,
        max_batch_tokens: int | None = None,
        max_batch_size: int | None = None,
        padding_side: str = "right",
        name: str | None = None,
        packed: bool | None = None,
        compile: bool | str | None = None,
        allow_fp16: bool | None = None,
        bucket_tokens: bool | None = None,
    ) -> None:
        model = str(model if model is not None else default_model())
        self.path = resolve_model_path(model)
        if model_kind(self.path) == "classifier":
            raise InputError(f"{model} is a reranker or pair classifier (a …ForSequenceClassification model), "
                             "not an embedding model: rerank with it (`qembed rerank --model …`, "
                             "qembed.load_reranker) and embed with an embedding model such as "
                             "Qwen/Qwen3-Embedding-0.6B", param="model")
        self.name = name or (model.rstrip("/") if not Path(model).exists() else self.path.name)
        #: What loads this model again under the same name: the Hub id as given, or the folder's
        #: absolute path (indexes record it as ``model_source``).
        self.model_source = model_source_of(model)
        self.device = pick_device(device)
        #: int8 products (``dtype="int8"``): the weights load in the CPU's float type, and the
        #: packed passes run their matrix products on int8 (:class:`~qembed.models.kernels.Int8Linear`)
        self.dtype, self.int8 = pick_precision(dtype, self.device, packed)
        check_positive_ints(max_batch_tokens=max_batch_tokens, max_batch_size=max_batch_size)
        if padding_side not in ("left", "right"):
            raise InputError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        self.truncate = bool(truncate)
        config_file = self.path / "config.json"
        if self.dtype == torch.float16 and config_file.is_file():
            check_fp16(self.dtype, str(json.loads(config_file.read_text(encoding="utf-8")).get("model_type", "")),
                       allow_fp16)

        logger.info("loading %s on %s (%s)", self.path, self.device, str(self.dtype).replace("torch.", ""))
        started = time.perf_counter()
        from sentence_transformers import SentenceTransformer  # seconds: transformers' model code

        imported = time.perf_counter()
        try:
            self._st = SentenceTransformer(
                str(self.path),
                device=self.device,
                local_files_only=True,
                model_kwargs={"dtype": self.dtype},
            )
        except OSError as exc:
            raise QembedError(f"could not load model from {self.path}: {exc}") from None
        logger.info("loaded the weights in %.1fs (libraries imported in %.1fs)",
                    time.perf_counter() - imported, imported - started)
        self._st.eval()
        self._transformer = self._st[0]
        self.tokenizer = self._transformer.tokenizer
        pooling = next((m for m in self._st if type(m).__name__ == "Pooling"), None)
        self.pooling = str(getattr(pooling, "pooling_mode", "mean")) if pooling else "cls"
        self._pooling_module = pooling
        get_dim = getattr(self._st, "get_embedding_dimension", None) or self._st.get_sentence_embedding_dimension
        self._dim = int(get_dim())
        self._last_token = self.pooling == "lasttoken"
        self._pad_left = padding_side == "left"
        self._pad_id = self.tokenizer.pad_token_id
        if self._pad_id is None:
            self._pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        end_ids = suffix_special_ids(self.tokenizer)

        config = self._transformer.auto_model.config
        self.model_type = str(getattr(config, "model_type", ""))
        prompts: dict[str, str] = dict(getattr(self._st, "prompts", {}) or {})
        instruct_style = any(is_instruct_prompt(p) for p in prompts.values()) or (
            self.model_type.startswith("qwen") and self._last_token
        )

        limits = [self._transformer.max_seq_length, getattr(config, "max_position_embeddings", None)]
        self.model_max_tokens = min(int(x) for x in limits if x)
        default = min(QWEN_DEFAULT_MAX_TOKENS, self.model_max_tokens) if instruct_style else self.model_max_tokens
        if max_input_tokens is None:
            max_input_tokens = default
        else:
            if isinstance(max_input_tokens, bool) or not isinstance(max_input_tokens, int):
                raise InputError("max_input_tokens must be an integer")
            if not len(end_ids) + 1 <= max_input_tokens <= self.model_max_tokens:
                raise InputError(
                    f"max_input_tokens must be between {len(end_ids) + 1} and "
                    f"{self.model_max_tokens} for {self.name}, got {max_input_tokens}"
                )
        self._transformer.max_seq_length = max_input_tokens
        self.inputs = InputPreparer(
            self.tokenizer, name=self.name, max_input_tokens=max_input_tokens, truncate=self.truncate,
            instruct_style=instruct_style, prompt_style=bool(instruct_style or any(prompts.values())),
            prompts=prompts, end_ids=end_ids, last_token=self._last_token)
        self._packed: PackedQwen3 | PackedEncoder | None = None
        self._compile_auto = False
        self._bucket = self.device.startswith("cuda") if bucket_tokens is None else bool(bucket_tokens)
        if packed is not False:
            self._packed = self._make_packed(compile)
            if (packed or self.int8) and self._packed is None:
                raise InputError(f"{self.name} cannot run packed passes{' (dtype int8 needs them)' if self.int8 else ''} "
                                 "(Qwen3 decoders with last-token "
                                 "pooling and BERT/RoBERTa/XLM-RoBERTa/NomicBERT encoders with a sentence-transformers "
                                 "Pooling module can)", param="packed")
            if self._packed is None:
                logger.info("%s: padded passes (the packed path runs Qwen3 decoders with last-token pooling and "
                            "BERT/RoBERTa/XLM-RoBERTa/NomicBERT encoders with a plain sentence-transformers Pooling "
                            "module; this folder has %s)", self.name, " + ".join(type(m).__name__ for m in self._st))
        kind = self.device.split(":")[0]
        limits = PACKED_BATCH_LIMITS if self._packed is not None else BATCH_LIMITS
        default_tokens, default_size = gpu_batch_limits(self.device, config, self.dtype) or \
            limits.get(kind, limits["cpu"])
        self._bucket = self._bucket and self._packed is not None
        self.max_batch_tokens = int(max_batch_tokens or default_tokens)
        self.max_batch_size = int(max_batch_size or default_size)

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Full embedding size of the model."""
        return self._dim

    @property
    def max_input_tokens(self) -> int:
        """Longest input, in tokens, that is embedded whole."""
        return self.inputs.max_input_tokens

    @property
    def supports_instructions(self) -> bool:
        """Whether ``instruction`` changes the embedding (instruction or prompt models)."""
        return self.inputs.prompt_style

    @property
    def instruct_style(self) -> bool:
        """Qwen3-style ``Instruct: …\\nQuery:`` instructions."""
        return self.inputs.instruct_style

    @property
    def prompts(self) -> dict[str, str]:
        """sentence-transformers prompts by name."""
        return self.inputs.prompts

    @property
    def packed(self) -> bool:
        """Whether forward passes run packed (no padding)."""
        return self._packed is not None

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def info(self) -> dict[str, Any]:
        """What ``qembed info`` reports."""
        return {
            "name": self.name,
            "path": str(self.path),
            "dim": self.dim,
            "max_input_tokens": self.max_input_tokens,
            "model_max_tokens": self.model_max_tokens,
            "device": self.device,
            "dtype": "int8" if self.int8 else str(self.dtype).replace("torch.", ""),
            **({"activation_dtype": str(self.dtype).replace("torch.", "")} if self.int8 else {}),
            "pooling": self.pooling,
            "padding_side": "left" if self._pad_left else "right",
            "packed": self.packed,
            "compiled": bool(self._packed is not None and self._packed.compiled),
            "bucket_tokens": bool(getattr(self, "_bucket", False)),
            "max_batch_tokens": self.max_batch_tokens,
            "max_batch_size": self.max_batch_size,
            "supports_instructions": self.supports_instructions,
            "instruction_format": "Instruct: {instruction}\\nQuery:{text}" if self.instruct_style
            else ("prompt prefix" if self.supports_instructions else None),
            "prompts": self.prompts,
            "model_type": self.model_type,
        }

    # ------------------------------------------------------------------ text -> ids
    def format(self, texts: str | Sequence[str], instruction: str | None = None) -> list[str]:
        """Apply ``instruction`` the way the model expects (see :meth:`InputPreparer.format`)."""
        return self.inputs.format(texts, instruction)

    def count_tokens(self, texts: str | Sequence[str]) -> list[int]:
        """Tokens per text with special tokens, before truncation."""
        return self.inputs.count_tokens(texts)

    def tokenize(self, texts: str | Sequence[str], instruction: str | None = None) -> list[list[int]]:
        """Format and tokenise texts, truncating (keeping the end token) or rejecting long ones."""
        return self.inputs.tokenize(texts, instruction)

    def prepare_token_ids(self, inputs: Sequence[Sequence[int]]) -> list[list[int]]:
        """Check pre-tokenised inputs; the end token is appended when missing, then the limit applies."""
        return self.inputs.prepare_token_ids(inputs)

    # ------------------------------------------------------------------ ids -> vectors
    def _collate(self, batch: list[list[int]]) -> dict[str, Any]:
        width = max(len(x) for x in batch)
        ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, seq in enumerate(batch):
            if self._pad_left:
                ids[row, width - len(seq):] = seq
                mask[row, width - len(seq):] = 1
            else:
                ids[row, : len(seq)] = seq
                mask[row, : len(seq)] = 1
        features: dict[str, Any] = {
            "input_ids": torch.from_numpy(ids).to(self.device),
            "attention_mask": torch.from_numpy(mask).to(self.device),
        }
        if "token_type_ids" in getattr(self.tokenizer, "model_input_names", []):
            features["token_type_ids"] = torch.zeros_like(features["input_ids"])
        return features

    def _make_packed(self, compile: bool | None) -> PackedQwen3 | PackedEncoder | None:
        """The packed runner: Qwen3 decoders with last-token pooling (:mod:`~qembed.models.packed`)
        and BERT-family encoders with their own pooling (:mod:`~qembed.models.packed_encoder`)."""
        kinds = [type(m).__name__ for m in self._st]
        if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
            return None
        model = self._transformer.auto_model
        if self.device.startswith("mps"):
            return None
        setting = compile_setting(compile)
        int8: dict[str, Any] = {"int8": self.int8, "int8_compiled": setting is not False}
        if self.int8:  # the float model runs these once, to smooth the int8 products' inputs
            from qembed.models.calibration import CALIBRATION_INSTRUCTION, CALIBRATION_TEXTS

            half = CALIBRATION_TEXTS[: len(CALIBRATION_TEXTS) // 2]
            int8["int8_calibration"] = self.tokenize(CALIBRATION_TEXTS) + self.tokenize(
                half, CALIBRATION_INSTRUCTION if self.supports_instructions else None)
        if self._last_token and supports_packed(model):
            def make(fuse: bool) -> Any:
                return PackedQwen3(model, compile=fuse, **int8)
        elif supports_packed_encoder(model, self._pooling_module):
            def make(fuse: bool) -> Any:
                return PackedEncoder(model, self._pooling_module, compile=fuse, static_shapes=self._bucket, **int8)
        else:
            return None
        self._compile_auto = setting == "auto"  # compile later, for a call large enough
        runner = make(should_compile(setting, self.device))
        t0 = time.perf_counter()
        if runner.compiled:
            logger.info("compiling the packed passes (torch.compile: seconds with the kernels in "
                        "torch's cache, about half a minute without)")
        runner.warmup()
        logger.info("%s in %.1fs", "compiled and warmed up" if runner.compiled else "warmed up",
                    time.perf_counter() - t0)
        return runner

    def _maybe_compile(self, tokens: int) -> None:
        """``compile="auto"``: compile the packed passes before a call of ``tokens`` tokens when
        that many repay it (:func:`~qembed.models.compile.should_compile`); tried once."""
        packed = getattr(self, "_packed", None)  # subclasses (the compiled backends) have none
        if not (getattr(self, "_compile_auto", False) and packed is not None and not packed.compiled):
            return
        if not should_compile("auto", self.device, tokens=tokens):
            return
        self._compile_auto = False
        kind = self.device.split(":")[0]
        logger.info("compiling the packed passes: %d tokens to embed (auto compiles from %d)", tokens,
                    BREAK_EVEN_TOKENS.get(kind, BREAK_EVEN_TOKENS["cpu"]))
        t0 = time.perf_counter()
        if self._packed.enable_compile():
            logger.info("compiled in %.1fs", time.perf_counter() - t0)

    def _packed_pass(self, batch: list[list[int]], adapters: list[str | None] | None = None) -> torch.Tensor:
        seqs = fill_to_bucket(batch, self._pad_id) if getattr(self, "_bucket", False) else batch
        lora = self._adapter_set.plan(adapters, [len(s) for s in seqs]) if adapters and self._adapter_set else None
        return self._packed(seqs, lora=lora)[: len(batch)]

    def forward_batch(self, batch: list[list[int]], adapters: Sequence[str | None] | None = None) -> np.ndarray:
        """One forward pass over token-id sequences; float32 unit vectors at full size.

        ``adapters``: the LoRA adapter of each sequence (None: the base model)."""
        names = self._check_adapters(list(adapters)) if adapters is not None else None
        if names is not None and all(n is None for n in names):
            names = None
        if self._packed is not None:
            with torch.inference_mode():
                hidden = self._packed_pass(batch) if names is None else \
                    self._adapter_forward(batch, names, self._packed_pass)
                out = torch.nn.functional.normalize(hidden.float(), dim=-1)
        else:
            features = self._collate(batch)
            with torch.inference_mode():
                out = self._st.forward(features)["sentence_embedding"]
        vectors = out.float().cpu().numpy()
        check_finite(vectors)
        return vectors

    @old_keywords
    def embed_token_ids(
        self,
        ids: Sequence[Sequence[int]],
        dimensions: int | None = None,
        *,
        progress: bool = False,
        adapter: str | Sequence[str | None] | None = None,
    ) -> np.ndarray:
        """Embed prepared token ids (from :meth:`tokenize` or :meth:`prepare_token_ids`).

        Inputs are sorted by length and cut into batches under ``max_batch_tokens`` (real tokens
        when packed, padded ones otherwise); the result is in input order. ``adapter``: a LoRA
        adapter's name (:meth:`load_adapter`) for every input, or one name (or None: the base
        model) per input.
        """
        dimensions = check_dimensions(dimensions, self.dim)
        ids = list(ids)
        names = self._check_adapters(per_text_adapters(adapter, len(ids)))
        self._maybe_compile(sum(len(x) for x in ids))

        def plan(members: list[int]) -> list[list[int]]:
            return plan_batches([len(ids[i]) for i in members], self.max_batch_tokens, self.max_batch_size,
                                packed=self.packed)

        batches = self._adapter_batches(names, plan(list(range(len(ids)))), plan)
        use = any(n is not None for n in names)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        bar = tqdm(total=len(ids), desc="embedding", unit="text", disable=not progress)
        for batch in batches:
            seqs = [ids[i] for i in batch]
            out[batch] = self.forward_batch(seqs, [names[i] for i in batch]) if use else self.forward_batch(seqs)
            bar.update(len(batch))
        bar.close()
        return truncate_dimensions(out, dimensions)

    @old_keywords
    def encode(
        self,
        texts: str | Sequence[str],
        instruction: str | None = None,
        dimensions: int | None = None,
        *,
        progress: bool = False,
        adapter: str | Sequence[str | None] | None = None,
    ) -> np.ndarray:
        """Texts to a float32 ``(n, dimensions or dim)`` array of L2-normalised rows.

        ``instruction`` turns the texts into queries for instruction models (documents get none);
        ``dimensions`` keeps the first values of each vector and re-normalises (Matryoshka);
        ``adapter``: a loaded LoRA adapter for every text, or one name (None: the base) per text.
        """
        dimensions = check_dimensions(dimensions, self.dim)
        ids = self.tokenize(texts, instruction)
        return self.embed_token_ids(ids, dimensions, progress=progress, adapter=adapter)

    def __repr__(self) -> str:
        return (f"LocalEncoder(name={self.name!r}, dim={self.dim}, device={self.device!r}, "
                f"dtype={'int8' if self.int8 else str(self.dtype).replace('torch.', '')}, pooling={self.pooling!r})")

