"""``qembed cluster`` and ``qembed eval clustering``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from qembed.commands._common import (
    ApiKeyOpt, DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, emit_json, fail, logger, open_encoder,
)
from qembed.errors import InputError
from qembed.io import TEXT_SUFFIXES, read_records, read_texts, require_columns

MethodOpt = typer.Option("kmeans", "--method", help="kmeans or hdbscan.")
KOpt = typer.Option(None, "--k", help="kmeans: number of clusters (≥ 2) or 'auto' (best silhouette; "
                    "the default).")
MinSizeOpt = typer.Option(None, "--min-cluster-size", help="hdbscan: smallest cluster "
                          "(default: 1% of the texts, 3..500).")
SeedOpt = typer.Option(0, "--seed", help="Random seed; the same seed gives the same result.")
InstructionOpt = typer.Option(
    None, "--instruction", "-i",
    help="Instruction both sides get (default: 'Retrieve semantically similar text'; '' for none).")
DimensionsOpt = typer.Option(None, "--dimensions", "-d", help="Matryoshka size (32..dim).")


def _instruction(value: Optional[str]) -> Optional[str]:
    from qembed.models.prompts import SYMMETRIC_INSTRUCTION

    if value is None:
        return SYMMETRIC_INSTRUCTION
    return value or None


def _read_input(path: Path, text_column: Optional[str]) -> list[str]:
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


def _parse_k(k: Optional[str]):
    if k is None:
        return None
    if k.strip().lower() == "auto":
        return "auto"
    try:
        return int(k)
    except ValueError:
        raise InputError(f"--k must be an integer or 'auto', got {k!r}") from None


def cluster_command(
    file: Path = typer.Argument(..., help="Texts: .txt (a line each), .jsonl/.json (field 'text'), "
                                          ".csv/.tsv (--text-column)."),
    model: Optional[str] = ModelOpt,
    method: str = MethodOpt,
    k: Optional[str] = KOpt,
    min_cluster_size: Optional[int] = MinSizeOpt,
    reassign_outliers: bool = typer.Option(False, "--reassign-outliers",
                                           help="hdbscan: move outliers to the nearest cluster."),
    seed: int = SeedOpt,
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Column/field holding the text."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write index,text,cluster,label,distance "
                                           "rows to this .csv (or .tsv)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a self-contained HTML report "
                                          "(2-D map + cluster table)."),
    projection: str = typer.Option("pca", "--map", help="Report map projection: pca, umap or auto "
                                   "(umap when installed)."),
    top_keywords: int = typer.Option(10, "--top-keywords", help="Keywords per cluster."),
    examples: int = typer.Option(3, "--examples", help="Representative texts per cluster."),
    user_dict: Optional[Path] = typer.Option(None, "--user-dict", help="Extra Chinese words for jieba, "
                                             "one per line."),
    instruction: Optional[str] = InstructionOpt,
    dimensions: Optional[int] = DimensionsOpt,
    device: Optional[str] = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    api_key: Optional[str] = ApiKeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Cluster the texts of FILE and name every cluster by its keywords (c-TF-IDF)."""
    from qembed.clustering.pipeline import _check_k, _check_method, cluster

    method = _check_method(method)
    k_value = _parse_k(k)
    texts = _read_input(file, text_column)
    if len(texts) < 2:
        fail(f"clustering needs at least 2 texts, {file} has {len(texts)}")
    _check_k(k_value, len(texts), method)  # fail before loading the model
    if report is not None and report.suffix.lower() not in (".html", ".htm"):
        fail(f"--report must end in .html, got {report.name}")
    if csv_out is not None and csv_out.suffix.lower() not in (".csv", ".tsv"):
        fail(f"--csv must end in .csv or .tsv, got {csv_out.name}")
    words: list[str] = []
    if user_dict is not None:
        if not user_dict.is_file():
            fail(f"--user-dict file not found: {user_dict}")
        words = [w.split()[0] for w in user_dict.read_text(encoding="utf-8").splitlines() if w.strip()]
    encoder = open_encoder(model, device=device, dtype=dtype, api_key=api_key)
    result = cluster(texts, encoder, method=method, k=k_value, min_cluster_size=min_cluster_size, seed=seed,
                     reassign_outliers=reassign_outliers, instruction=_instruction(instruction),
                     dimensions=dimensions, top_keywords=top_keywords, n_examples=examples, words=words,
                     show_progress_bar=len(texts) > 64)
    if csv_out is not None:
        result.to_csv(csv_out)
        logger.info("wrote %d rows to %s", len(texts), csv_out)
    if report is not None:
        result.write_report(report, projection=projection, seed=seed, title=f"Clusters of {file.name}")
    if as_json:
        data = result.to_dict()
        data["model"] = encoder.name
        if csv_out is not None:
            data["csv"] = str(csv_out)
        if report is not None:
            data["report"] = str(report)
        emit_json(data)
        return
    n_out = sum(1 for t in result.texts if t.cluster == -1)
    typer.echo(f"{len(texts)} texts -> {result.n_clusters} clusters"
               + (f", {n_out} outliers" if n_out else "") + f" ({result.method})")
    for c in result.clusters:
        typer.echo(f"\n#{c.cluster} {c.label}  ({c.size} texts)")
        typer.echo(f"  keywords: {', '.join(c.keywords)}")
        for e in c.examples:
            typer.echo(f"  - {e}")
    if csv_out is not None:
        typer.echo(f"\nrows -> {csv_out}")
    if report is not None:
        typer.echo(f"report -> {report}")


def eval_clustering_command(
    data: Path = typer.Option(..., "--data", help="Labelled texts: .jsonl/.json/.csv/.tsv with fields "
                                                  "'text' and 'label'."),
    model: Optional[str] = ModelOpt,
    method: str = MethodOpt,
    k: Optional[str] = typer.Option(None, "--k", help="kmeans: k (default: the number of gold labels) "
                                    "or 'auto'."),
    min_cluster_size: Optional[int] = MinSizeOpt,
    seed: int = SeedOpt,
    text_column: str = typer.Option("text", "--text-column"),
    label_column: str = typer.Option("label", "--label-column"),
    instruction: Optional[str] = InstructionOpt,
    dimensions: Optional[int] = DimensionsOpt,
    device: Optional[str] = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    api_key: Optional[str] = ApiKeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Cluster labelled texts and report V-measure, ARI and NMI, beside a TF-IDF K-Means baseline."""
    from qembed.eval.clustering import evaluate_clustering
    from qembed.clustering.pipeline import _check_method

    method = _check_method(method)
    k_value = _parse_k(k)
    rows = read_records(data)
    require_columns(rows, [text_column, label_column], str(data))
    texts, gold = [], []
    for i, row in enumerate(rows, 1):
        text = row[text_column]
        if not isinstance(text, str):
            fail(f"{data}: record {i}: {text_column!r} is not a string")
        if not text.strip():
            logger.warning("%s: record %d has an empty text; skipped", data, i)
            continue
        texts.append(text)
        gold.append(str(row[label_column]))
    encoder = open_encoder(model, device=device, dtype=dtype, api_key=api_key)
    out = evaluate_clustering(texts, gold, encoder, method=method, k=k_value, min_cluster_size=min_cluster_size,
                              seed=seed, instruction=_instruction(instruction), dimensions=dimensions,
                              show_progress_bar=len(texts) > 64)
    out["model"] = encoder.name
    out["data"] = str(data)
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
