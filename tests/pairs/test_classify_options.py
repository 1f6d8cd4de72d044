"""`qembed classify zero-shot --label-instruction` and `qembed classify train --refit`, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qembed.cli import main
from qembed.models.prompts import SYMMETRIC_INSTRUCTION
from qembed.pairs.classify import TrainedClassifier, train_classifier

TEXTS = ["my card payment was declined", "where is my parcel", "refund has not arrived"]
LABELS = ["billing: payments, charges and refunds", "delivery: parcels and couriers"]


def _zero_shot(capsys, tiny_model_path, *extra: str) -> list[dict]:
    args = ["classify", "zero-shot", *TEXTS, "--model", str(tiny_model_path), "--dtype", "float32", "--json"]
    for spec in LABELS:
        args += ["--label", spec]
    assert main([*args, *extra]) == 0
    return json.loads(capsys.readouterr().out)["data"]


def test_label_instruction_is_what_the_labels_are_embedded_with(tiny_model_path, tiny_encoder, capsys):
    label_instruction = "Represent this category name for routing customer messages"
    got = _zero_shot(capsys, tiny_model_path, "--label-instruction", label_instruction)
    texts = tiny_encoder.encode(TEXTS, instruction=SYMMETRIC_INSTRUCTION)
    labels = tiny_encoder.encode(LABELS, instruction=label_instruction)
    expected = texts @ labels.T
    for row, want in zip(got, expected):
        scores = {x["label"]: x["score"] for x in row["labels"]}
        np.testing.assert_allclose([scores["billing"], scores["delivery"]], want, atol=1e-5)
    # without it the labels get the texts' instruction, which scores differently
    same = _zero_shot(capsys, tiny_model_path)
    default = texts @ tiny_encoder.encode(LABELS, instruction=SYMMETRIC_INSTRUCTION).T
    for row, want in zip(same, default):
        scores = {x["label"]: x["score"] for x in row["labels"]}
        np.testing.assert_allclose([scores["billing"], scores["delivery"]], want, atol=1e-5)
    assert not np.allclose(expected, default, atol=1e-3)


@pytest.fixture
def labelled(tmp_path):
    rows = [{"text": f"invoice {i} was charged twice", "label": "billing"} for i in range(8)]
    rows += [{"text": f"parcel {i} is late", "label": "delivery"} for i in range(8)]
    path = tmp_path / "labelled.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path, [r["text"] for r in rows], [r["label"] for r in rows]


def test_refit_fits_the_saved_head_on_all_the_data(labelled, tmp_path, tiny_model_path, tiny_encoder, capsys):
    path, texts, labels = labelled
    base = ["classify", "train", "--input", str(path), "--model", str(tiny_model_path), "--dtype", "float32",
            "--test-size", "0.25", "--json"]
    assert main([*base, "--output", str(tmp_path / "held-out")]) == 0
    held = json.loads(capsys.readouterr().out)
    assert main([*base, "--refit", "--output", str(tmp_path / "refit")]) == 0
    refit = json.loads(capsys.readouterr().out)
    # the measurement is the same (made before refitting) ...
    assert refit["metrics"]["test"] == held["metrics"]["test"]
    a = TrainedClassifier.load(tmp_path / "held-out")
    b = TrainedClassifier.load(tmp_path / "refit")
    assert a.metrics["fitted_on"] == "train" and b.metrics["fitted_on"] == "all"
    # ... but the saved head is the one fitted on every text: the same as training without a test split
    everything = train_classifier(tiny_encoder, texts, labels, test_size=0)
    np.testing.assert_allclose(b.coef, everything.coef, atol=1e-4)
    np.testing.assert_allclose(b.intercept, everything.intercept, atol=1e-4)
    assert not np.allclose(a.coef, b.coef, atol=1e-4)
