"""OpenVINO int8-weight graphs under ``ONEDNN_MAX_CPU_ISA=AVX2`` (how an AVX2-only CPU is emulated).

The cap is read when the runtime starts, so the capped load runs in a child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

CHILD = """
import json, sys
from qembed.models import load_encoder
enc = load_encoder(sys.argv[1])
vec = enc.encode(["怎么还花呗", "如何归还蚂蚁花呗"])
print(json.dumps({"shape": list(vec.shape), "norm": float((vec ** 2).sum(axis=1).min())}))
"""


@pytest.mark.slow
def test_int8_weights_run_with_the_kernels_capped_to_avx2(tiny_model_path: Path, tmp_path: Path):
    from qembed.models.export import export_model

    folder = export_model(tiny_model_path, "openvino", "int8", tmp_path / "tiny-openvino-int8")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "QEMBED_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(folder)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shape"] == [2, 64] and out["norm"] == pytest.approx(1.0, abs=1e-4)
