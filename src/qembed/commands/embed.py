"""``qembed embed`` and ``qembed info``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

from qembed.commands._common import (
    ApiKeyOpt, DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, emit_json, fail, logger, open_encoder,
)
from qembed.io import read_texts


def embed(
    texts: Optional[List[str]] = typer.Argument(None, help="Texts to embed (or use --input)."),
    model: Optional[str] = ModelOpt,
    instruction: Optional[str] = typer.Option(
        None, "--instruction", "-i", help="Query instruction, e.g. 'Given a web search query, "
        "retrieve relevant passages that answer the query'. Documents take none."),
    dimensions: Optional[int] = typer.Option(None, "--dimensions", "-d", help="Matryoshka size (32..dim)."),
    input: Optional[Path] = typer.Option(None, "--input", help="File of texts: .txt (a line each), "
                                         ".jsonl (field 'text'), .csv/.tsv (--text-column)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write vectors to .npy or .jsonl."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Column/field holding the text."),
    max_input_tokens: Optional[int] = typer.Option(None, "--max-input-tokens"),
    no_truncate: bool = typer.Option(False, "--no-truncate", help="Reject inputs over the limit."),
    device: Optional[str] = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    api_key: Optional[str] = ApiKeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Embed texts given as arguments or read from a file."""
    if bool(texts) == bool(input):
        fail("give texts as arguments or --input FILE (one of the two)")
    if output is not None and output.suffix.lower() not in {".npy", ".jsonl"}:
        fail(f"--output must end in .npy or .jsonl, got {output.name}")
    items = list(texts) if texts else read_texts(input, text_column=text_column)
    kwargs = {}
    if max_input_tokens is not None:
        kwargs["max_input_tokens"] = max_input_tokens
    if no_truncate:
        kwargs["truncate"] = False
    encoder = open_encoder(model, device=device, dtype=dtype, api_key=api_key, **kwargs)
    logger.info("embedding %d text(s) with %s", len(items), encoder.name)
    vectors = encoder.encode(items, instruction=instruction, dimensions=dimensions,
                             show_progress_bar=len(items) > 1 and output is not None)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.suffix.lower() == ".npy":
            np.save(output, vectors)
        else:
            with output.open("w", encoding="utf-8") as f:
                for i, (t, v) in enumerate(zip(items, vectors)):
                    f.write(json.dumps({"index": i, "text": t, "embedding": v.tolist()}, ensure_ascii=False) + "\n")
        logger.info("wrote %d vectors of size %d to %s", len(items), vectors.shape[1], output)
        summary = {"model": encoder.name, "count": len(items), "dim": int(vectors.shape[1]),
                   "output": str(output)}
        if as_json:
            emit_json(summary)
        else:
            typer.echo(f"{len(items)} vectors of size {vectors.shape[1]} -> {output}")
        return
    if as_json:
        emit_json({
            "model": encoder.name,
            "dim": int(vectors.shape[1]),
            "data": [{"index": i, "text": t, "embedding": v} for i, (t, v) in enumerate(zip(items, vectors))],
        })
        return
    for t, v in zip(items, vectors):
        head = ", ".join(f"{x:+.4f}" for x in v[:6])
        typer.echo(f"[{head}, …] ({v.shape[0]} dims)  {t}")


def info(
    model: Optional[str] = ModelOpt,
    device: Optional[str] = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    api_key: Optional[str] = ApiKeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show a model's dimension, input limit, device, dtype, pooling and instruction support."""
    encoder = open_encoder(model, device=device, dtype=dtype, api_key=api_key)
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
