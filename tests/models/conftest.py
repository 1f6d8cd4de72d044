"""Fixtures of the model tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def export_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Exports made on first use go to a temporary cache, not the user's (a module's tests share it)."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("qembed-cache")
        mp.setenv("QEMBED_CACHE", str(path))
        yield path
