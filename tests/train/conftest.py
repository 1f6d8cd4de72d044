"""Fixtures of the fine-tuning tests: small AFQMC slices and one classifier trained once per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TRAIN_PAIRS = 64
DEV_PAIRS = 32


def _slice(src: Path, dst: Path, n: int) -> Path:
    lines = src.read_text(encoding="utf-8").splitlines()[:n]
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dst


@pytest.fixture(scope="session")
def afqmc_small(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(train, dev) JSON-lines files: the first 64 AFQMC train pairs and the first 32 dev pairs."""
    folder = tmp_path_factory.mktemp("afqmc")
    train = _slice(shared / "data" / "afqmc" / "train.json", folder / "train.jsonl", TRAIN_PAIRS)
    dev = _slice(shared / "data" / "afqmc" / "dev.json", folder / "dev.jsonl", DEV_PAIRS)
    # Both classes must be in each slice for F1 and calibration to mean something.
    for f in (train, dev):
        labels = {json.loads(x)["label"] for x in f.read_text(encoding="utf-8").splitlines()}
        assert labels == {"0", "1"}
    return train, dev


@pytest.fixture(scope="session")
def trained_classifier(tiny_model_path: Path, afqmc_small: tuple[Path, Path],
                       tmp_path_factory: pytest.TempPathFactory):
    """One epoch of the LoRA classifier on the tiny Qwen3: (output folder, metrics, in-memory classifier)."""
    from qembed.train.data import load_pairs
    from qembed.train.pair_classifier import ClassifierConfig, train_pair_classifier

    train, dev = afqmc_small
    out = tmp_path_factory.mktemp("clf") / "adapter"
    cfg = ClassifierConfig(model=str(tiny_model_path), max_length=32, batch_size=16, epochs=1, lr=1e-3,
                           device="cpu", precision="fp32")
    doc, clf = train_pair_classifier(load_pairs(train), load_pairs(dev), out, cfg, progress=False,
                                return_classifier=True)
    return out, doc, clf
