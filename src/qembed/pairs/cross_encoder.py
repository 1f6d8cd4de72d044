"""Trained pair classifiers at inference: both sentences in one sequence, P(same) from a 2-label head.

A pair classifier folder is written by :func:`qembed.train.pair_classifier.train_pair_classifier`
(``qembed finetune classifier``)::

    adapter_config.json, adapter_model.safetensors   best epoch (LoRA + head), peft format
    tokenizer files                                   the base model's tokenizer
    qembed_classifier.json                            manifest: base model, max_length, pad id, …
    metrics.json                                      per-epoch dev metrics and ``best``

:meth:`PairClassifier.load` reads the manifest, loads the base model it names as
``AutoModelForSequenceClassification`` (two labels; Qwen3 pools the last non-pad token) and the
peft adapter with its head. :meth:`PairClassifier.predict_proba` gives P(same) for each pair.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from qembed.deprecated import old_keywords
from qembed.errors import InputError, ModelLoadError, NotFoundError, QembedError
from qembed.eval.classification import pair_classification_metrics, positive_probability
from qembed.models.runtimes import canonical_dtype
from qembed.pairs.pair_tokens import PairTokenizer

logger = logging.getLogger(__name__)

MANIFEST = "qembed_classifier.json"
METRICS = "metrics.json"
LABELS = ("different", "same")
#: Training precisions (``auto``: bf16 on CUDA, fp32 elsewhere) by their dtype name
#: (:func:`~qembed.models.runtimes.canonical_dtype`, which also takes ``bf16``/``fp32``).
PRECISIONS = {"auto": "auto", "bfloat16": "bf16", "float32": "fp32"}


def check_precision(precision: str) -> str:
    """``precision`` as ``auto``, ``bf16`` or ``fp32`` (any spelling of those dtypes accepted)."""
    try:
        value = PRECISIONS.get(canonical_dtype(precision) or "")
    except InputError:
        value = None
    if value is None:
        raise InputError(f"precision must be auto, bfloat16 (bf16) or float32 (fp32), got {precision!r}",
                         param="precision")
    return value


def resolve_precision(precision: str, device: str) -> torch.dtype:
    """The torch dtype of ``precision`` on ``device``: ``auto`` is bf16 on CUDA with bf16 support, else fp32."""
    precision = check_precision(precision)
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp32":
        return torch.float32
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_base_classifier(path: Path, pad_id: int, dtype: torch.dtype) -> torch.nn.Module:
    """``AutoModelForSequenceClassification`` with two labels and ``pad_token_id`` set."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized: score.weight" is expected
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            str(path), num_labels=2, pad_token_id=pad_id, dtype=dtype, local_files_only=True,
            id2label=dict(enumerate(LABELS)), label2id={v: k for k, v in enumerate(LABELS)},
            output_loading_info=True,
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load {path} as a sequence classifier: {exc}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    # The new head is expected to start random; anything else missing is worth a warning.
    fresh = [k for k in info.get("missing_keys", []) if k.split(".")[0] not in ("score", "classifier")]
    if fresh:
        logger.warning("%s lacks %d weight(s) that start random (e.g. %s)", path, len(fresh), fresh[0])
    model.config.pad_token_id = pad_id
    return model


def _autocast(device: str, dtype: torch.dtype):
    if dtype == torch.float32:
        return torch.autocast(device_type=device.split(":")[0], enabled=False)
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def _batches_by_length(ids: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    return [order[k:k + batch_size] for k in range(0, len(order), batch_size)]


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    ids: Sequence[Sequence[int]],
    pt: PairTokenizer,
    *,
    device: str,
    dtype: torch.dtype = torch.float32,
    batch_size: int = 128,
    progress: bool = False,
    desc: str = "scoring",
) -> np.ndarray:
    """Logits ``(n, 2)`` (float32) for prepared pair token ids, in input order (batched by length)."""
    was_training = model.training
    model.eval()
    out = np.empty((len(ids), 2), dtype=np.float32)
    bar = tqdm(total=len(ids), desc=desc, unit="pair", disable=not progress, leave=False)
    for batch in _batches_by_length(ids, batch_size):
        features = {k: v.to(device) for k, v in pt.collate([ids[i] for i in batch]).items()}
        with _autocast(device, dtype):
            logits = model(**features).logits
        out[batch] = logits.float().cpu().numpy()
        bar.update(len(batch))
    bar.close()
    if was_training:
        model.train()
    return out


#: P(same) from ``(n, 2)`` logits.
probabilities = positive_probability


class PairClassifier:
    """A trained pair classifier (base model + LoRA adapter + head) ready to score pairs.

    ``PairClassifier.load(folder)`` reads the manifest, loads the base model it names (or
    ``model=`` to point elsewhere, e.g. when the base moved) and the adapter with its head.
    :meth:`predict_proba` gives P(same) for each pair; :meth:`evaluate` scores labelled pairs.
    """

    def __init__(self, model: Any, pair_tokenizer: PairTokenizer, max_length: int, device: str,
                 dtype: torch.dtype = torch.float32, manifest: dict[str, Any] | None = None) -> None:
        self.model = model
        self.pt = pair_tokenizer
        self.max_length = int(max_length)
        self.device = device
        self.dtype = dtype
        self.manifest = manifest or {}

    @classmethod
    def load(cls, folder: str | Path, *, model: str | None = None, device: str | None = None,
             precision: str = "auto") -> PairClassifier:
        """Load the classifier in ``folder``; :class:`NotFoundError` when it holds none."""
        from qembed.extras import require

        require("train", "a LoRA pair classifier", modules=("peft",))
        from peft import PeftModel
        from transformers import AutoTokenizer

        from qembed.models.local import pick_device
        from qembed.models.resolve import resolve_model_path

        folder = Path(folder)
        if not (folder / MANIFEST).exists() or not (folder / "adapter_config.json").exists():
            raise NotFoundError(f"{folder} is not a qembed pair classifier (no {MANIFEST} / adapter_config.json); "
                                "train one with `qembed finetune classifier`")
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{folder / MANIFEST} is damaged: {exc}") from None
        base_name = model or manifest.get("base_model_path") or manifest["base_model"]
        try:
            base_path = resolve_model_path(base_name)
        except QembedError:
            if model is None and manifest.get("base_model") and manifest["base_model"] != base_name:
                base_path = resolve_model_path(manifest["base_model"])
            else:
                raise
        dev = pick_device(device)
        dtype = resolve_precision(precision, dev)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        pt = PairTokenizer(tokenizer)
        base = load_base_classifier(base_path, pt.pad_id, dtype)
        peft_model = PeftModel.from_pretrained(base, str(folder))
        peft_model.to(dev)
        peft_model.eval()
        return cls(peft_model, pt, manifest["max_length"], dev, dtype, manifest)

    def logits(self, first: Sequence[str], second: Sequence[str], *, batch_size: int = 64,
               progress: bool = False) -> np.ndarray:
        """``(n, 2)`` logits (different, same) of each pair."""
        ids = self.pt.encode_pairs(list(first), list(second), self.max_length)
        return predict_logits(self.model, ids, self.pt, device=self.device, dtype=self.dtype,
                              batch_size=batch_size, progress=progress)

    @old_keywords
    def predict_proba(self, first: Sequence[str], second: Sequence[str], *, batch_size: int = 64,
                      progress: bool = False) -> np.ndarray:
        """P(same) for each pair, float32 ``(n,)``."""
        return positive_probability(self.logits(first, second, batch_size=batch_size, progress=progress))

    def evaluate(self, data: Any, *, batch_size: int = 64, progress: bool = False) -> dict[str, Any]:
        """Accuracy, F1, precision, recall, loss and average precision on labelled pairs
        (:class:`~qembed.train.data.PairData`)."""
        logits = self.logits(data.first, data.second, batch_size=batch_size, progress=progress)
        return pair_classification_metrics(logits, data.int_labels())


__all__ = ["LABELS", "MANIFEST", "METRICS", "PairClassifier", "check_precision", "load_base_classifier",
           "predict_logits", "probabilities", "resolve_precision"]
