"""The batcher hands memory freed by passes back to the OS, at most once per interval."""

from __future__ import annotations

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
