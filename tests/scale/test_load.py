"""``qembed index add --from-embeddings`` / ``qembed.load_embeddings`` on hand-written Parquet
datasets (no Ray needed): what is stored, and bad input refused with nothing written."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qembed import load_embeddings
from qembed.cli import main
from qembed.errors import InputError
from qembed.store import open_store

MODEL = "tiny-test-model"


def unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_dataset(folder: Path, vectors: list, *, ids: list[str] | None = None, index: list[int] | None = None,
                  model: str = MODEL, parts: int = 2, status: str = "complete", drop: str | None = None) -> Path:
    """A dataset as ``qembed embed --ray`` writes it: parts named by range, plus the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(vectors)
    index = list(range(n)) if index is None else index
    dim = len(vectors[0]) if n else 8
    bounds = np.linspace(0, n, parts + 1).astype(int)
    for a, b in itertools.pairwise(bounds):
        data = {"index": pa.array(index[a:b], type=pa.int64()),
                "embedding": pa.array([list(map(float, v)) for v in vectors[a:b]], type=pa.list_(pa.float32()))}
        if ids is not None:
            data["id"] = pa.array(ids[a:b], type=pa.string())
        if drop:
            data.pop(drop)
        pq.write_table(pa.table(data), folder / f"part-{a:012d}-{b:012d}.parquet")
    (folder / "_qembed.json").write_text(json.dumps({
        "format": "qembed-embeddings", "version": 1, "status": status, "model": MODEL if model is None else model,
        "model_source": "/models/tiny", "dim": dim, "rows": n, "text_column": "text", "id_column":
        "id" if ids is not None else None, "normalized": True}), encoding="utf-8")
    return folder


@pytest.fixture(params=["faiss", "milvus"])
def index_uri(request, tmp_path: Path) -> str:
    return str(tmp_path / ("kb" if request.param == "faiss" else "kb.db"))


def test_loads_vectors_ids_texts_and_metadata(index_uri, tmp_path):
    vectors = unit(10, 16)
    texts_file = tmp_path / "docs.jsonl"
    texts_file.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document {i}", "lang": "en",
                                              "metadata": {"n": i}}) + "\n" for i in range(10)), encoding="utf-8")
    data = write_dataset(tmp_path / "vec", vectors, ids=[f"d{i}" for i in range(10)], parts=3)
    result = load_embeddings(data, index_uri, texts=texts_file, batch_rows=4)
    assert result == {"object": "index_load", "index": index_uri, "model": MODEL, "dim": 16, "rows": 10,
                      "replaced": 0, "count": 10}
    store = open_store(index_uri, create=False)
    try:
        assert store.get_meta("model") == MODEL and store.get_meta("model_source") == "/models/tiny"
        rec = store.get(["d3"], with_vectors=True)[0]
        assert rec.text == "document 3"
        assert rec.metadata == {"lang": "en", "n": 3, "source": "docs.jsonl", "doc_id": "d3", "chunk": 0}
        assert np.allclose(rec.vector, vectors[3], atol=1e-6)
        hits = store.search(vectors[7:8], k=1)[0]
        assert hits[0].id == "d7" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    finally:
        store.close()


def test_cli_json_and_replacing_on_reload(tmp_path, capsys):
    data = write_dataset(tmp_path / "vec", unit(6, 8), parts=2)  # no ids: the row's index is the id
    index = str(tmp_path / "kb")
    for replaced in (0, 6):
        capsys.readouterr()
        assert main(["index", "add", "--from-embeddings", str(data), "--index", index, "--json"]) == 0
        body = json.loads(capsys.readouterr().out)
        assert body["rows"] == 6 and body["count"] == 6 and body["replaced"] == replaced
    store = open_store(index, create=False)
    try:
        assert sorted(store.ids()) == [str(i) for i in range(6)]
        assert store.get(["0"])[0].text is None
    finally:
        store.close()


def _refused(capsys, data: Path, index: str, *extra: str) -> str:
    capsys.readouterr()
    code = main(["index", "add", "--from-embeddings", str(data), "--index", index, *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_bad_datasets_are_refused_and_nothing_is_written(index_uri, tmp_path, capsys):
    # an index that already holds three documents of the same model
    good = write_dataset(tmp_path / "good", unit(3, 16, seed=1), ids=["x", "y", "z"], parts=1)
    load_embeddings(good, index_uri)

    def unchanged() -> None:
        store = open_store(index_uri, create=False)
        try:
            assert sorted(store.ids()) == ["x", "y", "z"]
        finally:
            store.close()

    vectors = [list(v) for v in unit(6, 16)]
    mixed = vectors[:5] + [vectors[5][:12]]
    err = _refused(capsys, write_dataset(tmp_path / "mixed", mixed, parts=2), index_uri)
    assert "mixed vector sizes" in err and "index 5" in err
    unchanged()

    err = _refused(capsys, write_dataset(tmp_path / "noemb", vectors, drop="embedding"), index_uri)
    assert "no 'embedding' column" in err
    err = _refused(capsys, write_dataset(tmp_path / "noindex", vectors, drop="index"), index_uri)
    assert "no 'index' column" in err

    empty = tmp_path / "empty"
    empty.mkdir()
    pq.write_table(pa.table({"index": pa.array([], pa.int64()), "embedding": pa.array([], pa.list_(pa.float32()))}),
                   empty / "part-000000000000-000000000000.parquet")
    (empty / "_qembed.json").write_text(json.dumps({"format": "qembed-embeddings", "status": "complete",
                                                    "model": MODEL, "dim": 16}), encoding="utf-8")
    assert "holds no embeddings" in _refused(capsys, empty, index_uri)
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    assert "holds no Parquet files" in _refused(capsys, nothing, index_uri)

    nan = [list(v) for v in unit(4, 16)]
    nan[2][0] = float("nan")
    assert "NaN" in _refused(capsys, write_dataset(tmp_path / "nan", nan), index_uri)
    dup = write_dataset(tmp_path / "dup", vectors[:4], index=[0, 1, 1, 3])
    assert "appears more than once" in _refused(capsys, dup, index_uri)
    dup_ids = write_dataset(tmp_path / "dupids", vectors[:3], ids=["a", "b", "a"])
    assert "same id 'a'" in _refused(capsys, dup_ids, index_uri)
    other = write_dataset(tmp_path / "other", vectors, model="another-model")
    assert "another-model" in _refused(capsys, other, index_uri)
    small = write_dataset(tmp_path / "small", [list(v) for v in unit(4, 8)])
    err = _refused(capsys, small, index_uri)
    assert "size 16" in err and "size 8" in err
    running = write_dataset(tmp_path / "running", vectors, status="running")
    assert "--resume" in _refused(capsys, running, index_uri)
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(5)), encoding="utf-8")
    err = _refused(capsys, write_dataset(tmp_path / "six", vectors), index_uri, "--texts", str(texts))
    assert "5 row(s) with text" in err and "6 vector(s)" in err
    no_meta = tmp_path / "nometa"
    write_dataset(no_meta, vectors)
    (no_meta / "_qembed.json").unlink()
    assert "model that made the vectors is unknown" in _refused(capsys, no_meta, index_uri)
    unchanged()


def test_a_new_index_is_not_created_by_a_refused_load(tmp_path, capsys):
    vectors = [list(v) for v in unit(3, 8)]
    bad = write_dataset(tmp_path / "bad", vectors[:2] + [vectors[2][:4]])
    _refused(capsys, bad, str(tmp_path / "kb"))
    assert not (tmp_path / "kb").exists()
    with pytest.raises(InputError, match="batch_rows"):
        load_embeddings(bad, str(tmp_path / "kb"), batch_rows=0)


def test_ray_missing_says_which_package_to_install(tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"
            "from qembed.cli import main\n"
            f"sys.exit(main(['embed', '--ray', 'local', '-i', {str(tmp_path)!r}, '-o', {str(tmp_path / 'o')!r}]))")
    (tmp_path / "a.txt").write_text("hello\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'qembed[ray]'" in proc.stderr and "Traceback" not in proc.stderr


def test_bulk_load_into_a_quantized_index(tmp_path):
    vectors = unit(12, 16, seed=5)
    data = write_dataset(tmp_path / "vec", vectors, ids=[f"d{i}" for i in range(12)])
    index = tmp_path / "kb"
    result = load_embeddings(data, index, quantize="binary", rescore=12, batch_rows=5)
    assert result["rows"] == 12 and result["count"] == 12
    store = open_store(index, create=False)
    try:
        assert store.quantize == "binary" and store.rescore == 12
        assert np.allclose(store.get(["d4"], with_vectors=True)[0].vector, vectors[4], atol=1e-6)
        hits = store.search(vectors[4:5], k=2)[0]  # 12 × 2 candidates: every row rescored exactly
        assert hits[0].id == "d4" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    finally:
        store.close()
    with pytest.raises(InputError, match="holds binary vectors"):  # a later load may not change the type
        load_embeddings(data, index, quantize="int8")
    assert load_embeddings(data, index)["replaced"] == 12  # without the option it follows the index
