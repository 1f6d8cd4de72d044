"""The scale-out side of ``qembed embed --ray`` and ``qembed index add --from-embeddings``.

``qembed embed`` hands over here when ``--ray`` is given; ``qembed index add`` when
``--from-embeddings`` is given. The work is done by :mod:`qembed.scale`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from qembed.commands._common import emit_json, fail, logger
from qembed.extras import require

#: ``--ray`` given without a value.
RAY_LOCAL = "local"


def embed_on_ray(
    *,
    ray: str,
    texts: list[str] | None,
    input: Path | None,
    output: Path | None,
    model: str | None,
    text_column: str | None,
    id_column: str | None,
    instruction: str | None,
    dimensions: int | None,
    concurrency: int,
    gpus_per_worker: float,
    cpus_per_worker: float | None,
    resume: bool,
    shard_rows: int,
    device: str | None,
    dtype: str | None,
    backend: str | None,
    max_input_tokens: int | None,
    truncate: bool,
    progress: bool | None,
    as_json: bool,
) -> None:
    """``qembed embed --ray …``: embed files on Ray Data into a Parquet dataset folder."""
    require("ray", "--ray")  # before anything is read or loaded
    from qembed.scale.embed import embed_dataset

    if texts:
        fail("--ray embeds files: give them with --input PATH (a file, folder or glob), not as arguments")
    if input is None:
        fail("--ray needs --input PATH (a file, folder or glob of .jsonl, .csv, .tsv, .txt or .parquet)")
    if output is None:
        fail("--ray needs --output DIR (the folder the Parquet dataset is written to)")
    if output.suffix.lower() in (".npy", ".jsonl", ".json", ".parquet"):
        fail(f"--output with --ray is a folder, not a {output.suffix} file")
    _, summary = embed_dataset(
        model, str(input), str(output), text_column=text_column, id_column=id_column, instruction=instruction,
        dimensions=dimensions, ray=ray, concurrency=concurrency, gpus_per_worker=gpus_per_worker,
        cpus_per_worker=cpus_per_worker, resume=resume, shard_rows=shard_rows, device=device, dtype=dtype,
        backend=backend, max_input_tokens=max_input_tokens, truncate=truncate, progress=progress,
    )
    if as_json:
        emit_json(summary)
        return
    rate = f" ({summary['rows_per_second']:.1f} rows/s)" if summary["rows_per_second"] else ""
    resumed = f", {summary['resumed']} already there" if summary["resumed"] else ""
    typer.echo(f"embedded {summary['embedded']} row(s) in {summary['seconds']:.1f}s{rate} on "
               f"{summary['workers']} worker(s){resumed}; {summary['rows']} vectors of size {summary['dim']} "
               f"in {summary['files']} Parquet file(s) -> {summary['output']}")


def index_add_from_embeddings(
    *,
    embeddings: Path,
    index: str,
    texts: Path | None,
    sources: list[Path] | None,
    model: str | None,
    kind: str | None,
    collection: str | None,
    batch_size: int,
    as_json: bool,
    quantize: str | None = None,
    rescore: int | None = None,
) -> None:
    """``qembed index add --from-embeddings DIR``: store precomputed vectors without embedding."""
    require("ray", "--from-embeddings (Parquet)", modules=("pyarrow",))
    from qembed.scale.load import load_embeddings

    if sources:
        fail("--from-embeddings loads precomputed vectors: give the texts with --texts PATH, "
             "not as arguments")
    result: dict[str, Any] = load_embeddings(str(embeddings), index, texts=str(texts) if texts else None,
                                             model=model, collection=collection, kind=kind,
                                             batch_rows=batch_size, quantize=quantize, rescore=rescore)
    logger.info("loaded %d vector(s) into %s", result["rows"], index)
    if as_json:
        emit_json(result)
    else:
        typer.echo(f"added {result['rows']} vector(s) of size {result['dim']} ({result['replaced']} replaced); "
                   f"{result['count']} in {index}")
