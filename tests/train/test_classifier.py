"""`qembed finetune classifier` and `qembed classify-pairs` on the tiny Qwen3 (one short epoch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import torch
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, precision_score, recall_score

from qembed.cli import main
from qembed.train.data import load_pairs
from qembed.pairs.cross_encoder import MANIFEST, PairClassifier
from qembed.train.pair_classifier import CHECKPOINTS, ClassifierConfig, last_checkpoint, train_pair_classifier


def test_metrics_and_folder(trained_classifier, afqmc_small):
    out, doc, in_memory = trained_classifier
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert saved == json.loads(json.dumps(doc))
    assert saved["finished"] and not saved["stopped_early"] and len(saved["epochs"]) == 1
    row = saved["epochs"][0]
    assert row["epoch"] == 1 and row["train_pairs_per_s"] > 0 and row["train_loss"] > 0
    # The dev metrics of the epoch are those of the model it left, recomputed independently.
    dev = load_pairs(afqmc_small[1])
    y = np.array(dev.int_labels())
    logits = in_memory.logits(dev.first, dev.second)
    pred = logits.argmax(axis=1)
    assert row["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert row["f1"] == pytest.approx(f1_score(y, pred, zero_division=0))
    assert row["precision"] == pytest.approx(precision_score(y, pred, zero_division=0))
    assert row["recall"] == pytest.approx(recall_score(y, pred, zero_division=0))
    assert row["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(
        torch.from_numpy(logits), torch.from_numpy(y))), rel=1e-4)
    p_same = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    assert row["average_precision"] == pytest.approx(average_precision_score(y, p_same), rel=1e-4)
    assert saved["best"] == {k: row[k] for k in ("epoch", "accuracy", "f1", "precision", "recall", "loss")}
    assert saved["train_pairs"] == 64 and saved["dev_pairs"] == 32
    # Dev majority on these 32 pairs, computed independently.
    labels = [int(json.loads(x)["label"]) for x in afqmc_small[1].read_text(encoding="utf-8").splitlines()]
    assert saved["dev_majority_accuracy"] == pytest.approx(max(np.mean(labels), 1 - np.mean(labels)))
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    checkpoint = last_checkpoint(out)
    assert checkpoint is not None and checkpoint.parent == out / CHECKPOINTS
    assert (checkpoint / "trainer_state.json").exists() and (out / "tokenizer.json").exists()
    adapter_cfg = json.loads((out / "adapter_config.json").read_text(encoding="utf-8"))
    assert adapter_cfg["task_type"] == "SEQ_CLS" and adapter_cfg["r"] == 8
    assert sorted(adapter_cfg["target_modules"]) == ["k_proj", "q_proj", "v_proj"]
    assert "score" in (adapter_cfg.get("modules_to_save") or [])
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["max_length"] == 32 and manifest["pad_token_id"] != 151643


def test_early_stopping_keeps_the_best_epoch(tiny_model_path, afqmc_small, tmp_path):
    # A learning rate this small leaves the predictions as they are: dev F1 never improves after
    # epoch 1, so patience 1 stops the run after epoch 2 of 5, and epoch 1 stays the best.
    train, dev = afqmc_small
    cfg = ClassifierConfig(model=str(tiny_model_path), max_length=32, batch_size=32, epochs=5, lr=1e-12,
                           early_stopping_patience=1, device="cpu", precision="fp32")
    doc = train_pair_classifier(load_pairs(train), load_pairs(dev), tmp_path / "es", cfg, progress=False)
    assert doc["stopped_early"] and [e["epoch"] for e in doc["epochs"]] == [1, 2]
    assert doc["epochs"][0]["f1"] == doc["epochs"][1]["f1"]
    assert doc["best"]["epoch"] == 1
    # without patience the same run goes through every epoch
    cfg.early_stopping_patience = None
    cfg.epochs = 3
    full = train_pair_classifier(load_pairs(train), load_pairs(dev), tmp_path / "all", cfg, progress=False)
    assert not full["stopped_early"] and [e["epoch"] for e in full["epochs"]] == [1, 2, 3]


def test_reload_predicts_like_in_memory(trained_classifier, afqmc_small):
    out, doc, in_memory = trained_classifier
    dev = load_pairs(afqmc_small[1])
    expected = in_memory.predict_proba(dev.first, dev.second)
    reloaded = PairClassifier.load(out, device="cpu", precision="fp32")
    got = reloaded.predict_proba(dev.first, dev.second)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert reloaded.evaluate(dev)["accuracy"] == pytest.approx(doc["best"]["accuracy"])
    # Batched and one-at-a-time scoring agree (padding never shifts the pooled token).
    single = np.concatenate([reloaded.predict_proba([a], [b]) for a, b in zip(dev.first[:6], dev.second[:6])])
    np.testing.assert_allclose(single, got[:6], atol=1e-5)
    # The adapter changed the model: the trained head is not the base model's random head.
    assert not np.allclose(got, got.mean())


def test_classify_pairs_cli(trained_classifier, afqmc_small, tmp_path, capsys):
    out, doc, in_memory = trained_classifier
    dev_file = afqmc_small[1]
    assert main(["classify-pairs", "--adapter", str(out), "--input", str(dev_file), "--device", "cpu",
                 "--dtype", "float32", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    dev = load_pairs(dev_file)
    np.testing.assert_allclose([r["probability"] for r in res["data"]],
                               in_memory.predict_proba(dev.first, dev.second), atol=1e-5)
    assert res["metrics"]["accuracy"] == pytest.approx(doc["best"]["accuracy"])
    assert res["n"] == 32 and all(r["prediction"] == int(r["probability"] >= 0.5) for r in res["data"])
    unlabelled = tmp_path / "u.jsonl"
    unlabelled.write_text(json.dumps({"sentence1": "花呗怎么还", "sentence2": "如何还花呗"}, ensure_ascii=False) + "\n",
                          encoding="utf-8")
    target = tmp_path / "scored.jsonl"
    assert main(["classify-pairs", "--adapter", str(out), "--input", str(unlabelled), "-o", str(target),
                 "--device", "cpu"]) == 0
    line = json.loads(target.read_text(encoding="utf-8"))
    assert 0 <= line["probability"] <= 1 and "label" not in line
    assert main(["classify-pairs", "--adapter", str(tmp_path), "--input", str(unlabelled)]) == 2
    assert "not a qembed pair classifier" in capsys.readouterr().err


def test_cli_end_to_end_and_resume(tiny_model_path, afqmc_small, tmp_path, capsys):
    train, dev = afqmc_small
    out = tmp_path / "run"
    base = ["finetune", "classifier", "--input", str(train), "--dev", str(dev), "--model", str(tiny_model_path),
            "--output", str(out), "--max-length", "32", "--batch-size", "32", "--grad-accum", "2",
            "--lr", "1e-3", "--device", "cpu", "--dtype", "float32", "--limit-train", "32", "--limit-dev", "16"]
    assert main([*base, "--epochs", "1", "--json"]) == 0
    captured = capsys.readouterr()
    first = json.loads(captured.out)
    assert f"trainable params: {_tiny_trainable(tiny_model_path):,d} || all params:" in captured.err
    assert [e["epoch"] for e in first["epochs"]] == [1] and first["train_pairs"] == 32
    # A second run into the same folder is refused without --resume / --overwrite.
    assert main([*base, "--epochs", "2"]) == 2
    assert "already holds a classifier" in capsys.readouterr().err
    # --overwrite with a bad option fails before the stored classifier is touched.
    assert main([*base, "--epochs", "2", "--overwrite", "--target-modules", "nope"]) == 2
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8"))["epochs"] == first["epochs"]
    assert (out / "adapter_model.safetensors").exists()
    assert main([*base, "--epochs", "2", "--resume", "--json"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2]
    assert resumed["epochs"][0] == first["epochs"][0]
    # the second epoch continued from the first one's checkpoint: one optimizer step per epoch
    state = json.loads((last_checkpoint(out) / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["global_step"] == 2 and state["epoch"] == 2
    assert resumed["best"]["f1"] >= first["best"]["f1"]
    # Settings must match to resume.
    assert main([*base, "--epochs", "3", "--resume", "--max-length", "48"]) == 2
    assert "max_length was 32" in capsys.readouterr().err


def _bad(tmp_path: Path, rows: list[dict]) -> Path:
    f = tmp_path / "bad.jsonl"
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return f


@pytest.mark.parametrize("case", ["no_label", "label_2", "empty", "max_length", "target", "one_class"])
def test_bad_input_fails_before_training(case, tiny_model_path, afqmc_small, tmp_path, capsys):
    train, dev = afqmc_small
    extra: list[str] = []
    expect = ""
    if case == "no_label":
        train, expect = _bad(tmp_path, [{"sentence1": "a", "sentence2": "b"}]), "no label column"
    elif case == "label_2":
        train = _bad(tmp_path, [{"sentence1": "a", "sentence2": "b", "label": "1"},
                                {"sentence1": "a", "sentence2": "c", "label": "2"}])
        expect = "record 2: label must be 0 or 1"
    elif case == "empty":
        train = tmp_path / "empty.jsonl"
        train.write_text("", encoding="utf-8")
        expect = "empty"
    elif case == "max_length":
        extra, expect = ["--max-length", "7"], "max length must be at least 8"
    elif case == "target":
        extra, expect = ["--target-modules", "q_proj,query_key_value"], "unknown target module(s) query_key_value"
    elif case == "one_class":
        train = _bad(tmp_path, [{"sentence1": "a", "sentence2": "b", "label": "1"}])
        expect = "needs both 0 and 1"
    out = tmp_path / "out"
    code = main(["finetune", "classifier", "--input", str(train), "--dev", str(dev), "--model",
                 str(tiny_model_path), "--output", str(out), "--epochs", "1", "--device", "cpu", *extra])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and expect in errors[0], errors
    assert not (out / "metrics.json").exists() and not (out / CHECKPOINTS).exists()


def _tiny_trainable(path: Path) -> int:
    """LoRA parameters on q/k/v of every layer (r=8) plus the 2-label head, from the model's config."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(str(path))
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    q_out = c.num_attention_heads * head_dim
    kv_out = c.num_key_value_heads * head_dim
    r = 8
    per_layer = r * (c.hidden_size + q_out) + 2 * r * (c.hidden_size + kv_out)
    return c.num_hidden_layers * per_layer + 2 * c.hidden_size
