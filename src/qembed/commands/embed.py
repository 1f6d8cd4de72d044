# ruff: noqa: B008  (Typer declares options as argument defaults)
"""``qembed embed`` and ``qembed info``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
    emit_json,
    fail,
    input_option,
    instruction_option,
    logger,
    open_encoder,
    output_option,
    resolve_instruction,
    text_column_option,
    want_progress,
)
from qembed.envelope import embeddings_body, envelope
from qembed.io import read_texts


def embed(
    texts: list[str] | None = typer.Argument(None, help="Texts to embed (or use --input)."),
    input: Path | None = input_option("File of texts: .txt (a line each), .jsonl (field 'text'), "
                                         ".csv/.tsv (--text-column)."),
    output: Path | None = output_option("Write vectors to .npy or .jsonl."),
    text_column: str | None = text_column_option(),
    model: str | None = ModelOpt,
    instruction: str | None = instruction_option(
        "none, as documents take; queries take e.g. 'Given a web search query, retrieve relevant passages "
        "that answer the query'"),
    no_instruction: bool = NoInstructionOpt,
    dimensions: int | None = DimensionsOpt,
    embedding_types: str | None = typer.Option(
        None, "--embedding-types", metavar="TYPES",
        help="Comma-separated vector types to return, as /v1/embeddings' embedding_types: float, int8, uint8, "
             "binary, ubinary (one type: that vector; several: {type: vector} per text)."),
    max_input_tokens: int | None = typer.Option(None, "--max-input-tokens", help="Longest input in tokens."),
    no_truncate: bool = typer.Option(False, "--no-truncate", help="Reject inputs over the limit."),
    device: str | None = DeviceOpt,
    dtype: str | None = DtypeOpt,
    backend: str | None = BackendOpt,
    api_key: str | None = ApiKeyOpt,
    progress: bool | None = ProgressOpt,
    as_json: bool = JsonOpt,
    ray: str | None = typer.Option(
        None, "--ray", metavar="local|auto|ADDRESS", rich_help_panel="Scale-out (Ray Data)",
        help="Embed --input (a file, folder or glob) on Ray Data into the Parquet folder --output: 'local' "
             "starts Ray on this machine, 'auto' or an address joins a running cluster."),
    concurrency: int = typer.Option(1, "--concurrency", rich_help_panel="Scale-out (Ray Data)",
                                    help="With --ray: encoder actors, each holding the model once."),
    gpus_per_worker: float = typer.Option(0, "--gpus-per-worker", rich_help_panel="Scale-out (Ray Data)",
                                          help="With --ray: GPUs per actor (1 on a GPU cluster)."),
    cpus_per_worker: float | None = typer.Option(
        None, "--cpus-per-worker", rich_help_panel="Scale-out (Ray Data)",
        help="With --ray: CPUs per actor (default 1 with GPUs; else the local CPUs shared by the actors)."),
    resume: bool = typer.Option(False, "--resume", rich_help_panel="Scale-out (Ray Data)",
                                help="With --ray: continue the run in --output, embedding only missing rows."),
    id_column: str | None = typer.Option(None, "--id-column", rich_help_panel="Scale-out (Ray Data)",
                                         help="With --ray: column/field holding the id (default 'id' or '_id')."),
    shard_rows: int = typer.Option(2048, "--shard-rows", rich_help_panel="Scale-out (Ray Data)",
                                   help="With --ray: rows per Parquet part (what --resume skips)."),
) -> None:
    """Embed texts given as arguments or read from a file.

    With --json the answer is the body of POST /v1/embeddings (vectors under data).
    """
    if ray is not None:
        from qembed.commands.scale import embed_on_ray

        return embed_on_ray(
            ray=ray, texts=texts, input=input, output=output, model=model, text_column=text_column,
            id_column=id_column, instruction=resolve_instruction(instruction, no_instruction, "") or None,
            dimensions=dimensions, concurrency=concurrency, gpus_per_worker=gpus_per_worker,
            cpus_per_worker=cpus_per_worker, resume=resume, shard_rows=shard_rows, device=device, dtype=dtype,
            backend=backend, max_input_tokens=max_input_tokens, truncate=not no_truncate, progress=progress, as_json=as_json)
    if resume or id_column is not None:
        fail("--resume and --id-column apply to --ray runs (qembed embed --ray local -i PATH -o DIR)")
    if bool(texts) == bool(input):
        fail("give texts as arguments or --input FILE (one of the two)")
    check_suffix(output, (".npy", ".jsonl"))
    types = None
    if embedding_types is not None:
        from qembed.store.quantize import check_embedding_types

        types = check_embedding_types(embedding_types, param="--embedding-types")
        if types == ["float"]:
            types = None
        elif output is not None and output.suffix.lower() == ".npy" and len(types) > 1:
            fail("--output .npy holds one array: give one --embedding-types value (or write .jsonl)")
    instr = resolve_instruction(instruction, no_instruction, "")
    items = list(texts) if texts else read_texts(input, text_column=text_column)
    kwargs = {}
    if max_input_tokens is not None:
        kwargs["max_input_tokens"] = max_input_tokens
    if no_truncate:
        kwargs["truncate"] = False
    encoder = open_encoder(model, device=device, dtype=dtype, backend=backend, api_key=api_key, **kwargs)
    logger.info("embedding %d text(s) with %s", len(items), encoder.name)
    vectors = encoder.encode(items, instruction=instr or None, dimensions=dimensions,
                             progress=want_progress(progress, len(items), encoder))
    if types is not None:
        return _emit_typed(items, vectors, types, output, encoder.name, as_json)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.suffix.lower() == ".npy":
            np.save(output, vectors)
        else:
            with output.open("w", encoding="utf-8") as f:
                for i, (t, v) in enumerate(zip(items, vectors)):
                    f.write(json.dumps({"index": i, "text": t, "embedding": v.tolist()}, ensure_ascii=False) + "\n")
        logger.info("wrote %d vectors of size %d to %s", len(items), vectors.shape[1], output)
        summary = {"object": "embedding.file", "model": encoder.name, "count": len(items),
                   "dimensions": int(vectors.shape[1]), "output": str(output)}
        if as_json:
            emit_json(summary)
        else:
            typer.echo(f"{len(items)} vectors of size {vectors.shape[1]} -> {output}")
        return
    if as_json:
        emit_json(embeddings_body(vectors, model=encoder.name))
        return
    for t, v in zip(items, vectors):
        head = ", ".join(f"{x:+.4f}" for x in v[:6])
        typer.echo(f"[{head}, …] ({v.shape[0]} dims)  {t}")


def _emit_typed(items: list[str], vectors: np.ndarray, types: list[str], output: Path | None, model: str,
                as_json: bool) -> None:
    """``qembed embed --embedding-types``: the vectors in the wire types of /v1/embeddings."""
    from qembed.store.quantize import as_type, typed_embeddings

    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.suffix.lower() == ".npy":
            np.save(output, as_type(vectors, types[0]))
        else:
            with output.open("w", encoding="utf-8") as f:
                for i, (t, e) in enumerate(zip(items, typed_embeddings(vectors, types))):
                    f.write(json.dumps({"index": i, "text": t, "embedding": e}, ensure_ascii=False) + "\n")
        summary = {"object": "embedding.file", "model": model, "count": len(items),
                   "dimensions": int(vectors.shape[1]), "embedding_types": types, "output": str(output)}
        if as_json:
            emit_json(summary)
        else:
            typer.echo(f"{len(items)} vectors of size {vectors.shape[1]} ({', '.join(types)}) -> {output}")
        return
    rows = typed_embeddings(vectors, types)
    if as_json:
        emit_json(envelope("list", [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(rows)],
                           model=model, embedding_types=types))
        return
    for t, i in zip(items, range(len(items))):
        for kind in types:
            v = as_type(vectors[i:i + 1], kind)[0]
            typer.echo(f"{kind:>8} [{', '.join(str(x) for x in v[:8].tolist())}, …] ({v.shape[0]} values)  {t}")


def info(
    model: str | None = ModelOpt,
    device: str | None = DeviceOpt,
    dtype: str | None = DtypeOpt,
    backend: str | None = BackendOpt,
    api_key: str | None = ApiKeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show a model's dimension, input limit, device, dtype, pooling and instruction support."""
    encoder = open_encoder(model, device=device, dtype=dtype, backend=backend, api_key=api_key)
    data = encoder.info() if hasattr(encoder, "info") else {
        "name": encoder.name, "dim": encoder.dim, "max_input_tokens": encoder.max_input_tokens,
        "supports_instructions": encoder.supports_instructions, "remote": True,
    }
    if as_json:
        emit_json(data)
        return
    for key, value in data.items():
        if key == "prompts":
            value = ", ".join(value) or "none"
        typer.echo(f"{key:>22}: {value}")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    app.command("embed")(embed)
    app.command("info")(info)
