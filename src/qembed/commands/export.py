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
        help="Stored precision: auto (the backend's default, int8), int8, float32, or bfloat16 "
             "(openvino only)."),
    output: Path | None = output_option(
        "Folder to write (default: the cache, $QEMBED_CACHE/exported/<model>-<backend>-<precision>, "
        "where --backend loads find it)."),
    force: bool = typer.Option(False, "--force", help="Export again even when the folder holds this export."),
    as_json: bool = JsonOpt,
) -> None:
    """Export MODEL for --backend and print the folder; `qembed … --model FOLDER` then runs it.

    qembed export Qwen/Qwen3-Embedding-0.6B --backend openvino --output qwen3-0.6b-openvino-int8
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
    folder = export_model(model, backend, precision, output, force=force)
    manifest = read_manifest(folder) or {}
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    logger.info("exported %s (%s, %s) to %s in %.0f s", model, backend, precision, folder, seconds)
    body = {"object": "export", "model": model, "backend": backend, "precision": precision,
            "output": str(folder), "bytes": size, "dim": manifest.get("dim"),
            "pooling": manifest.get("pooling"), "seconds": round(seconds, 1)}
    if as_json:
        emit_json(body)
    else:
        typer.echo(str(folder))


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    app.command("export")(export)
