"""Training the LoRA pair classifier with ``transformers.Trainer``.

The recipe it reproduces: Qwen3-Embedding-0.6B loaded as ``AutoModelForSequenceClassification``
(``num_labels=2``; Qwen3 pools the last non-pad token), peft
``LoraConfig(task_type=SEQ_CLS, r=8, lora_alpha=32, lora_dropout=0.1,
target_modules=["q_proj", "k_proj", "v_proj"])``, ``max_length=64``, batch 128, 15 epochs,
learning rate 1e-4 with linear decay after 6% warm-up. peft adds the classification head
(``score`` for Qwen, ``classifier`` for BERT) to ``modules_to_save``, so the adapter folder holds
the head as well.

``Trainer`` runs the loop: gradient accumulation (``batch_size`` stays the effective batch),
clipping, the schedule, bf16 autocast, gradient checkpointing, a dev evaluation after every
epoch (accuracy, F1/precision/recall of the "same" class, loss, average precision), the best
epoch by dev F1 kept (``load_best_model_at_end``), early stopping (``EarlyStoppingCallback``)
and resuming from the last epoch's checkpoint (``resume_from_checkpoint``). Inference lives in
:mod:`qembed.pairs.cross_encoder`.

Output folder (what :meth:`~qembed.pairs.cross_encoder.PairClassifier.load` reads)::

    adapter_config.json, adapter_model.safetensors   best epoch so far (LoRA + head), peft format
    tokenizer files                                   the base model's tokenizer
    qembed_classifier.json                            manifest: base model, max_length, pad id, config
    metrics.json                                      per-epoch list and ``best``
    checkpoints/checkpoint-N/                         Trainer checkpoints (last and best), for --resume
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from qembed.deprecated import old_keywords
from qembed.errors import InputError
from qembed.pairs.cross_encoder import (
    LABELS,
    MANIFEST,
    METRICS,
    PairClassifier,
    check_precision,
    load_base_classifier,
    resolve_precision,
)
from qembed.pairs.pair_tokens import MIN_MAX_LENGTH, PairTokenizer
from qembed.train.data import PairData, check_binary_classes

logger = logging.getLogger(__name__)

#: Trainer checkpoints inside the output folder (what ``resume`` continues from).
CHECKPOINTS = "checkpoints"


@dataclass
class ClassifierConfig:
    """Hyper-parameters of :func:`train_pair_classifier`; the defaults are the recipe's.

    ``batch_size`` is the effective batch; ``grad_accum`` splits it into that many micro-batches
    (same gradients, less memory). ``precision``: ``auto`` (bf16 on CUDA, fp32 elsewhere),
    ``bf16`` (bf16 weights and autocast; LoRA and head in fp32) or ``fp32``.
    ``early_stopping_patience``: stop after that many epochs without a better dev F1.
    """

    model: str | None = None
    max_length: int = 64
    batch_size: int = 128
    epochs: int = 15
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj"])
    grad_accum: int = 1
    gradient_checkpointing: bool = False
    early_stopping_patience: int | None = None
    seed: int = 42
    device: str | None = None
    precision: str = "auto"
    eval_batch_size: int | None = None

    def validate(self) -> None:
        """Raise :class:`InputError` for a value training cannot run with."""
        if self.max_length < MIN_MAX_LENGTH:
            raise InputError(f"max length must be at least {MIN_MAX_LENGTH}, got {self.max_length}",
                             param="max_length")
        for name in ("batch_size", "epochs", "lora_r", "grad_accum"):
            if getattr(self, name) < 1:
                raise InputError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}")
        if self.batch_size % self.grad_accum:
            raise InputError(f"batch size {self.batch_size} is not a multiple of grad accum {self.grad_accum}")
        if not self.lr > 0:
            raise InputError(f"learning rate must be positive, got {self.lr}")
        if not 0 <= self.lora_dropout < 1:
            raise InputError(f"lora dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora_alpha <= 0:
            raise InputError(f"lora alpha must be positive, got {self.lora_alpha}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise InputError("early stopping patience must be at least 1")
        if not 0 <= self.warmup_ratio < 1:
            raise InputError(f"warm-up ratio must be in [0, 1), got {self.warmup_ratio}")
        self.precision = check_precision(self.precision)
        targets = [t.strip() for t in self.target_modules if t.strip()]
        if not targets:
            raise InputError("target modules must name at least one module, e.g. q_proj,k_proj,v_proj")
        self.target_modules = targets


# ---------------------------------------------------------------------------- model building
def lora_config(cfg: ClassifierConfig) -> Any:
    """The peft ``LoraConfig`` (task SEQ_CLS) of ``cfg``."""
    from peft import LoraConfig, TaskType

    return LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                      lora_dropout=cfg.lora_dropout, target_modules=list(cfg.target_modules))


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """Distinct last name parts of the model's ``nn.Linear`` layers (what ``target_modules`` can name)."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear)})


def check_target_modules(model: torch.nn.Module, targets: Sequence[str]) -> None:
    """Raise :class:`InputError` when a target module names no linear layer of ``model``."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()} | {n for n, _ in model.named_modules()}
    unknown = [t for t in targets if t not in names]
    if unknown:
        raise InputError(
            f"unknown target module(s) {', '.join(unknown)} for {type(model).__name__}; "
            f"its linear layers are: {', '.join(linear_module_names(model))}",
            param="target_modules",
        )


def apply_lora(model: torch.nn.Module, cfg: ClassifierConfig) -> Any:
    """Wrap ``model`` with the LoRA adapter of ``cfg`` (after checking the target modules)."""
    from peft import get_peft_model

    check_target_modules(model, cfg.target_modules)
    return get_peft_model(model, lora_config(cfg))


def trainable_line(model: Any) -> str:
    """peft's ``print_trainable_parameters()`` line, as a string."""
    trainable, total = model.get_nb_trainable_parameters()
    return f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"


# ---------------------------------------------------------------------------- Trainer glue
class _Pairs(torch.utils.data.Dataset):
    """Prepared token ids and 0/1 labels, one dict per pair."""

    def __init__(self, ids: Sequence[Sequence[int]], labels: Sequence[int]) -> None:
        self.ids = ids
        self.labels = labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "labels": int(self.labels[i])}


def _collator(pt: PairTokenizer) -> Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]:
    def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = pt.collate([x["input_ids"] for x in items])
        batch["labels"] = torch.tensor([x["labels"] for x in items], dtype=torch.long)
        return batch

    return collate


def _compute_metrics(prediction: Any) -> dict[str, float]:
    from qembed.eval.classification import pair_classification_metrics

    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    metrics = pair_classification_metrics(np.asarray(logits, dtype=np.float32), prediction.label_ids)
    if metrics["average_precision"] is None:
        metrics["average_precision"] = float("nan")  # the Trainer's log wants numbers
    return metrics


def _history_from(log_history: list[dict[str, Any]], seconds: dict[int, float], n_train: int,
                  previous: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per evaluated epoch from the Trainer's log history (plus timings measured here)."""
    train_loss: dict[int, float] = {}
    rows: list[dict[str, Any]] = []
    for entry in log_history:
        epoch = int(round(entry.get("epoch", 0)))
        if "loss" in entry:
            train_loss[epoch] = float(entry["loss"])
        if "eval_f1" in entry:
            if epoch in previous:  # measured by an earlier run (resumed): keep its row as written
                rows.append(previous[epoch])
                continue
            row: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss.get(epoch)}
            for key in ("accuracy", "f1", "precision", "recall", "loss", "average_precision"):
                value = entry.get(f"eval_{key}")
                row[key] = None if value is None or (isinstance(value, float) and math.isnan(value)) else value
            if epoch in seconds:
                row["train_seconds"] = seconds[epoch]
                row["train_pairs_per_s"] = n_train / seconds[epoch] if seconds[epoch] > 0 else None
            rows.append(row)
    return rows


def _best(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The epoch with the best dev F1 (the first of equals, as the Trainer keeps it)."""
    best = None
    for row in history:
        if best is None or row["f1"] > best["f1"]:
            best = row
    return None if best is None else {k: best[k] for k in ("epoch", "accuracy", "f1", "precision", "recall", "loss")}


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def last_checkpoint(output: Path) -> Path | None:
    """The newest Trainer checkpoint in ``output/checkpoints`` (``None`` when there is none)."""
    from transformers.trainer_utils import get_last_checkpoint

    folder = output / CHECKPOINTS
    if not folder.is_dir():
        return None
    found = get_last_checkpoint(str(folder))
    return Path(found) if found else None


def _check_output(output: Path, resume: bool, overwrite: bool) -> bool:
    """Decide whether to resume; refuse to clobber a finished run unless told to."""
    if output.exists() and not output.is_dir():
        raise InputError(f"--output {output} is a file; give a folder")
    checkpoint = last_checkpoint(output) if output.is_dir() else None
    if resume:
        if checkpoint is None or not (output / MANIFEST).exists():
            raise InputError(f"--resume: {output} holds no training checkpoint ({CHECKPOINTS}/checkpoint-N); "
                             "start without --resume")
        return True
    if output.exists() and any(output.iterdir()):
        if not overwrite and ((output / MANIFEST).exists() or checkpoint is not None):
            raise InputError(f"{output} already holds a classifier; pass --resume to continue it, "
                             "--overwrite to replace it, or choose another --output")
        if not (output / MANIFEST).exists() and checkpoint is None:
            raise InputError(f"{output} is not empty and holds no qembed classifier; choose an empty folder")
    return False


def _trainer_callbacks(output: Path, cfg: ClassifierConfig, seconds: dict[int, float],
                       write_metrics: Callable[[Any], None], show_progress: bool) -> list[Any]:
    from transformers import EarlyStoppingCallback, TrainerCallback
    from transformers.trainer_callback import ProgressCallback

    class EpochCallback(TrainerCallback):
        """Times each epoch, keeps the best adapter so far in ``output`` and writes metrics.json."""

        def __init__(self) -> None:
            self.started = 0.0
            self.best_f1: float | None = None

        def on_epoch_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kwargs):
            seconds[int(round(state.epoch))] = time.perf_counter() - self.started

        def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
            f1 = (metrics or {}).get("eval_f1")
            if f1 is not None and model is not None and (state.best_metric is None or f1 > state.best_metric):
                model.save_pretrained(str(output))  # the best epoch so far is usable at once
            logger.info("epoch %d: dev accuracy %.4f, f1 %.4f, loss %.4f", int(round(state.epoch)),
                        metrics.get("eval_accuracy", float("nan")), f1 or float("nan"),
                        metrics.get("eval_loss", float("nan")))

        def on_save(self, args, state, control, **kwargs):
            write_metrics(state)

    class QuietProgress(ProgressCallback):
        """Progress bars on stderr without the Trainer's dict lines on stdout."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    callbacks: list[Any] = [EpochCallback()]
    if show_progress:
        callbacks.append(QuietProgress())
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    return callbacks


# ---------------------------------------------------------------------------- training
@old_keywords
def train_pair_classifier(
    train: PairData,
    dev: PairData,
    output: str | Path,
    cfg: ClassifierConfig | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    on_trainable: Callable[[str], None] | None = None,
    return_classifier: bool = False,
) -> dict[str, Any] | tuple[dict[str, Any], PairClassifier]:
    """Train the LoRA pair classifier and return the metrics written to ``output/metrics.json``.

    In: labelled train and dev pairs (0/1), an output folder, a :class:`ClassifierConfig`.
    Everything is checked (labels, both classes, options, model, target modules) before the first
    step. ``resume`` continues from the last epoch's checkpoint in ``output`` (same settings
    required); ``overwrite`` replaces a finished classifier. ``progress``: bars on stderr
    (``None``: when stderr is a terminal and an epoch holds more than one batch). ``on_trainable`` receives the
    trainable-parameter line. Out: ``{"epochs": [...], "best": {"epoch", "accuracy", "f1",
    "loss", ...}, "stopped_early", ...}``; the best adapter is in ``output``. With
    ``return_classifier`` the in-memory model (the best epoch) comes back too, as a
    :class:`~qembed.pairs.cross_encoder.PairClassifier`.
    """
    from qembed.extras import require

    require("train", "training a pair classifier")
    from peft import PeftModel
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from qembed.models.local import pick_device
    from qembed.models.resolve import default_model, resolve_model_path
    from qembed.pairs.pair_tokens import load_tokenizer

    from qembed.config import want_progress

    cfg = cfg or ClassifierConfig()
    cfg.validate()
    progress = want_progress(progress, len(train), cfg.batch_size)
    check_binary_classes(train)
    dev_labels = dev.int_labels()
    train_labels = train.int_labels()
    output = Path(output)
    base_name = cfg.model or default_model()
    base_path = resolve_model_path(base_name)
    resuming = _check_output(output, resume, overwrite)
    previous_rows: dict[int, dict[str, Any]] = {}
    if resuming:
        saved = json.loads((output / MANIFEST).read_text(encoding="utf-8"))
        for key in ("max_length", "lora_r", "lora_alpha", "target_modules", "batch_size", "grad_accum"):
            if saved["config"].get(key) != getattr(cfg, key):
                raise InputError(f"--resume: {key} was {saved['config'].get(key)!r} in {output}, "
                                 f"now {getattr(cfg, key)!r}; use the same settings to resume")
        if (output / METRICS).exists():
            done = json.loads((output / METRICS).read_text(encoding="utf-8"))
            previous_rows = {int(r["epoch"]): r for r in done.get("epochs", [])}

    device = pick_device(cfg.device)
    dtype = resolve_precision(cfg.precision, device)
    tokenizer = load_tokenizer(str(base_path))
    pt = PairTokenizer(tokenizer)
    train_ids = pt.encode_pairs(train.first, train.second, cfg.max_length)
    dev_ids = pt.encode_pairs(dev.first, dev.second, cfg.max_length)
    truncated = sum(n > cfg.max_length for n in pt.pair_lengths(train.first, train.second))
    if truncated:
        logger.info("%d of %d training pairs are longer than %d tokens and were truncated",
                    truncated, len(train), cfg.max_length)

    torch.manual_seed(cfg.seed)
    base = load_base_classifier(base_path, pt.pad_id, dtype)
    model = apply_lora(base, cfg)
    for p in model.parameters():  # LoRA and head train in fp32 even with bf16 weights
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    line = trainable_line(model)
    logger.info("%s", line)
    if on_trainable:
        on_trainable(line)
    trainable, total = model.get_nb_trainable_parameters()
    assert isinstance(model, PeftModel)

    if not resuming:
        # Everything is checked and the model is built: only now replace an older run (--overwrite).
        if output.exists():
            shutil.rmtree(output)
        output.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(str(output))
    majority = max(np.mean(dev_labels), 1 - np.mean(dev_labels))
    manifest = {
        "task": "pair-classification",
        "base_model": base_name,
        "base_model_path": str(base_path),
        "labels": list(LABELS),
        "max_length": cfg.max_length,
        "pad_token_id": pt.pad_id,
        "pair_layout": pt.describe(),
        "config": asdict(cfg),
    }
    _write_json(output / MANIFEST, manifest)
    micro = cfg.batch_size // cfg.grad_accum
    seconds: dict[int, float] = {}

    def metrics_doc(state: Any, stopped_early: bool = False, finished: bool = False) -> dict[str, Any]:
        history = _history_from(state.log_history, seconds, len(train_ids), previous_rows)
        return {
            "base_model": base_name, "train_file": train.source, "dev_file": dev.source,
            "train_pairs": len(train), "dev_pairs": len(dev),
            "dev_majority_accuracy": float(majority),
            "trainable_parameters": trainable, "all_parameters": total,
            "trainable_percent": 100 * trainable / total,
            "device": device, "precision": str(dtype).replace("torch.", ""),
            "config": asdict(cfg), "epochs": history, "best": _best(history),
            "stopped_early": stopped_early, "finished": finished,
        }

    args = TrainingArguments(
        output_dir=str(output / CHECKPOINTS),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=micro,
        per_device_eval_batch_size=cfg.eval_batch_size or max(micro, 32),
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=float(cfg.warmup_ratio),  # a float in [0, 1) is a share of all steps
        lr_scheduler_type="linear",
        max_grad_norm=cfg.max_grad_norm,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        save_total_limit=2,  # the last checkpoint and the best one (with 1 the Trainer drops the last at the end)
        load_best_model_at_end=True,
        metric_for_best_model="f1",
        greater_is_better=True,
        bf16=dtype == torch.bfloat16,
        use_cpu=device == "cpu",
        activation_checkpointing=cfg.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=0,
        save_only_model=False,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=_Pairs(train_ids, train_labels),
        eval_dataset=_Pairs(dev_ids, dev_labels), data_collator=_collator(pt),
        compute_metrics=_compute_metrics,
        callbacks=_trainer_callbacks(output, cfg, seconds, lambda state: _write_json(
            output / METRICS, metrics_doc(state)), bool(progress)),
    )
    trainer.remove_callback(PrinterCallback)  # it prints dicts on stdout, where --json answers
    if not progress:
        trainer.remove_callback(ProgressCallback)
    checkpoint = last_checkpoint(output) if resuming else None
    if checkpoint is not None:
        logger.info("resuming %s from %s", output, checkpoint.name)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
    state = trainer.state
    evaluated = sum(1 for e in state.log_history if "eval_f1" in e)
    stopped_early = bool(cfg.early_stopping_patience) and evaluated < cfg.epochs
    if stopped_early:
        logger.info("early stopping: no better dev F1 for %d epoch(s)", cfg.early_stopping_patience)
    model = trainer.model  # the best epoch (load_best_model_at_end)
    model.save_pretrained(str(output))
    doc = metrics_doc(state, stopped_early, finished=True)
    _write_json(output / METRICS, doc)
    if return_classifier:
        model.eval()
        return doc, PairClassifier(model, pt, cfg.max_length, device, dtype, manifest)
    return doc


__all__ = ["CHECKPOINTS", "ClassifierConfig", "apply_lora", "check_target_modules", "last_checkpoint",
           "lora_config", "train_pair_classifier", "trainable_line"]
