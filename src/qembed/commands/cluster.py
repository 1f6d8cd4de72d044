# ruff: noqa: B008  (Typer declares options as argument defaults)
"""``qembed cluster`` and ``qembed eval clustering``.

``qembed cluster --json`` prints the body of ``POST /v1/cluster`` (one row per text under
``data``, the clusters under ``clusters``), built by :mod:`qembed.envelope`.
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
    clusters_option,
    deprecated_options,
    emit_json,
    fail,
    input_option,
    instruction_option,
    logger,
    open_encoder,
    output_option,
    positional_input,
    resolve_instruction,
    text_column_option,
    want_progress,
)
from qembed.envelope import cluster_body
from qembed.errors import InputError
from qembed.extras import require
from qembed.io import TEXT_SUFFIXES, read_records, read_texts, require_columns
from qembed.models.prompts import SYMMETRIC_INSTRUCTION

MethodOpt = typer.Option("kmeans", "--method", help="kmeans or hdbscan.")
NInitOpt = typer.Option(10, "--n-init", help="kmeans: initialisations tried; the one with the lowest "
                                            "inertia is kept.")
MinSizeOpt = typer.Option(None, "--min-cluster-size", help="hdbscan: smallest cluster "
                          "(default: 1% of the texts, 3..500).")
SeedOpt = typer.Option(0, "--seed", help="Random seed; the same seed gives the same result.")
_SYMMETRIC = f"'{SYMMETRIC_INSTRUCTION}'"
def _read_input(path: Path, text_column: str | None) -> list[str]:
    """Texts of FILE; blank lines/values are skipped and counted in a warning."""
    texts = read_texts(path, text_column=text_column, skip_empty=True)
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES or suffix == "":
        skipped = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if not line.strip())
    else:
        skipped = len(read_records(path)) - len(texts)
    if skipped:
        logger.warning("skipped %d empty line(s)/value(s) in %s", skipped, path)
    return texts


def _parse_clusters(value: str | None) -> int | str | None:
    if value is None:
        return None
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise InputError(f"--clusters must be an integer or 'auto', got {value!r}") from None


@deprecated_options("cluster")
def cluster_command(
    file: Path | None = typer.Argument(None, hidden=True),
    input: Path | None = input_option("Texts: .txt (a line each), .jsonl/.json (field 'text'), "
                                      ".csv/.tsv (--text-column)."),
    output: Path | None = output_option("Write index,text,cluster,label,distance rows to this .csv "
                                        "(or .tsv)."),
    model: str | None = ModelOpt,
    method: str = MethodOpt,
    clusters: str | None = clusters_option(),
    n_init: int = NInitOpt,
    min_cluster_size: int | None = MinSizeOpt,
    reassign_outliers: bool = typer.Option(False, "--reassign-outliers",
                                           help="hdbscan: move outliers to the nearest cluster."),
    seed: int = SeedOpt,
    text_column: str | None = text_column_option(),
    report: Path | None = typer.Option(None, "--report", help="Write a self-contained HTML report "
                                       "(2-D map + cluster table)."),
    projection: str = typer.Option("pca", "--map", help="Report map projection: pca, umap or auto "
                                   "(umap when installed)."),
    top_keywords: int = typer.Option(10, "--top-keywords", help="Keywords per cluster."),
    examples: int = typer.Option(3, "--examples", help="Representative texts per cluster."),
    user_dict: Path | None = typer.Option(None, "--user-dict", help="Extra Chinese words for jieba, "
                                          "one per line."),
    save_model: Path | None = typer.Option(None, "--save-model", help="Save a topic model to this folder, to "
                                           "place new texts later ('qembed topics assign|update')."),
    replace: bool = typer.Option(False, "--replace", help="With --save-model: overwrite the topic model "
                                 "already saved in that folder (refused without it)."),
    outlier_quantile: float = typer.Option(0.95, "--outlier-quantile", help="With --save-model: the share of "
                                           "a topic's held-out distances a new text may reach before it is an "
                                           "outlier (0.5..1)."),
    instruction: str | None = instruction_option(_SYMMETRIC),
    no_instruction: bool = NoInstructionOpt,
    dimensions: int | None = DimensionsOpt,
    device: str | None = DeviceOpt,
    dtype: str | None = DtypeOpt,
    backend: str | None = BackendOpt,
    api_key: str | None = ApiKeyOpt,
    progress: bool | None = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Cluster the texts of --input and name every cluster by its keywords (c-TF-IDF)."""
    from qembed.clustering.pipeline import _check_k, _check_method, cluster
    from qembed.clustering.report import write_report

    input = positional_input(file, input)
    if input is None:
        fail("give the texts: --input FILE")
    method = _check_method(method)
    k_value = _parse_clusters(clusters)
    texts = _read_input(input, text_column)
    if len(texts) < 2:
        fail(f"clustering needs at least 2 texts, {input} has {len(texts)}")
    _check_k(k_value, len(texts), method)  # fail before loading the model
    if n_init < 1:
        fail(f"--n-init must be at least 1, got {n_init}")
    check_suffix(report, (".html", ".htm"), "--report")
    check_suffix(output, (".csv", ".tsv"))
    if save_model is not None:
        from qembed.clustering.topic_model import _check_quantile

        from qembed.commands.topics import check_topic_model_target

        _check_quantile(outlier_quantile)
        check_topic_model_target(save_model, "--save-model", replace)
    if report is not None and projection.strip().lower() == "umap":
        require("umap", "--map umap")  # before the model loads
    words: list[str] = []
    if user_dict is not None:
        if not user_dict.is_file():
            fail(f"--user-dict file not found: {user_dict}")
        words = [w.split()[0] for w in user_dict.read_text(encoding="utf-8").splitlines() if w.strip()]
    instr = resolve_instruction(instruction, no_instruction, SYMMETRIC_INSTRUCTION)
    encoder = open_encoder(model, device=device, dtype=dtype, backend=backend, api_key=api_key)
    result = cluster(encoder, texts, method=method, clusters=k_value, n_init=n_init,
                     min_cluster_size=min_cluster_size, seed=seed, reassign_outliers=reassign_outliers,
                     instruction=instr, dimensions=dimensions, top_keywords=top_keywords, n_examples=examples,
                     words=words, progress=want_progress(progress, len(texts), encoder))
    if output is not None:
        result.to_csv(output)
        logger.info("wrote %d rows to %s", len(texts), output)
    if report is not None:
        write_report(result, report, projection=projection, seed=seed, title=f"Clusters of {input.name}")
    if save_model is not None:
        from qembed.clustering.topic_model import TopicModel

        tm = TopicModel.from_result(result, model=encoder.name, instruction=instr, dimensions=dimensions,
                                    model_source=getattr(encoder, "model_source", None), words=words,
                                    outlier_quantile=outlier_quantile, top_keywords=top_keywords)
        tm.save(save_model)
    if as_json:
        extra: dict[str, Any] = {}
        if output is not None:
            extra["output"] = str(output)
        if report is not None:
            extra["report"] = str(report)
        if save_model is not None:
            extra["topic_model"] = str(save_model)
        emit_json(cluster_body(result, model=encoder.name, **extra))
        return
    n_out = sum(1 for t in result.texts if t.cluster == -1)
    typer.echo(f"{len(texts)} texts -> {result.n_clusters} clusters"
               + (f", {n_out} outliers" if n_out else "") + f" ({result.method})")
    for c in result.clusters:
        typer.echo(f"\n#{c.cluster} {c.label}  ({c.size} texts)")
        typer.echo(f"  keywords: {', '.join(c.keywords)}")
        for e in c.examples:
            typer.echo(f"  - {e}")
        if c.summary:
            typer.echo(f"  summary: {' / '.join(c.summary)}")
    if output is not None:
        typer.echo(f"\nrows -> {output}")
    if report is not None:
        typer.echo(f"report -> {report}")
    if save_model is not None:
        typer.echo(f"topic model -> {save_model}")


@deprecated_options("eval clustering")
def eval_clustering_command(
    input: Path = input_option("Labelled texts: .jsonl/.json/.csv/.tsv with fields 'text' and 'label'.",
                               required=True),
    model: str | None = ModelOpt,
    method: str = MethodOpt,
    clusters: str | None = clusters_option("kmeans: number of clusters (default: the number of gold "
                                           "labels) or 'auto'."),
    n_init: int = NInitOpt,
    min_cluster_size: int | None = MinSizeOpt,
    seed: int = SeedOpt,
    text_column: str = text_column_option("text", "Column/field holding the text."),
    label_column: str = typer.Option("label", "--label-column", help="Column/field holding the gold label."),
    instruction: str | None = instruction_option(_SYMMETRIC),
    no_instruction: bool = NoInstructionOpt,
    dimensions: int | None = DimensionsOpt,
    device: str | None = DeviceOpt,
    dtype: str | None = DtypeOpt,
    backend: str | None = BackendOpt,
    api_key: str | None = ApiKeyOpt,
    progress: bool | None = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Cluster labelled texts and report V-measure, ARI and NMI, beside a TF-IDF K-Means baseline."""
    from qembed.clustering.pipeline import _check_method
    from qembed.eval.clustering import evaluate_clustering

    method = _check_method(method)
    k_value = _parse_clusters(clusters)
    if n_init < 1:
        fail(f"--n-init must be at least 1, got {n_init}")
    rows = read_records(input)
    require_columns(rows, [text_column, label_column], str(input))
    texts, gold = [], []
    for i, row in enumerate(rows, 1):
        text = row[text_column]
        if not isinstance(text, str):
            fail(f"{input}: record {i}: {text_column!r} is not a string")
        if not text.strip():
            logger.warning("%s: record %d has an empty text; skipped", input, i)
            continue
        texts.append(text)
        gold.append(str(row[label_column]))
    instr = resolve_instruction(instruction, no_instruction, SYMMETRIC_INSTRUCTION)
    encoder = open_encoder(model, device=device, dtype=dtype, backend=backend, api_key=api_key)
    out = evaluate_clustering(encoder, texts, gold, method=method, clusters=k_value, n_init=n_init,
                              min_cluster_size=min_cluster_size, seed=seed, instruction=instr,
                              dimensions=dimensions, progress=want_progress(progress, len(texts), encoder))
    out = {"object": "eval.clustering", "model": encoder.name, "input": str(input), **out}
    if as_json:
        emit_json(out)
        return
    typer.echo(f"{out['n']} texts, {out['classes']} gold labels -> {out['n_clusters']} clusters "
               f"({out['method']}" + (f", k={out['k']}" if out.get("k") else "") + ")"
               + (f", {out['outlier_fraction']:.1%} outliers" if out["outlier_fraction"] else ""))
    typer.echo(f"{'':24}{'v_measure':>10}{'ari':>8}{'nmi':>8}")
    rows_out = [(f"qembed {out['method']}", out["scores"])]
    if "baseline" in out:
        rows_out.append((out["baseline"]["name"], out["baseline"]["scores"]))
    for name, s in rows_out:
        typer.echo(f"{name:24}{s['v_measure']:>10.4f}{s['ari']:>8.4f}{s['nmi']:>8.4f}")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """``qembed cluster`` and ``qembed eval clustering``."""
    app.command("cluster")(cluster_command)
    groups["eval"].command("clustering")(eval_clustering_command)
