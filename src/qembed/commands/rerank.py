# ruff: noqa: B008  (Typer declares options as argument defaults)
"""``qembed rerank``: sort documents by their relevance to a query with a reranker."""

from __future__ import annotations

from pathlib import Path

import typer

from qembed.commands._common import (
    ApiKeyOpt,
    BackendOpt,
    DeviceOpt,
    DtypeOpt,
    JsonOpt,
    NoInstructionOpt,
    ProgressOpt,
    emit_json,
    fail,
    input_option,
    instruction_option,
    logger,
    normalize_dtype,
    text_column_option,
)
from qembed.rerank.base import DEFAULT_RERANKER, rerank_body
from qembed.rerank.inputs import DEFAULT_RERANK_INSTRUCTION

RerankerModelOpt = typer.Option(
    None, "--model", "-m",
    help=f"Reranker folder or Hub id (default {DEFAULT_RERANKER}, or $QEMBED_RERANKER), or the "
         "http(s):// URL of a /rerank endpoint (qembed, TEI, vLLM, Cohere/Jina shape).")


def open_reranker(model: str | None = None, *, device: str | None = None, dtype: str | None = None,
                  api_key: str | None = None, option: str = "--model"):
    """Load the reranker named on the command line (or by ``QEMBED_RERANKER``); ``option`` is the
    command's option that names it, for the message when it cannot be found."""
    import os

    from qembed.errors import ModelNotFoundError
    from qembed.io import is_http_url
    from qembed.models.resolve import with_option_hint
    from qembed.rerank import load_reranker

    target = model or os.environ.get("QEMBED_RERANKER") or DEFAULT_RERANKER
    if is_http_url(target):
        return load_reranker(target, api_key=api_key)
    try:
        return load_reranker(target, device=device, dtype=normalize_dtype(dtype))
    except ModelNotFoundError as exc:
        raise with_option_hint(exc, "reranker", f"{option} DIR or $QEMBED_RERANKER") from None


def rerank(
    query: str = typer.Argument(..., help="The query."),
    documents: list[str] | None = typer.Argument(None, help="Documents to rank (or use --input)."),
    input: Path | None = input_option("File of documents: .txt (a line each), .jsonl/.csv/.tsv "
                                      "(field/column --text-column, default 'text')."),
    text_column: str | None = text_column_option(),
    model: str | None = RerankerModelOpt,
    instruction: str | None = instruction_option(f"'{DEFAULT_RERANK_INSTRUCTION}'"),
    no_instruction: bool = NoInstructionOpt,
    top_n: int | None = typer.Option(None, "--top-n", "-n", help="Show the best N (default all)."),
    device: str | None = DeviceOpt,
    dtype: str | None = DtypeOpt,
    backend: str | None = BackendOpt,
    api_key: str | None = ApiKeyOpt,
    progress: bool | None = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Rank documents by relevance to QUERY, best first (Qwen3-Reranker scores are P(yes) in [0, 1]).

    qembed rerank "how do I reset my password?" "Click 'Forgot password'." "We open at 9." --top-n 1
    """
    from qembed.io import read_texts

    if bool(documents) == bool(input):
        fail("give documents as arguments or --input FILE (one of the two)")
    if no_instruction and instruction:
        fail("give --instruction or --no-instruction, not both")
    if top_n is not None and top_n < 1:
        fail(f"--top-n must be at least 1, got {top_n}")
    docs = list(documents) if documents else read_texts(input, text_column=text_column)
    instr = "" if no_instruction else instruction
    if backend not in (None, "torch"):
        fail(f"rerankers run on torch; --backend {backend} is not available for rerank")
    reranker = open_reranker(model, device=device, dtype=dtype, api_key=api_key)
    logger.info("reranking %d document(s) with %s", len(docs), reranker.name)
    results = reranker.rerank(query, docs, instr, top_n, progress=progress)
    tokens = None
    if hasattr(reranker, "count_tokens"):
        tokens = reranker.count_tokens(query, docs, instr)
    if as_json:
        emit_json(rerank_body(results, model=reranker.name, tokens=tokens, query=query))
        return
    for r in results:
        text = r.document.replace("\n", " ")
        typer.echo(f"{r.score:.4f}  [{r.index}]  {text[:200]}{'…' if len(text) > 200 else ''}")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Add ``qembed rerank``."""
    app.command("rerank")(rerank)
