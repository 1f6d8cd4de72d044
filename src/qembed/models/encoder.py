"""The :class:`Encoder` protocol every task depends on, and helpers shared by its backends.

An encoder turns texts into float32, L2-normalised vectors. Two backends implement it:
:class:`qembed.models.local.LocalEncoder` (a model in this process) and
:class:`qembed.models.remote.RemoteEncoder` (any OpenAI-compatible ``/v1/embeddings`` endpoint).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from qembed.errors import InputError

MIN_DIMENSIONS = 32


@runtime_checkable
class Encoder(Protocol):
    """Text in, unit vectors out."""

    name: str

    @property
    def dim(self) -> int: ...

    @property
    def max_input_tokens(self) -> int | None: ...

    @property
    def supports_instructions(self) -> bool: ...

    def encode(
        self,
        texts: str | Sequence[str],
        instruction: str | None = None,
        dimensions: int | None = None,
        *,
        progress: bool = False,
    ) -> np.ndarray:
        """Return a float32 array of shape ``(len(texts), dimensions or dim)``, rows of norm 1
        (``progress``: a progress bar on stderr)."""
        ...

    def count_tokens(self, texts: str | Sequence[str]) -> list[int]:
        """Tokens each text occupies (special tokens included, before truncation)."""
        ...


def validate_texts(texts: Any, *, param: str = "texts") -> list[str]:
    """Return ``texts`` as a list of non-empty strings or raise :class:`InputError`.

    A single string is accepted as one text.
    """
    if isinstance(texts, str):
        texts = [texts]
    elif isinstance(texts, np.ndarray):
        texts = texts.tolist()
    elif not isinstance(texts, Sequence) or isinstance(texts, (bytes, bytearray, dict)):
        raise InputError(
            f"{param} must be a string or a list of strings, got {type(texts).__name__}", param=param
        )
    texts = list(texts)
    if not texts:
        raise InputError(f"{param} is empty: pass at least one text", param=param)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputError(
                f"{param}[{i}] is {type(t).__name__}, not a string", param=param
            )
        if t == "":
            raise InputError(f"{param}[{i}] is an empty string", param=param)
        if not t.isascii():
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as exc:  # an unpaired surrogate: no tokenizer can encode it
                raise InputError(f"{param}[{i}] holds an unpaired surrogate (U+{ord(t[exc.start]):04X}) at "
                                 f"position {exc.start}; text must be valid Unicode", param=param) from None
    return texts


def check_dimensions(dimensions: Any, full_dim: int) -> int | None:
    """Validate an MRL ``dimensions`` request against the model size (None means full size)."""
    if dimensions is None:
        return None
    if isinstance(dimensions, bool) or not isinstance(dimensions, (int, np.integer)):
        raise InputError(
            f"dimensions must be an integer, got {type(dimensions).__name__}", param="dimensions"
        )
    low = min(MIN_DIMENSIONS, full_dim)
    if not low <= int(dimensions) <= full_dim:
        raise InputError(
            f"dimensions must be between {low} and {full_dim} for this model, got {dimensions}",
            param="dimensions",
        )
    return int(dimensions)


def normalize(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows in float32; zero rows stay zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def truncate_dimensions(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Matryoshka truncation: keep the first ``dimensions`` values, then re-normalise."""
    if dimensions is None or dimensions >= vectors.shape[-1]:
        return normalize(vectors)
    return normalize(vectors[..., :dimensions])


def check_positive_ints(**values: Any) -> None:
    """Refuse any given value (None = unset) that is not a positive integer, naming them all."""
    for value in values.values():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            names = list(values)
            listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
            raise InputError(f"{listed} must be positive integers")


def check_finite(vectors: np.ndarray, what: str = "embeddings") -> None:
    """Raise when the model produced NaN or infinity (e.g. fp16 overflow)."""
    if not np.isfinite(vectors).all():
        bad = int((~np.isfinite(vectors)).any(axis=-1).sum())
        raise FloatingPointError(
            f"the model produced non-finite {what} for {bad} input(s); "
            "this happens with fp16 weights — use bfloat16 or float32"
        )


#: What one more padded pass costs, in padded tokens, when :func:`plan_batches` weighs padding
#: against passes: the fixed part of a pass (launch, weights streamed through the caches, pooling)
#: over the cost of one token. Measured on the random-weight Qwen3-0.6B with OpenVINO int8 on a
#: 2-core AMD EPYC: about 14 ms a pass against 1.45 ms a token (docs/cpu-backends.md).
PASS_COST_TOKENS = 16


def plan_batches(lengths: Sequence[int], max_batch_tokens: int, max_batch_size: int, *,
                 packed: bool = False, pass_cost: int = PASS_COST_TOKENS) -> list[list[int]]:
    """Group input indices into batches sorted by length under a token budget.

    Inputs are sorted longest first. A packed batch (sequences concatenated, no padding) grows
    while the sum of its lengths fits ``max_batch_tokens``. Padded batches are cut where they
    cost least: every pass is padded to its longest input, so the sorted inputs are split into
    runs that minimise the padded tokens plus ``pass_cost`` tokens per pass (an exact dynamic
    programme over the cut points), each run within ``len(batch) * longest <= max_batch_tokens``.
    Short sentences of mixed lengths thus run in several passes of nearly equal lengths rather
    than in full batches padded to their longest. Both stop at ``max_batch_size`` inputs; one long
    input never pads a batch of short ones, and an input longer than the budget runs alone.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    if not packed:
        return _plan_padded([lengths[i] for i in order], order, max_batch_tokens, max_batch_size, pass_cost)
    batches: list[list[int]] = []
    current: list[int] = []
    cost = 0
    for i in order:
        n = lengths[i]
        grown = cost + n
        if current and (grown > max_batch_tokens or len(current) >= max_batch_size):
            batches.append(current)
            current, grown = [], n
        current.append(i)
        cost = grown
    if current:
        batches.append(current)
    return batches


def _plan_padded(widths: list[int], order: list[int], max_batch_tokens: int, max_batch_size: int,
                 pass_cost: int) -> list[list[int]]:
    """Cut ``order`` (inputs sorted longest first, ``widths`` their lengths) into padded passes.

    ``best[i]`` is the least cost of the inputs from ``i`` on; a pass starting at ``i`` is padded
    to ``widths[i]``. Ties keep the longer pass, so equal lengths fill whole batches in order.
    """
    n = len(widths)
    best = [0] * (n + 1)
    cut = [n] * (n + 1)
    for i in range(n - 1, -1, -1):
        width = widths[i]
        size = max(1, min(max_batch_size, n - i, max_batch_tokens // max(width, 1)))
        top, end = None, i + 1
        for j in range(i + size, i, -1):  # longest pass first: ties keep it
            c = (j - i) * width + pass_cost + best[j]
            if top is None or c < top:
                top, end = c, j
        best[i], cut[i] = top, end
    batches = []
    i = 0
    while i < n:
        batches.append(order[i:cut[i]])
        i = cut[i]
    return batches


#: Token counts packed passes are filled up to on CUDA (:func:`fill_to_bucket`): compiled kernels
#: then see a few fixed shapes (eight, within torch.compile's default recompile limit) instead of
#: one per pass. A pass over more tokens than the largest runs as it is.
TOKEN_BUCKETS = (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


#: Set to ``0`` to run CPU passes at their own token counts (:func:`row_buckets`).
ROW_BUCKETS_ENV = "QEMBED_ROW_BUCKETS"


def cpu_token_bucket(tokens: int) -> int:
    """The row count a bf16 product over ``tokens`` rows is filled up to on a CPU.

    oneDNN builds (just-in-time compiles) a kernel for every new row count and caches it: on a
    2-core AMD EPYC a product at a Qwen3-0.6B layer shape took ~8 ms more the first time a row
    count was seen than after, and each cached row count held ~0.5 MiB in each of two caches
    (ideep's and oneDNN's, 1,024 entries each), so an engine answering passes of ever new sizes
    grew by hundreds of MiB over minutes. Filling each pass up to a few row counts keeps the
    kernels built once and the caches small: multiples of 16 up to 256 rows, then 16 steps per
    doubling (at most 1/16 of the rows are filler, 3% on average).
    """
    if tokens <= 256:
        return max(16, -(-tokens // 16) * 16)
    step = 1 << (tokens.bit_length() - 5)
    return -(-tokens // step) * step


def row_buckets(device: Any, dtype: Any) -> Callable[[int], int] | None:
    """:func:`cpu_token_bucket` where products run through oneDNN's shape-keyed kernels (bf16 and
    fp16 on a CPU; fp32 products go to MKL's sgemm, which keeps nothing per shape), else None.
    ``$QEMBED_ROW_BUCKETS=0`` turns it off."""
    import torch

    from qembed.models.compile import env_off

    if env_off(ROW_BUCKETS_ENV):
        return None
    if torch.device(device).type != "cpu" or dtype not in (torch.bfloat16, torch.float16):
        return None
    return cpu_token_bucket


def fill_to(seqs: Sequence[Sequence[int]], filler: int, target: int) -> list[Sequence[int]]:
    """``seqs`` followed by filler sequences (of token ``filler``, none longer than the longest
    input) so that the pass holds exactly ``target`` tokens (unchanged when it holds as many or
    more).

    Every sequence of a packed pass attends to itself only, so the fillers change no real row;
    the caller keeps the first ``len(seqs)`` rows.
    """
    total = sum(len(s) for s in seqs)
    if target <= total:
        return list(seqs)
    width = max(len(s) for s in seqs)
    extra = target - total
    fillers = [[filler] * width for _ in range(extra // width)]
    if extra % width:
        fillers.append([filler] * (extra % width))
    return [*seqs, *fillers]


def fill_to_bucket(seqs: Sequence[Sequence[int]], filler: int,
                   buckets: Sequence[int] = TOKEN_BUCKETS) -> list[Sequence[int]]:
    """:func:`fill_to` the next of ``buckets`` (passes over more tokens than the largest bucket
    are returned unchanged)."""
    total = sum(len(s) for s in seqs)
    target = next((b for b in buckets if b >= total), None)
    return list(seqs) if target is None else fill_to(seqs, filler, target)


def memory_batch_limits(free_bytes: int, hidden: int, intermediate: int, dtype_bytes: int, *,
                        share: float = 0.5, most_tokens: int = 65536) -> tuple[int, int]:
    """``(max_batch_tokens, max_batch_size)`` for a GPU with ``free_bytes`` free once the weights
    are loaded: ``share`` of it for one pass's activations.

    A layer holds, per token, about the input and residual, the fused q/k/v and their laid-out
    copy, the attention output, the MLP's up (gated: twice) and activated rows — ``10 x hidden +
    3 x intermediate`` values — doubled for the allocator's slack and the attention workspace.
    The cap is a multiple of 512 tokens between 512 and ``most_tokens`` (passes beyond it only add
    latency); inputs per pass are a sixteenth of the tokens, between 32 and 2048.
    """
    per_token = 2 * (10 * hidden + 3 * intermediate) * dtype_bytes
    tokens = int(share * max(0, free_bytes) // max(1, per_token))
    tokens = max(512, min(most_tokens, tokens // 512 * 512))
    return tokens, max(32, min(2048, tokens // 16))
