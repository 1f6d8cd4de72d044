"""`qembed similarity`, `qembed classify …` and `qembed dedup` through the real CLI entry point."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from qembed.cli import main

from .conftest import DEDUP_TEXTS, PAIRS, QUEUES, TICKETS, write_jsonl


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv: str):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_help_of_every_command(capsys):
    for argv in (["similarity"], ["classify"], ["classify", "zero-shot"], ["classify", "train"],
                 ["classify", "predict"], ["dedup"]):
        code, out, _ = run(capsys, *argv, "--help")
        assert code == 0
        if argv == ["classify"]:
            assert "zero-shot" in out and "train" in out and "predict" in out
        else:
            assert "--json" in out


def test_similarity_of_two_texts(capsys, minilm_path):
    doc = run_json(capsys, "similarity", "How do I change my password?", "I want to reset my password",
                   "-m", minilm_path, "--min-similarity", "0.5")
    assert doc["object"] == "list" and doc["min_similarity"] == 0.5 and "calibrated" not in doc
    [item] = doc["data"]
    assert item["index"] == 0 and item["score"] > 0.6 and item["same"] is True
    doc = run_json(capsys, "similarity", "How do I change my password?", "Cheap flights to Tokyo",
                   "-m", minilm_path, "--min-similarity", "0.5")
    assert doc["data"][0]["score"] < 0.3 and doc["data"][0]["same"] is False
    code, out, _ = run(capsys, "similarity", "a cat", "a cat", "-m", minilm_path)
    assert code == 0 and out.startswith("1.0000  same")


def test_calibrate_save_and_reuse_threshold(capsys, minilm_path, pairs_file, tmp_path: Path):
    saved = tmp_path / "threshold.json"
    doc = run_json(capsys, "similarity", "--input", pairs_file, "--calibrate", "-m", minilm_path,
                   "--save-threshold", saved)
    cal = doc["calibration"]
    for key in ("accuracy", "f1", "precision", "recall", "average_precision", "threshold", "f1_threshold"):
        assert isinstance(cal[key], float), key
    assert cal["accuracy"] == 1.0 and cal["f1"] == 1.0 and cal["n"] == 10 and cal["positives"] == 5
    assert doc["min_similarity"] == cal["threshold"] and doc["metrics"]["accuracy"] == 1.0
    assert [d["same"] for d in doc["data"]] == [bool(y) for *_, y in PAIRS]
    stored = json.loads(saved.read_text(encoding="utf-8"))
    assert stored["threshold"] == cal["threshold"] and stored["model"] == "model"
    assert stored["metrics"]["accuracy"] == 1.0 and "instruction" in stored
    # reuse it on the same labelled file: metrics at that fixed threshold, scores written out
    scored = tmp_path / "scored.csv"
    doc = run_json(capsys, "similarity", "--input", pairs_file, "--threshold-file", saved, "-m", minilm_path,
                   "--output", scored)
    assert doc["metrics"]["accuracy"] == 1.0 and doc["min_similarity"] == stored["threshold"]
    assert doc["output"] == str(scored) and "data" not in doc
    rows = list(csv.DictReader(scored.open(encoding="utf-8")))
    assert len(rows) == 10 and {"sentence1", "sentence2", "label", "score", "same"} <= set(rows[0])
    assert [r["same"] for r in rows] == [r["label"] for r in rows]
    # human-readable report
    code, out, _ = run(capsys, "similarity", "--input", pairs_file, "--calibrate", "-m", minilm_path)
    assert code == 0 and "accuracy" in out and "average precision" in out


def test_unlabelled_pairs_get_scores(capsys, tiny_model_path, tmp_path: Path):
    path = write_jsonl(tmp_path / "u.jsonl", [{"sentence1": "借呗能分期吗?", "sentence2": "我可以分几个月还借呗?"},
                                              {"sentence1": "x", "sentence2": "x"}])
    doc = run_json(capsys, "similarity", "--input", path, "-m", tiny_model_path)
    scores = [d["score"] for d in doc["data"]]
    assert len(scores) == 2 and scores[1] == pytest.approx(1.0, abs=1e-5)
    assert doc["min_similarity"] is None and all("same" not in d for d in doc["data"])
    out_file = tmp_path / "s.jsonl"
    code, _, _ = run(capsys, "similarity", "--input", path, "-m", tiny_model_path, "-o", out_file)
    lines = [json.loads(x) for x in out_file.read_text(encoding="utf-8").splitlines()]
    assert code == 0 and [round(r["score"], 4) for r in lines] == [round(s, 4) for s in scores]
    # the old spellings still work (hidden) and give the same scores
    doc = run_json(capsys, "similarity", "--pairs", path, "-m", tiny_model_path, "--sentence1-column",
                   "sentence1", "--no-instructions")
    assert len(doc["data"]) == 2


@pytest.mark.parametrize("rows, extra, message", [
    ([{"sentence1": "a", "sentence2": "b"}], ["--calibrate"], "no 'label' column"),
    ([{"sentence1": "a", "sentence2": "b", "label": "5"}], ["--calibrate"], "label must be 0 or 1"),
    ([{"question": "a", "sentence2": "b"}], [], "lacks column"),
    ([{"sentence1": "a", "sentence2": "b", "label": "1"}], ["--min-similarity", "1.5"], "between -1 and 1"),
    ([{"sentence1": "a", "sentence2": "b", "label": "1"}], ["--calibrate"], "both same"),
    ([{"sentence1": "a", "sentence2": "b"}], ["--save-threshold", "t.json"], "needs --calibrate"),
])
def test_similarity_bad_input(capsys, tiny_model_path, tmp_path: Path, rows, extra, message):
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    code, out, err = run(capsys, "similarity", "--input", path, "-m", tiny_model_path, *extra)
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1].startswith("error: ") and message in err
    assert "Traceback" not in err


def test_similarity_empty_file_and_missing_threshold_file(capsys, tiny_model_path, tmp_path: Path):
    (tmp_path / "e.jsonl").write_text("\n", encoding="utf-8")
    code, _, err = run(capsys, "similarity", "--input", tmp_path / "e.jsonl", "-m", tiny_model_path)
    assert code == 2 and "contains no records" in err
    code, _, err = run(capsys, "similarity", "a", "b", "--threshold-file", tmp_path / "none.json",
                       "-m", tiny_model_path)
    assert code == 2 and "threshold file not found" in err


def test_classify_zero_shot_cli(capsys, minilm_path, tmp_path: Path):
    labelled = write_jsonl(tmp_path / "t.jsonl", [{"text": t, "queue": q} for t, q in TICKETS])
    args = ["classify", "zero-shot", "--input", labelled, "--label-column", "queue", "-m", minilm_path]
    for spec in QUEUES:
        args += ["--label", spec]
    doc = run_json(capsys, *args)
    assert doc["labels"] == ["billing", "shipping", "login"]
    assert doc["metrics"]["accuracy"] == 1.0 and doc["metrics"]["macro_f1"] == 1.0
    assert [d["label"] for d in doc["data"]] == [q for _, q in TICKETS]
    code, _, err = run(capsys, "classify", "zero-shot", "hello", "-m", minilm_path)
    assert code == 2 and "give the labels" in err


def test_classify_train_and_predict_cli(capsys, minilm_path, training_file, tmp_path: Path):
    folder = tmp_path / "router"
    doc = run_json(capsys, "classify", "train", "--input", training_file, "--label-column", "queue",
                   "--test-size", "0.3", "-m", minilm_path, "--output", folder)
    assert doc["accuracy"] >= 0.75 and doc["macro_f1"] >= 0.7 and doc["output"] == str(folder)
    assert doc["labels"] == ["billing", "login", "shipping"]
    manifest = json.loads((folder / "classifier.json").read_text(encoding="utf-8"))
    assert manifest["metrics"]["test"]["accuracy"] == doc["accuracy"] and manifest["instruction"]
    # predict: texts as arguments (the encoder named in the manifest is loaded), or one file
    doc = run_json(capsys, "classify", "predict", "--classifier", folder,
                   "My parcel never arrived", "I cannot sign in, my password is wrong")
    assert [d["label"] for d in doc["data"]] == ["shipping", "login"]
    assert doc["object"] == "list" and doc["labels"] == ["billing", "login", "shipping"]
    txt = tmp_path / "new.txt"
    txt.write_text("Refund my payment please\nWhere is my package?\n", encoding="utf-8")
    doc = run_json(capsys, "classify", "predict", "--classifier", folder, txt)
    assert [d["label"] for d in doc["data"]] == ["billing", "shipping"]


def test_classify_errors(capsys, tiny_model_path, tmp_path: Path):
    code, _, err = run(capsys, "classify", "predict", "--classifier", tmp_path / "nope", "hello")
    assert code == 2 and "no classifier at" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("body,queue\nhello,x\n", encoding="utf-8")
    code, _, err = run(capsys, "classify", "train", "--input", bad, "--label-column", "queue",
                       "-m", tiny_model_path, "--output", tmp_path / "out")
    assert code == 2 and "lacks column(s) text" in err
    assert not (tmp_path / "out").exists()


def test_dedup_cli_writes_groups_and_deduplicated_file(capsys, minilm_path, tmp_path: Path):
    src = tmp_path / "texts.txt"
    src.write_text("\n".join(DEDUP_TEXTS) + "\n", encoding="utf-8")
    out, groups = tmp_path / "deduped.txt", tmp_path / "groups.jsonl"
    doc = run_json(capsys, "dedup", "--input", src, "--min-similarity", "0.9", "-m", minilm_path,
                   "--output", out, "--groups", groups)
    assert doc["object"] == "dedup.result" and doc["n_groups"] == 2 and doc["kept"] == 5 and doc["removed"] == 3
    assert [[m["index"] for m in g["members"]] for g in doc["data"]] == [[0, 2, 4], [3, 6]]
    assert doc["keep"] == [0, 1, 3, 5, 7] and doc["min_similarity"] == 0.9
    kept = out.read_text(encoding="utf-8").splitlines()
    assert kept == [DEDUP_TEXTS[i] for i in (0, 1, 3, 5, 7)]
    lines = [json.loads(x) for x in groups.read_text(encoding="utf-8").splitlines()]
    assert [[m["index"] for m in g["members"]] for g in lines] == [[0, 2, 4], [3, 6]]
    assert lines[0]["members"][0]["text"] == DEDUP_TEXTS[0]
    # records in, records out (a .jsonl keeps every field of the kept rows)
    rec = write_jsonl(tmp_path / "r.jsonl", [{"id": i, "body": t} for i, t in enumerate(DEDUP_TEXTS)])
    code, _, _ = run(capsys, "dedup", "-i", rec, "--text-column", "body", "--min-similarity", "0.9", "-m", minilm_path,
                     "--output", tmp_path / "r_out.jsonl")
    rows = [json.loads(x) for x in (tmp_path / "r_out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert code == 0 and [r["id"] for r in rows] == [0, 1, 3, 5, 7]


def test_dedup_cli_errors(capsys, tiny_model_path, tmp_path: Path):
    src = tmp_path / "t.txt"
    src.write_text("a\nb\n", encoding="utf-8")
    code, _, err = run(capsys, "dedup", "--input", src, "--min-similarity", "1.2", "-m", tiny_model_path)
    assert code == 2 and "between -1 and 1" in err
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    code, _, err = run(capsys, "dedup", "--input", tmp_path / "empty.txt", "-m", tiny_model_path)
    assert code == 2 and "contains no texts" in err
    code, _, err = run(capsys, "dedup", "-m", tiny_model_path)
    assert code == 2 and "--input" in err
    code, _, err = run(capsys, "dedup", src, "--input", src, "-m", tiny_model_path)
    assert code == 2 and "once" in err
