"""int8 activations (w8a8, OpenVINO + nncf) with calibration and a task-score guard.

The export measures the quantized graph against torch fp32 on graded pairs (STS-B style), records
worst/mean cosine and the change of the Spearman score, and refuses a model that loses too much.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from qembed.errors import InputError
from qembed.models import load_encoder
from qembed.models.export import export_model
from qembed.models.quality import QualityGuardError, check_quality, rankdata, spearman
from qembed.models.resolve import read_manifest


#: exports made on first use go to a temporary cache (tests/models/conftest.py), not the user's
pytestmark = pytest.mark.usefixtures("export_cache")


@pytest.fixture(scope="module")
def sts_file(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 40 graded pairs of Chinese STS-B's validation split."""
    lines = (shared / "data" / "stsb_zh" / "STS-B.valid.data").read_text(encoding="utf-8").splitlines()[:40]
    path = tmp_path_factory.mktemp("sts") / "sts.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_spearman_and_ranks():
    np.testing.assert_allclose(rankdata(np.array([10.0, 20.0, 20.0, 5.0])), [2.0, 3.5, 3.5, 1.0])
    assert spearman(np.arange(5.0), np.arange(5.0) ** 3) == pytest.approx(1.0)
    assert spearman(np.arange(5.0), -np.arange(5.0)) == pytest.approx(-1.0)
    assert spearman(np.ones(4), np.arange(4.0)) == 0.0


def test_guard_refuses_a_drop_over_the_limit():
    report = {"score_drop": 0.02, "metric": "spearman", "score": 0.78, "score_reference": 0.8,
              "worst_cosine": 0.97}
    check_quality(report, 0.03)
    with pytest.raises(QualityGuardError, match=r"loses 2.00% of the task score .* over the 1% allowed"):
        check_quality(report)


def test_w8a8_needs_a_guard(tiny_model_path: Path, tmp_path: Path):
    with pytest.raises(InputError, match="needs a graded-pairs file"):
        export_model(tiny_model_path, "openvino", "w8a8", tmp_path / "x")
    with pytest.raises(InputError, match="does not exist"):
        export_model(tiny_model_path, "openvino", "w8a8", tmp_path / "x", guard=tmp_path / "missing.tsv")
    with pytest.raises(InputError, match="not available on the onnx backend"):
        export_model(tiny_model_path, "onnx", "w8a8", tmp_path / "x")
    # loading a model with --dtype w8a8 cannot export it on the fly (no guard): a clear error
    with pytest.raises(InputError, match="needs a graded-pairs file"):
        load_encoder(str(tiny_model_path), backend="openvino", dtype="w8a8")


@pytest.mark.slow
def test_w8a8_export_records_quality_and_loads(tiny_model_path: Path, sts_file: Path, tmp_path: Path, capsys):
    """The CLI exports the tiny Qwen3 with int8 activations, prints the guard's report, and the
    folder loads as a w8a8 encoder."""
    out = tmp_path / "tiny-w8a8"
    done = subprocess.run([sys.executable, "-m", "qembed.cli", "export", str(tiny_model_path), "--backend",
                           "openvino", "--dtype", "w8a8", "--guard", str(sts_file), "--max-score-drop", "0.9",
                           "--output", str(out), "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    body = json.loads(done.stdout)
    quality = body["quality"]
    assert body["precision"] == "w8a8" and quality["pairs"] == 40 and quality["metric"] == "spearman"
    assert {"worst_cosine", "mean_cosine", "score_reference", "score", "score_drop"} <= set(quality)
    assert read_manifest(out)["quality"] == quality
    assert read_manifest(out)["dynamic_int8"] is True  # the float-kept products hold int8 weights
    enc = load_encoder(str(out))
    assert enc.precision == "w8a8"
    vectors = enc.encode(["花呗怎么还款", "hello"])
    assert vectors.shape == (2, enc.dim) and np.isfinite(vectors).all()
    # no --guard: exit 2 with the reason (in this process: the export above ran as a real process)
    from qembed.cli import main

    capsys.readouterr()
    assert main(["export", str(tiny_model_path), "--backend", "openvino", "--dtype", "w8a8",
                 "--output", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "--guard" in err and "Traceback" not in err
    assert not (tmp_path / "y").exists()


@pytest.mark.slow
def test_w8a8_minilm_keeps_the_task_score(minilm_path: Path, shared: Path, tmp_path: Path):
    """all-MiniLM-L6-v2 with int8 activations: STS Spearman within 1% of torch fp32 (the default
    guard passes) and worst cosine >= 0.99, over the guard's default 400 pairs of STS-B (zh)
    validation (200 pairs swung the drop by over 1% between runs: MiniLM, an English model, scores
    only ~0.3 there)."""
    out = export_model(minilm_path, "openvino", "w8a8", tmp_path / "minilm-w8a8",
                       guard=shared / "data" / "stsb_zh" / "STS-B.valid.data")
    quality = read_manifest(out)["quality"]
    assert quality["score_drop"] <= 0.01
    assert quality["worst_cosine"] >= 0.99
