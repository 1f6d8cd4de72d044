"""What the GPU path adds, checked on the CPU: token-count buckets, batch limits from free memory,
and float16 refused for Qwen3 unless asked."""

from __future__ import annotations

import numpy as np
import pytest

from qembed.errors import InputError
from qembed.models.encoder import TOKEN_BUCKETS, fill_to_bucket, memory_batch_limits
from qembed.models.local import LocalEncoder, check_fp16

TEXTS = ["a", "How do I repay my credit card bill?", "花呗怎么还款", "x y z " * 20, "ok"]


def test_fill_to_bucket_reaches_the_next_bucket_with_short_fillers():
    seqs = [[1, 2, 3], [4] * 10, [5]]
    filled = fill_to_bucket(seqs, 0)
    assert filled[:3] == seqs
    assert sum(map(len, filled)) == TOKEN_BUCKETS[0]
    assert max(map(len, filled)) == 10 and all(set(s) == {0} for s in filled[3:])
    exact = [[1] * 512]
    assert fill_to_bucket(exact, 0) == exact
    huge = [[1] * 40000, [2] * 40000]
    assert fill_to_bucket(huge, 0) == huge  # past the largest bucket: unchanged
    assert sum(map(len, fill_to_bucket([[1] * 600], 0))) == 1024


@pytest.mark.parametrize("which", ["qwen", "minilm"])
def test_bucketed_passes_give_the_same_rows(which, tiny_model_path, tiny_encoder, minilm_path, minilm_encoder):
    path, plain = (tiny_model_path, tiny_encoder) if which == "qwen" else (minilm_path, minilm_encoder)
    bucketed = LocalEncoder(str(path), device="cpu", dtype="float32", compile=False, bucket_tokens=True)
    assert bucketed.info()["bucket_tokens"] and not plain.info()["bucket_tokens"]  # CUDA only by default
    ids = bucketed.tokenize(TEXTS)
    for batch in (ids, ids[:1]):
        np.testing.assert_allclose(bucketed.forward_batch(batch), plain.forward_batch(batch), atol=1e-5)


def test_memory_batch_limits_follow_free_memory():
    # Qwen3-Embedding-0.6B shapes, bf16
    small = memory_batch_limits(2 * 2**30, 1024, 3072, 2)
    large = memory_batch_limits(70 * 2**30, 1024, 3072, 2)
    assert small[0] < large[0] and small[1] < large[1]
    assert small == (13312, 832)  # 1 GiB at 76 KiB per token, in multiples of 512
    assert large == (65536, 2048)  # capped: bigger passes only add latency
    assert memory_batch_limits(0, 1024, 3072, 2) == (512, 32)


def test_fp16_is_refused_for_qwen3_unless_asked(tiny_model_path, monkeypatch):
    import torch

    monkeypatch.delenv("QEMBED_ALLOW_FP16", raising=False)
    with pytest.raises(InputError, match="allow_fp16=True .*QEMBED_ALLOW_FP16=1") as info:
        LocalEncoder(str(tiny_model_path), device="cpu", dtype="float16")
    assert info.value.param == "dtype"
    check_fp16(torch.float16, "qwen3", allow=True)
    check_fp16(torch.float16, "bert")  # other models: float16 is theirs to choose
    check_fp16(torch.bfloat16, "qwen3")
    monkeypatch.setenv("QEMBED_ALLOW_FP16", "1")
    check_fp16(torch.float16, "qwen3")
    encoder = LocalEncoder(str(tiny_model_path), device="cpu", dtype="float16", packed=False)
    assert encoder.info()["dtype"] == "float16"


# ---------------------------------------------------------------- CPU row buckets (bf16, oneDNN)

def test_cpu_token_buckets_are_few_and_waste_little():
    from qembed.models.encoder import cpu_token_bucket

    counts = range(1, 16385)
    targets = [cpu_token_bucket(t) for t in counts]
    assert all(b >= t for t, b in zip(counts, targets))
    assert all((b - t) / t <= 1 / 16 for t, b in zip(counts, targets) if t > 256)
    assert len(set(targets[:4096])) == 80 and len(set(targets)) == 112
    assert [cpu_token_bucket(t) for t in (1, 17, 257, 4097)] == [16, 32, 272, 4352]


@pytest.mark.parametrize("which", ["qwen3", "minilm"])
def test_bf16_cpu_passes_are_filled_to_buckets_with_the_same_rows(which, tiny_model_path, minilm_path, monkeypatch):
    """bf16 passes on a CPU run at a bucket's token count (fillers appended), and the real rows are
    those of a pass at its own size."""
    from qembed.models.encoder import cpu_token_bucket

    path = tiny_model_path if which == "qwen3" else minilm_path
    monkeypatch.setenv("QEMBED_ROW_BUCKETS", "0")
    plain = LocalEncoder(str(path), device="cpu", dtype="bfloat16", compile=False)
    monkeypatch.delenv("QEMBED_ROW_BUCKETS")
    filled = LocalEncoder(str(path), device="cpu", dtype="bfloat16", compile=False)
    assert plain._packed.fill_rows is None and filled._packed.fill_rows is cpu_token_bucket
    fp32 = LocalEncoder(str(path), device="cpu", dtype="float32", compile=False)
    assert fp32._packed.fill_rows is None  # MKL's sgemm keeps nothing per shape

    seen: list[int] = []  # the token count of each pass (the ids its first embedding lookup gets)

    def spy(ids, weight, *args, **kwargs):
        seen.append(int(ids.numel()))
        return real(ids, weight, *args, **kwargs)

    import qembed.models.packed as packed_mod
    import qembed.models.packed_encoder as packed_encoder_mod

    module = packed_mod if which == "qwen3" else packed_encoder_mod
    real = module.F.embedding
    ids = filled.tokenize(TEXTS)
    for batch in (ids[:1], ids[:3], ids):
        monkeypatch.setattr(module.F, "embedding", spy)
        got = filled.forward_batch(batch)
        monkeypatch.setattr(module.F, "embedding", real)
        total = sum(len(s) for s in batch)
        assert seen[0] == cpu_token_bucket(total), (seen, total)
        seen.clear()
        want = plain.forward_batch(batch)
        assert got.shape == want.shape
        assert float((got * want).sum(1).min()) > 0.999
