"""LoRA pair classifier: both sentences in one sequence, a 2-label head, trained on labelled pairs.

The recipe it reproduces: Qwen3-Embedding-0.6B loaded as ``AutoModelForSequenceClassification``
(``num_labels=2``; Qwen3 pools the last non-pad token), peft
``LoraConfig(task_type=SEQ_CLS, r=8, lora_alpha=32, lora_dropout=0.1,
target_modules=["q_proj", "k_proj", "v_proj"])``, ``max_length=64``, batch 128, 15 epochs. peft
adds the classification head (``score`` for Qwen, ``classifier`` for BERT) to
``modules_to_save``, so the adapter folder holds the head as well.

The loop is plain PyTorch: per-epoch dev accuracy / F1 (positive class) / loss, the best epoch
by F1 kept in the output folder, early stopping, resume from the folder's ``last/`` state, bf16 on
GPU, gradient accumulation (``batch_size`` stays the effective batch) and gradient checkpointing.

Output folder::

    adapter_config.json, adapter_model.safetensors   best epoch (LoRA + head), peft format
    tokenizer files                                   the base model's tokenizer
    qembed_classifier.json                            manifest: base model, max_length, pad id, …
    metrics.json                                      per-epoch list and ``best``
    last/                                             latest epoch + optimizer state, for --resume
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from qembed.errors import InputError, NotFoundError, QembedError
from qembed.train.data import PairData, check_binary_classes
from qembed.train.tokens import MIN_MAX_LENGTH, PairTokenizer

logger = logging.getLogger(__name__)

MANIFEST = "qembed_classifier.json"
METRICS = "metrics.json"
LAST = "last"
STATE = "trainer_state.pt"
LABELS = ("different", "same")


@dataclass
class ClassifierConfig:
    """Hyper-parameters of :func:`train_classifier`; the defaults are the recipe's.

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
        if self.precision not in ("auto", "bf16", "fp32"):
            raise InputError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
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


def _resolve_precision(precision: str, device: str) -> torch.dtype:
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
        raise QembedError(f"could not load {path} as a sequence classifier: {exc}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    # The new head is expected to start random; anything else missing is worth a warning.
    fresh = [k for k in info.get("missing_keys", []) if not k.split(".")[0] in ("score", "classifier")]
    if fresh:
        logger.warning("%s lacks %d weight(s) that start random (e.g. %s)", path, len(fresh), fresh[0])
    model.config.pad_token_id = pad_id
    return model


def _autocast(device: str, dtype: torch.dtype):
    if dtype == torch.float32:
        return torch.autocast(device_type=device.split(":")[0], enabled=False)
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


# ---------------------------------------------------------------------------- evaluation
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
    show_progress_bar: bool = False,
    desc: str = "scoring",
) -> np.ndarray:
    """Logits ``(n, 2)`` (float32) for prepared pair token ids, in input order."""
    was_training = model.training
    model.eval()
    out = np.empty((len(ids), 2), dtype=np.float32)
    bar = tqdm(total=len(ids), desc=desc, unit="pair", disable=not show_progress_bar, leave=False)
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


def probabilities(logits: np.ndarray) -> np.ndarray:
    """P(same) from ``(n, 2)`` logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e[:, 1] / e.sum(axis=1)).astype(np.float32)


def classification_metrics(logits: np.ndarray, labels: Sequence[int]) -> dict[str, float]:
    """Accuracy, F1/precision/recall of the positive class, mean cross-entropy loss, and the
    threshold-free average precision of P(same) (None when dev has a single class)."""
    from sklearn.metrics import accuracy_score, average_precision_score, precision_recall_fscore_support

    y = np.asarray(labels, dtype=np.int64)
    pred = logits.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
    loss = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)).item()
    ap = float(average_precision_score(y, probabilities(logits))) if 0 < y.sum() < len(y) else None
    return {"accuracy": float(accuracy_score(y, pred)), "f1": float(f1), "precision": float(precision),
            "recall": float(recall), "loss": float(loss), "average_precision": ap}


# ---------------------------------------------------------------------------- training
def _rank(metrics: dict[str, Any]) -> tuple[float, float, float]:
    """Order of epochs: dev F1 first, then accuracy, then lower loss."""
    return (metrics["f1"], metrics["accuracy"], -metrics["loss"])


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def _check_output(output: Path, resume: bool, overwrite: bool) -> bool:
    """Decide whether to resume; refuse to clobber a finished run unless told to."""
    if output.exists() and not output.is_dir():
        raise InputError(f"--output {output} is a file; give a folder")
    state = output / LAST / STATE
    if resume:
        if not state.exists():
            raise InputError(f"--resume: {output} holds no training state ({LAST}/{STATE}); "
                             "start without --resume")
        return True
    if output.exists() and any(output.iterdir()):
        if not overwrite and ((output / MANIFEST).exists() or state.exists()):
            raise InputError(f"{output} already holds a classifier; pass --resume to continue it, "
                             "--overwrite to replace it, or choose another --output")
        if output.exists() and not (output / MANIFEST).exists() and not state.exists():
            raise InputError(f"{output} is not empty and holds no qembed classifier; choose an empty folder")
    return False


def train_classifier(
    train: PairData,
    dev: PairData,
    output: str | Path,
    cfg: ClassifierConfig | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    show_progress_bar: bool = True,
    on_trainable: Callable[[str], None] | None = None,
    return_classifier: bool = False,
) -> dict[str, Any] | tuple[dict[str, Any], "PairClassifier"]:
    """Train the LoRA pair classifier and return the metrics written to ``output/metrics.json``.

    In: labelled train and dev pairs (0/1), an output folder, a :class:`ClassifierConfig`.
    Everything is checked (labels, both classes, options, model, target modules) before the first
    step. ``on_trainable`` receives the trainable-parameter line. Out: ``{"epochs": [...],
    "best": {"epoch", "accuracy", "f1", "loss", ...}, ...}``; the best adapter is in ``output``.
    With ``return_classifier`` the in-memory model (last epoch) comes back too, as a
    :class:`PairClassifier`.
    """
    from peft import PeftModel
    from transformers import get_linear_schedule_with_warmup

    from qembed.config import Settings
    from qembed.models.local import pick_device
    from qembed.models.resolve import resolve_model_path
    from qembed.train.tokens import load_tokenizer

    cfg = cfg or ClassifierConfig()
    cfg.validate()
    check_binary_classes(train)
    dev_labels = dev.int_labels()
    train_labels = train.int_labels()
    output = Path(output)
    base_name = cfg.model or Settings().model
    base_path = resolve_model_path(base_name)
    resuming = _check_output(output, resume, overwrite)
    if resuming:
        saved = json.loads((output / MANIFEST).read_text(encoding="utf-8"))
        for key in ("max_length", "lora_r", "lora_alpha", "target_modules", "batch_size"):
            if saved["config"].get(key) != getattr(cfg, key):
                raise InputError(f"--resume: {key} was {saved['config'].get(key)!r} in {output}, "
                                 f"now {getattr(cfg, key)!r}; use the same settings to resume")

    device = pick_device(cfg.device)
    dtype = _resolve_precision(cfg.precision, device)
    tokenizer = load_tokenizer(str(base_path))
    pt = PairTokenizer(tokenizer)
    train_ids = pt.encode_pairs(train.first, train.second, cfg.max_length)
    dev_ids = pt.encode_pairs(dev.first, dev.second, cfg.max_length)
    truncated = sum(n > cfg.max_length for n in pt.pair_lengths(train.first, train.second))
    if truncated:
        logger.info("%d of %d training pairs are longer than %d tokens and were truncated",
                    truncated, len(train), cfg.max_length)

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    base = load_base_classifier(base_path, pt.pad_id, dtype)
    if resuming:
        check_target_modules(base, cfg.target_modules)
        model = PeftModel.from_pretrained(base, str(output / LAST), is_trainable=True)
    else:
        model = apply_lora(base, cfg)
    for p in model.parameters():  # LoRA and head train in fp32 even with bf16 weights
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    model.to(device)
    line = trainable_line(model)
    logger.info("%s", line)
    if on_trainable:
        on_trainable(line)
    trainable, total = model.get_nb_trainable_parameters()

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    steps_per_epoch = math.ceil(len(train_ids) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)

    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    bad_epochs = 0
    start_epoch = 1
    if resuming:
        state = torch.load(output / LAST / STATE, map_location="cpu", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best, bad_epochs = state["history"], state["best"], state["bad_epochs"]
        start_epoch = state["epoch"] + 1
        logger.info("resuming %s after epoch %d", output, state["epoch"])
    else:
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
    eval_bs = cfg.eval_batch_size or max(cfg.batch_size // cfg.grad_accum, 32)
    micro = cfg.batch_size // cfg.grad_accum

    def metrics_doc(stopped_early: bool = False, finished: bool = False) -> dict[str, Any]:
        return {
            "base_model": base_name, "train_file": train.source, "dev_file": dev.source,
            "train_pairs": len(train), "dev_pairs": len(dev),
            "dev_majority_accuracy": float(majority),
            "trainable_parameters": trainable, "all_parameters": total,
            "trainable_percent": 100 * trainable / total,
            "device": device, "precision": str(dtype).replace("torch.", ""),
            "config": asdict(cfg), "epochs": history, "best": best,
            "stopped_early": stopped_early, "finished": finished,
        }

    stopped_early = False
    if best is not None and cfg.early_stopping_patience and bad_epochs >= cfg.early_stopping_patience:
        start_epoch = cfg.epochs + 1  # a resumed run that had already stopped
        stopped_early = True
    for epoch in range(start_epoch, cfg.epochs + 1):
        model.train()
        generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        order = torch.randperm(len(train_ids), generator=generator).tolist()
        bar = tqdm(total=len(order), desc=f"epoch {epoch}/{cfg.epochs}", unit="pair",
                   disable=not show_progress_bar)
        started = time.perf_counter()
        loss_sum = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for k in range(0, len(idx), micro):
                part = idx[k:k + micro]
                features = {kk: v.to(device) for kk, v in pt.collate([train_ids[i] for i in part]).items()}
                y = torch.tensor([train_labels[i] for i in part], device=device)
                with _autocast(device, dtype):
                    logits = model(**features).logits
                loss = torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum") / len(idx)
                loss.backward()
                step_loss += loss.item()
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            loss_sum += step_loss * len(idx)
            bar.update(len(idx))
            bar.set_postfix(loss=f"{step_loss:.4f}")
        bar.close()
        seconds = time.perf_counter() - started
        logits = predict_logits(model, dev_ids, pt, device=device, dtype=dtype, batch_size=eval_bs,
                                show_progress_bar=show_progress_bar, desc="dev")
        row = {"epoch": epoch, "train_loss": loss_sum / len(train_ids),
               **classification_metrics(logits, dev_labels),
               "train_seconds": seconds, "train_pairs_per_s": len(train_ids) / seconds}
        history.append(row)
        improved = best is None or _rank(row) > _rank(best)
        logger.info("epoch %d: dev accuracy %.4f, f1 %.4f, loss %.4f%s", epoch, row["accuracy"],
                    row["f1"], row["loss"], " (best so far)" if improved else "")
        if improved:
            best = {k: row[k] for k in ("epoch", "accuracy", "f1", "precision", "recall", "loss")}
            bad_epochs = 0
            model.save_pretrained(str(output))
        else:
            bad_epochs += 1
        model.save_pretrained(str(output / LAST))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "epoch": epoch, "history": history, "best": best, "bad_epochs": bad_epochs},
                   output / LAST / STATE)
        if cfg.early_stopping_patience and bad_epochs >= cfg.early_stopping_patience:
            logger.info("early stopping: no better dev F1 for %d epoch(s)", bad_epochs)
            stopped_early = True
            _write_json(output / METRICS, metrics_doc(stopped_early))
            break
        _write_json(output / METRICS, metrics_doc(stopped_early))
    doc = metrics_doc(stopped_early, finished=True)
    _write_json(output / METRICS, doc)
    if return_classifier:
        model.eval()
        return doc, PairClassifier(model, pt, cfg.max_length, device, dtype, manifest)
    return doc


# ---------------------------------------------------------------------------- inference
class PairClassifier:
    """A trained pair classifier loaded from its output folder (base model + adapter).

    ``PairClassifier.load(folder)`` reads the manifest, loads the base model it names (or
    ``model=`` to point elsewhere, e.g. when the base moved) and the adapter with its head.
    :meth:`predict_proba` gives P(same) for each pair.
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
             precision: str = "auto") -> "PairClassifier":
        from peft import PeftModel
        from transformers import AutoTokenizer

        from qembed.models.local import pick_device
        from qembed.models.resolve import resolve_model_path

        folder = Path(folder)
        if not (folder / MANIFEST).exists() or not (folder / "adapter_config.json").exists():
            raise NotFoundError(f"{folder} is not a qembed pair classifier (no {MANIFEST} / adapter_config.json); "
                                "train one with `qembed finetune classifier`")
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        base_name = model or manifest.get("base_model_path") or manifest["base_model"]
        try:
            base_path = resolve_model_path(base_name)
        except QembedError:
            if model is None and manifest.get("base_model") and manifest["base_model"] != base_name:
                base_path = resolve_model_path(manifest["base_model"])
            else:
                raise
        dev = pick_device(device)
        dtype = _resolve_precision(precision, dev)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        pt = PairTokenizer(tokenizer)
        base = load_base_classifier(base_path, pt.pad_id, dtype)
        peft_model = PeftModel.from_pretrained(base, str(folder))
        peft_model.to(dev)
        peft_model.eval()
        return cls(peft_model, pt, manifest["max_length"], dev, dtype, manifest)

    def logits(self, first: Sequence[str], second: Sequence[str], *, batch_size: int = 64,
               show_progress_bar: bool = False) -> np.ndarray:
        ids = self.pt.encode_pairs(list(first), list(second), self.max_length)
        return predict_logits(self.model, ids, self.pt, device=self.device, dtype=self.dtype,
                              batch_size=batch_size, show_progress_bar=show_progress_bar)

    def predict_proba(self, first: Sequence[str], second: Sequence[str], *, batch_size: int = 64,
                      show_progress_bar: bool = False) -> np.ndarray:
        """P(same) for each pair, float32 ``(n,)``."""
        return probabilities(self.logits(first, second, batch_size=batch_size,
                                         show_progress_bar=show_progress_bar))

    def evaluate(self, data: PairData, *, batch_size: int = 64, show_progress_bar: bool = False) -> dict[str, float]:
        """Accuracy, F1, precision, recall and loss on labelled pairs."""
        logits = self.logits(data.first, data.second, batch_size=batch_size, show_progress_bar=show_progress_bar)
        return classification_metrics(logits, data.int_labels())
