"""The batcher hands memory freed by passes back to the OS, at most once per interval."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from qembed.server.batcher import Batcher
from qembed.server.memory import MemoryTrimmer

glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")


@glibc
def test_trimmer_trims_at_most_once_per_interval() -> None:
    trimmer = MemoryTrimmer(interval=3600.0)
    assert trimmer.active
    trimmer._last -= 7200.0
    trimmer.maybe_trim()
    trimmer.maybe_trim()
    assert trimmer.calls == 1
    fast = MemoryTrimmer(interval=0.0)
    fast.maybe_trim()
    fast.maybe_trim()
    assert fast.calls == 2


def test_trimming_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QEMBED_MALLOC_TRIM", "0")
    trimmer = MemoryTrimmer(interval=0.0)
    trimmer.maybe_trim()
    assert not trimmer.active and trimmer.calls == 0


@glibc
def test_the_batcher_trims_after_passes() -> None:
    def forward(batch: list[list[int]]) -> np.ndarray:
        return np.ones((len(batch), 4), dtype=np.float32)

    batcher = Batcher(forward, 4, max_batch_tokens=64, max_batch_size=8)
    batcher._trimmer = MemoryTrimmer(interval=0.0)
    try:
        for _ in range(3):
            assert batcher.submit([[1, 2, 3]]).result(timeout=30).shape == (1, 4)
    finally:
        batcher.close()
    assert batcher._trimmer.calls >= 3


_SHAPES_SCRIPT = """
import ctypes, sys, torch
from qembed.server.memory import bound_kernel_caches
if sys.argv[1] == "capped":
    bound_kernel_caches(8)
def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) // 1024
w = torch.randn(256, 128).to(torch.bfloat16)
x = torch.randn(400, 128).to(torch.bfloat16)
torch.nn.functional.linear(x[:16], w)
start = rss()
for rows in range(17, 217):  # 200 row counts never seen before: a oneDNN kernel each
    torch.nn.functional.linear(x[:rows], w)
ctypes.CDLL("libc.so.6").malloc_trim(0)
print(rss() - start)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_capped_kernel_caches_keep_memory_flat_over_new_shapes():
    """Each new bf16 product shape adds a oneDNN kernel to two caches; capped, memory stays flat."""
    import torch

    from qembed.models.runtimes import cpu_has_native_bf16

    if not (torch.backends.mkldnn.is_available() and cpu_has_native_bf16()):
        pytest.skip("bf16 products go through oneDNN on CPUs with native bf16 only")

    def growth(mode: str) -> int:
        env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")}
        out = subprocess.run([sys.executable, "-c", _SHAPES_SCRIPT, mode], capture_output=True, text=True,
                             env=env, check=True, timeout=120)
        return int(out.stdout.strip().splitlines()[-1])

    free, capped = growth("free"), growth("capped")
    assert capped <= 8, capped
    assert free >= capped + 40, (free, capped)  # ~0.5 MiB per cached kernel uncapped


def test_bound_kernel_caches_keeps_what_the_user_set(monkeypatch):
    from qembed.server.memory import KERNEL_CACHE_ENTRIES, bound_kernel_caches

    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "1024")
    monkeypatch.delenv("LRU_CACHE_CAPACITY", raising=False)
    bound_kernel_caches()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "1024"
    assert os.environ["LRU_CACHE_CAPACITY"] == str(KERNEL_CACHE_ENTRIES)
