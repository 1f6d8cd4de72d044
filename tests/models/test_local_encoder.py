"""The Qwen3-Embedding conventions of DESIGN.md, checked on a tiny random Qwen3 with the real tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

import qembed
from qembed.errors import InputError, InputTooLongError, ModelNotFoundError
from qembed.models.encoder import plan_batches
from qembed.models.local import LocalEncoder, pick_dtype
from qembed.models.prompts import DEFAULT_QUERY_INSTRUCTION

ENDOFTEXT = 151643
IM_END = 151645

TEXTS = [
    "怎么还花呗",
    "如何归还蚂蚁花呗",
    "借呗能分期吗",
    "借呗支持分几期还款,每期的利息怎么计算,提前还款有没有违约金?",
    "hi",
    "The quick brown fox jumps over the lazy dog, again and again, until the dog wakes up.",
]


def reference_embed(model_path, texts, max_length=8192):
    """The model card's formula, written independently of qembed: last token's hidden state, L2."""
    tok = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    model = AutoModel.from_pretrained(model_path, dtype=torch.float32).eval()
    out = []
    for text in texts:
        batch = tok([text], truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        vec = torch.nn.functional.normalize(hidden[:, -1], p=2, dim=-1)
        out.append(vec[0].numpy())
    return np.stack(out)


def test_parity_with_model_card_reference(tiny_encoder, tiny_model_path):
    ours = tiny_encoder.encode(TEXTS)
    ref = reference_embed(tiny_model_path, TEXTS)
    assert ours.dtype == np.float32 and ours.shape == (len(TEXTS), tiny_encoder.dim)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_parity_with_instruction(tiny_encoder, tiny_model_path):
    task = "Given a web search query, retrieve relevant passages that answer the query"
    ours = tiny_encoder.encode(TEXTS[:3], instruction=task)
    ref = reference_embed(tiny_model_path, [f"Instruct: {task}\nQuery:{t}" for t in TEXTS[:3]])
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_instruction_text_format(tiny_encoder):
    assert tiny_encoder.format(["怎么还花呗"], "Retrieve semantically similar text") == [
        "Instruct: Retrieve semantically similar text\nQuery:怎么还花呗"
    ]
    # the model's own prompt names work too
    assert tiny_encoder.format(["x"], "query") == [f"Instruct: {DEFAULT_QUERY_INSTRUCTION}\nQuery:x"]
    assert tiny_encoder.supports_instructions
    with_instr = tiny_encoder.encode(["x"], instruction="Retrieve semantically similar text")
    plain = tiny_encoder.encode(["x"])
    assert not np.allclose(with_instr, plain)


def test_outputs_unit_norm_and_end_token(tiny_encoder):
    vecs = tiny_encoder.encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    for ids in tiny_encoder.tokenize(TEXTS, instruction="task"):
        assert ids[-1] == ENDOFTEXT
        assert IM_END not in ids


@pytest.mark.parametrize("texts", [
    ["怎么还花呗", "借呗能分期吗", "花呗逾期怎样"],  # equal or near-equal lengths
    TEXTS,  # mixed lengths
])
def test_batched_equals_single(tiny_encoder, texts):
    batched = tiny_encoder.encode(texts)
    single = np.vstack([tiny_encoder.encode([t]) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_batched_equals_single_with_small_token_budget(tiny_model_path, padding_side):
    enc = LocalEncoder(str(tiny_model_path), device="cpu", dtype="float32", max_batch_tokens=40,
                       max_batch_size=3, padding_side=padding_side)
    full = enc.encode(TEXTS * 3)
    single = np.vstack([enc.encode([t]) for t in TEXTS * 3])
    np.testing.assert_allclose(full, single, atol=1e-5)


def test_truncation_keeps_end_token(tiny_model_path):
    enc = LocalEncoder(str(tiny_model_path), device="cpu", dtype="float32", max_input_tokens=16)
    long_text = "花呗还款失败有哪些原因 " * 20
    ids = enc.tokenize([long_text])[0]
    assert len(ids) == 16 and ids[-1] == ENDOFTEXT
    ref = reference_embed(tiny_model_path, [long_text], max_length=16)
    np.testing.assert_allclose(enc.encode([long_text]), ref, atol=1e-4)
    assert enc.count_tokens([long_text])[0] > 16


def test_token_id_input_gets_end_token_and_limit(tiny_model_path):
    enc = LocalEncoder(str(tiny_model_path), device="cpu", dtype="float32", max_input_tokens=8)
    text_ids = enc.tokenize(["怎么还花呗"])[0]
    without_end = text_ids[:-1]
    prepared = enc.prepare_token_ids([without_end, list(range(100, 130))])
    assert prepared[0] == text_ids
    assert len(prepared[1]) == 8 and prepared[1][-1] == ENDOFTEXT
    np.testing.assert_allclose(enc.embed_token_ids(prepared[:1]), enc.encode(["怎么还花呗"]), atol=1e-6)
    with pytest.raises(InputError, match="invalid token id"):
        enc.prepare_token_ids([[1, 2, -5]])
    with pytest.raises(InputError, match="empty list"):
        enc.prepare_token_ids([[]])


def test_matryoshka_dimensions(tiny_encoder):
    full = tiny_encoder.encode(TEXTS)
    small = tiny_encoder.encode(TEXTS, dimensions=32)
    assert small.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(np.linalg.norm(small, axis=1), 1.0, atol=1e-5)
    expected = full[:, :32] / np.linalg.norm(full[:, :32], axis=1, keepdims=True)
    np.testing.assert_allclose(small, expected, atol=1e-5)
    assert tiny_encoder.encode(TEXTS[:1], dimensions=tiny_encoder.dim).shape == (1, tiny_encoder.dim)


@pytest.mark.parametrize("bad", [31, 0, -1, 65, 10_000, 3.5, "32", True])
def test_dimensions_out_of_range(tiny_encoder, bad):
    with pytest.raises(InputError, match="dimensions"):
        tiny_encoder.encode(["x"], dimensions=bad)


@pytest.mark.parametrize("bad, message", [
    ("", "empty string"),
    ([], "is empty"),
    (["ok", ""], r"texts\[1\] is an empty string"),
    (["ok", 3], r"texts\[1\] is int"),
    ([None], "NoneType"),
    (42, "must be a string or a list"),
    ({"a": 1}, "must be a string or a list"),
])
def test_bad_texts(tiny_encoder, bad, message):
    with pytest.raises(InputError, match=message):
        tiny_encoder.encode(bad)


def test_too_long_without_truncation(tiny_model_path):
    enc = LocalEncoder(str(tiny_model_path), device="cpu", dtype="float32", max_input_tokens=16, truncate=False)
    with pytest.raises(InputTooLongError) as info:
        enc.encode(["short", "花呗还款失败有哪些原因 " * 20])
    assert info.value.index == 1 and info.value.length > 16 and info.value.limit == 16
    assert "input 1" in str(info.value)


def test_missing_model_folder():
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        qembed.load_encoder("./no/such/model-folder")


def test_hub_id_offline_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelNotFoundError) as info:
        qembed.load_encoder("Qwen/Qwen3-Embedding-0.6B")
    message = str(info.value)
    assert "Qwen/Qwen3-Embedding-0.6B" in message and "HF_HUB_OFFLINE" in message
    assert "folder" in message


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelNotFoundError, match="config.json"):
        qembed.load_encoder(str(tmp_path))


def test_bad_max_input_tokens(tiny_model_path):
    with pytest.raises(InputError, match="max_input_tokens"):
        LocalEncoder(str(tiny_model_path), device="cpu", max_input_tokens=1)
    with pytest.raises(InputError, match="max_input_tokens"):
        LocalEncoder(str(tiny_model_path), device="cpu", max_input_tokens=10**7)


def test_defaults_and_info(tiny_encoder):
    info = tiny_encoder.info()
    assert info["pooling"] == "lasttoken" and info["padding_side"] == "right"
    assert (info["max_batch_tokens"], info["max_batch_size"]) == (4096, 256)  # CPU defaults, packed
    assert info["packed"] is True
    assert tiny_encoder.max_input_tokens == 8192
    assert info["dim"] == 64 and info["supports_instructions"] is True


def test_dtype_choice():
    assert pick_dtype("float32", "cpu") == torch.float32
    assert pick_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(InputError, match="unknown dtype"):
        pick_dtype("int3", "cpu")
    from qembed.models.local import cpu_has_fast_bf16

    assert pick_dtype(None, "cpu") == (torch.bfloat16 if cpu_has_fast_bf16() else torch.float32)


def test_bf16_close_to_fp32(tiny_model_path, tiny_encoder):
    enc = LocalEncoder(str(tiny_model_path), device="cpu", dtype="bfloat16")
    cos = np.sum(enc.encode(TEXTS) * tiny_encoder.encode(TEXTS), axis=1)
    assert (cos > 0.98).all()


def test_nan_is_reported():
    from qembed.models.encoder import check_finite

    with pytest.raises(FloatingPointError, match="non-finite"):
        check_finite(np.array([[0.1, np.nan]], dtype=np.float32))


def test_plan_batches_respects_budget_and_groups_by_length():
    lengths = [5, 1000, 6, 7, 5, 900, 8]
    batches = plan_batches(lengths, max_batch_tokens=2000, max_batch_size=64)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) * max(lengths[i] for i in b) <= 2000 or len(b) == 1
    # the short texts are not padded to 1000, and padding 900 to 1000 costs more than a pass
    assert any(set(b) == {0, 2, 3, 4, 6} for b in batches)
    assert [1] in batches and [5] in batches
    assert plan_batches([10] * 10, 1000, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_padded_plan_is_the_least_padding_plus_passes():
    import itertools

    rng = np.random.default_rng(3)
    for trial in range(40):
        lengths = [int(x) for x in rng.integers(3, 30, size=int(rng.integers(1, 9)))]
        cost = int(rng.integers(0, 40))
        batches = plan_batches(lengths, max_batch_tokens=90, max_batch_size=4, pass_cost=cost)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))

        def total(cuts):
            return sum(len(b) * max(b) + cost for b in cuts)

        got = total([[lengths[i] for i in b] for b in batches])
        widths = sorted(lengths, reverse=True)
        best = None  # every split of the sorted lengths into runs within the budgets
        for mask in itertools.product([0, 1], repeat=len(widths) - 1):
            runs, run = [], [widths[0]]
            for w, cut in zip(widths[1:], mask):
                if cut:
                    runs.append(run)
                    run = []
                run.append(w)
            runs.append(run)
            if all(len(r) <= 4 and (len(r) * r[0] <= 90 or len(r) == 1) for r in runs):
                best = total(runs) if best is None else min(best, total(runs))
        assert got == best, (lengths, cost, batches)
        assert all(len(b) <= 4 and (len(b) * max(lengths[i] for i in b) <= 90 or len(b) == 1) for b in batches)
    # short sentences of mixed lengths: far less padding than full batches padded to their longest
    lengths = [6] * 4 + [8] * 20 + [9] * 20 + [12] * 12 + [25, 27]
    batches = plan_batches(lengths, 4096, 32)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    greedy = plan_batches(lengths, 4096, 32, pass_cost=10**6)
    assert padded < 0.8 * sum(len(b) * max(lengths[i] for i in b) for b in greedy)


def test_top_level_api_names():
    import importlib

    for name in qembed.__all__:
        assert getattr(qembed, name) is not None, name
    assert qembed.score_pairs is importlib.import_module("qembed.pairs.scoring").score_pairs
    with pytest.raises(AttributeError):
        qembed.no_such_name  # noqa: B018
