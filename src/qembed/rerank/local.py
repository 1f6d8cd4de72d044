"""The in-process reranker: Qwen3-Reranker (yes/no scoring), seq-cls checkpoints, CrossEncoder folders.

Three kinds of model folder load:

- ``causal-lm`` — a ``*ForCausalLM`` decoder such as Qwen3-Reranker. The score is
  ``softmax([logit("no"), logit("yes")])[1]`` at the last position, which equals
  ``sigmoid(h · (w_yes − w_no))`` for the final hidden state ``h`` and the two rows of the output
  projection. Only those two rows are used: the vocabulary projection (151k rows for Qwen3) is
  never computed, and only the last position's hidden state is.
- ``seq-cls`` — a decoder converted to a one-label classifier (its head is ``w_yes − w_no``
  already), scored with its sigmoid, on the same prompt.
- ``cross-encoder`` — any sentence-transformers ``CrossEncoder`` folder (BERT, MiniLM, XLM-R
  rerankers): the tokenizer's pair encoding, the folder's own activation.

Qwen3 decoders run on packed passes (:class:`~qembed.models.packed.PackedQwen3`: real tokens
only, block-diagonal attention, the last layer for the last tokens only); other decoders run
padded on the right with the last real position read from the lengths. Inputs are sorted by
length and cut into batches under a token budget (:func:`~qembed.models.encoder.plan_batches`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from qembed.errors import InputError, QembedError
from qembed.models.encoder import check_finite, check_positive_ints, plan_batches
from qembed.models.local import (
    BATCH_LIMITS,
    PACKED_BATCH_LIMITS,
    pick_device,
    pick_precision,
)
from qembed.models.compile import compile_setting, should_compile
from qembed.models.packed import PackedQwen3, supports_packed
from qembed.models.resolve import model_kind, resolve_model_path
from qembed.rerank.base import (
    DEFAULT_RERANKER,
    RerankResult,
    check_top_n,
    rank,
    want_progress,
)
from qembed.rerank.inputs import (
    DEFAULT_MAX_TOKENS,
    RerankInputs,
    validate_documents,
    validate_query,
)

logger = logging.getLogger(__name__)

KINDS = ("causal-lm", "seq-cls", "cross-encoder")


def _decoder_only(model_type: str) -> bool:
    """A decoder-only architecture (has a causal-LM class and no masked-LM one)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def detect_kind(config: Any) -> str:
    """Which kind of reranker a model configuration describes (see the module docstring)."""
    arch = (getattr(config, "architectures", None) or [""])[0]
    model_type = str(getattr(config, "model_type", ""))
    if arch.endswith("ForCausalLM"):
        return "causal-lm"
    if arch.endswith("ForSequenceClassification") and _decoder_only(model_type):
        return "seq-cls"
    return "cross-encoder"


class Reranker:
    """Score query-document pairs with a reranker loaded in this process.

    Args:
        model: a model folder or Hub id (default ``Qwen/Qwen3-Reranker-0.6B``).
        device: ``None``/``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        dtype: ``None``/``"auto"`` (bf16 on CUDA and AMX/AVX512-BF16 CPUs, else fp32),
            ``"bfloat16"``, ``"float32"`` or ``"float16"``.
        max_input_tokens: longest input in tokens, prompt included (default 8192, or the
            cross-encoder's own limit); longer ones are cut — the document first.
        max_batch_tokens: tokens per forward pass (real tokens when packed, padded otherwise).
        max_batch_size: most pairs per forward pass.
        name: the name reported by :attr:`name` (default: the folder name or Hub id).
        instruction: the default instruction (default: Qwen3-Reranker's web-search one).
        packed: run Qwen3 decoders on packed passes (``None``: whenever possible).
        compile: fuse the packed passes' element-wise ops with :func:`torch.compile`: ``True``,
            ``False`` or ``"auto"``/``None`` (``$QEMBED_COMPILE``, default auto: servers compile,
            one-shot runs do not; see :mod:`qembed.models.compile`).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_RERANKER,
        *,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        max_input_tokens: int | None = None,
        max_batch_tokens: int | None = None,
        max_batch_size: int | None = None,
        name: str | None = None,
        instruction: str | None = None,
        packed: bool | None = None,
        compile: bool | str | None = None,
    ) -> None:
        from transformers import AutoConfig

        model = str(model)
        self.path = resolve_model_path(model)
        if model_kind(self.path) == "embedding":
            raise InputError(f"{model} is an embedding model (a sentence-transformers folder with a pooling "
                             "module), not a reranker: embed with it (`qembed embed --model …`) and rerank "
                             "with a reranker such as Qwen/Qwen3-Reranker-0.6B, a sequence-classification "
                             "model or a CrossEncoder folder", param="model")
        self.name = name or (model.rstrip("/") if not Path(model).exists() else self.path.name)
        self.device = pick_device(device)
        #: int8 products (``dtype="int8"``, Qwen3 rerankers' packed passes, as for embedding models)
        self.dtype, self.int8 = pick_precision(dtype, self.device, packed)
        check_positive_ints(max_input_tokens=max_input_tokens, max_batch_tokens=max_batch_tokens,
                            max_batch_size=max_batch_size)
        try:
            config = AutoConfig.from_pretrained(str(self.path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise QembedError(f"could not read the model configuration in {self.path}: {exc}") from None
        self.kind = detect_kind(config)
        self.model_type = str(getattr(config, "model_type", ""))
        logger.info("loading reranker %s (%s) on %s (%s)", self.path, self.kind, self.device,
                    str(self.dtype).replace("torch.", ""))
        self._packed: PackedQwen3 | None = None
        self._cross: Any = None
        self._head: torch.Tensor | None = None
        self._bias = 0.0
        try:
            if self.kind == "cross-encoder":
                self._load_cross_encoder(max_input_tokens)
            else:
                self._load_decoder(config, max_input_tokens, instruction, packed, compile)
        except (OSError, ValueError) as exc:
            raise QembedError(f"could not load reranker from {self.path}: {exc}") from None
        if self.int8 and self._packed is None:
            raise InputError(f"dtype int8 runs the packed passes of Qwen3 rerankers; {self.name} has none: "
                             "use auto, bfloat16 or float32", param="dtype")
        kind = self.device.split(":")[0]
        limits = PACKED_BATCH_LIMITS if self._packed is not None else BATCH_LIMITS
        default_tokens, default_size = limits.get(kind, limits["cpu"])
        self.max_batch_tokens = int(max_batch_tokens or default_tokens)
        self.max_batch_size = int(max_batch_size or default_size)

    # ------------------------------------------------------------------ loading
    def _load_decoder(self, config: Any, max_input_tokens: int | None, instruction: str | None,
                      packed: bool | None, compile: bool | str | None) -> None:
        from transformers import (
            AutoModelForCausalLM,
            AutoModelForSequenceClassification,
            AutoTokenizer,
        )

        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        cls = AutoModelForCausalLM if self.kind == "causal-lm" else AutoModelForSequenceClassification
        model = cls.from_pretrained(str(self.path), dtype=self.dtype, local_files_only=True).to(self.device)
        model.eval()
        self._model = model
        self._base = getattr(model, "model", None) or model.base_model
        with torch.no_grad():
            if self.kind == "causal-lm":
                yes = self.tokenizer.convert_tokens_to_ids("yes")
                no = self.tokenizer.convert_tokens_to_ids("no")
                unk = self.tokenizer.unk_token_id
                if yes is None or no is None or unk is not None and unk in (yes, no):
                    raise QembedError(f"the tokenizer of {self.path} has no 'yes'/'no' tokens to score with")
                weight = model.get_output_embeddings().weight
                self.yes_no_ids = (int(yes), int(no))
                self._head = (weight[yes].float() - weight[no].float()).contiguous()
            else:
                head = getattr(model, "score", None)
                if head is None or head.weight.shape[0] != 1:
                    labels = getattr(config, "num_labels", None)
                    raise QembedError(f"{self.path} is a classifier with {labels} labels; a reranker "
                                      "checkpoint has one score")
                self.yes_no_ids = None
                self._head = head.weight[0].float().contiguous()
                if getattr(head, "bias", None) is not None:
                    self._bias = float(head.bias[0])
        limit = int(getattr(config, "max_position_embeddings", 0) or DEFAULT_MAX_TOKENS)
        max_input_tokens = int(max_input_tokens or min(DEFAULT_MAX_TOKENS, limit))
        if max_input_tokens > limit:
            raise InputError(f"max_input_tokens must be at most {limit} for {self.name}, got {max_input_tokens}")
        kwargs = {} if instruction is None else {"default_instruction": instruction}
        self.inputs = RerankInputs(self.tokenizer, name=self.name, style="qwen3",
                                   max_input_tokens=max_input_tokens, **kwargs)
        self._pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        if packed is not False:
            if supports_packed(self._base) and not self.device.startswith("mps"):
                # the one compile rule (qembed.models.compile): a server passes its choice;
                # auto in a one-shot run stays eager
                calibration = None
                if self.int8:  # the float model runs these pairs once, to smooth the int8 products
                    from qembed.models.calibration import CALIBRATION_TEXTS

                    texts = CALIBRATION_TEXTS
                    calibration = self.inputs.tokenize_pairs(list(zip(texts[0::2], texts[1::2])))
                self._packed = PackedQwen3(self._base, compile=should_compile(compile, self.device),
                                           int8=self.int8, int8_compiled=compile_setting(compile) is not False,
                                           int8_calibration=calibration)
                self._packed.warmup()
            elif packed:
                raise InputError(f"{self.name} cannot run packed passes (only Qwen3 decoders can)",
                                 param="packed")

    def _load_cross_encoder(self, max_input_tokens: int | None) -> None:
        from sentence_transformers import CrossEncoder

        ce = CrossEncoder(str(self.path), device=self.device, local_files_only=True,
                          model_kwargs={"dtype": self.dtype})
        ce.eval()
        if ce.num_labels != 1:
            raise QembedError(f"{self.path} is a classifier with {ce.num_labels} labels; a reranker has one score")
        self._cross = ce
        self.tokenizer = ce.tokenizer
        self.yes_no_ids = None
        limit = int(ce.max_seq_length or 512)
        max_input_tokens = int(max_input_tokens or limit)
        if max_input_tokens > limit:
            raise InputError(f"max_input_tokens must be at most {limit} for {self.name}, got {max_input_tokens}")
        self.inputs = RerankInputs(self.tokenizer, name=self.name, style="pair",
                                   max_input_tokens=max_input_tokens, default_instruction=None)
        self._pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self._token_types = "token_type_ids" in getattr(self.tokenizer, "model_input_names", [])
        self._sep_id = self.tokenizer.sep_token_id

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Values per input the forward pass returns (one score)."""
        return 1

    @property
    def max_input_tokens(self) -> int:
        return self.inputs.max_input_tokens

    @property
    def supports_instructions(self) -> bool:
        return self.inputs.supports_instructions

    @property
    def packed(self) -> bool:
        return self._packed is not None

    def info(self) -> dict[str, Any]:
        """What ``qembed info`` would report for a reranker."""
        return {
            "name": self.name,
            "path": str(self.path),
            "kind": self.kind,
            "model_type": self.model_type,
            "max_input_tokens": self.max_input_tokens,
            "device": self.device,
            "dtype": "int8" if self.int8 else str(self.dtype).replace("torch.", ""),
            "packed": self.packed,
            "compiled": bool(self._packed is not None and self._packed.compiled),
            "max_batch_tokens": self.max_batch_tokens,
            "max_batch_size": self.max_batch_size,
            "supports_instructions": self.supports_instructions,
            "default_instruction": self.inputs.default_instruction,
        }

    # ------------------------------------------------------------------ text -> ids
    def tokenize(self, query: str, documents: Sequence[str], instruction: str | None = None) -> list[list[int]]:
        """Token ids of each ``(query, document)`` input, prompt applied and cut to the limit."""
        return self.inputs.tokenize(query, documents, instruction)

    def tokenize_pairs(self, pairs: Sequence[tuple[str, str]], instruction: str | None = None) -> list[list[int]]:
        return self.inputs.tokenize_pairs(pairs, instruction)

    # ------------------------------------------------------------------ ids -> scores
    def _padded(self, batch: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(x) for x in batch)
        ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        return torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)

    def _logits(self, batch: list[list[int]]) -> torch.Tensor:
        if self._cross is not None:
            ids, mask = self._padded(batch)
            features: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "modality": "text"}
            if self._token_types:
                # the second segment starts after the first [SEP]
                seps = (ids == self._sep_id).int()
                features["token_type_ids"] = ((seps.cumsum(1) - seps) > 0).long() * mask
            return self._cross.forward(features)["scores"].float().reshape(-1)
        if self._packed is not None:
            hidden = self._packed(batch)
        else:
            ids, mask = self._padded(batch)
            states = self._base(input_ids=ids, attention_mask=mask).last_hidden_state
            last = mask.sum(1) - 1
            hidden = states[torch.arange(len(batch), device=states.device), last]
        return hidden.float() @ self._head + self._bias

    def forward_batch(self, batch: list[list[int]]) -> np.ndarray:
        """One forward pass over token-id sequences: ``(len(batch), 1)`` float32 scores."""
        with torch.inference_mode():
            logits = self._logits(batch)
            if self._cross is not None:
                scores = self._cross.activation_fn(logits)
            else:
                scores = torch.sigmoid(logits)
        out = scores.float().cpu().numpy().reshape(-1, 1)
        check_finite(out, "scores")
        return out

    def score_token_ids(self, ids: Sequence[Sequence[int]], *, progress: bool | None = None) -> np.ndarray:
        """Scores of prepared token ids, in input order (length-aware batches under the budget)."""
        ids = [list(x) for x in ids]
        batches = plan_batches([len(x) for x in ids], self.max_batch_tokens, self.max_batch_size,
                               packed=self.packed)
        out = np.empty(len(ids), dtype=np.float32)
        bar = tqdm(total=len(ids), desc="reranking", unit="pair", disable=not want_progress(progress, len(batches)))
        for batch in batches:
            out[batch] = self.forward_batch([ids[i] for i in batch])[:, 0]
            bar.update(len(batch))
        bar.close()
        return out

    # ------------------------------------------------------------------ public API
    def score(self, pairs: Sequence[tuple[str, str]], instruction: str | None = None, *,
              progress: bool | None = None) -> np.ndarray:
        """Relevance of each ``(query, document)`` pair: float32 in [0, 1] for the Qwen3 kinds
        (P(yes)), the folder's activation for cross-encoders."""
        return self.score_token_ids(self.tokenize_pairs(pairs, instruction), progress=progress)

    def rerank(self, query: str, documents: Sequence[str], instruction: str | None = None,
               top_n: int | None = None, *, progress: bool | None = None) -> list[RerankResult]:
        """``documents`` sorted by relevance to ``query``, highest first: ``(index, score, document)``
        for the best ``top_n`` (default all)."""
        query = validate_query(query)
        docs = validate_documents(documents)
        check_top_n(top_n)
        scores = self.score_token_ids(self.inputs.tokenize(query, docs, instruction), progress=progress)
        return rank(scores, docs, top_n)

    def count_tokens(self, query: str, documents: Sequence[str], instruction: str | None = None) -> int:
        """Tokens the model reads for these pairs (after cutting)."""
        return sum(len(x) for x in self.tokenize(query, documents, instruction))

    def __repr__(self) -> str:
        return (f"Reranker(name={self.name!r}, kind={self.kind!r}, device={self.device!r}, "
                f"dtype={'int8' if self.int8 else str(self.dtype).replace('torch.', '')})")
