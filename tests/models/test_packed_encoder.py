"""Packed encoder-only passes equal sentence-transformers, per architecture and pooling mode.

Tiny random BERT, XLM-RoBERTa and NomicBERT models (the architectures of all-MiniLM-L6-v2, bge, e5,
gte; of multilingual-e5, bge-m3; of nomic-embed-text) are written as sentence-transformers folders with MiniLM's tokenizer; the
XLM-RoBERTa one pads with id 1, as the real ones do, so its positions start after the padding index.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from qembed.models.local import LocalEncoder
from qembed.models.packed_encoder import PackedEncoder, supports_packed_encoder

TEXTS = [
    "a",
    "How do I repay my credit card bill?",
    "ok",
    "The quick brown fox jumps over the lazy dog " * 6,
    "What is the way to pay back my credit card balance?",
    "x y z",
    "embeddings for search " * 12,
]
#: over the chunked layout's limit (256 tokens): batches holding it take the padded layout
LONG = "The quick brown fox jumps over the lazy dog, and then it naps. " * 30

TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            max_position_embeddings=512, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def build_encoder_folder(out: Path, minilm: Path, arch: str, pooling: str | list[str], *,
                         normalize: bool = True, seed: int = 0) -> Path:
    """A sentence-transformers folder: a random tiny ``arch`` ("bert" or "xlm-roberta"), MiniLM's
    tokenizer, ``pooling`` and (optionally) a Normalize module."""
    from transformers import (AutoTokenizer, BertConfig, BertModel, NomicBertConfig, NomicBertModel,
                              XLMRobertaConfig, XLMRobertaModel)

    tokenizer = AutoTokenizer.from_pretrained(str(minilm))
    torch.manual_seed(seed)
    if arch == "bert":
        model = BertModel(BertConfig(vocab_size=len(tokenizer), type_vocab_size=2, pad_token_id=0, **TINY),
                          add_pooling_layer=False)
    elif arch == "nomic_bert":  # rotary positions, gated MLP, no biases (nomic-embed-text)
        config = NomicBertConfig(vocab_size=len(tokenizer), pad_token_id=0, hidden_act="silu", **TINY)
        model = NomicBertModel(config)
    else:  # XLM-R pads with id 1 and numbers positions from padding_idx + 1
        tokenizer.pad_token = "[unused0]"
        assert tokenizer.pad_token_id == 1
        model = XLMRobertaModel(XLMRobertaConfig(vocab_size=len(tokenizer), type_vocab_size=1, pad_token_id=1,
                                                 **{**TINY, "max_position_embeddings": 514}),
                                add_pooling_layer=False)
    # random LayerNorm affine parameters, so a misplaced norm cannot hide
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name.lower():
                p.add_(torch.randn_like(p) * 0.1)
    model.eval()
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (out / "2_Normalize").mkdir()
    (out / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 64, "pooling_mode": pooling}), encoding="utf-8")
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 512, "do_lower_case": False}),
                                                   encoding="utf-8")
    return out


CASES = [("bert", "mean"), ("bert", "cls"), ("xlm-roberta", "mean"), ("xlm-roberta", "cls"),
         ("nomic_bert", "mean"), ("nomic_bert", "cls")]


@pytest.fixture(scope="module")
def folders(tmp_path_factory, minilm_path) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("encoders")
    return {(arch, pool): build_encoder_folder(root / f"{arch}-{pool}", minilm_path, arch, pool)
            for arch, pool in CASES}


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


@pytest.mark.parametrize("arch,pool", CASES)
def test_packed_matches_sentence_transformers(folders, arch, pool):
    path = folders[(arch, pool)]
    encoder = LocalEncoder(str(path), device="cpu", dtype="float32", compile=False)
    assert encoder.packed and encoder.info()["packed"]
    reference = SentenceTransformer(str(path), device="cpu")
    texts = TEXTS + [LONG]
    expected = reference.encode(texts, batch_size=4)
    # batched with mixed lengths (chunked layout, then the padded one with the long text), and single
    for batch in (texts[:-1], texts):
        assert _cos(encoder.encode(batch), expected[:len(batch)]).min() >= 0.9999
    singles = np.concatenate([encoder.encode([t]) for t in texts])
    assert _cos(singles, expected).min() >= 0.9999
    np.testing.assert_allclose(singles, encoder.encode(texts), atol=1e-5)


def test_xlm_roberta_positions_start_after_the_padding_index(folders):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(folders[("xlm-roberta", "mean")])).eval()
    runner = PackedEncoder(model, "mean")
    assert runner.position_offset and runner.pad_id == 1
    # positions 2, 3, … as transformers numbers them; a pass with BERT's 0, 1, … would differ
    ids = [[101, 2023, 2003, 102], [101, 7592, 102]]
    with torch.no_grad():
        reference = torch.stack([model(torch.tensor([s])).last_hidden_state[0].mean(0) for s in ids])
    torch.testing.assert_close(runner(ids), reference, atol=1e-5, rtol=1e-4)
    runner.position_offset = False
    assert not torch.allclose(runner(ids), reference, atol=1e-3)


def test_every_pooling_mode_and_token_types(folders, minilm_path, tmp_path):
    """All sentence-transformers pooling modes (several at once too) and token type ids."""
    from transformers import AutoModel

    modes = ["mean", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken", "cls"]
    path = build_encoder_folder(tmp_path / "bert-all", minilm_path, "bert", modes, normalize=False)
    reference = SentenceTransformer(str(path), device="cpu")
    encoder = LocalEncoder(str(path), device="cpu", dtype="float32", compile=False)
    assert encoder.packed
    texts = TEXTS[:5]
    ids = encoder.tokenize(texts)
    raw = encoder._packed(ids).numpy()  # before normalisation: each mode's part can be compared
    expected = reference.encode(texts, batch_size=8)
    assert raw.shape == expected.shape == (5, 64 * len(modes))
    np.testing.assert_allclose(raw, expected, atol=2e-5, rtol=1e-4)
    # token type ids: segment 1 for the second half of a pair
    model = AutoModel.from_pretrained(str(folders[("bert", "mean")])).eval()
    runner = PackedEncoder(model, "mean")
    pair = [101, 2054, 2003, 102, 2009, 2003, 102]
    types = [0, 0, 0, 0, 1, 1, 1]
    with torch.no_grad():
        ref = model(torch.tensor([pair]), token_type_ids=torch.tensor([types])).last_hidden_state[0].mean(0)
    torch.testing.assert_close(runner([pair, pair[:4]], token_types=[types, types[:4]])[0], ref,
                               atol=1e-5, rtol=1e-4)
    assert not torch.allclose(runner([pair])[0], ref, atol=1e-3)


def test_any_batch_composition_gives_the_same_rows(folders):
    encoder = LocalEncoder(str(folders[("bert", "cls")]), device="cpu", dtype="float32", compile=False)
    ids = encoder.tokenize(TEXTS * 3)
    expected = np.concatenate([encoder.forward_batch([x]) for x in ids])
    rng = random.Random(0)
    for _ in range(4):
        order = list(range(len(ids)))
        rng.shuffle(order)
        cut = rng.randint(1, len(order) - 1)
        for part in (order[:cut], order[cut:]):
            np.testing.assert_allclose(encoder.forward_batch([ids[i] for i in part]), expected[part], atol=1e-5)


@pytest.mark.slow
def test_minilm_packed_matches_sentence_transformers(minilm_path, minilm_encoder):
    assert minilm_encoder.packed
    texts = TEXTS + [LONG]
    reference = SentenceTransformer(str(minilm_path), device="cpu").encode(texts, normalize_embeddings=True)
    assert _cos(minilm_encoder.encode(texts), reference).min() >= 0.9999
    singles = np.concatenate([minilm_encoder.encode([t]) for t in texts])
    assert _cos(singles, reference).min() >= 0.9999
    padded = LocalEncoder(str(minilm_path), device="cpu", dtype="float32", packed=False)
    assert not padded.packed
    np.testing.assert_allclose(minilm_encoder.encode(texts), padded.encode(texts), atol=1e-5)


@pytest.mark.slow
def test_bf16_packed_stays_close_and_compiled_equals_eager(minilm_path, minilm_encoder):
    bf16 = LocalEncoder(str(minilm_path), device="cpu", dtype="bfloat16", compile=False)
    assert bf16.packed
    assert _cos(bf16.encode(TEXTS), minilm_encoder.encode(TEXTS)).min() >= 0.99
    compiled = LocalEncoder(str(minilm_path), device="cpu", dtype="float32", compile=True)
    assert compiled.info()["compiled"] is True
    ids = compiled.tokenize(TEXTS)
    for batch in (ids, ids[:1], ids[2:4]):
        np.testing.assert_allclose(compiled.forward_batch(batch), minilm_encoder.forward_batch(batch), atol=1e-5)


def test_unsupported_encoders_keep_the_padded_pass(folders):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(folders[("bert", "mean")])).eval()
    assert supports_packed_encoder(model, "mean")
    assert not supports_packed_encoder(model, "no-such-mode")

    class PromptFree:  # a Pooling module that leaves the prompt out of the mean
        pooling_mode = "mean"
        include_prompt = False

    assert not supports_packed_encoder(model, PromptFree())
    with pytest.raises(ValueError, match="not supported"):
        PackedEncoder(model, "no-such-mode")
