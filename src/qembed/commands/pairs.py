# ruff: noqa: B008  (Typer declares options as argument defaults)
"""``qembed similarity``, ``qembed classify zero-shot|train|predict`` and ``qembed dedup``.

With ``--json`` each prints the body of its REST endpoint (``/v1/similarity``, ``/v1/classify``,
``/v1/dedup``), built by :mod:`qembed.envelope`; ``--output`` writes the items to a file instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from qembed.commands._common import (
    ApiKeyOpt,
    BackendOpt,
    DeviceOpt,
    DimensionsOpt,
    DtypeOpt,
    JsonOpt,
    ModelOpt,
    NoInstructionOpt,
    ProgressOpt,
    check_suffix,
    deprecated_options,
    emit_json,
    fail,
    input_option,
    instruction_option,
    logger,
    min_similarity_option,
    open_encoder,
    output_option,
    positional_input,
    resolve_instruction,
    text_column_option,
    top_k_option,
    want_progress,
)
from qembed.envelope import classify_body, dedup_body, similarity_body
from qembed.errors import InputError
from qembed.io import write_records
from qembed.models.prompts import SYMMETRIC_INSTRUCTION

#: Verdict threshold when none is given or calibrated (cosine); calibrate for real decisions.
DEFAULT_VERDICT_THRESHOLD = 0.8
RECORD_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".tsv")
ROW_SUFFIXES = (".jsonl", ".csv", ".tsv")
_SYMMETRIC = f"'{SYMMETRIC_INSTRUCTION}'"
def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows as JSON lines or a table whose columns are every key seen (in order of appearance)."""
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    write_records(path, rows, columns=columns)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# --------------------------------------------------------------------------- similarity


@deprecated_options("similarity")
def similarity(
    texts: list[str] | None = typer.Argument(None, help="Two texts to compare (or use --input)."),
    input: Path | None = input_option("Pairs file: JSON lines with sentence1, sentence2 and an optional "
                                      "label (AFQMC), or .csv/.tsv with a header naming those columns."),
    output: Path | None = output_option("Write each pair with its score to .jsonl/.csv/.tsv."),
    calibrate: bool = typer.Option(False, "--calibrate", help="Find the accuracy- and F1-maximising "
                                   "thresholds on the labelled pairs and report the metrics."),
    min_similarity: float | None = min_similarity_option(
        None, f"Cosine at or above which a pair is 'same' (default {DEFAULT_VERDICT_THRESHOLD}, uncalibrated)."),
    threshold_file: Path | None = typer.Option(None, "--threshold-file",
                                               help="Use the threshold saved by --save-threshold."),
    save_threshold: Path | None = typer.Option(None, "--save-threshold",
                                               help="With --calibrate: save the threshold as JSON."),
    instruction: str | None = instruction_option(_SYMMETRIC),
    no_instruction: bool = NoInstructionOpt,
    dimensions: int | None = DimensionsOpt,
    text1_column: str = typer.Option("sentence1", "--text1-column", help="Column of the first text."),
    text2_column: str = typer.Option("sentence2", "--text2-column", help="Column of the second text."),
    label_column: str = typer.Option("label", "--label-column", help="Label column (0/1)."),
    model: str | None = ModelOpt,
    device: str | None = DeviceOpt,
    dtype: str | None = DtypeOpt,
    backend: str | None = BackendOpt,
    api_key: str | None = ApiKeyOpt,
    progress: bool | None = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Cosine similarity of two texts, or of every pair in a file, with a same/different verdict.

    With labelled pairs, --calibrate finds the threshold that maximises accuracy (and the one for F1)
    and reports accuracy, F1, precision, recall and average precision.
    """
    from qembed.eval.pairs import calibrate as run_calibration
    from qembed.eval.pairs import metrics_at
    from qembed.pairs.scoring import (
        check_threshold,
        load_threshold,
        read_pairs,
        score_pairs,
    )
    from qembed.pairs.scoring import save_threshold as write_threshold

    if input is None and len(texts or []) != 2:
        fail("give two texts to compare, or --input FILE")
    if input is not None and texts:
        fail("give two texts or --input FILE, not both")
    if calibrate and input is None:
        fail("--calibrate needs labelled pairs: --input FILE")
    if save_threshold is not None and not calibrate:
        fail("--save-threshold needs --calibrate")
    if min_similarity is not None and threshold_file is not None:
        fail("give --min-similarity or --threshold-file, not both")
    check_suffix(output, ROW_SUFFIXES)
    saved: dict[str, Any] | None = None
    if min_similarity is not None:
        min_similarity = check_threshold(min_similarity, param="--min-similarity")
    if threshold_file is not None:
        saved = load_threshold(threshold_file)
        min_similarity = saved["threshold"]
        if instruction is None and not no_instruction and "instruction" in saved:
            instruction, no_instruction = saved["instruction"], saved["instruction"] is None
        if dimensions is None:
            dimensions = saved.get("dimensions")
    instr = resolve_instruction(instruction, no_instruction, SYMMETRIC_INSTRUCTION)
    data = read_pairs(input, left_column=text1_column, right_column=text2_column, label_column=label_column,
                      require_labels=calibrate) if input is not None else None
    if calibrate and data is not None and data.labels is not None and len(set(data.labels)) < 2:
        raise InputError(f"{input}: calibration needs both same (1) and different (0) pairs; "
                         f"all {len(data)} labels are {data.labels[0]}")
    encoder = open_encoder(model, device=device, dtype=dtype, backend=backend, api_key=api_key)
    if saved is not None and saved.get("model") not in (None, encoder.name):
        logger.warning("the threshold in %s was calibrated for %s, not %s", threshold_file,
                       saved.get("model"), encoder.name)

    if data is None:
        assert texts is not None
        score = float(score_pairs(encoder, [texts[0]], [texts[1]], instruction=instr, dimensions=dimensions)[0])
        t = DEFAULT_VERDICT_THRESHOLD if min_similarity is None else min_similarity
        if as_json:  # the body POST /v1/similarity answers for the same pair and threshold
            emit_json(similarity_body([score], model=encoder.name, min_similarity=min_similarity))
        else:
            verdict = "same" if score >= t else "different"
            note = "" if min_similarity is not None else " (default threshold; calibrate with --input --calibrate)"
            typer.echo(f"{score:.4f}  {verdict}  (min similarity {t:.4f}){note}")
        return

    logger.info("scoring %d pairs with %s", len(data), encoder.name)
    scores = score_pairs(encoder, data.left, data.right, instruction=instr, dimensions=dimensions,
                         progress=want_progress(progress, 2 * len(data), encoder))
    extra: dict[str, Any] = {}  # what only the command line does (calibration, metrics, files)
    calibration = run_calibration(scores, data.labels) if calibrate else None
    decision = calibration["threshold"] if calibration is not None else min_similarity
    if calibration is not None:
        extra["calibration"] = calibration
    if decision is not None and data.labels is not None:
        extra["metrics"] = metrics_at(scores, data.labels, decision)
    if save_threshold is not None:
        assert calibration is not None
        metrics = {k: calibration[k] for k in ("accuracy", "f1", "precision", "recall", "average_precision",
                                               "f1_threshold", "n", "positives")}
        write_threshold(save_threshold, model=encoder.name, threshold=calibration["threshold"],
                        instruction=instr or None, metrics=metrics, dimensions=dimensions,
                        extra={"calibrated_on": str(input)})
        extra["saved_threshold"] = str(save_threshold)
        logger.info("saved threshold %.4f to %s", calibration["threshold"], save_threshold)
    body = similarity_body(scores, model=encoder.name, min_similarity=decision, **extra)
    if output is not None:
        rows = []
        for rec, item in zip(data.records, body["data"]):
            row = dict(rec)
            row["score"] = round(item["score"], 6)
            if "same" in item:
                row["same"] = int(item["same"])
            rows.append(row)
        _write_rows(output, rows)
        logger.info("wrote %d scored pairs to %s", len(rows), output)
        body = {k: v for k, v in body.items() if k != "data"}
        body["output"] = str(output)
    if as_json:
        emit_json(body)
        return
    if calibration is not None:
        c = calibration
        typer.echo(f"pairs: {c['n']} ({c['positives']} same)   model: {encoder.name}")
        typer.echo(f"accuracy           {c['accuracy']:.4f}  at min similarity {c['threshold']:.4f}")
        typer.echo(f"F1                 {c['f1']:.4f}  at min similarity {c['f1_threshold']:.4f} "
                   f"(precision {c['precision']:.4f}, recall {c['recall']:.4f})")
        typer.echo(f"average precision  {_fmt(c['average_precision'])}")
    elif "metrics" in extra:
        m = extra["metrics"]
        typer.echo(f"pairs: {len(data)}  min similarity {decision:.4f}: accuracy {m['accuracy']:.4f}, "
                   f"F1 {m['f1']:.4f}, precision {m['precision']:.4f}, recall {m['recall']:.4f}, "
                   f"average precision {_fmt(m['average_precision'])}")
    elif output is None:
        for a, b, s in zip(data.left, data.right, scores):
            verdict = "" if decision is None else ("  same" if s >= decision else "  different")
            typer.echo(f"{s:.4f}{verdict}\t{a}\t{b}")
    if output is not None:
        typer.echo(f"{len(data)} scored pairs -> {output}")


# --------------------------------------------------------------------------- classify

classify_app = typer.Typer(help="Classify texts: zero-shot against label names, or with a trained head.",
                           no_args_is_help=True)


def _texts_from(texts: list[str] | None, input: Path | None, text_column: str | None,
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


def _read_label_specs(labels: list[str] | None, labels_file: Path | None) -> list[str]:
    specs = list(labels or [])
    if labels_file is not None:
        from qembed.io import read_texts

        specs += read_texts(labels_file)
    if not specs:
        fail("give the labels: --label NAME or --label 'name: description' (repeat), or --labels-file")
    return specs


@deprecated_options("classify zero-shot")
def zero_shot_command(
    texts: list[str] | None = typer.Argument(None, help="Texts to classify (or --input FILE)."),
    label: list[str] | None = typer.Option(None, "--label", "-l", help="A label: 'name' or "
                                           "'name: description'. Repeat for each label."),
    labels_file: Path | None = typer.Option(None, "--labels-file", help="Labels, one per line."),
    input: Path | None = input_option("File of texts (.txt, .jsonl, .csv, .tsv)."),
    text_column: str | None = text_column_option(),
    label_column: str | None = typer.Option(None, "--label-column", help="With a labelled --input: "
                                            "report accuracy and macro-F1 against this column."),
    output: Path | None = output_option("Write predictions (.jsonl/.csv/.tsv)."),
    top_k: int = top_k_option(3, "Labels listed per text."),
    temperature: float = typer.Option(0.05, "--temperature", help="Softmax temperature for probabilities."),
    instruction: str | None = instruction_option(_SYMMETRIC),
    no_instruction: bool = NoInstructionOpt,
    label_instruction: str | None = typer.Option(None, "--label-instruction",
                                                 help="Instruction for the label texts (default: --instruction)."),
    dimensions: int | None = DimensionsOpt,
    model: str | None = ModelOpt,
    device: str | None = DeviceOpt,
    dtype: str | None = DtypeOpt,
    backend: str | None = BackendOpt,
    api_key: str | None = ApiKeyOpt,
    progress: bool | None = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Send each text to the nearest label (names or 'name: description'), no training needed."""
    from qembed.eval.classification import classification_metrics
    from qembed.pairs.classify import ZeroShotClassifier

    specs = _read_label_specs(label, labels_file)
    items, records = _texts_from(texts, input, text_column)
    check_suffix(output, ROW_SUFFIXES)
    if label_column is not None and records is None:
        fail("--label-column needs a labelled --input file (.jsonl/.csv/.tsv)")
    if top_k < 1:
        fail(f"--top-k must be at least 1, got {top_k}")
    instr = resolve_instruction(instruction, no_instruction, SYMMETRIC_INSTRUCTION)
    encoder = open_encoder(model, device=device, dtype=dtype, backend=backend, api_key=api_key)
    clf = ZeroShotClassifier(encoder, specs, instruction=instr, label_instruction=label_instruction,
                             temperature=temperature, dimensions=dimensions)
    preds = clf.predict(items, top_k=top_k, progress=want_progress(progress, len(items), encoder))
    extra: dict[str, Any] = {"n": len(items)}
    if label_column is not None:
        from qembed.io import require_columns

        assert records is not None
        require_columns(records, [label_column], str(input))
        gold = [str(r[label_column]).strip() for r in records]
        unknown = sorted(set(gold) - set(clf.names))
        if unknown:
            raise InputError(f"{input}: labels {unknown} in column {label_column!r} are not among the "
                             f"given labels {clf.names}")
        extra["metrics"] = classification_metrics(gold, [p["label"] for p in preds], clf.names)
    body = classify_body(preds, model=encoder.name, labels=clf.names, **extra)
    if output is not None:
        rows = [{"index": i, "text": t, "label": p["label"], "score": round(p["score"], 6),
                 "labels": p["labels"]} for i, (t, p) in enumerate(zip(items, preds))]
        _write_rows(output, rows)
        body = {k: v for k, v in body.items() if k != "data"}
        body["output"] = str(output)
    if as_json:
        emit_json(body)
        return
    if output is None:
        for t, p in zip(items, preds):
            others = ", ".join(f"{x['label']} {x['score']:.3f}" for x in p["labels"][1:])
            typer.echo(f"{p['label']}\t{p['score']:.4f}\t{t}" + (f"\t(next: {others})" if others else ""))
    else:
        typer.echo(f"{len(items)} predictions -> {output}")
    if "metrics" in extra:
        m = extra["metrics"]
        typer.echo(f"accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} on {m['n']} texts")


@deprecated_options("classify train")
def train_command(
    input: Path = input_option("Labelled texts: .csv/.tsv/.jsonl with text and label columns.", required=True),
    text_column: str = text_column_option("text", "Column holding the text."),
    label_column: str = typer.Option("label", "--label-column", help="Column holding the label."),
    test_size: float = typer.Option(0.2, "--test-size", help="Fraction held out (stratified) to measure "
                                    "accuracy and macro-F1; 0 to skip."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the split."),
    c: float = typer.Option(1.0, "--C", help="Inverse L2 regularisation strength of the logistic regression."),
    refit: bool = typer.Option(False, "--refit", help="After measuring, refit on all the data."),
    output: Path = output_option("Folder to save the classifier in.", required=True),
    instruction: str | None = instruction_option(_SYMMETRIC),
    no_instruction: bool = NoInstructionOpt,
    dimensions: int | None = DimensionsOpt,
    model: str | None = ModelOpt,
    device: str | None = DeviceOpt,
    dtype: str | None = DtypeOpt,
    backend: str | None = BackendOpt,
    api_key: str | None = ApiKeyOpt,
    progress: bool | None = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Fit a logistic-regression head on embeddings of labelled texts; report held-out accuracy and macro-F1."""
    from qembed.io import read_records, require_columns
    from qembed.pairs.classify import train_classifier

    if output.exists() and not output.is_dir():
        fail(f"--output {output} exists and is not a folder")
    rows = read_records(input)
    require_columns(rows, [text_column, label_column], str(input))
    texts, labels = [], []
    for i, row in enumerate(rows, 1):
        t, lab = row[text_column], row[label_column]
        if not isinstance(t, str) or not t.strip():
            raise InputError(f"{input}: record {i}: column {text_column!r} must be a non-empty text")
        if lab is None or not str(lab).strip():
            raise InputError(f"{input}: record {i}: column {label_column!r} is empty")
        texts.append(t)
        labels.append(str(lab).strip())
    instr = resolve_instruction(instruction, no_instruction, SYMMETRIC_INSTRUCTION)
    encoder = open_encoder(model, device=device, dtype=dtype, backend=backend, api_key=api_key)
    clf = train_classifier(encoder, texts, labels, instruction=instr, dimensions=dimensions,
                           test_size=test_size, seed=seed, c=c, refit=refit, model=model or None,
                           progress=want_progress(progress, len(texts), encoder))
    clf.info["trained_on"] = str(input)
    clf.save(output)
    test = clf.metrics.get("test")
    if as_json:
        emit_json({"object": "classifier", "model": clf.model, "output": str(output), "labels": clf.labels,
                   "accuracy": test["accuracy"] if test else None,
                   "macro_f1": test["macro_f1"] if test else None, "metrics": clf.metrics})
        return
    typer.echo(f"{len(texts)} texts, labels: {', '.join(clf.labels)}")
    if test:
        typer.echo(f"held-out ({test['n']} texts): accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}")
    typer.echo(f"classifier -> {output}")


def predict_command(
    texts: list[str] | None = typer.Argument(None, help="Texts to classify, or one file of texts."),
    classifier: Path = typer.Option(..., "--classifier", "-c", help="Folder written by `classify train`."),
    input: Path | None = input_option("File of texts (.txt, .jsonl, .csv, .tsv)."),
    text_column: str | None = text_column_option(),
    output: Path | None = output_option("Write predictions (.jsonl/.csv/.tsv)."),
    top_k: int = top_k_option(3, "Labels listed per text."),
    model: str | None = typer.Option(None, "--model", "-m", help="Encoder to use instead of the one the "
                                     "classifier names (must give vectors of the same size)."),
    device: str | None = DeviceOpt,
    dtype: str | None = DtypeOpt,
    backend: str | None = BackendOpt,
    api_key: str | None = ApiKeyOpt,
    progress: bool | None = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Classify texts with a classifier trained by `qembed classify train`."""
    from qembed.pairs.classify import TrainedClassifier

    clf = TrainedClassifier.load(classifier)
    items, _ = _texts_from(texts, input, text_column, allow_file_argument=True)
    check_suffix(output, ROW_SUFFIXES)
    if top_k < 1:
        fail(f"--top-k must be at least 1, got {top_k}")
    encoder = open_encoder(model or clf.model, device=device, dtype=dtype, backend=backend, api_key=api_key)
    preds = clf.predict(encoder, items, top_k=top_k, progress=want_progress(progress, len(items), encoder))
    body = classify_body(preds, model=encoder.name, labels=clf.labels, classifier=str(classifier), n=len(items))
    if output is not None:
        _write_rows(output, [{"index": i, "text": t, "label": p["label"],
                              "probability": round(p["probability"], 6), "labels": p["labels"]}
                             for i, (t, p) in enumerate(zip(items, preds))])
        body = {k: v for k, v in body.items() if k != "data"}
        body["output"] = str(output)
    if as_json:
        emit_json(body)
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


@deprecated_options("dedup")
def dedup(
    file: Path | None = typer.Argument(None, hidden=True),
    input: Path | None = input_option("Texts: .txt (a line each), .jsonl, .csv or .tsv (--text-column)."),
    min_similarity: float = min_similarity_option(0.9, "Cosine at or above which two texts are "
                                                       "near-duplicates, in [-1, 1]."),
    output: Path | None = output_option("Deduplicated file: .txt (texts) or .jsonl/.csv/.tsv (the kept records)."),
    groups: Path | None = typer.Option(None, "--groups", "-g", help="Groups of near-duplicates as JSON "
                                       "lines, representative first."),
    text_column: str | None = text_column_option(),
    instruction: str | None = instruction_option(_SYMMETRIC),
    no_instruction: bool = NoInstructionOpt,
    dimensions: int | None = DimensionsOpt,
    model: str | None = ModelOpt,
    device: str | None = DeviceOpt,
    dtype: str | None = DtypeOpt,
    backend: str | None = BackendOpt,
    api_key: str | None = ApiKeyOpt,
    progress: bool | None = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Find groups of near-duplicate texts (representative = earliest) and write a deduplicated file."""
    from qembed.pairs.dedup import find_duplicates
    from qembed.pairs.scoring import check_threshold

    input = positional_input(file, input)
    if input is None:
        fail("give the texts: --input FILE")
    check_threshold(min_similarity, param="--min-similarity")
    check_suffix(output, (".txt", *ROW_SUFFIXES))
    check_suffix(groups, (".jsonl",), "--groups")
    items, records = _texts_from(None, input, text_column)
    instr = resolve_instruction(instruction, no_instruction, SYMMETRIC_INSTRUCTION)
    encoder = open_encoder(model, device=device, dtype=dtype, backend=backend, api_key=api_key)
    result = find_duplicates(encoder, items, min_similarity=min_similarity, instruction=instr,
                             dimensions=dimensions, progress=want_progress(progress, len(items), encoder))
    if groups is not None:
        write_records(groups, [{"group": g_i, **g.to_dict(items)} for g_i, g in enumerate(result.groups)])
    if output is not None:
        if output.suffix.lower() == ".txt":
            output.parent.mkdir(parents=True, exist_ok=True)
            tmp = output.with_name(output.name + ".tmp")
            tmp.write_text("".join(items[i].replace("\n", " ") + "\n" for i in result.keep), encoding="utf-8")
            tmp.replace(output)
        else:
            kept = [records[i] if records is not None else {"text": items[i]} for i in result.keep]
            _write_rows(output, kept)
    if as_json:
        emit_json(dedup_body(result, model=encoder.name, texts=items,
                             output=str(output) if output else None,
                             groups_file=str(groups) if groups else None))
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
