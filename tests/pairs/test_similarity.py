"""Pair scoring: plumbing with the tiny Qwen3, meaning with all-MiniLM-L6-v2, pair files, thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qembed.errors import InputError, NotFoundError
from qembed.eval.pairs import calibrate
from qembed.models.prompts import SYMMETRIC_INSTRUCTION
from qembed.pairs.scoring import (
    load_threshold, read_pairs, save_threshold, score_pairs, similarity, unique_encode,
)

from .conftest import PAIRS, write_jsonl


def test_scores_match_direct_encoding_with_the_symmetric_instruction(tiny_encoder):
    left = ["借呗能分期吗?", "花呗逾期会怎样?", "借呗能分期吗?"]
    right = ["我可以分几个月还借呗?", "花呗没还会怎么样?", "今天天气怎么样"]
    scores = score_pairs(tiny_encoder, left, right)
    a = tiny_encoder.encode(left, instruction=SYMMETRIC_INSTRUCTION)
    b = tiny_encoder.encode(right, instruction=SYMMETRIC_INSTRUCTION)
    np.testing.assert_allclose(scores, (a * b).sum(axis=1), atol=1e-5)
    # symmetric: swapping the sides changes nothing
    np.testing.assert_allclose(score_pairs(tiny_encoder, right, left), scores, atol=1e-6)
    # the instruction matters for an instruction model, and "" turns it off (None: the default)
    plain = score_pairs(tiny_encoder, left, right, instruction="")
    np.testing.assert_allclose(score_pairs(tiny_encoder, left, right, instruction=None), scores, atol=1e-6)
    np.testing.assert_allclose(plain, (tiny_encoder.encode(left) * tiny_encoder.encode(right)).sum(1), atol=1e-5)
    assert not np.allclose(plain, scores)
    assert similarity(tiny_encoder, left[0], right[0]) == pytest.approx(float(scores[0]), abs=1e-6)


def test_each_distinct_sentence_is_encoded_once(tiny_encoder):
    calls: list[list[str]] = []

    class Counting:
        def __init__(self, inner):
            self.inner = inner
            self.name, self.dim = inner.name, inner.dim

        def encode(self, texts, instruction=None, dimensions=None, progress=False):
            calls.append(list(texts))
            return self.inner.encode(texts, instruction=instruction, dimensions=dimensions)

    texts = ["a b", "c d", "a b", "e f", "c d"]
    vectors, index = unique_encode(Counting(tiny_encoder), texts)
    assert calls == [["a b", "c d", "e f"]]
    assert vectors.shape[0] == 3 and index.tolist() == [0, 1, 0, 2, 1]
    scores = score_pairs(Counting(tiny_encoder), ["a b", "a b"], ["c d", "a b"])
    assert calls[-1] == ["a b", "c d"]
    assert scores[1] == pytest.approx(1.0, abs=1e-5)


def test_mrl_dimensions_pass_through(tiny_encoder):
    s = score_pairs(tiny_encoder, ["hello"], ["world"], dimensions=32)
    a, b = tiny_encoder.encode(["hello", "world"], instruction=SYMMETRIC_INSTRUCTION, dimensions=32)
    assert s[0] == pytest.approx(float(a @ b), abs=1e-5)


def test_paraphrases_score_above_unrelated_pairs(minilm_encoder):
    scores = score_pairs(minilm_encoder, [p[0] for p in PAIRS], [p[1] for p in PAIRS])
    labels = np.array([p[2] for p in PAIRS])
    assert scores[labels == 1].min() > scores[labels == 0].max() + 0.3
    out = calibrate(scores, labels)
    assert out["accuracy"] == 1.0 and out["f1"] == 1.0 and out["average_precision"] == 1.0
    assert scores[labels == 0].max() < out["threshold"] < scores[labels == 1].min()


def test_read_pairs_jsonl_csv_tsv_and_numeric_labels(tmp_path: Path):
    jl = write_jsonl(tmp_path / "p.jsonl", [{"sentence1": "a", "sentence2": "b", "label": 1},
                                             {"sentence1": "c", "sentence2": "d", "label": "0"}])
    data = read_pairs(jl)
    assert (data.left, data.right, data.labels) == (["a", "c"], ["b", "d"], [1, 0])
    (tmp_path / "p.tsv").write_text("sentence1\tsentence2\tlabel\nx\ty\t1\n", encoding="utf-8")
    assert read_pairs(tmp_path / "p.tsv").labels == [1]
    (tmp_path / "p.csv").write_text("q1,q2\nx,y\n", encoding="utf-8")
    unlabelled = read_pairs(tmp_path / "p.csv", left_column="q1", right_column="q2")
    assert unlabelled.labels is None and len(unlabelled) == 1


@pytest.mark.parametrize("rows, kwargs, message", [
    ([{"sentence1": "a", "label": "1"}], {}, "lacks column.*sentence2"),
    ([{"sentence1": "a", "sentence2": "b", "label": "2"}], {}, "label must be 0 or 1, got '2'"),
    ([{"sentence1": "a", "sentence2": "b", "label": "1"}, {"sentence1": "a", "sentence2": "b"}], {},
     "record 2 has no 'label'"),
    ([{"sentence1": "a", "sentence2": "  "}], {}, "non-empty text"),
    ([{"sentence1": "a", "sentence2": "b"}], {"require_labels": True}, "no 'label' column"),
])
def test_bad_pair_files(tmp_path: Path, rows, kwargs, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(InputError, match=message):
        read_pairs(path, **kwargs)


def test_empty_and_missing_pair_files(tmp_path: Path):
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="no records"):
        read_pairs(tmp_path / "empty.jsonl")
    with pytest.raises(InputError, match="not found"):
        read_pairs(tmp_path / "nope.jsonl")


def test_threshold_file_round_trip_and_validation(tmp_path: Path):
    path = save_threshold(tmp_path / "t" / "threshold.json", model="m", threshold=0.731,
                          instruction=SYMMETRIC_INSTRUCTION, metrics={"accuracy": 0.9})
    doc = load_threshold(path)
    assert doc["threshold"] == 0.731 and doc["model"] == "m" and doc["instruction"] == SYMMETRIC_INSTRUCTION
    assert doc["metrics"] == {"accuracy": 0.9}
    with pytest.raises(InputError, match="between -1 and 1"):
        save_threshold(tmp_path / "x.json", model="m", threshold=1.5, instruction=None)
    (tmp_path / "bad.json").write_text(json.dumps({"threshold": 2}), encoding="utf-8")
    with pytest.raises(InputError, match="between -1 and 1"):
        load_threshold(tmp_path / "bad.json")
    with pytest.raises(NotFoundError):
        load_threshold(tmp_path / "missing.json")


def test_unequal_sides_are_rejected(tiny_encoder):
    with pytest.raises(InputError, match="2 left texts but 1 right"):
        score_pairs(tiny_encoder, ["a", "b"], ["c"])
    with pytest.raises(InputError, match="empty"):
        score_pairs(tiny_encoder, ["a", ""], ["c", "d"])


def test_a_calibrated_cut_above_a_perfect_score_can_be_saved(tmp_path: Path):
    # Best accuracy: call nothing "same" -> the cut lies just above 1.0, outside [-1, 1] by a hair.
    out = calibrate([1.0, 0.9, 0.2], [0, 0, 1])
    assert out["threshold"] > 1.0 and out["accuracy"] == pytest.approx(2 / 3)
    path = save_threshold(tmp_path / "t.json", model="m", threshold=out["threshold"], instruction=None)
    assert load_threshold(path)["threshold"] == out["threshold"]
