# ruff: noqa: B008  (Typer declares options as argument defaults)
"""``qembed summarize``: the k sentences that say the most, from a long text or a set of texts.

``--json`` prints the body of ``POST /v1/summarize`` (:func:`qembed.envelope.summary_body`).
"""

from __future__ import annotations

from pathlib import Path

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
    emit_json,
    fail,
    input_option,
    instruction_option,
    open_encoder,
    resolve_instruction,
    text_column_option,
    want_progress,
)
from qembed.envelope import summary_body
from qembed.models.prompts import SYMMETRIC_INSTRUCTION


def summarize_command(
    text: str | None = typer.Argument(None, help="The text to summarize (or --input FILE)."),
    input: Path | None = input_option("A long text (.txt/.md: the whole file is one text) or a set of texts "
                                      "(.jsonl/.json field 'text', .csv/.tsv --text-column), summarized together."),
    sentences: int = typer.Option(3, "--sentences", "-n", help="Sentences in the summary."),
    method: str = typer.Option("centroid", "--method", help="centroid (closest to the whole) or mmr "
                                                             "(closest, then least redundant)."),
    diversity: float = typer.Option(0.3, "--diversity", help="mmr: weight of novelty against closeness (0..1)."),
    max_similarity: float = typer.Option(0.95, "--max-similarity", help="Skip a sentence at least this similar "
                                                                       "(cosine) to one already chosen."),
    text_column: str | None = text_column_option(),
    model: str | None = ModelOpt,
    instruction: str | None = instruction_option(f"'{SYMMETRIC_INSTRUCTION}'"),
    no_instruction: bool = NoInstructionOpt,
    dimensions: int | None = DimensionsOpt,
    device: str | None = DeviceOpt,
    dtype: str | None = DtypeOpt,
    backend: str | None = BackendOpt,
    api_key: str | None = ApiKeyOpt,
    progress: bool | None = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Pick the sentences that best cover a text (centroid or MMR over sentence embeddings), in their order."""
    from qembed.io import TEXT_SUFFIXES, read_texts
    from qembed.summarize.extractive import _check_choice, summarize

    if text is None and input is None:
        fail("give a text to summarize or --input FILE")
    if text is not None and input is not None:
        fail("give a text to summarize or --input FILE, not both")
    _check_choice(sentences, method, diversity, max_similarity, name="sentences")  # before the model loads
    texts: str | list[str]
    if input is not None:
        if not input.is_file():
            fail(f"file not found: {input}")
        if input.suffix.lower() in TEXT_SUFFIXES or input.suffix == "":
            texts = input.read_text(encoding="utf-8")
            if not texts.strip():
                fail(f"{input} is empty")
        else:
            texts = read_texts(input, text_column=text_column, skip_empty=True)
            if not texts:
                fail(f"{input} holds no text")
    else:
        texts = text or ""
        if not texts.strip():
            fail("the text is empty")
    instr = resolve_instruction(instruction, no_instruction, SYMMETRIC_INSTRUCTION)
    encoder = open_encoder(model, device=device, dtype=dtype, backend=backend, api_key=api_key)
    n = len(texts) if isinstance(texts, list) else 1
    result = summarize(encoder, texts, sentences, method=method, diversity=diversity, max_similarity=max_similarity,
                       instruction=instr, dimensions=dimensions, progress=want_progress(progress, 64 * n, encoder))
    if as_json:
        emit_json(summary_body(result, model=encoder.name))
        return
    typer.echo(result.text)


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """``qembed summarize``."""
    app.command("summarize")(summarize_command)
