"""Fixtures for the search tests: vector stores of both backends and a small help-centre corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from qembed.store import open_store

BACKENDS = ["faiss", "milvus"]


def random_unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` random unit vectors of size ``dim`` (float32)."""
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="session")
def unit_rows() -> Callable[..., np.ndarray]:
    """``unit_rows(n, dim, seed=0)``: random unit vectors."""
    return random_unit_rows


@pytest.fixture(params=BACKENDS)
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh location for each backend: a FAISS folder or a Milvus Lite ``.db`` file."""
    if request.param == "faiss":
        return str(tmp_path / "faiss-index")
    return str(tmp_path / "milvus.db")


@pytest.fixture
def make_store(store_uri: str) -> Callable:
    """``make_store(dim, **opts)`` opens/creates the store at ``store_uri``; all are closed afterwards."""
    opened = []

    def factory(dim: int | None = None, **opts):
        store = open_store(store_uri, dim=dim, **opts)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        try:
            store.close()
        except Exception:
            pass
