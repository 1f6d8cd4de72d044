"""``qembed similarity``, ``qembed classify zero-shot|train|predict`` and ``qembed dedup``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, List, Optional, Sequence

import typer

from qembed.commands._common import (
    ApiKeyOpt, DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, emit_json, fail, logger, open_encoder,
)
from qembed.errors import InputError
from qembed.models.prompts import SYMMETRIC_INSTRUCTION

#: Verdict threshold when none is given or calibrated (cosine); calibrate for real decisions.
DEFAULT_VERDICT_THRESHOLD = 0.8
RECORD_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".tsv")

InstructionOpt = typer.Option(
    None, "--instruction", "-i",
    help=f"Instruction both sides get (instruction models only). Default: '{SYMMETRIC_INSTRUCTION}'.",
)
NoInstructionOpt = typer.Option(False, "--no-instruction", help="Embed the texts as they are.")
DimensionsOpt = typer.Option(None, "--dimensions", "-d", help="Matryoshka size (32..dim).")


def _instruction(instruction: Optional[str], no_instruction: bool, default: Optional[str] = SYMMETRIC_INSTRUCTION) -> Optional[str]:
    if no_instruction and instruction:
        fail("give --instruction or --no-instruction, not both")
    if no_instruction:
        return None
    return instruction if instruction is not None else default


def _write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write dicts as JSON lines (.jsonl/.json) or a table (.csv/.tsv), atomically."""
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if suffix in (".jsonl", ".json", ".ndjson"):
        with tmp.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif suffix in (".csv", ".tsv"):
        columns: list[str] = []
        for row in rows:
            for key in row:
                if key not in columns:
                    columns.append(key)
        with tmp.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, delimiter="\t" if suffix == ".tsv" else ",")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: (json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v)
                                 for k, v in row.items()})
    else:
        raise InputError(f"{path}: output must end in .jsonl, .csv or .tsv")
    tmp.replace(path)


def _check_output(path: Optional[Path], allowed: Sequence[str], option: str = "--output") -> None:
    if path is not None and path.suffix.lower() not in allowed:
        fail(f"{option} must end in {', '.join(allowed)}, got {path.name}")


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# --------------------------------------------------------------------------- similarity


def similarity(
    texts: Optional[List[str]] = typer.Argument(None, help="Two texts to compare (or use --pairs)."),
    pairs: Optional[Path] = typer.Option(
        None, "--pairs", "-p", help="Pairs file: JSON lines with sentence1, sentence2 and optional label "
        "(AFQMC), or .csv/.tsv with a header naming those columns."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Write each pair with its score to .jsonl/.csv/.tsv."),
    calibrate: bool = typer.Option(False, "--calibrate", help="Find the accuracy- and F1-maximising "
                                   "thresholds on the labelled pairs and report the metrics."),
    threshold: Optional[float] = typer.Option(None, "--threshold", "-t", help="Cosine at or above "
                                              f"which a pair is 'same' (default {DEFAULT_VERDICT_THRESHOLD}, "
                                              "uncalibrated)."),
    threshold_file: Optional[Path] = typer.Option(None, "--threshold-file",
                                                  help="Use a threshold saved by --save-threshold."),
    save_threshold: Optional[Path] = typer.Option(None, "--save-threshold",
                                                  help="With --calibrate: save the threshold as JSON."),
    instruction: Optional[str] = InstructionOpt,
    no_instruction: bool = NoInstructionOpt,
    dimensions: Optional[int] = DimensionsOpt,
    sentence1_column: str = typer.Option("sentence1", "--sentence1-column", help="First-text column."),
    sentence2_column: str = typer.Option("sentence2", "--sentence2-column", help="Second-text column."),
    label_column: str = typer.Option("label", "--label-column", help="Label column (0/1)."),
    model: Optional[str] = ModelOpt,
    device: Optional[str] = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    api_key: Optional[str] = ApiKeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Cosine similarity of two texts, or of every pair in a file, with a same/different verdict.

    With labelled pairs, --calibrate finds the threshold that maximises accuracy (and the one for F1)
    and reports accuracy, F1, precision, recall and average precision.
    """
    from qembed.eval.pairs import calibrate as run_calibration
    from qembed.eval.pairs import metrics_at
    from qembed.pairs.scoring import (
        check_threshold, load_threshold, read_pairs, save_threshold as write_threshold, score_pairs,
    )

    if pairs is None and len(texts or []) != 2:
        fail("give two texts to compare, or --pairs FILE")
    if pairs is not None and texts:
        fail("give two texts or --pairs FILE, not both")
    if calibrate and pairs is None:
        fail("--calibrate needs labelled pairs: --pairs FILE")
    if save_threshold is not None and not calibrate:
        fail("--save-threshold needs --calibrate")
    if threshold is not None and threshold_file is not None:
        fail("give --threshold or --threshold-file, not both")
    _check_output(output, (".jsonl", ".csv", ".tsv"))
    saved: dict[str, Any] | None = None
    if threshold is not None:
        threshold = check_threshold(threshold)
    if threshold_file is not None:
        saved = load_threshold(threshold_file)
        threshold = saved["threshold"]
        if instruction is None and not no_instruction and "instruction" in saved:
            instruction, no_instruction = saved["instruction"], saved["instruction"] is None
        if dimensions is None:
            dimensions = saved.get("dimensions")
    instr = _instruction(instruction, no_instruction)
    data = read_pairs(pairs, left_column=sentence1_column, right_column=sentence2_column,
                      label_column=label_column, require_labels=calibrate) if pairs is not None else None
    if calibrate and data is not None and data.labels is not None and len(set(data.labels)) < 2:
        raise InputError(f"{pairs}: calibration needs both same (1) and different (0) pairs; "
                         f"all {len(data)} labels are {data.labels[0]}")
    encoder = open_encoder(model, device=device, dtype=dtype, api_key=api_key)
    if saved is not None and saved.get("model") not in (None, encoder.name):
        logger.warning("the threshold in %s was calibrated for %s, not %s", threshold_file,
                       saved.get("model"), encoder.name)

    if data is None:
        assert texts is not None
        score = float(score_pairs(encoder, [texts[0]], [texts[1]], instruction=instr, dimensions=dimensions)[0])
        t = DEFAULT_VERDICT_THRESHOLD if threshold is None else threshold
        same = score >= t
        if as_json:
            emit_json({"model": encoder.name, "score": score, "threshold": t, "same": same,
                       "calibrated": threshold is not None, "instruction": instr})
        else:
            verdict = "same" if same else "different"
            note = "" if threshold is not None else " (default threshold; calibrate with --pairs --calibrate)"
            typer.echo(f"{score:.4f}  {verdict}  (threshold {t:.4f}){note}")
        return

    logger.info("scoring %d pairs with %s", len(data), encoder.name)
    scores = score_pairs(encoder, data.left, data.right, instruction=instr, dimensions=dimensions,
                         show_progress_bar=True)
    result: dict[str, Any] = {"model": encoder.name, "instruction": instr, "n": len(data)}
    if calibrate:
        assert data.labels is not None
        result.update(run_calibration(scores, data.labels))
    if threshold is not None and data.labels is not None:
        fixed = metrics_at(scores, data.labels, threshold)
        if calibrate:
            result["at_given_threshold"] = fixed
        else:
            result.update(fixed)
    elif threshold is not None:
        result["threshold"] = threshold
    decision = result.get("threshold") if calibrate or threshold is not None else None
    if save_threshold is not None:
        metrics = {k: result[k] for k in ("accuracy", "f1", "precision", "recall", "average_precision",
                                          "f1_threshold", "n", "positives")}
        write_threshold(save_threshold, model=encoder.name, threshold=result["threshold"],
                        instruction=instr, metrics=metrics, dimensions=dimensions,
                        extra={"calibrated_on": str(pairs)})
        result["saved_threshold"] = str(save_threshold)
        logger.info("saved threshold %.4f to %s", result["threshold"], save_threshold)
    if output is not None:
        rows = []
        for i, rec in enumerate(data.records):
            row = dict(rec)
            row["score"] = round(float(scores[i]), 6)
            if decision is not None:
                row["same"] = int(scores[i] >= decision)
            rows.append(row)
        _write_rows(output, rows)
        result["output"] = str(output)
        logger.info("wrote %d scored pairs to %s", len(rows), output)
    if as_json:
        if output is None and not calibrate:
            result["scores"] = [float(s) for s in scores]
        emit_json(result)
        return
    if calibrate:
        typer.echo(f"pairs: {result['n']} ({result['positives']} same)   model: {encoder.name}")
        typer.echo(f"accuracy           {result['accuracy']:.4f}  at threshold {result['threshold']:.4f}")
        typer.echo(f"F1                 {result['f1']:.4f}  at threshold {result['f1_threshold']:.4f} "
                   f"(precision {result['precision']:.4f}, recall {result['recall']:.4f})")
        typer.echo(f"average precision  {_fmt(result['average_precision'])}")
        if "at_given_threshold" in result:
            g = result["at_given_threshold"]
            typer.echo(f"at the given threshold {g['threshold']:.4f}: accuracy {g['accuracy']:.4f}, "
                       f"F1 {g['f1']:.4f}")
    elif data.labels is not None and threshold is not None:
        typer.echo(f"pairs: {result['n']}  threshold {threshold:.4f}: accuracy {result['accuracy']:.4f}, "
                   f"F1 {result['f1']:.4f}, precision {result['precision']:.4f}, recall {result['recall']:.4f}, "
                   f"average precision {_fmt(result['average_precision'])}")
    elif output is None:
        for a, b, s in zip(data.left, data.right, scores):
            verdict = "" if decision is None else ("  same" if s >= decision else "  different")
            typer.echo(f"{s:.4f}{verdict}\t{a}\t{b}")
    if output is not None:
        typer.echo(f"{len(data)} scored pairs -> {output}")


# --------------------------------------------------------------------------- classify

classify_app = typer.Typer(help="Classify texts: zero-shot against label names, or with a trained head.",
                           no_args_is_help=True)


def _texts_from(texts: Optional[List[str]], input: Optional[Path], text_column: Optional[str],
                *, allow_file_argument: bool = False) -> tuple[list[str], list[dict[str, Any]] | None]:
    """Texts from arguments or a file; returns ``(texts, records or None)``."""
    from qembed.io import TEXT_SUFFIXES, read_records, read_texts, require_columns

    if allow_file_argument and input is None and texts and len(texts) == 1:
        candidate = Path(texts[0])
        if candidate.suffix.lower() in (*TEXT_SUFFIXES, *RECORD_SUFFIXES) and candidate.is_file():
            input, texts = candidate, None
    if bool(texts) == (input is not None):
        fail("give texts as arguments or --input FILE (one of the two)")
    if texts:
        return list(texts), None
    assert input is not None
    if input.suffix.lower() in RECORD_SUFFIXES:
        column = text_column or "text"
        rows = read_records(input)
        require_columns(rows, [column], str(input))
        for i, row in enumerate(rows, 1):
            if not isinstance(row[column], str) or not row[column].strip():
                raise InputError(f"{input}: record {i}: column {column!r} must be a non-empty text")
        return [r[column] for r in rows], rows
    return read_texts(input, text_column=text_column), None


def _read_label_specs(labels: Optional[List[str]], labels_file: Optional[Path]) -> list[str]:
    specs = list(labels or [])
    if labels_file is not None:
        from qembed.io import read_texts

        specs += read_texts(labels_file)
    if not specs:
        fail("give the labels: --label NAME or --label 'name: description' (repeat), or --labels-file")
    return specs


def zero_shot_command(
    texts: Optional[List[str]] = typer.Argument(None, help="Texts to classify (or --input FILE)."),
    label: Optional[List[str]] = typer.Option(None, "--label", "-l", help="A label: 'name' or "
                                              "'name: description'. Repeat for each label."),
    labels_file: Optional[Path] = typer.Option(None, "--labels-file", help="Labels, one per line."),
    input: Optional[Path] = typer.Option(None, "--input", help="File of texts (.txt, .jsonl, .csv, .tsv)."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Column holding the text."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="With a labelled --input: "
                                               "report accuracy and macro-F1 against this column."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write predictions (.jsonl/.csv/.tsv)."),
    top_k: int = typer.Option(3, "--top-k", help="Labels listed per text."),
    temperature: float = typer.Option(0.05, "--temperature", help="Softmax temperature for probabilities."),
    instruction: Optional[str] = InstructionOpt,
    no_instruction: bool = NoInstructionOpt,
    label_instruction: Optional[str] = typer.Option(None, "--label-instruction",
                                                    help="Instruction for the label texts (default: --instruction)."),
    dimensions: Optional[int] = DimensionsOpt,
    model: Optional[str] = ModelOpt,
    device: Optional[str] = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    api_key: Optional[str] = ApiKeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Send each text to the nearest label (names or 'name: description'), no training needed."""
    from qembed.pairs.classify import ZeroShotClassifier, classification_metrics

    specs = _read_label_specs(label, labels_file)
    items, records = _texts_from(texts, input, text_column)
    _check_output(output, (".jsonl", ".csv", ".tsv"))
    if label_column is not None and records is None:
        fail("--label-column needs a labelled --input file (.jsonl/.csv/.tsv)")
    if top_k < 1:
        fail(f"--top-k must be at least 1, got {top_k}")
    instr = _instruction(instruction, no_instruction)
    encoder = open_encoder(model, device=device, dtype=dtype, api_key=api_key)
    clf = ZeroShotClassifier(encoder, specs, instruction=instr, label_instruction=label_instruction,
                             temperature=temperature, dimensions=dimensions)
    preds = clf.predict(items, top_k=top_k, show_progress_bar=len(items) > 64)
    summary: dict[str, Any] = {"model": encoder.name, "labels": clf.names, "n": len(items)}
    if label_column is not None:
        from qembed.io import require_columns

        assert records is not None
        require_columns(records, [label_column], str(input))
        gold = [str(r[label_column]).strip() for r in records]
        unknown = sorted(set(gold) - set(clf.names))
        if unknown:
            raise InputError(f"{input}: labels {unknown} in column {label_column!r} are not among the "
                             f"given labels {clf.names}")
        summary["metrics"] = classification_metrics(gold, [p["label"] for p in preds], clf.names)
    if output is not None:
        rows = [{"index": i, "text": t, "label": p["label"], "score": round(p["score"], 6),
                 "labels": p["labels"]} for i, (t, p) in enumerate(zip(items, preds))]
        _write_rows(output, rows)
        summary["output"] = str(output)
    if as_json:
        if output is None:
            summary["data"] = [{"index": i, "text": t, **p} for i, (t, p) in enumerate(zip(items, preds))]
        emit_json(summary)
        return
    if output is None:
        for t, p in zip(items, preds):
            others = ", ".join(f"{x['label']} {x['score']:.3f}" for x in p["labels"][1:])
            typer.echo(f"{p['label']}\t{p['score']:.4f}\t{t}" + (f"\t(next: {others})" if others else ""))
    else:
        typer.echo(f"{len(items)} predictions -> {output}")
    if "metrics" in summary:
        m = summary["metrics"]
        typer.echo(f"accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} on {m['n']} texts")


def train_command(
    data: Path = typer.Option(..., "--data", help="Labelled texts: .csv/.tsv/.jsonl with text and label columns."),
    text_column: str = typer.Option("text", "--text-column", help="Column holding the text."),
    label_column: str = typer.Option("label", "--label-column", help="Column holding the label."),
    test_size: float = typer.Option(0.2, "--test-size", help="Fraction held out (stratified) to measure "
                                    "accuracy and macro-F1; 0 to skip."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the split."),
    c: float = typer.Option(1.0, "--C", help="Inverse L2 regularisation strength of the logistic regression."),
    refit: bool = typer.Option(False, "--refit", help="After measuring, refit on all the data."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to save the classifier in."),
    instruction: Optional[str] = InstructionOpt,
    no_instruction: bool = NoInstructionOpt,
    dimensions: Optional[int] = DimensionsOpt,
    model: Optional[str] = ModelOpt,
    device: Optional[str] = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    api_key: Optional[str] = ApiKeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Fit a logistic-regression head on embeddings of labelled texts; report held-out accuracy and macro-F1."""
    from qembed.io import read_records, require_columns
    from qembed.pairs.classify import train_classifier

    if output.exists() and not output.is_dir():
        fail(f"--output {output} exists and is not a folder")
    rows = read_records(data)
    require_columns(rows, [text_column, label_column], str(data))
    texts, labels = [], []
    for i, row in enumerate(rows, 1):
        t, lab = row[text_column], row[label_column]
        if not isinstance(t, str) or not t.strip():
            raise InputError(f"{data}: record {i}: column {text_column!r} must be a non-empty text")
        if lab is None or not str(lab).strip():
            raise InputError(f"{data}: record {i}: column {label_column!r} is empty")
        texts.append(t)
        labels.append(str(lab).strip())
    instr = _instruction(instruction, no_instruction)
    encoder = open_encoder(model, device=device, dtype=dtype, api_key=api_key)
    clf = train_classifier(encoder, texts, labels, instruction=instr, dimensions=dimensions,
                           test_size=test_size, seed=seed, c=c, refit=refit, model=model or None,
                           show_progress_bar=len(texts) > 64)
    clf.info["trained_on"] = str(data)
    clf.save(output)
    test = clf.metrics.get("test")
    if as_json:
        emit_json({"classifier": str(output), "model": clf.model, "labels": clf.labels,
                   "accuracy": test["accuracy"] if test else None,
                   "macro_f1": test["macro_f1"] if test else None, "metrics": clf.metrics})
        return
    typer.echo(f"{len(texts)} texts, labels: {', '.join(clf.labels)}")
    if test:
        typer.echo(f"held-out ({test['n']} texts): accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}")
    typer.echo(f"classifier -> {output}")


def predict_command(
    texts: Optional[List[str]] = typer.Argument(None, help="Texts to classify, or one file of texts."),
    classifier: Path = typer.Option(..., "--classifier", "-c", help="Folder written by `classify train`."),
    input: Optional[Path] = typer.Option(None, "--input", help="File of texts (.txt, .jsonl, .csv, .tsv)."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Column holding the text."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write predictions (.jsonl/.csv/.tsv)."),
    top_k: int = typer.Option(3, "--top-k", help="Labels listed per text."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Encoder to use instead of the one the "
                                        "classifier names (must give vectors of the same size)."),
    device: Optional[str] = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    api_key: Optional[str] = ApiKeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Classify texts with a classifier trained by `qembed classify train`."""
    from qembed.pairs.classify import TrainedClassifier

    clf = TrainedClassifier.load(classifier)
    items, _ = _texts_from(texts, input, text_column, allow_file_argument=True)
    _check_output(output, (".jsonl", ".csv", ".tsv"))
    if top_k < 1:
        fail(f"--top-k must be at least 1, got {top_k}")
    encoder = open_encoder(model or clf.model, device=device, dtype=dtype, api_key=api_key)
    preds = clf.predict(encoder, items, top_k=top_k, show_progress_bar=len(items) > 64)
    if output is not None:
        _write_rows(output, [{"index": i, "text": t, "label": p["label"],
                              "probability": round(p["probability"], 6), "labels": p["labels"]}
                             for i, (t, p) in enumerate(zip(items, preds))])
    if as_json:
        doc: dict[str, Any] = {"classifier": str(classifier), "model": encoder.name, "n": len(items)}
        if output is not None:
            doc["output"] = str(output)
        else:
            doc["data"] = [{"index": i, "text": t, **p} for i, (t, p) in enumerate(zip(items, preds))]
        emit_json(doc)
        return
    if output is not None:
        typer.echo(f"{len(items)} predictions -> {output}")
        return
    for t, p in zip(items, preds):
        typer.echo(f"{p['label']}\t{p['probability']:.4f}\t{t}")


classify_app.command("zero-shot")(zero_shot_command)
classify_app.command("train")(train_command)
classify_app.command("predict")(predict_command)


# --------------------------------------------------------------------------- dedup


def dedup(
    file: Path = typer.Argument(..., help="Texts: .txt (a line each), .jsonl, .csv or .tsv (--text-column)."),
    threshold: float = typer.Option(0.9, "--threshold", "-t", help="Cosine at or above which two texts "
                                    "are near-duplicates, in [-1, 1]."),
    k: int = typer.Option(10, "--k", help="Nearest neighbours examined per text."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Deduplicated file: .txt (texts) or "
                                          ".jsonl/.csv/.tsv (the kept records)."),
    groups: Optional[Path] = typer.Option(None, "--groups", "-g", help="Groups of near-duplicates as JSON "
                                          "lines, representative first."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Column holding the text."),
    instruction: Optional[str] = InstructionOpt,
    no_instruction: bool = NoInstructionOpt,
    dimensions: Optional[int] = DimensionsOpt,
    model: Optional[str] = ModelOpt,
    device: Optional[str] = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    api_key: Optional[str] = ApiKeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Find groups of near-duplicate texts (representative = earliest) and write a deduplicated file."""
    from qembed.pairs.dedup import find_duplicates
    from qembed.pairs.scoring import check_threshold

    check_threshold(threshold)
    if k < 1:
        fail(f"--k must be a positive integer, got {k}")
    _check_output(output, (".txt", ".jsonl", ".csv", ".tsv"))
    _check_output(groups, (".jsonl",), "--groups")
    items, records = _texts_from(None, file, text_column)
    instr = _instruction(instruction, no_instruction)
    encoder = open_encoder(model, device=device, dtype=dtype, api_key=api_key)
    result = find_duplicates(encoder, items, threshold=threshold, k=k, instruction=instr,
                             dimensions=dimensions, show_progress_bar=len(items) > 256)
    if groups is not None:
        _write_rows(groups, [{"group": g_i, **g.to_dict(items)} for g_i, g in enumerate(result.groups)])
    if output is not None:
        if output.suffix.lower() == ".txt":
            output.parent.mkdir(parents=True, exist_ok=True)
            tmp = output.with_name(output.name + ".tmp")
            tmp.write_text("".join(items[i].replace("\n", " ") + "\n" for i in result.keep), encoding="utf-8")
            tmp.replace(output)
        else:
            kept = [records[i] if records is not None else {"text": items[i]} for i in result.keep]
            _write_rows(output, kept)
    doc = {"model": encoder.name, "threshold": result.threshold, "k": result.k, **result.stats,
           "output": str(output) if output else None, "groups_file": str(groups) if groups else None}
    if as_json:
        doc["groups"] = [g.to_dict(items) for g in result.groups]
        doc["keep"] = result.keep
        emit_json(doc)
        return
    typer.echo(f"{result.n} texts: {len(result.groups)} group(s) of near-duplicates, "
               f"keeping {len(result.keep)} ({result.removed} removed; {result.stats['exact_duplicates']} exact)")
    if groups is None and output is None:
        for g in result.groups[:20]:
            typer.echo(f"- [{g.representative}] {items[g.representative]}")
            for m, s in zip(g.members[1:], g.scores[1:]):
                typer.echo(f"    {s:.4f} [{m}] {items[m]}")
        if len(result.groups) > 20:
            typer.echo(f"… {len(result.groups) - 20} more (write them with --groups FILE)")
    for what, path in (("groups", groups), ("deduplicated", output)):
        if path is not None:
            typer.echo(f"{what} -> {path}")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Add ``similarity``, ``classify`` (zero-shot/train/predict) and ``dedup``."""
    app.command("similarity")(similarity)
    app.add_typer(classify_app, name="classify")
    app.command("dedup")(dedup)
