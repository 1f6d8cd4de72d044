# ruff: noqa: B008  (Typer declares options as argument defaults)
"""``qembed export``: convert a model once for the compiled CPU backends (OpenVINO, ONNX Runtime)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from qembed.commands._common import JsonOpt, emit_json, fail, logger, output_option


def export(
    model: str = typer.Argument(..., help="Model folder or Hub id (sentence-transformers: Transformer, "
                                          "Pooling and an optional Normalize module)."),
    backend: str = typer.Option("openvino", "--backend", help="openvino (default) or onnx."),
    dtype: str | None = typer.Option(
        None, "--dtype",
        help="Stored precision: auto (the backend's default, int8), int8, float32, bfloat16 "
             "(openvino only), or w8a8 (openvino only: int8 weights and activations, calibrated; "
             "needs --guard)."),
    output: Path | None = output_option(
        "Folder to write (default: the cache, $QEMBED_CACHE/exported/<model>-<backend>-<precision>, "
        "where --backend loads find it)."),
    force: bool = typer.Option(False, "--force", help="Export again even when the folder holds this export."),
    guard: Path | None = typer.Option(
        None, "--guard", help="Graded pairs (STS-B style s1<TAB>s2<TAB>score, or JSON lines/CSV with "
                              "sentence1, sentence2, score): report worst/mean cosine to torch fp32 and "
                              "the change of the STS Spearman score, and refuse the export when the "
                              "score drops more than --max-score-drop. Required for w8a8."),
    calibration: Path | None = typer.Option(
        None, "--calibration", help="Sentences (a text file, one a line, or a pairs file) that calibrate "
                                    "w8a8's activation ranges (default: the --guard file's)."),
    max_score_drop: float = typer.Option(
        0.01, "--max-score-drop", min=0.0, max=0.99,
        help="Largest relative drop of the --guard task score allowed (default 0.01 = 1%)."),
    guard_pairs: int = typer.Option(400, "--guard-pairs", min=10, help="Pairs of --guard scored (the first ones)."),
    as_json: bool = JsonOpt,
) -> None:
    """Export MODEL for --backend and print the folder; `qembed … --model FOLDER` then runs it.

    qembed export Qwen/Qwen3-Embedding-0.6B --backend openvino --output qwen3-0.6b-openvino-int8

    qembed export MODEL --backend openvino --dtype w8a8 --guard sts.tsv --output model-w8a8
    """
    from qembed.extras import require_backend
    from qembed.models.export import export_model
    from qembed.models.resolve import read_manifest
    from qembed.models.runtimes import check_backend, check_precision

    backend = check_backend(backend)
    if backend == "torch":
        fail("--backend must be openvino or onnx: torch runs the model folder as it is")
    require_backend(backend)
    precision = check_precision(backend, dtype)
    start = time.perf_counter()
    folder = export_model(model, backend, precision, output, force=force, guard=guard,
                          calibration=calibration, max_score_drop=max_score_drop, guard_pairs=guard_pairs)
    manifest = read_manifest(folder) or {}
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    logger.info("exported %s (%s, %s) to %s in %.0f s", model, backend, precision, folder, seconds)
    body = {"object": "export", "model": model, "backend": backend, "precision": precision,
            "output": str(folder), "bytes": size, "dim": manifest.get("dim"),
            "pooling": manifest.get("pooling"), "seconds": round(seconds, 1),
            "quality": manifest.get("quality")}
    if as_json:
        emit_json(body)
    else:
        typer.echo(str(folder))


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    app.command("export")(export)
