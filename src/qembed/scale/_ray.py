"""The Ray parts of a scale-out run: the input as a Ray Data datasource, and the encoder actor.

Imported only once Ray is known to be installed (:func:`qembed.scale.embed.import_ray`).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from qembed.scale.dataset import TMP_PREFIX, join, part_name
from qembed.scale.inputs import Columns, InputFile, file_system, iter_rows

logger = logging.getLogger(__name__)


def block_schema(with_id: bool) -> pa.Schema:
    fields = [pa.field("index", pa.int64()), pa.field("text", pa.string())]
    if with_id:
        fields.append(pa.field("id", pa.string()))
    return pa.schema(fields)


class InputSource(Datasource):
    """The input files as Ray Data read tasks: consecutive files are grouped into tasks of at least
    ``shard_rows`` rows; each task reads its files in order and yields blocks of the rows in
    ``wanted`` (index ranges), cut at multiples of ``shard_rows``, with columns ``index``,
    ``text`` and, when ``columns.id`` is set, ``id``."""

    def __init__(self, files: list[dict[str, Any]], columns: Columns, shard_rows: int,
                 wanted: list[tuple[int, int]]) -> None:
        super().__init__()
        self.files = files  # InputFile fields + "offset" and "rows"
        self.columns = columns
        self.shard_rows = shard_rows
        self.wanted = wanted

    def _wanted_in(self, start: int, end: int) -> list[tuple[int, int]]:
        return [(max(s, start), min(e, end)) for s, e in self.wanted if s < end and e > start]

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(e - s for s, e in self.wanted) * 256

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        groups: list[list[dict[str, Any]]] = []
        current: list[dict[str, Any]] = []
        for f in self.files:
            if not self._wanted_in(f["offset"], f["offset"] + f["rows"]):
                continue
            current.append(f)
            if sum(x["rows"] for x in current) >= self.shard_rows:
                groups.append(current)
                current = []
        if current:
            groups.append(current)
        tasks = []
        schema = block_schema(self.columns.id is not None)
        for group in groups:
            rows = sum(e - s for f in group for s, e in self._wanted_in(f["offset"], f["offset"] + f["rows"]))
            meta = BlockMetadata(num_rows=rows, size_bytes=rows * 256, exec_stats=None,
                                 input_files=[f["uri"] for f in group])
            tasks.append(ReadTask(self._reader(group), meta, schema=schema))
        return tasks

    def _reader(self, group: list[dict[str, Any]]):
        columns, shard_rows = self.columns, self.shard_rows
        wanted = [self._wanted_in(f["offset"], f["offset"] + f["rows"]) for f in group]
        schema = block_schema(columns.id is not None)

        def read() -> Iterator[pa.Table]:
            buf: dict[str, list[Any]] = {"index": [], "text": [], "id": []}

            def flush() -> pa.Table:
                data = {"index": buf["index"], "text": buf["text"]}
                if columns.id is not None:
                    data["id"] = buf["id"]
                table = pa.table(data, schema=schema)
                for key in buf:
                    buf[key] = []
                return table

            for f, ranges in zip(group, wanted):
                spec = InputFile(uri=f["uri"], path=f["path"], size=f["size"], mtime=f["mtime"])
                index = f["offset"]
                end_of_file = f["offset"] + f["rows"]
                for text, ident in iter_rows(spec, columns):
                    if index >= end_of_file:
                        raise RuntimeError(f"{spec.uri} has more rows than when it was counted; "
                                           "was it changed during the run?")
                    if any(s <= index < e for s, e in ranges):
                        if buf["index"] and (index != buf["index"][-1] + 1 or index % shard_rows == 0):
                            yield flush()
                        buf["index"].append(index)
                        buf["text"].append(text)
                        buf["id"].append(ident)
                    index += 1
                if index != end_of_file:
                    raise RuntimeError(f"{spec.uri} has fewer rows than when it was counted; "
                                       "was it changed during the run?")
            if buf["index"]:
                yield flush()

        return read


def _log_to_stderr() -> None:
    """qembed's INFO lines on this worker's stderr (once per process)."""
    root = logging.getLogger("qembed")
    if not any(getattr(h, "_qembed_worker", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        handler._qembed_worker = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.setLevel(logging.INFO)


class Embedder:
    """A Ray Data actor: loads the model once, then embeds each batch it is given (with the
    encoder's own token-budget batching) and writes it as Parquet parts of the output folder.

    Returns one summary row per part written: ``start``, ``end``, ``dim``, ``model``,
    ``model_source``, ``seconds``.
    """

    def __init__(self, *, model: str, output: str, settings: dict[str, Any], threads: int | None) -> None:
        _log_to_stderr()  # Ray forwards a worker's stderr to the driver: the loading steps show there
        logger.info("worker loading %s", model)
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        from qembed.models import load_encoder

        self.encoder = load_encoder(model, **settings["load"])
        self.instruction = settings["instruction"]
        self.dimensions = settings["dimensions"]
        self.shard_rows = int(settings["shard_rows"])
        self.fs, self.folder = file_system(output)
        self.source = str(getattr(self.encoder, "model_source", None) or getattr(self.encoder, "path", model))
        self.facts = json.dumps({
            "model": self.encoder.name, "model_source": self.source,
            "instruction": self.instruction, "dimensions": self.dimensions, "normalized": True,
        }, ensure_ascii=False)

    def __call__(self, batch: pa.Table) -> pa.Table:
        t0 = time.perf_counter()
        index = batch.column("index").to_numpy()
        order = np.argsort(index, kind="stable")
        if (order != np.arange(len(order))).any():
            batch = batch.take(pa.array(order))
            index = index[order]
        texts = batch.column("text").to_pylist()
        vectors = self.encoder.encode(texts, instruction=self.instruction, dimensions=self.dimensions)
        dim = int(vectors.shape[1])
        cuts = np.flatnonzero((np.diff(index) != 1) | (index[1:] % self.shard_rows == 0)) + 1
        bounds = [0, *cuts.tolist(), len(index)]
        out: dict[str, list[Any]] = {"start": [], "end": [], "dim": [], "model": [], "model_source": [],
                                     "seconds": []}
        with_id = "id" in batch.column_names
        for a, b in itertools.pairwise(bounds):
            vec = np.ascontiguousarray(vectors[a:b], dtype=np.float32)
            offsets = pa.array(np.arange(0, (b - a + 1) * dim, dim, dtype=np.int32))
            data = {"index": pa.array(index[a:b], type=pa.int64())}
            if with_id:
                data["id"] = batch.column("id").slice(a, b - a)
            data["embedding"] = pa.ListArray.from_arrays(offsets, pa.array(vec.ravel(), type=pa.float32()))
            table = pa.table(data)
            facts = dict(json.loads(self.facts), dim=dim)
            table = table.replace_schema_metadata({"qembed": json.dumps(facts, ensure_ascii=False)})
            start, end = int(index[a]), int(index[b - 1]) + 1
            tmp = join(self.folder, f"{TMP_PREFIX}{uuid.uuid4().hex}.parquet")
            pq.write_table(table, tmp, filesystem=self.fs)
            self.fs.move(tmp, join(self.folder, part_name(start, end)))
            out["start"].append(start)
            out["end"].append(end)
        n = len(out["start"])
        seconds = time.perf_counter() - t0
        out["dim"] = [dim] * n
        out["model"] = [self.encoder.name] * n
        out["model_source"] = [self.source] * n
        out["seconds"] = [seconds / n] * n
        return pa.table(out)
