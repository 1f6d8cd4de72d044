"""Contrastive tuning that keeps an embedding model: LoRA (or full) training with sentence-transformers.

Unlike the pair classifier, the tuned model still embeds one text at a time, so everything built
on embeddings (search, clustering, dedup, the server) uses it unchanged. The model is trained as
it is used: its own pooling and normalisation (``modules.json``), and for instruction models
(Qwen3-Embedding) both sides of a pair carry the symmetric instruction
``Instruct: Retrieve semantically similar text\\nQuery:`` — the prompt qembed's pair similarity
applies at inference.

Losses (sentence-transformers): ``cosent`` (CoSENTLoss: ranks pairs by label; works with 0/1
and graded 0-5 labels), ``contrastive`` (ContrastiveLoss on cosine distance; 0/1 labels),
``mnrl`` (MultipleNegativesRankingLoss: positive pairs only, other pairs of the batch are the
negatives). LoRA goes through peft (``get_peft_model``); ``merge=True`` folds it into the weights
and writes a complete sentence-transformers folder that :func:`qembed.load_encoder` and
``qembed serve --model-path`` load directly. Without ``merge`` the folder holds the adapter,
which sentence-transformers loads on top of the base model.

Before and after training the model is measured on the dev pairs: Spearman correlation of the
cosine with the label, and — for 0/1 labels — calibrated accuracy / F1
(:func:`qembed.eval.pairs.calibrate`, thresholds chosen on the dev scores, the convention of
sentence-transformers' binary-classification evaluator).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from qembed.deprecated import old_keywords, sentence_transformers_progress
from qembed.errors import InputError, ModelLoadError
from qembed.models.prompts import SYMMETRIC_INSTRUCTION, is_instruct_prompt, qwen_prefix
from qembed.train.data import PairData

logger = logging.getLogger(__name__)

LOSSES = ("cosent", "contrastive", "mnrl")
METRICS = "metrics.json"
MANIFEST = "qembed_embedding_tune.json"
#: LoRA targets when none are given: attention projections of Qwen/Llama-style and BERT-style models.
AUTO_TARGETS = (("q_proj", "k_proj", "v_proj", "o_proj"), ("query", "key", "value"))


@dataclass
class EmbeddingTuneConfig:
    """Options of :func:`tune_embeddings`.

    ``lr`` default: 1e-4 with LoRA, 2e-5 for full tuning. ``target_modules`` default: the attention
    projections (q/k/v/o for Qwen, query/key/value for BERT). ``instruction``: the prompt both
    sides get on instruction models (ignored by others); ``""`` for none. ``max_length``: tokens
    per text during training. ``score_scale``: graded labels are divided by it for CoSENT
    (None: 5 when any label exceeds 1, else 1).
    """

    model: str | None = None
    loss: str = "cosent"
    lora: bool = True
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    target_modules: list[str] | None = None
    epochs: int = 1
    batch_size: int = 32
    lr: float | None = None
    warmup_ratio: float = 0.1
    max_length: int = 128
    instruction: str | None = SYMMETRIC_INSTRUCTION
    seed: int = 42
    device: str | None = None
    precision: str = "auto"
    score_scale: float | None = None
    eval_batch_size: int = 64

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise InputError(f"unknown loss {self.loss!r}; use {', '.join(LOSSES)}", param="loss")
        for name in ("epochs", "batch_size", "lora_r", "max_length", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}")
        if self.max_length < 8:
            raise InputError(f"max length must be at least 8, got {self.max_length}", param="max_length")
        if self.lr is not None and not self.lr > 0:
            raise InputError(f"learning rate must be positive, got {self.lr}")
        if not 0 <= self.lora_dropout < 1:
            raise InputError(f"lora dropout must be in [0, 1), got {self.lora_dropout}")
        from qembed.pairs.cross_encoder import check_precision

        self.precision = check_precision(self.precision)
        if self.loss == "mnrl" and self.batch_size < 2:
            raise InputError("mnrl needs a batch size of at least 2 (the other pairs are the negatives)")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-4 if self.lora else 2e-5)


# ---------------------------------------------------------------------------- model helpers
def instruction_prefix(model: Any, instruction: str | None) -> str | None:
    """The text put before every input during training and evaluation (None for plain models).

    Instruction models — prompts of the ``Instruct: …\\nQuery:`` form, or a Qwen model with
    last-token pooling — get ``Instruct: {instruction}\\nQuery:``; other models none.
    """
    if not instruction:
        return None
    prompts = dict(getattr(model, "prompts", {}) or {})
    transformer = model[0]
    auto = getattr(transformer, "auto_model", None)
    model_type = str(getattr(getattr(auto, "config", None), "model_type", ""))
    pooling = next((m for m in model if type(m).__name__ == "Pooling"), None)
    pooling_mode = str(getattr(pooling, "pooling_mode", "")) if pooling else ""
    if any(is_instruct_prompt(p) for p in prompts.values() if p) or (
        model_type.startswith("qwen") and pooling_mode == "lasttoken"
    ):
        return qwen_prefix(instruction)
    return None


def _target_modules(model: torch.nn.Module, wanted: list[str] | None) -> list[str]:
    from qembed.train.pair_classifier import check_target_modules, linear_module_names

    if wanted:
        check_target_modules(model, wanted)
        return list(wanted)
    names = set(linear_module_names(model))
    for group in AUTO_TARGETS:
        if set(group) <= names:
            return list(group)
    raise InputError(f"no default LoRA target modules for {type(model).__name__}; pass --target-modules "
                     f"(its linear layers are: {', '.join(sorted(names))})")


def load_sentence_transformer(path: str | Path, device: str, dtype: torch.dtype) -> Any:
    """A SentenceTransformer from a local folder (its modules, pooling and prompts)."""
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(str(path), device=device, local_files_only=True,
                                   model_kwargs={"dtype": dtype})
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load {path} as a sentence-transformers model: {exc}") from None


# ---------------------------------------------------------------------------- evaluation
def pair_scores(model: Any, data: PairData, prefix: str | None, batch_size: int = 64) -> np.ndarray:
    """Cosine similarity of each pair, embedding both sides with ``prefix`` (the prompt)."""
    kwargs = {"prompt": prefix} if prefix else {}
    kwargs.update(sentence_transformers_progress(False))  # its own name for the keyword
    a = model.encode(data.first, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, **kwargs)
    b = model.encode(data.second, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, **kwargs)
    return np.sum(a.astype(np.float64) * b.astype(np.float64), axis=1)


def score_metrics(scores: np.ndarray, data: PairData) -> dict[str, Any]:
    """Spearman's rho of score and label (None when either is constant) and, for 0/1 labels,
    calibrated accuracy/F1/precision/recall/average precision with their thresholds."""
    from scipy.stats import spearmanr

    from qembed.eval.pairs import calibrate

    labels = np.asarray(data.labels, dtype=np.float64)
    rho = spearmanr(scores, labels).statistic if np.ptp(labels) > 0 and np.ptp(scores) > 0 else None
    out: dict[str, Any] = {"pairs": len(data), "spearman": None if rho is None else float(rho),
                           "mean_cosine": float(np.mean(scores))}
    if data.binary and 0 < labels.sum() < len(labels):
        cal = calibrate(scores, data.int_labels())
        out.update({k: cal[k] for k in ("accuracy", "f1", "precision", "recall", "average_precision",
                                         "threshold", "f1_threshold")})
    return out


def evaluate_embeddings(model: Any, data: PairData, prefix: str | None, batch_size: int = 64) -> dict[str, Any]:
    """:func:`score_metrics` of the model's cosine scores on ``data``."""
    was_training = model.training
    model.eval()
    try:
        return score_metrics(pair_scores(model, data, prefix, batch_size), data)
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------- training
def _train_dataset(data: PairData, loss: str, scale: float) -> Any:
    from datasets import Dataset

    if loss == "mnrl":
        # Positives: label 1, or a graded score of at least 80% of the scale (4 of 5 on STS-B).
        cut = 1.0 if data.binary else 0.8 * scale
        keep = [i for i, y in enumerate(data.labels) if y >= cut]
        if len(keep) < 2:
            raise InputError(f"{data.source}: mnrl trains on positive pairs (label 1) and found {len(keep)}")
        return Dataset.from_dict({"anchor": [data.first[i] for i in keep],
                                  "positive": [data.second[i] for i in keep]})
    labels = [float(y) / scale for y in data.labels]
    if loss == "contrastive" and not data.binary:
        raise InputError(f"{data.source}: the contrastive loss needs 0/1 labels; use --loss cosent for graded scores")
    return Dataset.from_dict({"sentence1": data.first, "sentence2": data.second, "label": labels})


def _make_loss(name: str, model: Any) -> Any:
    try:  # the losses' home since sentence-transformers 6 (the old path warns there)
        from sentence_transformers.sentence_transformer import losses
    except ImportError:
        from sentence_transformers import losses

    if name == "cosent":
        return losses.CoSENTLoss(model)
    if name == "contrastive":
        return losses.ContrastiveLoss(model)
    return losses.MultipleNegativesRankingLoss(model)


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise InputError(f"--output {output} is a file; give a folder")
    if output.exists() and any(output.iterdir()):
        if not (output / MANIFEST).exists():
            raise InputError(f"{output} is not empty and holds no qembed-tuned model; choose an empty folder")
        if not overwrite:
            raise InputError(f"{output} already holds a tuned model; pass --overwrite or choose another --output")


@old_keywords
def tune_embeddings(
    train: PairData,
    output: str | Path,
    cfg: EmbeddingTuneConfig | None = None,
    *,
    dev: PairData | None = None,
    merge: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    on_trainable: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Tune an embedding model on labelled pairs and save it to ``output``.

    In: train pairs (0/1 or graded labels), optional dev pairs, an output folder, options.
    Out: the metrics written to ``output/metrics.json``: ``before`` and ``after`` (dev Spearman,
    calibrated accuracy/F1 for 0/1 labels), training time and throughput, and what was saved
    (``saved``: ``merged``, ``full`` or ``adapter``).
    """
    from qembed.extras import require

    require("train", "tuning an embedding model", modules=("datasets", "accelerate"))
    if cfg is not None and cfg.lora:
        require("train", "LoRA tuning", modules=("peft",))
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    from qembed.models.local import pick_device
    from qembed.models.resolve import default_model, resolve_model_path
    from qembed.pairs.cross_encoder import resolve_precision
    from qembed.train.pair_classifier import trainable_line

    cfg = cfg or EmbeddingTuneConfig()
    cfg.validate()
    if train.labels is None:
        raise InputError(f"{train.source}: no label column")
    if dev is not None and dev.labels is None:
        raise InputError(f"{dev.source}: no label column")
    if merge and not cfg.lora:
        logger.info("--merge has nothing to merge with full tuning; the full model is saved")
    scale = cfg.score_scale or (5.0 if max(train.labels) > 1 else 1.0)
    if min(train.labels) < 0 or max(train.labels) > scale:
        raise InputError(f"{train.source}: labels must lie in [0, {scale:g}]")
    train_ds = _train_dataset(train, cfg.loss, scale)
    output = Path(output)
    _check_output(output, overwrite)

    base_name = cfg.model or default_model()
    base_path = resolve_model_path(base_name)
    device = pick_device(cfg.device)
    dtype = resolve_precision(cfg.precision, device)
    model = load_sentence_transformer(base_path, device, torch.float32 if dtype == torch.float32 else dtype)
    natural_max_length = model.max_seq_length
    config = model[0].auto_model.config
    special_ids = {k: getattr(config, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    prefix = instruction_prefix(model, cfg.instruction)
    logger.info("training prompt: %r", prefix or "(none)")

    trainable_desc = "all weights"
    if cfg.lora:
        from peft import LoraConfig, TaskType, get_peft_model

        inner = model[0].auto_model
        targets = _target_modules(inner, cfg.target_modules)
        peft_cfg = LoraConfig(task_type=TaskType.FEATURE_EXTRACTION, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                              lora_dropout=cfg.lora_dropout, target_modules=targets)
        model[0].model = get_peft_model(inner, peft_cfg)
        for p in model.parameters():
            if p.requires_grad and p.dtype != torch.float32:
                p.data = p.data.float()
        trainable_desc = trainable_line(model[0].model)
    else:
        n = sum(p.numel() for p in model.parameters())
        trainable_desc = f"trainable params: {n:,d} || all params: {n:,d} || trainable%: 100.0000"
    logger.info("%s", trainable_desc)
    if on_trainable:
        on_trainable(trainable_desc)

    before = evaluate_embeddings(model, dev, prefix, cfg.eval_batch_size) if dev is not None else None
    if before:
        logger.info("before: %s", _short(before))

    columns = list(train_ds.column_names)
    prompts = {c: prefix for c in columns if c != "label"} if prefix else None
    with _scratch(output) as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=str(scratch),
            num_train_epochs=cfg.epochs,
            per_device_train_batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate,
            warmup_steps=int(cfg.warmup_ratio * math.ceil(len(train_ds) / cfg.batch_size) * cfg.epochs),
            bf16=dtype == torch.bfloat16,
            prompts=prompts,
            batch_sampler=BatchSamplers.NO_DUPLICATES if cfg.loss == "mnrl" else BatchSamplers.BATCH_SAMPLER,
            save_strategy="no",
            eval_strategy="no",
            logging_steps=max(1, math.ceil(len(train_ds) / cfg.batch_size) // 10),
            report_to="none",
            seed=cfg.seed,
            disable_tqdm=not progress,
            use_cpu=device == "cpu",
            dataloader_pin_memory=device.startswith("cuda"),
        )
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_ds,
                                            loss=_make_loss(cfg.loss, model))
        started = time.perf_counter()
        model.max_seq_length = cfg.max_length  # the training length; the saved model keeps its own
        try:
            # The HF trainer prints its log dicts; keep stdout for the caller's --json document.
            with contextlib.redirect_stdout(sys.stderr):
                result = trainer.train()
        finally:
            model.max_seq_length = natural_max_length
        seconds = time.perf_counter() - started
    model.eval()
    after = evaluate_embeddings(model, dev, prefix, cfg.eval_batch_size) if dev is not None else None
    if after:
        logger.info("after: %s", _short(after))

    # The trainer aligns config special ids with the tokenizer's; keep the model's own.
    for key, value in special_ids.items():
        setattr(model[0].auto_model.config, key, value)
    saved = "full"
    if cfg.lora and merge:
        model[0].model = model[0].model.merge_and_unload()
        saved = "merged"
    elif cfg.lora:
        saved = "adapter"
    if output.exists():  # an older model, replaced only now that training succeeded (--overwrite)
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)
    if prefix:
        # Record the symmetric prompt beside the model's own, so it can be asked for by name.
        model.prompts = {**(model.prompts or {}), "similarity": prefix}
    model.save(str(output))
    doc = {
        "base_model": base_name, "train_file": train.source, "dev_file": dev.source if dev else None,
        "train_pairs": len(train), "train_examples": len(train_ds), "dev_pairs": len(dev) if dev else 0,
        "loss": cfg.loss, "prompt": prefix, "label_scale": scale,
        "trainable": trainable_desc, "saved": saved, "device": device,
        "precision": str(dtype).replace("torch.", ""), "config": asdict(cfg),
        "train_seconds": seconds, "train_examples_per_s": len(train_ds) * cfg.epochs / seconds,
        "train_loss": float(result.training_loss),
        "before": before, "after": after,
    }
    (output / METRICS).write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
    (output / MANIFEST).write_text(json.dumps({"base_model": base_name, "saved": saved, "prompt": prefix,
                                               "loss": cfg.loss}, indent=2), encoding="utf-8")
    return doc


def _short(m: dict[str, Any]) -> str:
    keys = ("spearman", "accuracy", "f1")
    return ", ".join(f"{k} {m[k]:.4f}" for k in keys if k in m and m[k] is not None)


class _scratch:
    """A temporary trainer folder beside the output, removed afterwards."""

    def __init__(self, output: Path) -> None:
        self.path = output.parent / f".{output.name}.trainer"

    def __enter__(self) -> Path:
        shutil.rmtree(self.path, ignore_errors=True)
        return self.path

    def __exit__(self, *exc: Any) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
