# ruff: noqa: B008  (Typer declares options as argument defaults)
"""``qembed topics assign|update|diff|show``: topic models that last.

A topic model is saved by ``qembed cluster --save-model DIR``; ``--model DIR`` names it here (the
embedding model is the one it records, or ``--embedding-model``). ``--json`` prints the bodies of
``/v1/topics/assign``, ``/v1/topics/update`` and ``GET /v1/topics`` (:mod:`qembed.envelope`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from qembed.commands._common import (
    ApiKeyOpt,
    BackendOpt,
    DeviceOpt,
    DtypeOpt,
    JsonOpt,
    ProgressOpt,
    check_suffix,
    emit_json,
    fail,
    input_option,
    logger,
    open_encoder,
    output_option,
    text_column_option,
    want_progress,
)
from qembed.envelope import topic_assign_body, topic_diff_body, topic_update_body, topics_body

TopicModelOpt = typer.Option(..., "--model", "-m", help="Topic model folder (written by 'qembed cluster "
                                                        "--save-model DIR').")
EmbeddingModelOpt = typer.Option(None, "--embedding-model", help="Embedding model (default: the one the "
                                 "topic model records; another model is refused).")
ROW_SUFFIXES = (".csv", ".tsv", ".jsonl")


ReplaceOpt = typer.Option(False, "--replace", help="Overwrite the topic model already saved in the target "
                          "folder (refused without it).")


def check_topic_model_target(path: Path, option: str, replace: bool) -> None:
    """Fail (exit 2) before any work unless a topic model can be saved to the folder ``path``: not a
    file, not a folder of other files, no topic model already there unless ``replace``, and a place
    where the folder can be written (its parent exists and is writable, or can be created)."""
    import os
    import shutil
    import tempfile

    from qembed.clustering.topic_model import MANIFEST

    if path.exists() and not path.is_dir():
        fail(f"{option} {path} is a file; give a folder")
    if path.is_dir():
        if (path / MANIFEST).is_file():
            if not replace:
                fail(f"{option} {path} already holds a topic model; pass --replace to replace it")
        elif any(path.iterdir()):
            fail(f"{option} {path} holds other files and no topic model; give a new or empty folder")
    parent = path.absolute().parent  # the model is written beside it, then renamed into place
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    try:
        if not parent.is_dir():
            raise NotADirectoryError(f"{parent} is not a folder")
        shutil.rmtree(tempfile.mkdtemp(prefix=".qembed-check-", dir=parent))
        if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"{path} is not writable")
    except OSError as exc:
        fail(f"{option} {path} cannot be written: {exc.strerror or exc}")


def _load(model: str):
    from qembed.clustering.topic_model import TopicModel

    return TopicModel.load(model)


def _texts(input: Path, text_column: str | None) -> list[str]:
    from qembed.commands.cluster import _read_input

    texts = _read_input(input, text_column)
    if not texts:
        fail(f"{input} holds no text")
    return texts


def _encoder(tm: Any, embedding_model: str | None, device: str | None, dtype: str | None,
             backend: str | None, api_key: str | None):
    option = "--embedding-model DIR" if embedding_model else "the topic model's record, or --embedding-model DIR"
    encoder = open_encoder(embedding_model or tm.model_source or tm.model, device=device, dtype=dtype,
                           backend=backend, api_key=api_key, option=option)
    tm.check_encoder(encoder)  # another model or size: a clear error before any text is embedded
    return encoder


def _echo_rows(rows: list[Any], limit: int = 20) -> None:
    for a in rows[:limit]:
        mark = f"outlier (nearest #{a.nearest})" if a.outlier else f"#{a.topic} {a.label}"
        typer.echo(f"{a.index:>5}  {a.distance:.3f}  {mark}  {a.text}")
    if len(rows) > limit:
        typer.echo(f"  … {len(rows) - limit} more (--output FILE or --json for all)")


def assign_command(
    model: str = TopicModelOpt,
    input: Path = input_option("New texts: .txt (a line each), .jsonl/.json (field 'text'), .csv/.tsv "
                               "(--text-column).", required=True),
    output: Path | None = output_option("Write index,text,topic,label,distance,nearest,outlier rows "
                                        "(.csv, .tsv or .jsonl)."),
    text_column: str | None = text_column_option(),
    embedding_model: str | None = EmbeddingModelOpt,
    device: str | None = DeviceOpt,
    dtype: str | None = DtypeOpt,
    backend: str | None = BackendOpt,
    api_key: str | None = ApiKeyOpt,
    progress: bool | None = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Place new texts in the topics of a saved topic model (the model is not changed)."""
    from qembed.io import write_records

    check_suffix(output, ROW_SUFFIXES)
    tm = _load(model)
    texts = _texts(input, text_column)
    encoder = _encoder(tm, embedding_model, device, dtype, backend, api_key)
    rows = tm.assign(texts, encoder=encoder, progress=want_progress(progress, len(texts), encoder))
    if output is not None:
        write_records(output, [a.to_dict() for a in rows])
        logger.info("wrote %d rows to %s", len(rows), output)
    if as_json:
        emit_json(topic_assign_body(rows, model=encoder.name, topic_model=str(model), revision=tm.revision,
                                    **({"output": str(output)} if output else {})))
        return
    n_out = sum(1 for a in rows if a.outlier)
    typer.echo(f"{len(rows)} texts -> {len(rows) - n_out} placed in {len(tm.topics)} topics, {n_out} outliers")
    _echo_rows(rows)


def update_command(
    model: str = TopicModelOpt,
    input: Path = input_option("New texts to fold in: .txt, .jsonl/.json, .csv/.tsv (--text-column).",
                               required=True),
    output: Path | None = output_option("Save the updated topic model to this folder (default: replace "
                                        "--model in place)."),
    replace: bool = ReplaceOpt,
    new_topics: bool = typer.Option(True, "--new-topics/--no-new-topics",
                                    help="Propose new topics from groups of outliers (default on)."),
    text_column: str | None = text_column_option(),
    embedding_model: str | None = EmbeddingModelOpt,
    device: str | None = DeviceOpt,
    dtype: str | None = DtypeOpt,
    backend: str | None = BackendOpt,
    api_key: str | None = ApiKeyOpt,
    progress: bool | None = ProgressOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Fold new texts into a saved topic model: topics keep their ids, groups of outliers become new topics."""
    if output is not None and output.absolute() != Path(model).absolute():  # in place needs no --replace
        check_topic_model_target(output, "--output", replace)
    tm = _load(model)
    texts = _texts(input, text_column)
    encoder = _encoder(tm, embedding_model, device, dtype, backend, api_key)
    result = tm.update(texts, encoder=encoder, propose=new_topics,
                       progress=want_progress(progress, len(texts), encoder))
    target = output or Path(model)
    tm.save(target)
    if as_json:
        emit_json(topic_update_body(result, model=encoder.name, topic_model=str(target)))
        return
    counts = result.diff.to_dict()["counts"]
    typer.echo(f"{len(texts)} texts folded in (revision {result.revision}): {sum(result.joined.values())} joined "
               f"a topic, {len(result.proposed)} new topic(s), {result.pending} outlier(s) pending; "
               f"{counts['grew']} topic(s) grew")
    for t in result.proposed:
        typer.echo(f"\nnew #{t.id} {t.label}  ({t.size} texts)")
        for r in t.representatives[:3]:
            typer.echo(f"  - {r}")
    typer.echo(f"\ntopic model -> {target}")


def diff_command(
    before: str = typer.Argument(..., help="The earlier topic model folder."),
    after: str = typer.Argument(..., help="The later topic model folder."),
    as_json: bool = JsonOpt,
) -> None:
    """Topics that grew, shrank, appeared or vanished between two saved topic models."""
    from qembed.clustering.topic_model import diff

    a, b = _load(before), _load(after)
    result = diff(a, b)
    if as_json:
        emit_json(topic_diff_body(result, model=b.model, before=before, after=after,
                                  revision_before=a.revision, revision_after=b.revision))
        return
    counts = result.to_dict()["counts"]
    typer.echo(", ".join(f"{n} {s}" for s, n in counts.items()) + f" (matched by {result.matched_by})")
    for c in result.changes:
        ids = (f"#{c.before}" if c.before == c.after else f"#{c.after}" if c.before is None
               else f"#{c.before}" if c.after is None else f"#{c.before} -> #{c.after}")
        typer.echo(f"{c.status:>9}  {ids:<10} {c.size_before:>6} -> {c.size_after:<6} ({c.change:+d})  {c.label}")


def show_command(
    model: str = typer.Argument(..., help="The topic model folder."),
    as_json: bool = JsonOpt,
) -> None:
    """Show a saved topic model: its topics, labels, keywords, sizes, representative texts and summaries."""
    tm = _load(model)
    if as_json:
        emit_json(topics_body(tm, model=tm.model, topic_model=str(model)))
        return
    typer.echo(f"{len(tm.topics)} topics from {tm.n_texts} texts, revision {tm.revision}, model {tm.model} "
               f"(dim {tm.dim}), {len(tm.pending_texts)} outlier(s) pending")
    for t in tm.topics:
        typer.echo(f"\n#{t.id} {t.label}  ({t.size} texts, outlier beyond distance {t.threshold:.3f})")
        typer.echo(f"  keywords: {', '.join(t.keywords)}")
        for r in t.representatives[:3]:
            typer.echo(f"  - {r}")
        if t.summary:
            typer.echo(f"  summary: {' / '.join(t.summary)}")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """``qembed topics assign|update|diff|show``."""
    topics = typer.Typer(help="Topic models that last: place new texts, fold them in, compare runs.",
                         no_args_is_help=True)
    topics.command("assign")(assign_command)
    topics.command("update")(update_command)
    topics.command("diff")(diff_command)
    topics.command("show")(show_command)
    app.add_typer(topics, name="topics")
