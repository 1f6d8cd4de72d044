"""benchmarks/gpu_check.py runs every step on a CPU with --smoke (tiny models, tiny sizes), so the
one command meant for a GPU host is known to work before a GPU is lent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_step(tmp_path):
    figures = tmp_path / "gpu_check.json"
    env = {**os.environ, "QEMBED_CACHE": str(tmp_path / "cache"), "QEMBED_COMPILE": "false",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    # the LoRA step is benchmarks/finetune_afqmc.py's recipe, dry-run on a CPU: left out for time
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--no-lora",
                           "--json", str(figures), "--serve-env", "QEMBED_COMPILE=false"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(figures.read_text(encoding="utf-8"))
    assert results["meta"]["device"] == "cpu" and results["meta"]["smoke"]
    assert results["in_process"]["short"]["tokens_s"] > 0
    compare = results["compare"]
    assert {"qembed_encode", "qembed_passes", "sentence_transformers", "transformers_padded_forward"} <= set(compare)
    assert results["parity"]["min_cosine"] > 0.99  # bf16 on the CPU against float32
    assert results["reranker"]["pairs_s"] > 0 and results["reranker"]["packed"]
    assert results["pass"]["idle_ms"]["p50"] > 0
    served = {row["clients"]: row for row in results["served"]}
    assert set(served) == {1, 64, 256}
    for row in served.values():
        assert row["ok"] > 0 and not row["errors"] and row["vs_in_process"] > 0
    assert [s for s in results["skipped"] if not s.startswith("LoRA")] == []
    assert "served/in-process" in done.stdout and "sentence-transformers encode" in done.stdout
