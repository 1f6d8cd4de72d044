"""Hostile and careless input at the store layer, on both backends (issue 11, items 1, 2, 5, 6).

Each test is written as the attack: the crafted id, the unpaired surrogate, the control
character, the deep metadata, the huge filter. The rule they check is one for both backends (see
``qembed.store.base``): ids hold anything but control characters and unpaired surrogates; field
names are identifiers; metadata values are JSON within int64, 16 levels and 64 KiB, their
strings free of control characters other than tab, line feed and carriage return.
"""

from __future__ import annotations

import numpy as np
import pytest

from qembed.errors import InputError
from qembed.store import open_store
from qembed.store.base import MAX_FILTER_VALUES, MAX_METADATA_DEPTH

DIM = 8

#: The id from the issue: on Milvus, deleting it deleted every document of the collection.
CRAFTED = "zz'] or id != 'q' or id in ['zz"
#: Ids a quoting bug would break, each of them legal.
AWKWARD_IDS = ["a\\b", "c'd", 'e"f', "g\\'h", 'i\\"j', "x] or 1==1 or id in [", "doc/with/slash", "中文 id",
               "tail\\", "'", '"', "\\"]


def rows(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fill(store, n: int = 16, prefix: str = "doc") -> list[str]:
    ids = [f"{prefix}-{i}" for i in range(n)]
    store.upsert(ids, rows(n), texts=[f"text {i}" for i in range(n)],
                 metadata=[{"n": i, "lang": "zh" if i % 2 else "en"} for i in range(n)])
    return ids


def reopen(store, store_uri):
    store.save()
    store.close()
    return open_store(store_uri)


def test_crafted_id_deletes_only_itself(make_store, store_uri):
    store = make_store(DIM)
    ids = fill(store)
    store.upsert([CRAFTED], rows(1, seed=7), texts=["x"])
    assert store.count() == 17
    assert store.get([CRAFTED])[0].text == "x"
    assert store.delete([CRAFTED]) == 1
    assert store.count() == 16
    again = reopen(store, store_uri)
    try:
        assert again.count() == 16
        assert [r.id for r in again.get(ids)] == ids
    finally:
        again.close()


def test_quotes_and_backslashes_in_ids_are_stored_and_matched_exactly(make_store):
    store = make_store(DIM)
    ids = fill(store, 4)
    vecs = rows(len(AWKWARD_IDS), seed=3)
    store.upsert(AWKWARD_IDS, vecs, texts=AWKWARD_IDS, metadata=[{"raw": d} for d in AWKWARD_IDS])
    assert store.count() == 4 + len(AWKWARD_IDS)
    assert [r.id for r in store.get(AWKWARD_IDS)] == AWKWARD_IDS
    assert [r.text for r in store.get(AWKWARD_IDS)] == AWKWARD_IDS
    for i, d in enumerate(AWKWARD_IDS):
        assert store.search(vecs[i], k=1)[0][0].id == d
        assert store.ids({"raw": d}) == [d]  # the same strings as filter values match exactly
    left = store.count()
    for d in AWKWARD_IDS:
        assert store.delete([d]) == 1
        left -= 1
        assert store.count() == left
    assert sorted(store.ids()) == sorted(ids)


@pytest.mark.parametrize("bad", ["a\x00b", "line\nbreak", "tab\there", "esc\x1b[0m", "nel\x85", "del\x7f"])
def test_ids_with_control_characters_are_refused(make_store, bad):
    store = make_store(DIM)
    fill(store, 3)
    with pytest.raises(InputError, match="control character"):
        store.upsert([bad], rows(1))
    with pytest.raises(InputError, match="control character"):
        store.delete([bad])
    with pytest.raises(InputError, match="control character"):
        store.get([bad])
    assert store.count() == 3


def test_metadata_strings_hold_tabs_and_newlines_but_no_other_control_character(make_store):
    store = make_store(DIM)
    fill(store, 3)
    store.upsert(["multi"], rows(1, seed=5), metadata=[{"note": "a\tb\nc\r\nd \\ \" '"}])
    assert store.ids({"note": "a\tb\nc\r\nd \\ \" '"}) == ["multi"]
    assert store.ids({"note": "a\tb"}) == []
    for bad in ("a\x00b", "bell\x07", "esc\x1b"):
        with pytest.raises(InputError, match="control character"):
            store.upsert(["nul"], rows(1), metadata=[{"note": bad}])
        with pytest.raises(InputError, match="control character"):
            store.upsert(["nul"], rows(1), metadata=[{"deep": {"list": ["ok", bad]}}])
        with pytest.raises(InputError, match="control character"):
            store.ids({"note": bad})
    assert store.count() == 4 and store.get(["nul"]) == [None]


def test_nul_in_a_value_cannot_make_a_filter_match_the_wrong_document(make_store):
    # Before: FAISS stored "a\x00b", SQLite's JSON functions cut it at the NUL, so the filter
    # "a" matched it and the exact value "a\x00b" matched nothing.
    store = make_store(DIM)
    store.upsert(["plain"], rows(1), metadata=[{"v": "a"}])
    with pytest.raises(InputError, match="U\\+0000"):
        store.upsert(["nul"], rows(1, seed=1), metadata=[{"v": "a\x00b"}])
    assert store.ids({"v": "a"}) == ["plain"]
    with pytest.raises(InputError, match="U\\+0000"):
        store.ids({"v": "a\x00b"})


def test_field_names_are_whole_identifiers(make_store):
    store = make_store(DIM)
    fill(store, 3)
    for bad in ("lang\n", "lang\r", "lang ", "1lang", "-x", "a.b", 'a"]', "", "x" * 129):
        with pytest.raises(InputError, match="field"):
            store.upsert(["z"], rows(1), metadata=[{bad: 1}])
        with pytest.raises(InputError, match="field"):
            store.search(rows(1), k=3, filter={bad: "zh"})
    assert store.count() == 3


def test_filter_numbers_beyond_int64_are_refused(make_store):
    store = make_store(DIM)
    fill(store, 4)
    store.upsert(["big"], rows(1, seed=9), metadata=[{"n": 2**63 - 1}])
    assert store.ids({"n": 2**63 - 1}) == ["big"]
    assert store.ids({"n": 2**63 - 2}) == []
    for bad in (2**63, -(2**63) - 1, 10**30):
        with pytest.raises(InputError, match="64-bit"):
            store.search(rows(1), k=3, filter={"n": bad})
        with pytest.raises(InputError, match="64-bit"):
            store.ids({"n": [1, bad]})
        with pytest.raises(InputError, match="64-bit"):
            store.upsert(["z"], rows(1), metadata=[{"n": bad}])
    with pytest.raises(InputError, match="not finite"):
        store.ids({"n": float("inf")})


def test_many_values_for_one_field(make_store):
    # Before: ~1,000 values for one key made the FAISS filter a 500 (SQLite expression depth).
    store = make_store(DIM)
    fill(store, 16)
    wanted = [3, 5, 8]
    values = [1000 + i for i in range(MAX_FILTER_VALUES - len(wanted))] + wanted
    assert sorted(store.ids({"n": values})) == sorted(f"doc-{i}" for i in wanted)
    hits = store.search(rows(1, seed=4), k=10, filter={"n": values})[0]
    assert sorted(h.id for h in hits) == sorted(f"doc-{i}" for i in wanted)
    strings = [f"s{i}" for i in range(MAX_FILTER_VALUES - 1)] + ["zh"]
    assert len(store.ids({"lang": strings})) == 8
    with pytest.raises(InputError, match="limit of 1024"):
        store.ids({"n": values + [99999]})


def nested(depth: int) -> dict:
    """A metadata object ``depth`` levels deep (the object itself is level 1)."""
    value: object = "leaf"
    for _ in range(depth - 1):
        value = {"k": value}
    return {"deep": value}


def test_metadata_depth_and_size_limits(make_store):
    store = make_store(DIM)
    fill(store, 3)
    store.upsert(["ok"], rows(1, seed=2), metadata=[nested(MAX_METADATA_DEPTH)])
    assert store.get(["ok"])[0].metadata == nested(MAX_METADATA_DEPTH)
    assert {h.id for h in store.search(rows(1, seed=2), k=4)[0]} >= {"ok"}
    for depth in (MAX_METADATA_DEPTH + 1, 300, 950):
        with pytest.raises(InputError, match="nested more than 16 levels"):
            store.upsert(["deep"], rows(1), metadata=[nested(depth)])
    with pytest.raises(InputError, match="nested more than 16 levels"):
        store.upsert(["deep"], rows(1), metadata=[{"a": [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}])
    with pytest.raises(InputError, match="larger than 65536 bytes"):
        store.upsert(["huge"], rows(1), metadata=[{"blob": "x" * 70_000}])
    assert store.count() == 4


@pytest.mark.parametrize("where", ["text", "metadata", "id"])
def test_unpaired_surrogate_changes_nothing(make_store, store_uri, where):
    # Before (FAISS): the vector went into the index, then the SQLite insert failed; the next
    # successful save wrote 37 vectors for 36 documents and the folder never opened again.
    store = make_store(DIM)
    ids = fill(store, 36)
    store.save()
    bad = "bad\ud800text"
    for target in ("new-doc", "doc-5"):  # an add, and a replace of a stored document
        kwargs = {"texts": [bad if where == "text" else "fine"],
                  "metadata": [{"note": bad} if where == "metadata" else {}]}
        doc_id = bad if where == "id" else target
        with pytest.raises(InputError, match="surrogate"):
            store.upsert([doc_id], rows(1, seed=11), **kwargs)
    assert store.count() == 36
    assert store.get(["doc-5"])[0].text == "text 5"
    store.upsert(["after"], rows(1, seed=12), texts=["after"])  # the next successful write
    again = reopen(store, store_uri)
    try:
        assert again.count() == 37
        assert again.get(["doc-5"])[0].text == "text 5"
        assert sorted(again.ids()) == sorted(ids + ["after"])
    finally:
        again.close()


def test_upsert_with_delete_is_one_write(make_store, store_uri):
    store = make_store(DIM)
    fill(store, 6)
    store.upsert(["doc-0", "new"], rows(2, seed=3), texts=["replaced", "new"], delete=["doc-1", "doc-2", "absent"])
    assert sorted(store.ids()) == ["doc-0", "doc-3", "doc-4", "doc-5", "new"]
    with pytest.raises(InputError, match="surrogate"):  # a bad row: the deletes do not happen either
        store.upsert(["x"], rows(1), texts=["\udfff"], delete=["doc-3"])
    assert store.get(["doc-3"])[0] is not None and store.get(["doc-0"])[0].text == "replaced"
