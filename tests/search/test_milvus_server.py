"""The Milvus store against a real Milvus server: the standalone server of the PyPI ``milvus`` package,
started on a loopback port for this module. Float and binary-quantized collections (create, add,
filter, delete, search, reopen), int8 where the server has INT8_VECTOR, and a bulk load.

The server comes from ``import milvus`` in this interpreter (``make test`` installs the package),
or from the interpreter named by ``QEMBED_MILVUS_PYTHON``; the tests skip when neither has it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from qembed.errors import InputError
from qembed.store import open_store

pytestmark = pytest.mark.slow
pytest.importorskip("pymilvus")

_SERVE = """
import sys
from milvus import MilvusServer
server = MilvusServer()
server.set_base_dir(sys.argv[1])
server.listen_port = int(sys.argv[2])
server.start()
print("ready", flush=True)
sys.stdin.read()  # until the test closes our stdin
server.stop()
"""


def _milvus_python() -> str | None:
    candidates = [os.environ.get("QEMBED_MILVUS_PYTHON"), sys.executable]
    for python in filter(None, candidates):
        ok = subprocess.run([python, "-c", "import milvus"], capture_output=True).returncode == 0
        if ok:
            return python
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def milvus_url(tmp_path_factory) -> Iterator[str]:
    python = _milvus_python()
    if python is None:
        pytest.skip("the PyPI package 'milvus' (a standalone Milvus server) is not installed; "
                    "pip install milvus, or set QEMBED_MILVUS_PYTHON")
    port = _free_port()
    base = tmp_path_factory.mktemp("milvus-server")
    proc = subprocess.Popen([python, "-c", _SERVE, str(base), str(port)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        if "ready" not in line:
            pytest.fail(f"the Milvus server did not start: {line}{proc.stdout.read()[-2000:]}")
        url = f"http://127.0.0.1:{port}"
        from pymilvus import MilvusClient

        deadline = time.monotonic() + 120
        while True:
            try:
                MilvusClient(url).close()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield url
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


ROWS = unit(60, 32, seed=1)


def exercise(url: str, collection: str, **opts) -> None:
    """Create, add, filter, delete, search, reopen: the same checks for every collection type."""
    store = open_store(url, dim=32, collection=collection, **opts)
    store.upsert([f"d{i}" for i in range(60)], ROWS, texts=[None if i % 5 == 0 else f"text {i}" for i in range(60)],
                 metadata=[{"g": i % 3, "lang": "en" if i % 2 else "zh"} for i in range(60)])
    store.set_meta("model", "m")
    store.save()
    top = store.search(ROWS[7:8], k=3)[0]
    assert top[0].id == "d7" and top[0].score == pytest.approx(1.0, abs=1e-4) and top[0].text == "text 7"
    assert store.get(["d10"])[0].text is None  # a missing text stays missing
    hits = store.search(ROWS[7:8], k=5, filter={"g": 1, "lang": "en"})[0]
    assert len(hits) == 5 and all(h.metadata["g"] == 1 and h.metadata["lang"] == "en" for h in hits)
    assert store.delete(["d7", "d8", "nope"]) == 2 and store.count() == 58
    assert "d7" not in {h.id for h in store.search(ROWS[7:8], k=5)[0]}
    store.upsert(["d9"], ROWS[20:21], texts=["moved"])
    store.save()
    store.close()
    again = open_store(url, collection=collection, create=False, **opts)
    try:
        assert again.count() == 58 and again.get_meta("model") == "m"
        rec = again.get(["d9"], with_vectors=True)[0]
        assert rec.text == "moved" and np.allclose(rec.vector, ROWS[20], atol=1e-6)
        assert sorted(again.ids(filter={"g": 0}))[:2] == ["d0", "d12"]
    finally:
        again.close()


def test_float_collection_on_a_server(milvus_url):
    exercise(milvus_url, "float_vectors")


def test_binary_collection_on_a_server(milvus_url):
    exercise(milvus_url, "binary_vectors", quantize="binary")
    store = open_store(milvus_url, collection="binary_vectors", create=False)
    try:
        info = store.info()
        assert info["quantize"] == "binary" and info["dim"] == 32 and info["rescore"] == 10
        # rescored with the float32 vectors kept beside the codes: exact inner products
        hits = store.search(ROWS[30:31], k=4)[0]
        assert [h.score for h in hits] == pytest.approx(sorted((ROWS[[int(h.id[1:]) for h in hits]] @ ROWS[30]).tolist(),
                                                              reverse=True), abs=1e-5)
    finally:
        store.close()
    with pytest.raises(InputError, match="cannot take --quantize int8"):
        open_store(milvus_url, collection="binary_vectors", quantize="int8")


def test_int8_where_the_server_has_it(milvus_url):
    from pymilvus import MilvusClient

    client = MilvusClient(milvus_url)
    version = client.get_server_version()
    client.close()
    major_minor = tuple(int(p) for p in version.lstrip("v").split("-")[0].split(".")[:2])
    if major_minor < (2, 6):  # INT8_VECTOR came with Milvus 2.6: a clear refusal, nothing left behind
        with pytest.raises(InputError, match="INT8_VECTOR"):
            open_store(milvus_url, dim=32, collection="int8_vectors", quantize="int8")
        assert open_store(milvus_url, dim=32, collection="int8_vectors").count() == 0
    else:
        exercise(milvus_url, "int8_vectors", quantize="int8")


def test_bulk_load_into_the_server(milvus_url, tmp_path: Path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from qembed import load_embeddings

    data = tmp_path / "vectors"
    data.mkdir()
    pq.write_table(pa.table({"index": pa.array(range(60), type=pa.int64()),
                             "id": pa.array([f"row{i}" for i in range(60)]),
                             "embedding": pa.array(ROWS.tolist(), type=pa.list_(pa.float32()))}),
                   data / "part-000000000000-000000000060.parquet")
    (data / "_qembed.json").write_text(json.dumps({
        "format": "qembed-embeddings", "version": 1, "status": "complete", "model": "m", "dim": 32, "rows": 60,
        "text_column": "text", "id_column": "id", "normalized": True}), encoding="utf-8")
    result = load_embeddings(data, milvus_url, collection="bulk", quantize="binary", batch_rows=25)
    assert result["rows"] == 60 and result["count"] == 60
    store = open_store(milvus_url, collection="bulk", create=False)
    try:
        assert store.quantize == "binary" and store.search(ROWS[3:4], k=1)[0][0].id == "row3"
    finally:
        store.close()
