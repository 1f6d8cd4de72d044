"""Handing memory freed by forward passes back to the operating system.

Passes of different shapes allocate and free tensors of many different sizes. glibc's allocator
keeps what is freed in its heaps for reuse, and with sizes that keep changing the free space ends
up in pieces no later request fits exactly, so an engine's resident memory creeps up over hours
although nothing is leaked (the soak in ``benchmarks/soak.py`` shows it). ``malloc_trim(0)`` gives
every free page of every heap back; the batcher's worker calls :class:`MemoryTrimmer` after each
pass, and it trims at most once per ``interval`` seconds (a trim of an engine's heaps takes about a
millisecond, so a second apart it costs well under 1% of the pass time).

Where the C library is not glibc (macOS, musl) the trimmer does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import time

from qembed.models.compile import env_off

logger = logging.getLogger(__name__)

#: ``QEMBED_MALLOC_TRIM=0`` turns trimming off (e.g. when the process runs with jemalloc/tcmalloc).
ENV = "QEMBED_MALLOC_TRIM"


#: Entries kept in each of the two caches of oneDNN kernels (ideep's and oneDNN's own) in processes
#: qembed runs: each new matrix-product shape adds ~0.5 MiB to both, and their default of 1,024
#: entries let a server answering passes of ever new sizes grow by ~1 GiB before they fill. With
#: 256 an all-MiniLM-L6-v2 engine (bf16) levelled off ~140 MiB above its start within a few hundred
#: passes; with 128 within 25, at no cost in speed (token-count buckets keep the shapes few).
KERNEL_CACHE_ENTRIES = 256
KERNEL_CACHE_ENV = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")


def bound_kernel_caches(entries: int = KERNEL_CACHE_ENTRIES) -> None:
    """Cap the kernel caches of this process (unless the environment already sets them).

    Both libraries read their variable when they build their first kernel, so this must run
    before the first matrix product (importing torch is fine)."""
    for name in KERNEL_CACHE_ENV:
        os.environ.setdefault(name, str(int(entries)))


def _malloc_trim():
    if env_off(ENV):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class MemoryTrimmer:
    """Calls glibc's ``malloc_trim(0)`` at most once per ``interval`` seconds."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._trim = _malloc_trim()
        self._last = time.monotonic()
        self.calls = 0

    @property
    def active(self) -> bool:
        return self._trim is not None

    def maybe_trim(self) -> None:
        """Trim now unless the last trim is less than ``interval`` seconds old."""
        if self._trim is None:
            return
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        self._trim(0)
        self.calls += 1
