"""Quantized FAISS stores beyond the IVF threshold: binary and int8 codes in an inverted file
(``kind="ivf"``), with the threshold lowered so that a few thousand small random vectors reach it."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from qembed.errors import InputError
from qembed.store import open_store
from qembed.store.faiss_store import IVF_MIN_ROWS, IVF_REGROW, FaissStore

DIM = 64
N = 1500


def unit_rows(n: int, seed: int) -> np.ndarray:
    """Clustered unit vectors (neighbours mean something, as in an embedding space)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(7).normal(size=(20, DIM)).astype(np.float32)
    x = centres[rng.integers(0, 20, n)] + 0.6 * rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return unit_rows(N, seed=1)


def names(start: int, n: int) -> list[str]:
    return [f"d{i}" for i in range(start, start + n)]


def exact_top(rows: np.ndarray, query: np.ndarray, k: int, keep: np.ndarray | None = None) -> list[str]:
    sims = rows @ query
    if keep is not None:
        sims = np.where(keep, sims, -np.inf)
    return [f"d{i}" for i in np.argsort(-sims, kind="stable")[:k]]


IVF_TYPES = {"binary": faiss.IndexBinaryIVF, "int8": faiss.IndexIVFScalarQuantizer}


@pytest.mark.parametrize("quantize", ["binary", "int8"])
def test_auto_switches_to_ivf_persists_and_deletes(tmp_path: Path, rows: np.ndarray, quantize: str):
    folder = tmp_path / "ix"
    store = open_store(folder, dim=DIM, quantize=quantize, rescore=20, ivf_threshold=IVF_MIN_ROWS, nprobe=8)
    groups = [{"g": i % 3} for i in range(N)]
    store.upsert(names(0, 600), rows[:600], metadata=groups[:600])
    assert store.kind == "flat"  # under the threshold: exhaustive over the codes
    store.upsert(names(600, N - 600), rows[600:], metadata=groups[600:])
    assert store.kind == "ivf" and isinstance(store.faiss_index, IVF_TYPES[quantize])
    info = store.info()
    # √n lists, at least 39 training vectors each
    assert info["kind"] == "ivf" and info["nprobe"] == 8 and info["nlist"] == N // 39
    assert store.faiss_index.ntotal == N
    store.save()
    store.close()

    store = FaissStore.open(folder)
    assert store.kind == "ivf" and isinstance(store.faiss_index, IVF_TYPES[quantize])
    queries = rows[:20] + 0.02 * unit_rows(20, seed=5)
    hits = store.search(queries, k=5)
    for row, q in zip(hits, queries):  # rescored with the float rows: float scores, best first
        scores = [h.score for h in row]
        assert len(row) == 5 and scores == sorted(scores, reverse=True)
        assert scores == pytest.approx([float(rows[int(h.id[1:])] @ q) for h in row], abs=1e-5)
    top1 = [row[0].id == exact_top(rows, q, 1)[0] for row, q in zip(hits, queries)]
    assert sum(top1) >= 18
    # a filter: k hits, all allowed, the best allowed first
    keep = np.arange(N) % 3 == 2
    for q in queries[:3]:
        got = store.search(q[None], k=5, filter={"g": 2})[0]
        assert len(got) == 5 and all(h.metadata["g"] == 2 for h in got)
        assert got[0].id == exact_top(rows, q, 1, keep)[0]
    # deletes and replacements reach the inverted lists (ids are not reused)
    store.delete(["d0", "d1"])
    store.upsert(["d2"], rows[700:701], metadata=[{"g": 0}])
    assert store.count() == N - 2 and store.faiss_index.ntotal == N - 2
    assert {"d0", "d1"}.isdisjoint(h.id for h in store.search(rows[0:2], k=10)[0] + store.search(rows[1:2], k=10)[0])
    assert store.search(rows[700:701], k=2)[0][0].id in ("d2", "d700")
    store.save()
    store.close()

    store = FaissStore.open(folder, nprobe=3)
    assert store.kind == "ivf" and store.count() == N - 2 and store.info()["nprobe"] == 3
    assert "d0" not in {h.id for h in store.search(rows[0:1], k=10)[0]}
    store.close()


@pytest.mark.parametrize("quantize", ["binary", "int8"])
def test_few_candidates_in_the_probed_lists_search_every_list(rows: np.ndarray, quantize: str):
    store = FaissStore.create(None, DIM, quantize=quantize, index="ivf", nprobe=1, rescore=100)
    store.upsert(names(0, N), rows)
    assert store.kind == "ivf"
    # 10 × 100 candidates is more than one list holds: they come from every list, then rescored exactly
    queries = rows[100:105] + 0.1 * unit_rows(5, seed=8)
    for row, q in zip(store.search(queries, k=10), queries):
        assert [h.id for h in row] == exact_top(rows, q, 10)


def test_flat_stays_flat_and_ivf_retrains_as_the_store_grows():
    flat = FaissStore.create(None, DIM, quantize="binary", index="flat", ivf_threshold=IVF_MIN_ROWS)
    flat.upsert(names(0, N), unit_rows(N, seed=2))
    assert flat.kind == "flat" and isinstance(flat.faiss_index, faiss.IndexBinaryIDMap2)

    grow = FaissStore.create(None, DIM, quantize="binary", index="ivf")
    first = unit_rows(IVF_MIN_ROWS, seed=3)
    grow.upsert(names(0, IVF_MIN_ROWS), first)
    lists = grow.info()["nlist"]
    more = unit_rows((IVF_REGROW - 1) * IVF_MIN_ROWS, seed=4)
    grow.upsert(names(IVF_MIN_ROWS, len(more)), more)
    assert grow.info()["nlist"] > lists and grow.faiss_index.ntotal == IVF_REGROW * IVF_MIN_ROWS
    assert grow.search(more[5:6], k=1)[0][0].id == f"d{IVF_MIN_ROWS + 5}"


def test_bad_ivf_options_are_refused(tmp_path: Path, rows: np.ndarray):
    with pytest.raises(InputError, match="ivf applies to a quantized index"):
        FaissStore.create(None, DIM, index="ivf")
    with pytest.raises(InputError, match="nprobe"):
        FaissStore.create(None, DIM, quantize="binary", nprobe=0)
    with pytest.raises(InputError, match="ivf_threshold"):
        FaissStore.create(None, DIM, quantize="int8", ivf_threshold=10)
    with pytest.raises(InputError, match="hnsw does not apply"):
        FaissStore.create(None, DIM, quantize="binary", index="hnsw")
    plain = open_store(tmp_path / "float", dim=DIM)
    plain.upsert(["a"], rows[:1])
    plain.save()
    plain.close()
    with pytest.raises(InputError, match="nprobe applies to a quantized index"):
        FaissStore.open(tmp_path / "float", nprobe=4)


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads Linux' /proc/self/smaps")
def test_float_rows_are_mapped_for_random_reads(tmp_path: Path, rows: np.ndarray):
    """The rescoring rows are read at random: the mapping carries MADV_RANDOM (``rr``), no read-ahead."""
    store = open_store(tmp_path / "ix", dim=DIM, quantize="binary")
    store.upsert(names(0, 200), rows[:200])
    store.save()
    store.close()
    store = FaissStore.open(tmp_path / "ix")
    try:
        store.search(rows[:1], k=3)
        smaps = Path("/proc/self/smaps").read_text().split("\n")
        flags = [smaps[i + j] for i, line in enumerate(smaps) if line.endswith("/floats.npy")
                 for j in range(1, 30) if i + j < len(smaps) and smaps[i + j].startswith("VmFlags")][:1]
        assert flags and " rr" in flags[0], flags
    finally:
        store.close()
