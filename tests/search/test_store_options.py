"""Options a store backend would not use are refused (or, for an existing FAISS folder, warned about)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from qembed.errors import InputError
from qembed.store import open_store


def test_milvus_options_are_refused_for_a_faiss_folder(tmp_path):
    with pytest.raises(InputError, match=r"collection do not apply to a FAISS index folder .*Milvus only") as err:
        open_store(tmp_path / "index", dim=4, collection="docs")
    assert err.value.param == "collection"
    assert not (tmp_path / "index").exists()  # refused before anything was created
    with pytest.raises(InputError, match="index_type, token do not apply to an in-memory index"):
        open_store(None, dim=4, token="secret", index_type="HNSW")


def test_faiss_options_are_refused_for_milvus(tmp_path):
    for location in (tmp_path / "kb.db", "http://127.0.0.1:1/"):
        with pytest.raises(InputError, match=r"ef_search, index do not apply to a Milvus index .*FAISS folders only"):
            open_store(location, dim=4, index="hnsw", ef_search=64)
    assert not (tmp_path / "kb.db").exists()


def test_unknown_options_are_refused_by_name(tmp_path):
    with pytest.raises(InputError, match="nlist do not apply .* it takes: ef_construction, ef_search"):
        open_store(tmp_path / "index", dim=4, nlist=8)


def test_creation_options_on_an_existing_folder_are_reported(tmp_path, caplog):
    store = open_store(tmp_path / "index", dim=4, index="flat")
    store.upsert(["a"], np.eye(1, 4, dtype=np.float32))
    store.save()
    store.close()
    with caplog.at_level(logging.WARNING, logger="qembed.store"):
        again = open_store(tmp_path / "index", dim=4, index="hnsw", hnsw_m=8, ef_search=32)
    try:
        assert again.info()["index"] == "flat"  # kept what it was created with
        assert "index='hnsw'" in caplog.text and "hnsw_m=8" in caplog.text
        assert "only apply when an index is created" in caplog.text and "ef_search" not in caplog.text
    finally:
        again.close()


def test_milvus_store_takes_no_stray_options(tmp_path):
    from qembed.store.milvus_store import MilvusStore

    with pytest.raises(TypeError, match="ef_search"):
        MilvusStore.connect(str(tmp_path / "kb.db"), dim=4, ef_search=32)
