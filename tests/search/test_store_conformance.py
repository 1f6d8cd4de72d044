"""One conformance suite for every VectorStore backend (FAISS folder and Milvus Lite)."""

from __future__ import annotations

import numpy as np
import pytest

from qembed.errors import InputError, NotFoundError
from qembed.store import Hit, VectorStore, open_store

DIM = 16


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _fill(store, n=40, seed=0):
    vecs = unit_rows(n, DIM, seed)
    ids = [f"doc-{i}" for i in range(n)]
    texts = [f"text {i}" for i in range(n)]
    meta = [{"group": i % 4, "lang": "zh" if i % 2 else "en", "flag": i % 5 == 0} for i in range(n)]
    store.upsert(ids, vecs, texts=texts, metadata=meta)
    return ids, vecs, meta


def _exact(vecs, q, k, mask=None):
    sims = vecs @ q
    if mask is not None:
        sims = np.where(mask, sims, -np.inf)
    order = np.argsort(-sims, kind="stable")[:k]
    return [int(i) for i in order if np.isfinite(sims[i])]


def test_protocol_and_exact_search(make_store):
    store = make_store(DIM)
    assert isinstance(store, VectorStore)
    ids, vecs, _ = _fill(store)
    assert store.count() == 40
    q = unit_rows(3, DIM, seed=9)
    results = store.search(q, k=5)
    assert len(results) == 3
    for qi, hits in enumerate(results):
        assert all(isinstance(h, Hit) for h in hits)
        assert [h.id for h in hits] == [ids[i] for i in _exact(vecs, q[qi], 5)]
        expected = sorted((vecs @ q[qi]).tolist(), reverse=True)[:5]
        np.testing.assert_allclose([h.score for h in hits], expected, rtol=1e-4, atol=1e-5)
    top = store.search(vecs[7], k=1)[0][0]
    assert top.id == "doc-7" and top.text == "text 7"
    assert top.metadata == {"group": 3, "lang": "zh", "flag": False}


def test_k_larger_than_collection(make_store):
    store = make_store(DIM)
    _fill(store, n=6)
    assert len(store.search(unit_rows(1, DIM, 3), k=50)[0]) == 6


def test_upsert_replaces_and_delete_removes(make_store):
    store = make_store(DIM)
    ids, vecs, _ = _fill(store)
    new = unit_rows(1, DIM, seed=123)
    store.upsert(["doc-3"], new, texts=["replaced"], metadata=[{"group": 99}])
    assert store.count() == 40
    hit = store.search(new, k=1)[0][0]
    assert (hit.id, hit.text, hit.metadata) == ("doc-3", "replaced", {"group": 99})
    assert all(h.id != "doc-3" for h in store.search(vecs[3], k=3)[0][1:]) or \
        store.search(vecs[3], k=1)[0][0].id != "doc-3"
    assert store.delete(["doc-3", "doc-5", "no-such-id"]) == 2
    assert store.count() == 38
    found = {h.id for h in store.search(vecs, k=40)[0]}
    assert "doc-3" not in found and "doc-5" not in found and len(found) == 38
    got = store.get(["doc-3", "doc-4"])
    assert got[0] is None and got[1].text == "text 4" and got[1].metadata["group"] == 0
    rec = store.get(["doc-4"], with_vectors=True)[0]
    np.testing.assert_allclose(rec.vector, vecs[4], rtol=1e-6)


@pytest.mark.parametrize("flt,pred", [
    ({"lang": "zh"}, lambda m: m["lang"] == "zh"),
    ({"group": 2}, lambda m: m["group"] == 2),
    ({"group": [1, 3], "lang": "en"}, lambda m: m["group"] in (1, 3) and m["lang"] == "en"),
    ({"flag": True}, lambda m: m["flag"] is True),
])
def test_filter_applies_before_top_k(make_store, flt, pred):
    store = make_store(DIM)
    ids, vecs, meta = _fill(store)
    mask = np.array([pred(m) for m in meta])
    q = unit_rows(2, DIM, seed=5)
    for k in (3, 40):
        res = store.search(q, k=k, filter=flt)
        for qi, hits in enumerate(res):
            want = _exact(vecs, q[qi], k, mask)
            assert len(hits) == min(k, int(mask.sum()))  # never fewer hits than exist
            assert [h.id for h in hits] == [ids[i] for i in want]
            assert all(pred(h.metadata) for h in hits)
    assert sorted(store.ids(flt)) == sorted(ids[i] for i in np.where(mask)[0])


def test_filter_matching_nothing_and_unknown_field(make_store):
    store = make_store(DIM)
    _fill(store)
    assert store.search(unit_rows(1, DIM), k=5, filter={"lang": "fr"}) == [[]]
    with pytest.raises(InputError, match="unknown metadata field 'colour'"):
        store.search(unit_rows(1, DIM), k=5, filter={"colour": "red"})
    with pytest.raises(InputError, match="filter"):
        store.search(unit_rows(1, DIM), k=5, filter="lang == zh")


def test_persist_and_reopen(store_uri, make_store):
    store = make_store(DIM)
    ids, vecs, _ = _fill(store)
    store.delete(["doc-0"])
    store.set_meta("model", "tiny-qwen")
    store.save()
    store.close()
    again = make_store()
    assert again.dim == DIM and again.count() == 39
    assert again.get_meta("model") == "tiny-qwen"
    assert again.search(vecs[11], k=1)[0][0].id == "doc-11"
    assert again.get(["doc-0"]) == [None]
    with pytest.raises(InputError, match="size 16, not 32"):
        open_store(store_uri, dim=32)


def test_scan_yields_every_record(make_store):
    store = make_store(DIM)
    ids, _, _ = _fill(store, n=25)
    seen = [r for batch in store.scan(batch_size=7) for r in batch]
    assert sorted(r.id for r in seen) == sorted(ids)
    assert {r.id: r.text for r in seen}["doc-9"] == "text 9"


def test_bad_input_leaves_data_intact(make_store):
    store = make_store(DIM)
    ids, vecs, _ = _fill(store, n=10)
    bad_calls = [
        lambda: store.upsert(["a", "b"], unit_rows(1, DIM)),                   # rows != ids
        lambda: store.upsert(["a"], unit_rows(1, DIM + 1)),                    # wrong size
        lambda: store.upsert(["a", "a"], unit_rows(2, DIM)),                   # duplicate id
        lambda: store.upsert([""], unit_rows(1, DIM)),                         # empty id
        lambda: store.upsert(["a"], np.full((1, DIM), np.nan)),                # NaN
        lambda: store.upsert(["a"], unit_rows(1, DIM), metadata=[{"bad key": 1}]),
        lambda: store.upsert(["doc-1"], unit_rows(1, DIM), texts=[3]),         # text not str
        lambda: store.search(unit_rows(1, DIM), k=0),
        lambda: store.search(unit_rows(1, DIM + 2), k=3),
    ]
    for call in bad_calls:
        with pytest.raises(InputError):
            call()
    assert store.count() == 10
    assert store.get(["doc-1"])[0].text == "text 1"
    assert store.search(vecs[1], k=1)[0][0].id == "doc-1"


def test_missing_store_is_not_found(store_uri):
    with pytest.raises(NotFoundError, match="not found"):
        open_store(store_uri, create=False)
    with pytest.raises(NotFoundError):
        open_store(store_uri)  # no dim: cannot create


def test_null_filter_matches_null_or_absent_on_both_backends(make_store):
    store = make_store(DIM)
    vecs = unit_rows(6, DIM, 3)
    meta = [{"note": None, "n": 1}, {"note": "x", "n": 2}, {"n": 3}, {"note": [None]}, {"note": 0}, {"note": None}]
    ids = [f"d{i}" for i in range(6)]
    store.upsert(ids, vecs, metadata=meta)
    assert sorted(store.ids({"note": None})) == ["d0", "d2", "d5"]  # null, absent, null
    assert sorted(store.ids({"note": [None, "x"]})) == ["d0", "d1", "d2", "d5"]
    assert sorted(store.ids({"n": [None, 3]})) == ["d2", "d3", "d4", "d5"]
    hits = store.search(vecs[:1], k=10, filter={"note": None})[0]
    assert sorted(h.id for h in hits) == ["d0", "d2", "d5"]
    # a field only ever null is a known field (Milvus' "exists" does not see it)
    store.upsert(["d6"], unit_rows(1, DIM, 4), metadata=[{"empty": None}])
    assert sorted(store.ids({"empty": None})) == ids + ["d6"]
    with pytest.raises(InputError, match="unknown metadata field 'nothing'"):
        store.ids({"nothing": None})
