# ruff: noqa: B008  (Typer declares options as argument defaults)
"""``qembed data lengths``, ``qembed finetune classifier|embedding`` and ``qembed classify-pairs``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from qembed.commands._common import (
    DeviceOpt,
    JsonOpt,
    NoInstructionOpt,
    ProgressOpt,
    deprecated_options,
    emit_json,
    fail,
    input_option,
    instruction_option,
    logger,
    min_probability_option,
    normalize_dtype,
    output_option,
    positional_input,
    resolve_instruction,
    text_column_option,
    want_progress,
)
from qembed.errors import InputError
from qembed.extras import require

TrainDtypeOpt = typer.Option("auto", "--dtype", help="auto (bfloat16 on CUDA, float32 elsewhere), bfloat16 "
                                                    "or float32.")


def _precision(dtype: str) -> str:
    """``--dtype`` as the training recipes' precision (auto, bf16 or fp32)."""
    value = normalize_dtype(dtype)
    mapping = {"auto": "auto", "bfloat16": "bf16", "float32": "fp32"}
    if value not in mapping:
        fail(f"--dtype for training and pair classification must be auto, bfloat16 or float32, got {dtype!r}")
    return mapping[value]


def _int_list(value: str, what: str) -> list[int]:
    try:
        out = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{what} must be comma-separated integers, got {value!r}") from None
    if not out:
        raise InputError(f"{what} is empty")
    return out


def _names(value: str) -> list[str]:
    return [x.strip() for x in value.split(",") if x.strip()]


# ---------------------------------------------------------------------------- data lengths
def data_lengths(
    file: Path | None = typer.Argument(None, hidden=True),
    input: Path | None = input_option("Pairs (.jsonl/.json/.csv/.tsv with sentence1, sentence2; or "
                                      "header-less s1<TAB>s2<TAB>score) or texts (.txt, or --text-column)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model folder or Hub id whose tokenizer "
                                     "counts (default Qwen/Qwen3-Embedding-0.6B or $QEMBED_MODEL). "
                                     "Only the tokenizer is loaded."),
    max_lengths: str = typer.Option("32,64,128,256", "--max-lengths", help="Candidate max lengths to report."),
    text_column: str | None = text_column_option(help="Read single texts from this column."),
    as_json: bool = JsonOpt,
) -> None:
    """Token-length distribution of texts and pairs, to choose --max-length before training."""
    from qembed.pairs.pair_tokens import load_tokenizer
    from qembed.train.lengths import length_report, render_histogram

    input = positional_input(file, input)
    if input is None:
        fail("give the data: --input FILE")
    candidates = _int_list(max_lengths, "--max-lengths")
    tokenizer = load_tokenizer(model)
    report = length_report(input, tokenizer, max_lengths=candidates, text_column=text_column)
    if as_json:
        emit_json(report)
        return
    for part, title in (("texts", "single texts (as the embedding model reads them)"),
                        ("pairs", "pairs (both sentences, as the pair classifier reads them)")):
        if part not in report:
            continue
        r = report[part]
        typer.echo(f"{title}: {r['count']} inputs" + (f", layout {r['layout']}" if "layout" in r else ""))
        typer.echo(f"  tokens: mean {r['mean']:.1f}, p50 {r['p50']:.0f}, p90 {r['p90']:.0f}, "
                   f"p95 {r['p95']:.0f}, p99 {r['p99']:.0f}, max {r['max']}")
        typer.echo("  fits:   " + ", ".join(f"≤{m}: {100 * v:.2f}%" for m, v in r["fits"].items()))
        typer.echo(render_histogram(r["histogram"]))
        typer.echo("")


# ---------------------------------------------------------------------------- classifier
@deprecated_options("finetune classifier")
def finetune_classifier(
    input: Path = input_option("Labelled training pairs: sentence1, sentence2, label (0/1).", required=True),
    dev: Path = typer.Option(..., "--dev", help="Labelled dev pairs, evaluated after every epoch."),
    model: str | None = typer.Option(None, "--model", "-m", help="Base model folder or Hub id "
                                     "(default Qwen/Qwen3-Embedding-0.6B or $QEMBED_MODEL)."),
    output: Path = output_option("Folder for the adapter and metrics.", default=Path("afqmc-lora")),
    max_length: int = typer.Option(64, "--max-length", help="Tokens per pair (see `qembed data lengths`)."),
    batch_size: int = typer.Option(128, "--batch-size", help="Effective batch size (pairs per optimizer step)."),
    epochs: int = typer.Option(15, "--epochs", help="Passes over the training pairs."),
    lr: float = typer.Option(1e-4, "--lr", help="AdamW learning rate (linear decay, 6% warm-up)."),
    lora_r: int = typer.Option(8, "--lora-r", help="LoRA rank."),
    lora_alpha: int = typer.Option(32, "--lora-alpha", help="LoRA scaling."),
    lora_dropout: float = typer.Option(0.1, "--lora-dropout", help="Dropout on the LoRA path."),
    target_modules: str = typer.Option("q_proj,k_proj,v_proj", "--target-modules",
                                       help="Comma-separated names of the layers LoRA adapts."),
    grad_accum: int = typer.Option(1, "--grad-accum", help="Split each batch into N micro-batches (less memory)."),
    gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing",
                                                help="Recompute activations in the backward pass (less memory)."),
    patience: int | None = typer.Option(None, "--early-stopping-patience",
                                        help="Stop after N epochs without a better dev F1."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run saved in --output."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a classifier already in --output."),
    seed: int = typer.Option(42, "--seed", help="Random seed."),
    limit_train: int | None = typer.Option(None, "--limit-train", help="Use only the first N training pairs."),
    limit_dev: int | None = typer.Option(None, "--limit-dev", help="Use only the first N dev pairs."),
    device: str | None = DeviceOpt,
    dtype: str = TrainDtypeOpt,
    progress: bool | None = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Train the LoRA pair classifier (both sentences in one sequence, 2-label head)."""
    require("train", "qembed finetune classifier")
    from qembed.train.data import load_pairs
    from qembed.train.pair_classifier import ClassifierConfig, train_pair_classifier

    cfg = ClassifierConfig(
        model=model, max_length=max_length, batch_size=batch_size, epochs=epochs, lr=lr, lora_r=lora_r,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=_names(target_modules),
        grad_accum=grad_accum, gradient_checkpointing=gradient_checkpointing,
        early_stopping_patience=patience, seed=seed, device=device, precision=_precision(dtype),
    )
    cfg.validate()
    train_data = load_pairs(input, labels="binary", limit=limit_train)
    dev_data = load_pairs(dev, labels="binary", limit=limit_dev)
    logger.info("training on %d pairs, evaluating on %d", len(train_data), len(dev_data))
    doc = train_pair_classifier(train_data, dev_data, output, cfg, resume=resume, overwrite=overwrite,
                                progress=want_progress(progress, len(train_data), batch=batch_size),
                                on_trainable=lambda line: typer.echo(line, err=as_json))
    if as_json:
        emit_json({"object": "classifier", **doc, "output": str(output)})
        return
    typer.echo(f"{'epoch':>5} {'train loss':>10} {'dev loss':>9} {'accuracy':>9} {'F1':>7}")
    for row in doc["epochs"]:
        typer.echo(f"{row['epoch']:>5} {row['train_loss']:>10.4f} {row['loss']:>9.4f} "
                   f"{100 * row['accuracy']:>8.2f}% {100 * row['f1']:>6.2f}%")
    best = doc["best"]
    typer.echo(f"best epoch {best['epoch']}: accuracy {100 * best['accuracy']:.2f}%, F1 {100 * best['f1']:.2f}% "
               f"(dev majority class: {100 * doc['dev_majority_accuracy']:.2f}%) -> {output}")


@deprecated_options("classify-pairs")
def classify_pairs(
    file: Path | None = typer.Argument(None, hidden=True),
    input: Path | None = input_option("Pairs to score (sentence1, sentence2[, label])."),
    adapter: Path = typer.Option(..., "--adapter", help="Folder written by `qembed finetune classifier`."),
    model: str | None = typer.Option(None, "--model", "-m", help="Base model, if it moved since training."),
    output: Path | None = output_option("Write one JSON line per pair here."),
    min_probability: float = min_probability_option(0.5, "Predict 'same' when P(same) is at least this."),
    batch_size: int = typer.Option(64, "--batch-size", help="Pairs per forward pass."),
    limit: int | None = typer.Option(None, "--limit", help="Score only the first N pairs."),
    device: str | None = DeviceOpt,
    dtype: str = TrainDtypeOpt,
    progress: bool | None = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Score sentence pairs with a trained pair classifier: P(same), and accuracy/F1 when labelled."""
    require("train", "qembed classify-pairs (a LoRA pair classifier)", modules=("peft",))
    import numpy as np

    from qembed.pairs.cross_encoder import PairClassifier
    from qembed.train.data import load_pairs

    input = positional_input(file, input)
    if input is None:
        fail("give the pairs: --input FILE")
    if not 0.0 <= min_probability <= 1.0:
        fail(f"--min-probability must be between 0 and 1, got {min_probability}")
    if batch_size < 1:
        fail("--batch-size must be at least 1")
    data = load_pairs(input, labels="optional", limit=limit)
    labels = None
    if data.labels is not None:
        if not data.binary:
            raise InputError(f"{input}: labels must be 0 or 1")
        labels = data.int_labels()
    clf = PairClassifier.load(adapter, model=model, device=device, precision=_precision(dtype))
    proba = clf.predict_proba(data.first, data.second, batch_size=batch_size,
                              progress=want_progress(progress, len(data), batch=batch_size))
    pred = (proba >= min_probability).astype(int)
    rows = []
    for i in range(len(data)):
        row = {"index": i, "sentence1": data.first[i], "sentence2": data.second[i], "probability": float(proba[i]),
               "prediction": int(pred[i])}
        if labels is not None:
            row["label"] = labels[i]
        rows.append(row)
    summary: dict = {"adapter": str(adapter), "n": len(rows), "min_probability": min_probability,
                     "predicted_same": int(pred.sum())}
    if labels is not None:
        from sklearn.metrics import accuracy_score, precision_recall_fscore_support

        p, r, f1, _ = precision_recall_fscore_support(labels, pred, average="binary", zero_division=0)
        summary["metrics"] = {"accuracy": float(accuracy_score(labels, pred)), "f1": float(f1),
                              "precision": float(p), "recall": float(r),
                              "majority_accuracy": float(max(np.mean(labels), 1 - np.mean(labels)))}
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        summary["output"] = str(output)
    if as_json:
        from qembed.envelope import envelope

        emit_json(envelope("list", [] if output is not None else rows,
                           model=clf.manifest.get("base_model"), **summary))
        return
    if output is None:
        for row in rows[:50]:
            typer.echo(f"{row['probability']:.4f} {'same' if row['prediction'] else 'diff'}  "
                       f"{row['sentence1']} | {row['sentence2']}")
        if len(rows) > 50:
            typer.echo(f"… {len(rows) - 50} more (use --output FILE or --json)")
    else:
        typer.echo(f"{len(rows)} pairs scored -> {output}")
    if "metrics" in summary:
        m = summary["metrics"]
        typer.echo(f"accuracy {100 * m['accuracy']:.2f}%, F1 {100 * m['f1']:.2f}% "
                   f"(majority class {100 * m['majority_accuracy']:.2f}%)")


# ---------------------------------------------------------------------------- embedding
@deprecated_options("finetune embedding")
def finetune_embedding(
    input: Path = input_option("Labelled training pairs: 0/1 (AFQMC) or graded scores (STS-B 0-5).",
                               required=True),
    dev: Path | None = typer.Option(None, "--dev", help="Labelled pairs measured before and after."),
    model: str | None = typer.Option(None, "--model", "-m", help="Embedding model folder or Hub id "
                                     "(default Qwen/Qwen3-Embedding-0.6B or $QEMBED_MODEL)."),
    output: Path = output_option("Folder for the tuned model.", default=Path("tuned-embedding")),
    loss: str = typer.Option("cosent", "--loss", help="cosent, contrastive or mnrl."),
    lora: bool = typer.Option(True, "--lora/--full", help="LoRA adapter (default) or all weights."),
    merge: bool = typer.Option(False, "--merge", help="Fold LoRA into the weights: a complete model folder "
                               "for `qembed serve --model` and qembed.load_encoder."),
    epochs: int = typer.Option(1, "--epochs", help="Passes over the training pairs."),
    batch_size: int = typer.Option(32, "--batch-size", help="Pairs per optimizer step."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (default 1e-4 LoRA, 2e-5 full)."),
    max_length: int = typer.Option(128, "--max-length", help="Tokens per text during training."),
    lora_r: int = typer.Option(8, "--lora-r", help="LoRA rank."),
    lora_alpha: int = typer.Option(32, "--lora-alpha", help="LoRA scaling."),
    lora_dropout: float = typer.Option(0.1, "--lora-dropout", help="Dropout on the LoRA path."),
    target_modules: str | None = typer.Option(None, "--target-modules", help="Default: attention "
                                              "projections (q/k/v/o_proj, or query/key/value)."),
    instruction: str | None = instruction_option("'Retrieve semantically similar text' on instruction models"),
    no_instruction: bool = NoInstructionOpt,
    limit_train: int | None = typer.Option(None, "--limit-train", help="Use only the first N training pairs."),
    limit_dev: int | None = typer.Option(None, "--limit-dev", help="Use only the first N dev pairs."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a model already in --output."),
    seed: int = typer.Option(42, "--seed", help="Random seed."),
    device: str | None = DeviceOpt,
    dtype: str = TrainDtypeOpt,
    progress: bool | None = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Tune an embedding model on labelled pairs (sentence-transformers), keeping it an embedding model."""
    require("train", "qembed finetune embedding", modules=("datasets", "accelerate") + (("peft",) if lora else ()))
    from qembed.models.prompts import SYMMETRIC_INSTRUCTION
    from qembed.train.contrastive import EmbeddingTuneConfig, tune_embeddings
    from qembed.train.data import load_pairs

    cfg = EmbeddingTuneConfig(
        model=model, loss=loss, lora=lora, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
        target_modules=_names(target_modules) if target_modules else None, epochs=epochs,
        batch_size=batch_size, lr=lr, max_length=max_length,
        instruction=resolve_instruction(instruction, no_instruction, SYMMETRIC_INSTRUCTION),
        seed=seed, device=device, precision=_precision(dtype),
    )
    cfg.validate()
    train_data = load_pairs(input, labels="score", limit=limit_train)
    dev_data = load_pairs(dev, labels="score", limit=limit_dev) if dev is not None else None
    doc = tune_embeddings(train_data, output, cfg, dev=dev_data, merge=merge, overwrite=overwrite,
                          progress=want_progress(progress, len(train_data), batch=batch_size),
                          on_trainable=lambda line: typer.echo(line, err=as_json))
    if as_json:
        emit_json({"object": "embedding.model", **doc, "output": str(output)})
        return
    if doc["before"] and doc["after"]:
        typer.echo(f"{'dev':>10} {'before':>9} {'after':>9}")
        for key in ("spearman", "accuracy", "f1"):
            if key in doc["before"]:
                typer.echo(f"{key:>10} {doc['before'][key]:>9.4f} {doc['after'][key]:>9.4f}")
    typer.echo(f"{doc['saved']} model -> {output} ({doc['train_examples_per_s']:.1f} examples/s)")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Add ``data lengths``, ``finetune classifier``, ``finetune embedding`` and ``classify-pairs``."""
    groups["data"].command("lengths")(data_lengths)
    groups["finetune"].command("classifier")(finetune_classifier)
    groups["finetune"].command("embedding")(finetune_embedding)
    app.command("classify-pairs")(classify_pairs)
