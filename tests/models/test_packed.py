"""Packed passes (no padding) equal the padded sentence-transformers forward, for any batch."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest

from qembed.models.local import LocalEncoder

TEXTS = [
    "a",
    "花呗怎么还款",
    "借呗能分期吗",
    "The quick brown fox jumps over the lazy dog " * 6,
    "如何归还蚂蚁花呗",
    "ok",
    "借呗支持分几期还款 " * 12,
    "x y z",
]
#: over the chunked layout's limit (256 tokens): batches holding it take the padded layout
LONG = "The quick brown fox jumps over the lazy dog, 借呗支持分几期还款. " * 30


@pytest.fixture(scope="module")
def padded(tiny_model_path) -> LocalEncoder:
    """The same tiny model on the padded sentence-transformers forward."""
    return LocalEncoder(str(tiny_model_path), device="cpu", dtype="float32", packed=False)


@pytest.fixture(scope="module")
def eager(tiny_model_path) -> LocalEncoder:
    return LocalEncoder(str(tiny_model_path), device="cpu", dtype="float32", packed=True, compile=False)


def test_packed_equals_padded_for_mixed_lengths(eager, padded):
    assert eager.packed and not padded.packed
    ids = eager.tokenize(TEXTS)
    np.testing.assert_allclose(eager.forward_batch(ids), padded.forward_batch(ids), atol=1e-5)
    with_long = eager.tokenize(TEXTS + [LONG])
    assert len(with_long[-1]) > 256
    np.testing.assert_allclose(eager.forward_batch(with_long), padded.forward_batch(with_long), atol=1e-5)
    # one at a time, too
    singles = np.concatenate([eager.forward_batch([x]) for x in ids])
    np.testing.assert_allclose(singles, padded.forward_batch(ids), atol=1e-5)


def test_every_batch_composition_gives_the_same_rows(eager):
    ids = eager.tokenize(TEXTS * 3)
    expected = np.concatenate([eager.forward_batch([x]) for x in ids])
    rng = random.Random(0)
    for _ in range(6):
        order = list(range(len(ids)))
        rng.shuffle(order)
        cut = rng.randint(1, len(order) - 1)
        for part in (order[:cut], order[cut:]):
            np.testing.assert_allclose(eager.forward_batch([ids[i] for i in part]), expected[part], atol=1e-5)


def test_compiled_passes_equal_eager_ones(tiny_model_path, eager):
    compiled = LocalEncoder(str(tiny_model_path), device="cpu", dtype="float32", packed=True, compile=True)
    assert compiled.info()["compiled"] is True
    ids = eager.tokenize(TEXTS)
    for batch in (ids, ids[:1], ids[3:5]):
        np.testing.assert_allclose(compiled.forward_batch(batch), eager.forward_batch(batch), atol=1e-5)


def test_bf16_packed_stays_close_to_the_fp32_reference(tiny_model_path, padded):
    bf16 = LocalEncoder(str(tiny_model_path), device="cpu", dtype="bfloat16", packed=True, compile=False)
    ids = bf16.tokenize(TEXTS)
    cos = np.sum(bf16.forward_batch(ids) * padded.forward_batch(ids), axis=1)
    assert cos.min() >= 0.99, cos


def test_packed_budget_counts_real_tokens(eager):
    from qembed.models.encoder import plan_batches

    lengths = [10, 2, 2, 2, 2, 2]
    assert plan_batches(lengths, 14, 32, packed=True) == [[0, 1, 2], [3, 4, 5]]
    assert plan_batches(lengths, 14, 32) == [[0], [1, 2, 3, 4, 5]]  # padded: 2 x 10 > 14
    texts = [f"sentence {i} " * (1 + i % 7) for i in range(40)]
    out = eager.encode(texts)
    small = LocalEncoder(str(eager.path), device="cpu", dtype="float32", packed=True, compile=False,
                         max_batch_tokens=30, max_batch_size=3)
    np.testing.assert_allclose(small.encode(texts), out, atol=1e-5)


def test_models_that_cannot_pack_say_so(minilm_path, tmp_path):
    from qembed.errors import InputError

    # MiniLM packs (qembed.models.packed_encoder) unless its pooling leaves the prompt out
    folder = tmp_path / "minilm-prompt-free"
    shutil.copytree(minilm_path, folder, ignore=shutil.ignore_patterns("model.safetensors"))
    (folder / "model.safetensors").symlink_to(minilm_path / "model.safetensors")
    config = json.loads((folder / "1_Pooling" / "config.json").read_text())
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({**config, "include_prompt": False}))
    assert not LocalEncoder(str(folder), device="cpu", dtype="float32").packed
    with pytest.raises(InputError, match="cannot run packed passes"):
        LocalEncoder(str(folder), device="cpu", dtype="float32", packed=True)
