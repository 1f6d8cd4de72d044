"""Fixtures for the scale-out tests: one local Ray runtime (2 CPUs) shared by every test, and
small corpora in several formats."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest

WORDS = ["apple", "banana", "cat", "dog", "engine", "forest", "garden", "house", "island", "jungle", "kite", "lemon", "mango", "night", "ocean", "paper", "queen", "river", "stone", "tiger"]


@pytest.fixture(scope="module")
def ray_runtime():
    """A local Ray runtime shared by a module's tests (``embed_dataset(ray="local")`` joins it),
    shut down after them so no Ray process outlives the module."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": {"QEMBED_COMPILE": "0", "HF_HUB_OFFLINE": "1",
                                       "TOKENIZERS_PARALLELISM": "false"}})
    yield ray
    ray.shutdown()


def sentence(rng, lo: int = 1, hi: int = 14) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


@pytest.fixture(scope="session")
def mixed_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[str]]:
    """A folder of ``a.jsonl`` (extra fields, a record with empty text), ``b.csv`` and
    ``c.parquet``, all with ids; returns (folder, texts in input order, ids in input order)."""
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(7)
    folder = tmp_path_factory.mktemp("mixed")
    texts: list[str] = []
    ids: list[str] = []
    with (folder / "a.jsonl").open("w", encoding="utf-8") as f:
        for i in range(45):
            t = "   " if i == 10 else sentence(rng)
            f.write(json.dumps({"id": f"a-{i}", "text": t, "lang": "en"}) + "\n")
            if i != 10:
                texts.append(t)
                ids.append(f"a-{i}")
        f.write("\n")
    with (folder / "b.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        for i in range(30):
            t = sentence(rng) + (", with a comma" if i % 7 == 0 else "")
            w.writerow([f"b-{i}", t])
            texts.append(t)
            ids.append(f"b-{i}")
    rows = [sentence(rng, 20, 60) for _ in range(40)]
    pq.write_table(pa.table({"id": [f"c-{i}" for i in range(40)], "text": rows}), folder / "c.parquet")
    texts += rows
    ids += [f"c-{i}" for i in range(40)]
    return folder, texts, ids


def read_dataset(folder: Path):
    """(index, ids or None, vectors) of an embeddings folder, sorted by index."""
    import numpy as np
    import pyarrow.dataset as pds

    table = pds.dataset(str(folder), format="parquet").to_table()
    table = table.sort_by("index")
    vectors = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    ids = table.column("id").to_pylist() if "id" in table.column_names else None
    return table.column("index").to_numpy(), ids, vectors


def manifest(folder: Path) -> dict:
    return json.loads((folder / "_qembed.json").read_text(encoding="utf-8"))
