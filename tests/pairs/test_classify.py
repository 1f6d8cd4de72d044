"""Zero-shot routing and the supervised logistic-regression head."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qembed.errors import InputError, NotFoundError
from qembed.pairs.classify import (
    MANIFEST, TrainedClassifier, ZeroShotClassifier, parse_labels, train_classifier, zero_shot,
)

from .conftest import QUEUES, TICKETS, TRAINING


def test_zero_shot_routes_tickets_to_their_queue(minilm_encoder):
    preds = zero_shot(minilm_encoder, [t for t, _ in TICKETS], QUEUES)
    assert [p["label"] for p in preds] == [q for _, q in TICKETS]
    for p in preds:
        ranked = p["labels"]
        assert [r["label"] for r in ranked][0] == p["label"] and len(ranked) == 3
        assert ranked[0]["score"] >= ranked[1]["score"] >= ranked[2]["score"]
        assert sum(r["probability"] for r in ranked) == pytest.approx(1.0, abs=1e-5)
        assert p["score"] == ranked[0]["score"]


def test_bare_label_names_work_too(minilm_encoder):
    preds = zero_shot(minilm_encoder, [t for t, _ in TICKETS], ["billing", "shipping", "login"], top_k=1)
    assert sum(p["label"] == q for p, (_, q) in zip(preds, TICKETS)) >= 8
    assert all(len(p["labels"]) == 1 for p in preds)


def test_a_label_may_have_several_descriptions(minilm_encoder):
    clf = ZeroShotClassifier(minilm_encoder, [
        "billing: refunds and money back", "billing: invoices and charges on my card",
        "shipping: parcels and delivery", "login: passwords and signing in"])
    assert clf.names == ["billing", "shipping", "login"]
    scores = clf.scores(["I was charged twice on my card"])
    assert scores.shape == (1, 3) and int(np.argmax(scores[0])) == 0


def test_label_parsing_and_errors(tiny_encoder):
    names, texts, owner = parse_labels(["a: first", "b", "a: second"])
    assert names == ["a", "b"] and texts == ["a: first", "b", "a: second"] and owner == [0, 1, 0]
    with pytest.raises(InputError, match="at least two labels"):
        ZeroShotClassifier(tiny_encoder, ["only: one", "only: again"])
    with pytest.raises(InputError, match="empty name"):
        parse_labels([": nameless", "b"])
    clf = ZeroShotClassifier(tiny_encoder, ["x", "y"])
    with pytest.raises(InputError, match="top_k"):
        clf.predict(["t"], top_k=0)


def test_supervised_head_learns_routing_and_round_trips(minilm_encoder, tmp_path: Path):
    texts, labels = [t for t, _ in TRAINING], [q for _, q in TRAINING]
    clf = train_classifier(minilm_encoder, texts, labels, test_size=0.3, seed=0)
    test = clf.metrics["test"]
    assert test["n"] == 9 and set(test["per_label"]) == {"billing", "login", "shipping"}
    assert all(v["support"] == 3 for v in test["per_label"].values())  # stratified
    assert test["accuracy"] >= 0.75 and test["macro_f1"] >= 0.7
    new = [t for t, _ in TICKETS]
    preds = clf.predict(minilm_encoder, new)
    assert sum(p["label"] == q for p, (_, q) in zip(preds, TICKETS)) >= 8
    folder = clf.save(tmp_path / "clf")
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["labels"] == ["billing", "login", "shipping"]
    assert manifest["model"] == str(minilm_encoder.path)
    assert manifest["metrics"]["test"]["accuracy"] == test["accuracy"]
    loaded = TrainedClassifier.load(folder)
    again = loaded.predict(minilm_encoder, new)
    for a, b in zip(preds, again):
        assert a["label"] == b["label"] and a["probability"] == pytest.approx(b["probability"], abs=1e-5)


def test_binary_head(tiny_encoder):
    texts = [f"good {i}" for i in range(6)] + [f"bad {i}" for i in range(6)]
    clf = train_classifier(tiny_encoder, texts, ["pos"] * 6 + ["neg"] * 6, test_size=0)
    assert clf.coef.shape == (1, tiny_encoder.dim) and clf.metrics["fitted_on"] == "all"
    out = clf.predict(tiny_encoder, ["good 3"])
    assert out[0]["label"] in {"pos", "neg"} and len(out[0]["labels"]) == 2


def test_training_errors(tiny_encoder):
    with pytest.raises(InputError, match="two distinct labels"):
        train_classifier(tiny_encoder, ["a", "b"], ["x", "x"])
    with pytest.raises(InputError, match="single example"):
        train_classifier(tiny_encoder, ["a", "b", "c"], ["x", "x", "y"])
    with pytest.raises(InputError, match="cannot hold every one"):
        train_classifier(tiny_encoder, ["a", "b", "c", "d"], ["x", "x", "y", "y"], test_size=0.1)
    with pytest.raises(InputError, match="test_size"):
        train_classifier(tiny_encoder, ["a", "b", "c", "d"], ["x", "x", "y", "y"], test_size=1.5)


def test_unknown_or_damaged_classifier_folder(tmp_path: Path):
    with pytest.raises(NotFoundError, match="no classifier at"):
        TrainedClassifier.load(tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / MANIFEST).write_text("{not json", encoding="utf-8")
    np.savez(tmp_path / "bad" / "weights.npz", coef=np.zeros((1, 4)), intercept=np.zeros(1))
    with pytest.raises(InputError, match="damaged"):
        TrainedClassifier.load(tmp_path / "bad")


def test_vector_size_mismatch_is_explained(tiny_encoder, minilm_encoder):
    clf = train_classifier(tiny_encoder, ["a", "b", "c", "d"], ["x", "x", "y", "y"], test_size=0)
    with pytest.raises(InputError, match="size 384 but this classifier"):
        clf.predict(minilm_encoder, ["hello"])


@pytest.mark.parametrize("temperature", [1e-300, 5e-324, 1e-3, 1e6])
def test_probabilities_stay_finite_at_any_positive_temperature(tiny_encoder, temperature):
    clf = ZeroShotClassifier(tiny_encoder, ["billing: money", "shipping: parcels", "login: passwords"])
    [pred] = clf.predict(["where is my parcel"], temperature=temperature)
    probs = [p["probability"] for p in pred["labels"]]
    assert all(np.isfinite(probs)) and sum(probs) == pytest.approx(1.0)
    if temperature < 1e-100:  # the arg-max label takes it all
        assert probs[0] == 1.0
