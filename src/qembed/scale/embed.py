"""Embed a corpus on Ray Data: :func:`embed_dataset`.

The run has three steps:

1. **Plan.** The input files are listed (in path order) and each is read once by a Ray task that
   checks every row and counts the rows with text; file ``k``'s rows get the positions
   ``offset_k … offset_k + rows_k - 1``. The plan and the settings go into the output's manifest.
2. **Embed.** Ray Data reads the files again (:class:`~qembed.scale._ray.InputSource`), and a pool
   of ``concurrency`` actors (:class:`~qembed.scale._ray.Embedder`), each holding the model once,
   embeds blocks of at most ``shard_rows`` consecutive rows and writes each as a Parquet part
   named by its range of positions.
3. **Check.** The parts must cover every position exactly once; the manifest is marked complete.

A run that stops (killed, a node lost) is continued with ``resume=True``: the plan is taken from the
manifest, the input files must be unchanged, and only the positions no part holds are embedded.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from qembed.errors import InputError, QembedError
from qembed.scale import dataset as ds_files
from qembed.scale.inputs import (
    Columns,
    InputFile,
    count_rows,
    detect_id_column,
    file_system,
    list_inputs,
    normalize_location,
)

logger = logging.getLogger(__name__)

#: Rows per part (and most rows an actor embeds in one call).
DEFAULT_SHARD_ROWS = 2048


class EmbedResult(NamedTuple):
    """What :func:`embed_dataset` returns: the output folder and the run's summary."""

    output: str
    summary: dict[str, Any]


def import_ray() -> Any:
    """The ``ray`` module, or :class:`~qembed.errors.MissingExtraError` naming the extra."""
    from qembed.extras import require

    require("ray", "embedding on Ray")
    import ray
    import ray.data

    return ray


def _connect(ray: Any, address: str, num_cpus: float | None) -> bool:
    """Join or start a Ray runtime; ``True`` when this call started it (and must shut it down)."""
    if ray.is_initialized():
        logger.info("using the Ray runtime this process already joined")
        return False
    t0 = time.perf_counter()
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True,
                              "logging_level": logging.WARNING}
    if address == "local":
        cpus = num_cpus or os.cpu_count() or 1
        logger.info("starting a local Ray runtime (%s CPUs)", cpus)
        ray.init(num_cpus=cpus, **kwargs)
    else:
        if num_cpus:
            raise InputError("num_cpus applies to a local runtime (ray='local') only", param="num_cpus")
        logger.info("joining the Ray cluster at %s", address)
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            raise QembedError(f"cannot join the Ray cluster at {address}: {exc}") from None
    logger.info("Ray is up after %.1fs", time.perf_counter() - t0)
    return True


class Progress:
    """Progress of the embedding step as log lines on stderr: rows done of the total, the rate
    since the first rows came back and the time left, at most every ``every`` seconds (and at
    the end), so a run without a terminal shows what it does too."""

    def __init__(self, total: int, every: float = 10.0) -> None:
        self.total, self.every = total, every
        self.done = 0
        self.t0 = time.perf_counter()
        self.first: float | None = None
        self.shown = float("-inf")

    def update(self, rows: int) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
            logger.info("first rows embedded after %.1fs (the workers have loaded the model)", now - self.t0)
        self.done += rows
        if self.done < self.total and now - self.shown < self.every:
            return
        self.shown = now
        elapsed = now - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = f", ~{(self.total - self.done) / rate:.0f}s left" if rate and self.done < self.total else ""
        logger.info("%d/%d rows done (%.0f%%), %.1f rows/s%s", self.done, self.total,
                    100.0 * self.done / max(self.total, 1), rate, left)


def _unwrap(exc: BaseException) -> BaseException | None:
    """The qembed error a Ray failure carries (a task's error arrives wrapped), if any."""
    seen = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen or e is None:
            continue
        seen.add(id(e))
        if isinstance(e, QembedError):
            return e
        stack += [getattr(e, "cause", None), e.__cause__, e.__context__]
    return None


def _settings(model: str | None, device: str | None, dtype: str | None, max_input_tokens: int | None,
              truncate: bool, gpus_per_worker: float, backend: str | None = None) -> tuple[str, dict[str, Any]]:
    from qembed.config import Settings

    settings = Settings()
    target = model or settings.model
    if target.startswith(("http://", "https://")):
        return target, {}
    load: dict[str, Any] = {
        "device": device or settings.device or ("cuda" if gpus_per_worker else "cpu"),
        "dtype": dtype or settings.dtype,
        "max_batch_tokens": settings.max_batch_tokens,
        "max_batch_size": settings.max_batch_size,
        "truncate": truncate,
    }
    backend = backend or getattr(settings, "backend", None)
    if backend is not None:  # only when asked: torch needs no backend argument
        load["backend"] = backend
    if max_input_tokens is not None:
        load["max_input_tokens"] = max_input_tokens
    return target, load


def _check_positive(name: str, value: Any, *, allow_zero: bool = False, integer: bool = True) -> None:
    ok_type = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type) or value < 0 or (value == 0 and not allow_zero):
        kind = "an integer" if integer else "a number"
        raise InputError(f"{name} must be {kind} {'>= 0' if allow_zero else '>= 1' if integer else '> 0'}, "
                         f"got {value!r}", param=name)


def embed_dataset(
    model: str | None,
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    instruction: str | None = None,
    dimensions: int | None = None,
    ray: str = "local",
    concurrency: int = 1,
    gpus_per_worker: float = 0,
    cpus_per_worker: float | None = None,
    num_cpus: float | None = None,
    resume: bool = False,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    device: str | None = None,
    dtype: str | None = None,
    backend: str | None = None,
    max_input_tokens: int | None = None,
    truncate: bool = True,
    progress: bool | None = None,
) -> EmbedResult:
    """Embed every text of ``input`` on Ray Data and write a Parquet dataset to ``output``.

    Args:
        model: model folder, Hub id or endpoint URL each actor loads (``None``: ``$QEMBED_MODEL``
            or the default model).
        input: a file, folder or glob of ``.jsonl``/``.json``, ``.csv``/``.tsv``, ``.txt`` or
            ``.parquet`` files (local, or ``s3://``/``gs://`` through pyarrow's file systems).
        output: the folder to write (created; must be empty unless ``resume``).
        text_column / id_column: where the text and the id are (defaults ``text``; ``id`` or
            ``_id`` when the first record has one).
        instruction / dimensions: as for :meth:`~qembed.models.encoder.Encoder.encode`.
        ray: ``"local"`` (start a runtime on this machine, or use the one this process already
            joined), ``"auto"`` (the running cluster) or a cluster address.
        concurrency: actors, each holding the model once.
        gpus_per_worker: GPUs each actor takes (``1`` on a GPU cluster); with GPUs the default
            device is ``cuda``.
        cpus_per_worker: CPUs each actor takes (default: 1 with GPUs; on a local CPU runtime the
            machine's CPUs shared among the actors).
        num_cpus: CPUs of a local runtime (default: all).
        resume: continue the run whose manifest ``output`` holds, embedding only missing rows.
        shard_rows: rows per Parquet part (the unit a resumed run skips).
        device / dtype / backend / max_input_tokens / truncate: how each actor loads the model
            (``backend``: torch, openvino or onnx, as for :func:`qembed.load_encoder`).
        progress: Ray Data's progress bars (default: when stderr is a terminal).

    Returns:
        ``EmbedResult(output, summary)``; the summary has ``rows`` (in the dataset), ``embedded``
        (this run), ``resumed`` (rows already there), ``seconds`` (the Ray pipeline, actor start-up
        included), ``rows_per_second``, ``busy_seconds`` (time the actors spent embedding and
        writing, summed over actors), ``workers``, ``model``, ``dim``, ``files`` (Parquet parts).
    """
    _check_positive("concurrency", concurrency)
    _check_positive("shard_rows", shard_rows)
    _check_positive("gpus_per_worker", gpus_per_worker, allow_zero=True, integer=False)
    if cpus_per_worker is not None:
        _check_positive("cpus_per_worker", cpus_per_worker, integer=False)
    if num_cpus is not None:
        _check_positive("num_cpus", num_cpus, integer=False)
    if dimensions is not None:
        _check_positive("dimensions", dimensions)
    if not isinstance(ray, str) or not ray.strip():
        raise InputError("ray must be 'local', 'auto' or a cluster address", param="ray")
    rt = import_ray()
    target, load = _settings(model, device, dtype, max_input_tokens, truncate, gpus_per_worker, backend)
    if ray.strip() == "local" and load:  # the actors run here: a model that cannot load fails now
        from qembed.models.resolve import resolve_model_path

        if Path(target).expanduser().exists():
            target = str(Path(target).expanduser().resolve())
        resolve_model_path(target)
    files = list_inputs(input)
    out_uri = normalize_location(output)
    if "://" not in out_uri:  # the actors' working folder is not necessarily this one
        out_uri = os.path.abspath(os.path.expanduser(out_uri))
    out_fs, out_path = file_system(out_uri)
    manifest = _existing_output(out_fs, out_path, out_uri, resume)
    if manifest is not None:
        _check_same_run(manifest, target, instruction, dimensions, text_column, id_column, shard_rows, files)

    from qembed.scale import _ray as parts

    started = _connect(rt, ray.strip(), num_cpus)
    try:
        ctx = rt.data.DataContext.get_current()
        ctx.enable_progress_bars = sys.stderr.isatty() if progress is None else bool(progress)
        ctx.execution_options.verbose_progress = False
        if manifest is None:
            manifest = _plan(rt, files, target, os.fspath(input), instruction, dimensions, text_column,
                             id_column, shard_rows, load)
            out_fs.create_dir(out_path, recursive=True)
            ds_files.write_manifest(out_fs, out_path, manifest)
        ds_files.remove_temporaries(out_fs, out_path)
        total = int(manifest["rows"])
        have = _usable_parts(out_fs, out_path)
        missing = ds_files.missing_ranges([(s, e) for s, e, _ in have], total)
        todo = sum(e - s for s, e in missing)
        columns = Columns(text=manifest["text_column"], id=manifest["id_column"])
        resources = rt.cluster_resources()
        if cpus_per_worker is None:
            if gpus_per_worker:
                cpus_per_worker = 1.0
            else:  # share the CPUs, keeping a little for the readers and the driver
                cpus_per_worker = max(0.5, (float(resources.get("CPU", 1)) - 0.25) / concurrency)
        threads = max(1, round(cpus_per_worker)) if not gpus_per_worker else None
        logger.info("%d of %d row(s) to embed with %s on %d worker(s); starting the workers (each loads "
                    "the model first)", todo, total, target, concurrency)
        t0 = time.perf_counter()
        results: list[dict[str, Any]] = []
        if todo:
            source = parts.InputSource(manifest["files"], columns, int(manifest["shard_rows"]), missing)
            data = rt.data.read_datasource(source, num_cpus=0.05)
            data = data.map_batches(
                parts.Embedder,
                batch_size=None,
                batch_format="pyarrow",
                compute=rt.data.ActorPoolStrategy(size=concurrency),
                num_cpus=cpus_per_worker,
                num_gpus=gpus_per_worker or None,
                fn_constructor_kwargs={
                    "model": target, "output": out_uri, "threads": threads,
                    "settings": {"load": load, "instruction": instruction, "dimensions": dimensions,
                                 "shard_rows": int(manifest["shard_rows"])},
                },
            )
            progress = Progress(todo)
            try:
                for batch in data.iter_batches(batch_size=None, batch_format="pyarrow"):
                    rows = batch.to_pylist()
                    results += rows
                    progress.update(sum(r["end"] - r["start"] for r in rows))
            except Exception as exc:  # noqa: BLE001 - Ray wraps the actors' errors
                cause = _unwrap(exc)
                if cause is not None:
                    raise cause from None
                raise QembedError(f"the Ray run failed: {exc.__class__.__name__}: {exc} "
                                  f"(rows written so far are kept: run again with resume)") from None
        seconds = time.perf_counter() - t0
        manifest = _finish(out_fs, out_path, manifest, results)
    finally:
        if started:
            rt.shutdown()
    embedded = sum(r["end"] - r["start"] for r in results)
    summary = {
        "object": "embedding_dataset",
        "model": manifest.get("model"),
        "dim": manifest.get("dim"),
        "output": out_uri,
        "rows": total,
        "embedded": embedded,
        "resumed": total - todo if resume else 0,
        "seconds": round(seconds, 3),
        "busy_seconds": round(sum(r["seconds"] for r in results), 3),
        "rows_per_second": round(embedded / seconds, 2) if embedded and seconds > 0 else None,
        "workers": concurrency,
        "gpus_per_worker": gpus_per_worker,
        "files": len(manifest.get("parts", [])),
        "input_files": len(manifest["files"]),
    }
    return EmbedResult(out_uri, summary)


# --------------------------------------------------------------------------- steps


def _existing_output(filesystem: Any, path: str, uri: str, resume: bool) -> dict[str, Any] | None:
    from pyarrow import fs

    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.NotFound:
        return None
    if info.type != fs.FileType.Directory:
        raise InputError(f"--output {uri} exists and is not a folder")
    manifest = ds_files.read_manifest(filesystem, path)
    if manifest is None:
        entries = filesystem.get_file_info(fs.FileSelector(path))
        if entries:
            raise InputError(f"--output {uri} is a folder that already holds files (and no qembed "
                             "embeddings); choose a new or empty folder")
        return None
    if not resume:
        state = "a complete" if manifest.get("status") == "complete" else "an unfinished"
        raise InputError(f"--output {uri} already holds {state} embeddings run; pass --resume to "
                         "continue it, or choose a new folder")
    return manifest


def _check_same_run(manifest: dict[str, Any], model: str, instruction: str | None, dimensions: int | None,
                    text_column: str | None, id_column: str | None, shard_rows: int,
                    files: list[InputFile]) -> None:
    """Refuse to resume with other settings or changed input files."""
    asked = {"model_requested": model, "instruction": instruction, "dimensions": dimensions,
             "text_column": text_column or "text"}
    for key, value in asked.items():
        if manifest.get(key) != value:
            raise InputError(f"the run in this folder used {key.replace('_requested', '')} "
                             f"{manifest.get(key)!r}, not {value!r}; resume with the same settings")
    if id_column is not None and manifest.get("id_column") != id_column:
        raise InputError(f"the run in this folder used id column {manifest.get('id_column')!r}, not {id_column!r}")
    recorded = [(f["uri"], f["size"], f["mtime"]) for f in manifest["files"]]
    now = [(f.uri, f.size, f.mtime) for f in files]
    if recorded != now:
        changed = sorted({r[0] for r in recorded} ^ {n[0] for n in now}) or \
            [r[0] for r, n in zip(recorded, now) if r != n]
        raise InputError("the input files changed since the run started (" + ", ".join(changed[:3]) +
                         "); embed them into a new folder")


def _plan(rt: Any, files: list[InputFile], model: str, input: str, instruction: str | None,
          dimensions: int | None, text_column: str | None, id_column: str | None, shard_rows: int,
          load: dict[str, Any]) -> dict[str, Any]:
    """Count (and check) every file's rows in parallel Ray tasks; the manifest of a new run."""
    columns = Columns(text=text_column or "text", id=id_column)
    if id_column is None:
        columns = Columns(text=columns.text, id=detect_id_column(files, columns.text))
    logger.info("counting the rows of %d file(s)", len(files))
    count = rt.remote(num_cpus=0.05)(count_rows)
    try:
        counts = rt.get([count.remote(f, columns) for f in files])
    except Exception as exc:
        cause = _unwrap(exc)
        if cause is not None:
            raise cause from None
        raise
    total = sum(counts)
    if total == 0:
        raise InputError(f"{input} contains no texts")
    entries = []
    offset = 0
    for f, n in zip(files, counts):
        entries.append({**f.to_dict(), "offset": offset, "rows": n})
        offset += n
    logger.info("%d row(s) in %d file(s); ids from %s", total, len(files), columns.id or "nowhere")
    return {
        "status": "running",
        "model_requested": model,
        "instruction": instruction,
        "dimensions": dimensions,
        "normalized": True,
        "text_column": columns.text,
        "id_column": columns.id,
        "input": input,
        "rows": total,
        "shard_rows": shard_rows,
        "load": {k: v for k, v in load.items() if v is not None},
        "files": entries,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _usable_parts(filesystem: Any, folder: str) -> list[tuple[int, int, str]]:
    """Parts whose row count matches their name (others are deleted, to be embedded again)."""
    import pyarrow.parquet as pq

    good = []
    for start, end, path in ds_files.list_parts(filesystem, folder):
        try:
            with filesystem.open_input_file(path) as f:
                rows = pq.ParquetFile(f).metadata.num_rows
        except Exception:  # noqa: BLE001 - a damaged file of any kind
            rows = -1
        if rows == end - start:
            good.append((start, end, path))
        else:
            logger.warning("deleting the damaged part %s", path)
            filesystem.delete_file(path)
    return good


def _finish(filesystem: Any, folder: str, manifest: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """Drop parts a retried task wrote twice, check every row is there once, mark the run complete."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    parts = _usable_parts(filesystem, folder)
    keep, redundant, trim = ds_files.plan_cover(parts)
    for path in redundant:
        filesystem.delete_file(path)
    for new_start, end, path in trim:
        with filesystem.open_input_file(path) as f:
            table = pq.read_table(f)
        table = table.filter(pc.greater_equal(table["index"], new_start))
        tmp = ds_files.join(folder, f"{ds_files.TMP_PREFIX}trim.parquet")
        pq.write_table(table, tmp, filesystem=filesystem)
        filesystem.move(tmp, ds_files.join(folder, ds_files.part_name(new_start, end)))
        filesystem.delete_file(path)
        keep.append((new_start, end, ds_files.join(folder, ds_files.part_name(new_start, end))))
    total = int(manifest["rows"])
    missing = ds_files.missing_ranges([(s, e) for s, e, _ in keep], total)
    if missing:
        n = sum(e - s for s, e in missing)
        raise QembedError(f"{n} of {total} row(s) have no embedding after the run (first missing range "
                          f"{missing[0][0]}-{missing[0][1] - 1}); run again with --resume")
    facts = _model_facts(filesystem, keep, results)
    manifest = {**manifest, **facts, "status": "complete",
                "parts": [p.rsplit("/", 1)[-1] for _, _, p in sorted(keep)]}
    ds_files.write_manifest(filesystem, folder, manifest)
    return manifest


def _model_facts(filesystem: Any, parts: list[tuple[int, int, str]], results: list[dict[str, Any]]) -> dict[str, Any]:
    """Model name, source and vector size: from this run's actors, else from a part's metadata."""
    import json

    import pyarrow.parquet as pq

    seen = {(r["model"], r["model_source"], r["dim"]) for r in results}
    if not seen:
        with filesystem.open_input_file(parts[0][2]) as f:
            meta = pq.ParquetFile(f).schema_arrow.metadata or {}
        facts = json.loads(meta.get(b"qembed", b"{}"))
        seen = {(facts.get("model"), facts.get("model_source"), facts.get("dim"))}
    if len(seen) > 1:
        raise QembedError(f"the workers loaded different models or sizes: {sorted(map(str, seen))}")
    name, source, dim = seen.pop()
    return {"model": name, "model_source": source, "dim": dim}
