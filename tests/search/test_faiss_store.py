"""FAISS-specific behaviour: atomic saves, corrupt folders, HNSW with deletes and filters."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from qembed.errors import InputError, NotFoundError
from qembed.store import open_store
from qembed.store import faiss_store
from qembed.store.faiss_store import CorruptIndexError, FaissStore

DIM = 24


def unit_rows(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _ids(n, prefix="d"):
    return [f"{prefix}{i}" for i in range(n)]


def test_in_memory_store():
    store = open_store(None, dim=DIM)
    assert store.location is None
    vecs = unit_rows(5)
    store.upsert(_ids(5), vecs)
    store.save()  # nothing to write, no error
    assert store.search(vecs[2], k=1)[0][0].id == "d2"
    with pytest.raises(InputError, match="dim="):
        open_store(None)


@pytest.mark.parametrize("stage", ["write_index", "switch"])
def test_crash_mid_save_keeps_previous_index(tmp_path, monkeypatch, stage):
    path = tmp_path / "ix"
    store = open_store(path, dim=DIM)
    vecs = unit_rows(20)
    store.upsert(_ids(20), vecs, texts=[f"t{i}" for i in range(20)])
    store.save()
    # a second batch whose save crashes part-way
    store.upsert(_ids(10, "new"), unit_rows(10, seed=1))
    store.delete(["d0"])
    if stage == "write_index":
        def broken(index, fname):
            with open(fname, "wb") as f:
                f.write(b"half an index")
            raise OSError("disk full")
        monkeypatch.setattr(faiss_store.faiss, "write_index", broken)
    else:
        def broken(path_, content):
            raise OSError("power cut before CURRENT was switched")
        monkeypatch.setattr(faiss_store, "_atomic_write", broken)
    with pytest.raises(OSError):
        store.save()
    monkeypatch.undo()
    before = FaissStore.open(path)  # the previous generation is intact and readable
    assert before.count() == 20 and before.get(["d0"])[0].text == "t0"
    assert before.search(vecs[3], k=1)[0][0].id == "d3"
    before.close()
    store.save()  # the live store can still be saved afterwards
    after = FaissStore.open(path)
    assert after.count() == 29 and after.get(["d0"]) == [None]
    assert sorted(p.name for p in path.iterdir() if p.name.startswith("gen-")) == [f"gen-{after.info()['generation']:06d}"]


def test_corrupt_folder_gives_clear_error(tmp_path):
    path = tmp_path / "ix"
    store = open_store(path, dim=DIM)
    store.upsert(_ids(3), unit_rows(3))
    store.save()
    gen = (path / "CURRENT").read_text().strip()
    (path / gen / "vectors.faiss").write_bytes(b"garbage")
    with pytest.raises(CorruptIndexError, match="corrupt"):
        open_store(path)
    (path / "CURRENT").write_text("gen-999999")
    with pytest.raises(CorruptIndexError, match="missing"):
        open_store(path)
    other = tmp_path / "not-an-index"
    other.mkdir()
    (other / "notes.txt").write_text("hello")
    with pytest.raises(CorruptIndexError, match="not a qembed index"):
        open_store(other)
    with pytest.raises(NotFoundError):
        open_store(tmp_path / "absent", create=False)
    with pytest.raises(InputError, match="not an empty folder"):
        FaissStore.create(other, DIM)


def test_mismatched_counts_detected(tmp_path):
    path = tmp_path / "ix"
    store = open_store(path, dim=DIM)
    store.upsert(_ids(3), unit_rows(3))
    store.save()
    gen = path / (path / "CURRENT").read_text().strip()
    other = open_store(tmp_path / "other", dim=DIM)
    other.upsert(_ids(5), unit_rows(5))
    other.save()
    shutil.copy(tmp_path / "other" / (tmp_path / "other" / "CURRENT").read_text().strip() / "vectors.faiss",
                gen / "vectors.faiss")
    with pytest.raises(CorruptIndexError, match="5 vectors"):
        open_store(path)


def test_hnsw_deletes_filters_and_compaction(tmp_path):
    n = 600
    vecs = unit_rows(n, seed=3)
    meta = [{"shard": i % 50} for i in range(n)]
    store = FaissStore.create(tmp_path / "h", DIM, index="hnsw", ef_search=64)
    store.upsert(_ids(n), vecs, metadata=meta)
    assert store.kind == "hnsw"
    store.delete(_ids(100))  # tombstoned, never returned
    q = unit_rows(20, seed=4)
    live = np.arange(100, n)
    for qi, hits in enumerate(store.search(q, k=10)):
        assert len(hits) == 10 and all(int(h.id[1:]) >= 100 for h in hits)
        exact = live[np.argsort(-(vecs[live] @ q[qi]))[:10]]
        assert len({int(h.id[1:]) for h in hits} & set(exact.tolist())) >= 8  # approximate, but close
    # a rare filter (12 documents): exact over the subset, every match returned
    hits = store.search(q[:1], k=50, filter={"shard": 7})[0]
    expected = [i for i in range(100, n) if i % 50 == 7]
    assert sorted(int(h.id[1:]) for h in hits) == expected
    assert store.info()["deleted_pending"] == 100
    store.save()  # more than 10% dead: compacted while saving
    assert store.info()["deleted_pending"] == 0 and store.faiss_index.ntotal == 500
    again = FaissStore.open(tmp_path / "h")
    assert again.kind == "hnsw" and again.count() == 500


def test_auto_switches_to_hnsw(tmp_path):
    store = FaissStore.create(None, DIM, index="auto", hnsw_threshold=50)
    store.upsert(_ids(30), unit_rows(30))
    assert store.kind == "flat"
    store.upsert(_ids(30, "x"), unit_rows(30, seed=2))
    assert store.kind == "hnsw" and store.count() == 60
    vecs = unit_rows(30, seed=2)
    assert store.search(vecs[4], k=1)[0][0].id == "x4"


def test_typed_filters_do_not_confuse_types():
    store = open_store(None, dim=DIM)
    store.upsert(["a", "b", "c"], unit_rows(3), metadata=[{"v": 1}, {"v": "1"}, {"v": True}])
    q = unit_rows(1, seed=8)
    assert [h.id for h in store.search(q, k=5, filter={"v": 1})[0]] == ["a"]
    assert [h.id for h in store.search(q, k=5, filter={"v": "1"})[0]] == ["b"]
    assert [h.id for h in store.search(q, k=5, filter={"v": True})[0]] == ["c"]
