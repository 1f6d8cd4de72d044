"""`qembed finetune embedding`: tuning that keeps an embedding model, on the tiny Qwen3."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qembed.cli import main
from qembed.models.prompts import SYMMETRIC_INSTRUCTION, qwen_prefix
from qembed.train.data import load_pairs


@pytest.mark.slow
def test_merged_model_loads_in_qembed(tiny_model_path, afqmc_small, tmp_path, capsys):
    import qembed
    from qembed.eval.pairs import calibrate

    train, dev = afqmc_small
    out = tmp_path / "tuned"
    assert main(["finetune", "embedding", "--train", str(train), "--dev", str(dev), "--model", str(tiny_model_path),
                 "--output", str(out), "--loss", "cosent", "--merge", "--epochs", "1", "--batch-size", "16",
                 "--max-length", "32", "--lr", "1e-3", "--device", "cpu", "--precision", "fp32", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert saved["saved"] == "merged" and saved["prompt"] == qwen_prefix(SYMMETRIC_INSTRUCTION)
    for part in ("before", "after"):
        assert set(saved[part]) >= {"spearman", "accuracy", "f1", "threshold", "pairs"}
        assert saved[part]["pairs"] == 32
    assert saved["before"] != saved["after"]  # training moved the model
    assert doc["train_examples_per_s"] > 0 and doc["trainable"].startswith("trainable params:")
    # A complete sentence-transformers folder: no adapter, the model's own limits and pooling.
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").exists()
    enc = qembed.load_encoder(str(out), device="cpu", dtype="float32")
    assert enc.dim == 64 and enc.pooling == "lasttoken" and enc.supports_instructions
    assert enc.max_input_tokens == 8192  # the training --max-length does not leak into the model
    data = load_pairs(dev)
    a = enc.encode(data.first, instruction=SYMMETRIC_INSTRUCTION)
    b = enc.encode(data.second, instruction=SYMMETRIC_INSTRUCTION)
    assert a.shape == (32, 64) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    # qembed's encoder on the merged folder reproduces the "after" measurement of the trained model.
    cal = calibrate((a * b).sum(axis=1), data.int_labels())
    assert cal["accuracy"] == pytest.approx(saved["after"]["accuracy"])
    assert cal["threshold"] == pytest.approx(saved["after"]["threshold"], abs=1e-4)
    # `qembed serve --model-path folder` serves it: the server loads the folder itself.
    import openai

    from qembed.server.testing import running_server

    with running_server(model=str(out), device="cpu", dtype="float32", served_model_name="tuned") as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="EMPTY")
        served = client.embeddings.create(model="tuned", input=data.first[:3])
    np.testing.assert_allclose(np.array([d.embedding for d in served.data]), enc.encode(data.first[:3]), atol=1e-4)


@pytest.mark.slow
def test_adapter_on_graded_scores(tiny_model_path, shared, tmp_path, capsys):
    from sentence_transformers import SentenceTransformer

    from qembed.train.contrastive import pair_scores, score_metrics

    sts = shared / "data" / "stsb_zh"
    out = tmp_path / "adapter"
    assert main(["finetune", "embedding", "--train", str(sts / "STS-B.train.data"), "--dev",
                 str(sts / "STS-B.valid.data"), "--limit-train", "64", "--limit-dev", "32", "--model",
                 str(tiny_model_path), "--output", str(out), "--loss", "mnrl", "--batch-size", "8",
                 "--max-length", "32", "--device", "cpu", "--precision", "fp32"]) == 0
    text = capsys.readouterr().out
    assert "spearman" in text and "adapter model ->" in text
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert "accuracy" not in saved["after"] and -1 <= saved["after"]["spearman"] <= 1
    assert saved["label_scale"] == 5.0 and 0 < saved["train_examples"] < 64  # mnrl keeps pairs scored >= 4
    assert (out / "adapter_config.json").exists()
    model = SentenceTransformer(str(out), device="cpu")  # base + adapter
    dev = load_pairs(sts / "STS-B.valid.data", labels="score", limit=32)
    again = score_metrics(pair_scores(model, dev, saved["prompt"]), dev)
    assert again["spearman"] == pytest.approx(saved["after"]["spearman"], abs=1e-4)


@pytest.mark.parametrize("args,expect", [
    (["--loss", "triplet"], "unknown loss 'triplet'"),
    (["--loss", "contrastive", "--train", "STS"], "contrastive loss needs 0/1 labels"),
    (["--max-length", "4"], "max length must be at least 8"),
    (["--target-modules", "qkv"], "unknown target module(s) qkv"),
])
def test_bad_input(args, expect, tiny_model_path, afqmc_small, shared, tmp_path, capsys):
    train, dev = afqmc_small
    args = [str(shared / "data" / "stsb_zh" / "STS-B.valid.data") if a == "STS" else a for a in args]
    if "--train" not in args:
        args = ["--train", str(train), *args]
    out = tmp_path / "out"
    code = main(["finetune", "embedding", *args, "--dev", str(dev), "--model", str(tiny_model_path),
                 "--output", str(out), "--device", "cpu"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and expect in errors[0], errors
    assert not (out / "metrics.json").exists()
