"""Threshold calibration maths on hand-made score lists with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from qembed.errors import InputError
from qembed.eval.pairs import METRIC_KEYS, calibrate, metrics_at, parse_label, sweep


def test_known_best_threshold_is_the_midpoint_of_the_best_cut():
    scores = [0.95, 0.90, 0.85, 0.70, 0.60, 0.55, 0.40, 0.30]
    labels = [1, 1, 1, 0, 1, 1, 0, 0]
    out = calibrate(scores, labels)
    assert set(METRIC_KEYS) <= set(out)
    # Best cut: everything from 0.55 up is "same" -> one error (0.70) -> 7/8.
    assert out["threshold"] == pytest.approx((0.55 + 0.40) / 2)
    assert out["accuracy"] == pytest.approx(7 / 8)
    assert out["f1_threshold"] == pytest.approx(0.475)
    assert out["precision"] == pytest.approx(5 / 6)
    assert out["recall"] == pytest.approx(1.0)
    assert out["f1"] == pytest.approx(10 / 11)
    # AP: precision at each positive in rank order: 1, 1, 1, 4/5, 5/6.
    assert out["average_precision"] == pytest.approx((3 + 4 / 5 + 5 / 6) / 5)
    assert out["n"] == 8 and out["positives"] == 5


def test_accuracy_and_f1_thresholds_differ_and_ties_take_the_highest():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    labels = [1, 0, 1, 0, 1]
    out = calibrate(scores, labels)
    # Accuracy 3/5 is reached by three cuts (0.85, 0.65 and "all same"); the highest wins.
    assert out["accuracy"] == pytest.approx(0.6)
    assert out["threshold"] == pytest.approx(0.85)
    # F1 is best when every pair is "same": P = 3/5, R = 1, F1 = 0.75; the cut sits at the lowest score.
    assert out["f1"] == pytest.approx(0.75)
    assert out["f1_threshold"] == pytest.approx(0.5)
    assert out["recall"] == pytest.approx(1.0)


def test_all_negative_prediction_is_a_candidate():
    # Highest accuracy: call nothing "same" (4 of 5 are different; the positive scores lowest).
    out = calibrate([0.9, 0.8, 0.7, 0.6, 0.1], [0, 0, 0, 0, 1])
    assert out["accuracy"] == pytest.approx(0.8)
    assert out["threshold"] > 0.9
    assert metrics_at([0.9, 0.8, 0.7, 0.6, 0.1], [0, 0, 0, 0, 1], out["threshold"])["accuracy"] == pytest.approx(0.8)


def test_exhaustive_agreement_with_scikit_learn_on_random_scores():
    rng = np.random.default_rng(7)
    for _ in range(15):
        n = int(rng.integers(5, 50))
        scores = np.round(rng.normal(size=n), 1)  # many ties
        labels = rng.integers(0, 2, n)
        if labels.sum() in (0, n):
            continue
        out = calibrate(scores, labels)
        candidates = np.concatenate([np.unique(scores), [scores.max() + 1.0]])
        best_acc = max(accuracy_score(labels, scores >= t) for t in candidates)
        best_f1 = max(f1_score(labels, scores >= t, zero_division=0) for t in candidates)
        assert out["accuracy"] == pytest.approx(best_acc)
        assert out["f1"] == pytest.approx(best_f1)
        # the thresholds returned actually achieve those values
        assert accuracy_score(labels, scores >= out["threshold"]) == pytest.approx(best_acc)
        assert f1_score(labels, scores >= out["f1_threshold"]) == pytest.approx(best_f1)
        # and every sweep row equals metrics_at at that threshold
        curve = sweep(scores, labels)
        for t, acc, f1 in list(zip(curve["threshold"], curve["accuracy"], curve["f1"]))[:: max(1, n // 10)]:
            m = metrics_at(scores, labels, t)
            assert m["accuracy"] == pytest.approx(acc) and m["f1"] == pytest.approx(f1)


def test_metrics_at_a_fixed_threshold():
    m = metrics_at([0.9, 0.8, 0.4, 0.2], ["1", "0", "1", "0"], 0.5)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(0.5)
    assert m["threshold"] == m["f1_threshold"] == 0.5
    assert metrics_at([0.9, 0.1], [0, 0], 0.5)["average_precision"] is None


@pytest.mark.parametrize("labels, message", [
    ([0, 1, 2], "label must be 0 or 1"),
    (["yes", "no", "1"], "label must be 0 or 1"),
    ([0, 1], "got 3 scores but 2 labels"),
])
def test_bad_labels_are_rejected(labels, message):
    with pytest.raises(InputError, match=message):
        calibrate([0.1, 0.2, 0.3], labels)


def test_calibration_needs_both_classes_and_finite_scores():
    with pytest.raises(InputError, match="both same"):
        calibrate([0.1, 0.2], [1, 1])
    with pytest.raises(InputError, match="NaN"):
        calibrate([0.1, float("nan")], [0, 1])
    with pytest.raises(InputError, match="no scores"):
        calibrate([], [])


def test_parse_label_accepts_file_spellings():
    assert [parse_label(v) for v in (0, 1, "0", "1", " 1 ", True, "false", 1.0)] == [0, 1, 0, 1, 1, 1, 0, 1]
