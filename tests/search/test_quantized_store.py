"""Quantized FAISS stores (int8 / binary codes, float32 rows on disk for rescoring), the wire types,
and Milvus Lite's refusal. Small random vectors; no model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qembed.errors import InputError
from qembed.store import open_store
from qembed.store import quantize as qz
from qembed.store.faiss_store import FaissStore

N, DIM = 300, 64


def random_unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return random_unit_rows(N, DIM, seed=3)


def ids(n: int, start: int = 0) -> list[str]:
    return [f"d{i}" for i in range(start, start + n)]


def exact_top(rows: np.ndarray, query: np.ndarray, k: int, keep: np.ndarray | None = None) -> list[str]:
    sims = rows @ query
    if keep is not None:
        sims = np.where(keep, sims, -np.inf)
    return [f"d{i}" for i in np.argsort(-sims, kind="stable")[:k]]


@pytest.mark.parametrize("quantize", ["int8", "binary"])
def test_quantized_folder_end_to_end(tmp_path: Path, rows: np.ndarray, quantize: str):
    folder = tmp_path / "ix"
    store = open_store(folder, dim=DIM, quantize=quantize, rescore=20)
    store.upsert(ids(N), rows, texts=[f"t{i}" for i in range(N)], metadata=[{"g": i % 3} for i in range(N)])
    store.save()
    # codes in the index, float32 rows in the generation's floats.npy
    gen = folder / (folder / "CURRENT").read_text().strip()
    assert np.array_equal(np.load(gen / qz.FLOATS_FILE), rows)
    if quantize == "binary":
        assert isinstance(store.faiss_index, __import__("faiss").IndexBinaryIDMap2)
    q = rows[:4] + 0.05 * random_unit_rows(4, DIM, seed=9)
    hits = store.search(q, k=5)
    for row, query in zip(hits, q):  # rescored: float scores, in order, from 20 × 5 candidates of 300
        scores = [h.score for h in row]
        assert scores == sorted(scores, reverse=True)
        assert scores == pytest.approx([float(rows[int(h.id[1:])] @ query) for h in row], abs=1e-5)
        assert row[0].id == exact_top(rows, query, 1)[0]
        assert len({h.id for h in row} & set(exact_top(rows, query, 5))) >= 4
    keep = np.arange(N) % 3 == 1
    filtered = store.search(q[:1], k=4, filter={"g": 1})[0]
    assert all(h.metadata["g"] == 1 for h in filtered) and len(filtered) == 4
    assert filtered[0].id == exact_top(rows, q[0], 1, keep)[0]
    # delete and update keep the float rows in step
    store.delete(["d0", "d1"])
    store.upsert(["d2"], rows[10:11])
    store.save()
    store.close()

    store = FaissStore.open(folder)
    assert store.quantize == quantize and store.rescore == 20 and store.count() == N - 2
    assert store.info()["quantize"] == quantize
    rec = store.get(["d2", "d0"], with_vectors=True)
    assert rec[1] is None and np.array_equal(rec[0].vector, rows[10])
    assert isinstance(store._floats._base, np.memmap)  # on disk, not read into memory
    assert store.search(rows[10:11], k=2)[0][0].id in ("d2", "d10")
    assert "d0" not in {h.id for h in store.search(rows[0:1], k=10)[0]}
    store.close()

    # later opens follow the recorded type; another type is refused; rescore can be overridden
    with pytest.raises(InputError, match="cannot take --quantize"):
        open_store(folder, quantize="binary" if quantize == "int8" else "int8")
    with pytest.raises(InputError, match="cannot take --quantize none"):
        open_store(folder, quantize="none")
    same = open_store(folder, quantize=quantize, rescore=3)
    assert same.rescore == 3
    same.close()


def test_failed_writes_leave_codes_and_floats_as_they_were(tmp_path: Path, rows: np.ndarray, monkeypatch):
    store = open_store(tmp_path / "ix", dim=DIM, quantize="binary")
    store.upsert(ids(50), rows[:50])
    store.save()
    before = [h.id for h in store.search(rows[:3], k=5)[0]]

    def broken_add(self, *a, **k):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(qz.FloatRows, "add", broken_add)
        with pytest.raises(OSError):
            store.upsert(["d1", "new"], rows[100:102])  # replaces d1: the old row must come back
    assert store.count() == 50 and store.get(["new"])[0] is None
    assert np.array_equal(store.get(["d1"], with_vectors=True)[0].vector, rows[1])
    assert [h.id for h in store.search(rows[:3], k=5)[0]] == before
    assert store.faiss_index.ntotal == 50

    # a save that fails while writing the float file leaves the saved generation in place
    store.upsert(["d60"], rows[60:61])
    with monkeypatch.context() as m:
        m.setattr(qz.FloatRows, "write", broken_add)
        with pytest.raises(OSError):
            store.save()
    store.close()
    again = open_store(tmp_path / "ix")
    assert again.count() == 50 and again.get(["d60"])[0] is None
    assert np.array_equal(again.get(["d7"], with_vectors=True)[0].vector, rows[7])
    again.close()


def test_pending_rows_wait_on_disk_and_in_memory_stores_work(tmp_path: Path, rows: np.ndarray):
    folder = tmp_path / "ix"
    store = open_store(folder, dim=DIM, quantize="int8")
    store.upsert(ids(20), rows[:20])
    scratch = list(folder.glob(".floats-pending-*"))
    assert len(scratch) == 1 and scratch[0].stat().st_size == 20 * DIM * 4
    store.save()
    assert not list(folder.glob(".floats-pending-*"))
    store.close()

    mem = open_store(None, dim=DIM, quantize="binary", rescore=30)
    mem.upsert(ids(N), rows)
    assert [h.id for h in mem.search(rows[5:6], k=3)[0]] == exact_top(rows, rows[5], 3)


def test_int8_ranges_are_calibrated_again_as_the_store_grows(rows: np.ndarray):
    store = open_store(None, dim=DIM, quantize="int8", rescore=1)
    store.upsert(ids(2), rows[:2])  # two vectors make poor ranges
    assert store._meta["calibrated_on"] == 2
    store.upsert(ids(N - 2, 2), rows[2:])
    assert store._meta["calibrated_on"] == N
    # with ranges from all rows, int8 alone (no rescoring room) finds the exact nearest neighbours
    q = rows[:20] + 0.02 * random_unit_rows(20, DIM, seed=4)
    hits = store.search(q, k=1)
    assert sum(h[0].id == exact_top(rows, x, 1)[0] for h, x in zip(hits, q)) >= 19


def test_matryoshka_sizes_and_bad_options(rows: np.ndarray):
    # 100 dimensions: binary codes of 104 bits (padded), still exact after rescoring
    small = rows[:, :100] if rows.shape[1] >= 100 else np.tile(rows, 2)[:, :100]
    small = small / np.linalg.norm(small, axis=1, keepdims=True)
    store = open_store(None, dim=100, quantize="binary", rescore=50)
    store.upsert(ids(N), small)
    assert store.faiss_index.d == 104
    assert [h.id for h in store.search(small[:1], k=3)[0]] == exact_top(small, small[0], 3)
    with pytest.raises(InputError, match="quantize must be one of"):
        open_store(None, dim=8, quantize="int4")
    with pytest.raises(InputError, match="rescore must be"):
        open_store(None, dim=8, quantize="int8", rescore=0)
    with pytest.raises(InputError, match="hnsw does not apply"):
        open_store(None, dim=8, quantize="binary", index="hnsw")


def test_codes_follow_sentence_transformers(rows: np.ndarray):
    from sentence_transformers.util.quantization import quantize_embeddings

    assert np.array_equal(qz.binary_codes(rows), quantize_embeddings(rows, precision="ubinary"))
    assert np.array_equal(qz.as_type(rows, "binary"), quantize_embeddings(rows, precision="binary"))
    assert np.array_equal(qz.as_type(rows, "ubinary"), quantize_embeddings(rows, precision="ubinary"))
    i8 = qz.as_type(rows, "int8")
    assert i8.dtype == np.int8 and np.abs(i8).max(axis=1).min() == 127
    assert np.array_equal(qz.as_type(rows, "uint8").astype(np.int16) - 128, i8)
    cos = (i8[:, None, :].astype(np.float32) * i8[None, :5, :]).sum(-1)[:5]
    cos /= np.outer(np.linalg.norm(i8[:5].astype(np.float32), axis=1), np.linalg.norm(i8[:5].astype(np.float32), axis=1))
    assert np.allclose(cos, rows[:5] @ rows[:5].T, atol=0.02)
    typed = qz.typed_embeddings(rows[:2], ["int8", "ubinary"])
    assert typed[0]["int8"] == i8[0].tolist() and len(typed[1]["ubinary"]) == DIM // 8
    with pytest.raises(InputError, match="twice"):
        qz.check_embedding_types(["int8", "int8"])


def test_milvus_lite_refuses_quantized_collections_clearly(tmp_path: Path):
    pytest.importorskip("pymilvus")
    for quantize in ("binary", "int8"):
        with pytest.raises(InputError, match="Milvus Lite stores float vectors only"):
            open_store(str(tmp_path / f"{quantize}.db"), dim=DIM, quantize=quantize)
    # the refused collection was not left behind: a float store opens in the same file
    store = open_store(str(tmp_path / "binary.db"), dim=DIM)
    assert store.count() == 0
    store.close()
