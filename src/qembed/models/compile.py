"""When the packed Qwen3 passes are compiled: the ``compile`` setting (``auto``, ``true``, ``false``).

:func:`torch.compile` fuses the element-wise ops of the packed passes (:mod:`qembed.models.packed`).
It costs seconds before the first pass — on a 2-core CPU about 3 s when torch's cache already holds
the kernels and about 25 s when it does not — and then saves a fraction of every pass. It pays
back only after enough tokens (:data:`BREAK_EVEN_TOKENS`, measured with
``benchmarks/cold_start.py``), so with ``auto`` (the default):

- a server compiles at start-up (it runs for long, and its first request must not pay);
- a one-shot run (``qembed embed`` of a few texts, a small ``encode`` call) runs eagerly, and
  compiles the first time one call brings at least :data:`BREAK_EVEN_TOKENS` tokens (a large
  file, a Ray shard, a knowledge base being indexed).

``true`` compiles at load, ``false`` never. The compiled kernels are kept in torch's inductor cache
under qembed's cache folder (:func:`inductor_cache_dir`), so later processes reuse them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Union

from qembed.errors import InputError

#: The values of the ``compile`` setting (``None`` reads ``$QEMBED_COMPILE``, default ``auto``).
CompileSetting = Union[bool, Literal["auto"], None]

#: Device kinds torch.compile is used on.
COMPILE_DEVICES = ("cpu", "cuda")

#: Tokens one call must bring before ``auto`` compiles, by device kind: where the time saved by
#: the fused kernels repays compiling with a warm cache (benchmarks/cold_start.py, 2-core AMD EPYC
#: Zen 4, random Qwen3-Embedding-0.6B bf16; see docs/benchmarks.md). CUDA is taken to be alike
#: until measured.
BREAK_EVEN_TOKENS = {"cpu": 25_000, "cuda": 25_000}

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def env_off(name: str) -> bool:
    """Whether the environment variable ``name`` turns its feature off (0/false/no/off, any case)."""
    return os.environ.get(name, "").strip().lower() in _FALSE


def parse_compile(value: object) -> bool | Literal["auto"]:
    """``True``, ``False`` or ``"auto"`` from a setting value: a bool, ``None`` (``"auto"``) or one
    of the strings auto/true/false/1/0/yes/no/on/off (any case); anything else raises
    :class:`~qembed.errors.InputError`."""
    if value is None or isinstance(value, bool):
        return "auto" if value is None else value
    text = str(value).strip().lower()
    if text in ("", "auto"):
        return "auto"
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InputError(f"compile must be auto, true or false, got {value!r}", param="compile")


def compile_setting(value: CompileSetting = None) -> bool | Literal["auto"]:
    """The setting to apply: ``value`` when given, else ``$QEMBED_COMPILE``, else ``"auto"``."""
    if value is None:
        value = os.environ.get("QEMBED_COMPILE")
    return parse_compile(value)


def should_compile(setting: CompileSetting, device: str, *, serving: bool = False,
                   tokens: int | None = None) -> bool:
    """Whether to compile the packed passes now.

    Args:
        setting: ``True``, ``False``, ``"auto"`` or ``None`` (``$QEMBED_COMPILE``, default auto).
        device: the model's device (``"cpu"``, ``"cuda:0"`` …).
        serving: the model is loaded by a server (``auto`` then compiles at once).
        tokens: tokens of the call about to run (``None``: at load, before any call).

    ``True`` compiles on any device the packed path runs on; ``auto`` only on CPU and CUDA, in a
    server, or once a call brings at least :data:`BREAK_EVEN_TOKENS` tokens.
    """
    choice = compile_setting(setting)
    if choice != "auto":
        return bool(choice)
    kind = device.split(":")[0]
    if kind not in COMPILE_DEVICES:
        return False
    if serving:
        return True
    return tokens is not None and tokens >= BREAK_EVEN_TOKENS.get(kind, BREAK_EVEN_TOKENS["cpu"])


def server_compile(setting: CompileSetting) -> bool:
    """The ``compile`` a server loads its model with: ``auto`` (and ``None``) compile at start-up,
    before the server reports ready, so no request pays for it."""
    choice = compile_setting(setting)
    return True if choice == "auto" else bool(choice)


def inductor_cache_dir() -> Path:
    """Where compiled kernels are kept across runs: ``$TORCHINDUCTOR_CACHE_DIR`` when set, else
    ``$QEMBED_CACHE/torchinductor`` (default ``~/.cache/qembed/torchinductor``), which, unlike
    torch's default under the temporary folder, survives reboots and can live on a volume."""
    from qembed.models.resolve import cache_root

    given = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    return Path(given) if given else cache_root() / "torchinductor"


def use_persistent_cache() -> Path:
    """Point torch's inductor cache at :func:`inductor_cache_dir` (before the first compile)."""
    path = inductor_cache_dir()
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(path))
    return path
