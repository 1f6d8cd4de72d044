"""``qembed cluster --save-model``, ``qembed topics assign|update|diff|show`` and ``qembed summarize``
through the real CLI entry point (all-MiniLM-L6-v2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qembed.cli import main

from .conftest import HELD_BACK, NEW_TOPIC, TOPICS, flatten
from .test_summarize import FILLER, TOPICAL, _document


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("topics-cli")
    (folder / "day1.txt").write_text("\n".join(flatten(TOPICS)[0]) + "\n", encoding="utf-8")
    day2 = flatten(HELD_BACK)[0] + NEW_TOPIC
    (folder / "day2.jsonl").write_text("".join(json.dumps({"body": t}) + "\n" for t in day2), encoding="utf-8")
    return folder


@pytest.mark.slow
def test_save_assign_update_diff_show(capsys, files, minilm_path, tmp_path):
    model = tmp_path / "topics"
    code, out, err = _run(capsys, "cluster", "-i", files / "day1.txt", "-m", minilm_path, "--clusters", "4",
                          "--save-model", model, "--json")
    assert code == 0, err
    body = json.loads(out)
    assert body["topic_model"] == str(model) and (model / "topic_model.json").is_file()
    assert all(len(c["summary"]) == 3 for c in body["clusters"])
    labels = {c["cluster"]: c["label"] for c in body["clusters"]}

    code, out, err = _run(capsys, "topics", "show", model, "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["object"] == "topics" and {t["topic"]: t["label"] for t in shown["data"]} == labels
    assert shown["dim"] == 384 and shown["revision"] == 0

    code, out, err = _run(capsys, "topics", "assign", "-m", model, "-i", files / "day2.jsonl", "--text-column",
                          "body", "--output", tmp_path / "rows.csv", "--json")
    assert code == 0, err
    placed = json.loads(out)
    assert placed["object"] == "topics.assignment" and len(placed["data"]) == 24
    assert all(r["outlier"] and r["topic"] == -1 for r in placed["data"][16:])  # the garden texts
    rows_csv = (tmp_path / "rows.csv").read_text(encoding="utf-8")
    assert placed["n_outliers"] >= 8 and rows_csv.startswith("index,text,topic,label,distance,nearest,outlier")
    assert rows_csv.rstrip().endswith(",true") and "True" not in rows_csv  # as in .jsonl

    code, out, err = _run(capsys, "topics", "update", "-m", model, "-i", files / "day2.jsonl", "--text-column",
                          "body", "--output", tmp_path / "day2")
    assert code == 0, err
    assert "1 new topic(s)" in out and "new #4" in out
    code, out, err = _run(capsys, "topics", "diff", model, tmp_path / "day2", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["object"] == "topics.diff" and d["matched_by"] == "id" and d["counts"]["appeared"] == 1
    assert {r["topic_after"] for r in d["data"]} == {0, 1, 2, 3, 4}
    code, out, err = _run(capsys, "topics", "diff", model, tmp_path / "day2")
    assert code == 0 and "1 appeared" in out and "appeared  #4" in out
    # in place (no --output), text output
    code, out, err = _run(capsys, "topics", "update", "-m", tmp_path / "day2", "-i", files / "day2.jsonl",
                          "--text-column", "body", "--no-new-topics")
    assert code == 0, err
    assert json.loads((tmp_path / "day2" / "topic_model.json").read_text(encoding="utf-8"))["revision"] == 2


def test_topics_errors(capsys, files, minilm_path, tiny_model_path, tmp_path):
    code, _, err = _run(capsys, "topics", "assign", "-m", tmp_path / "nope", "-i", files / "day1.txt")
    assert code == 2 and "error: topic model folder not found" in err
    model = tmp_path / "m"
    assert _run(capsys, "cluster", "-i", files / "day1.txt", "-m", minilm_path, "--clusters", "4",
                "--save-model", model)[0] == 0
    code, _, err = _run(capsys, "topics", "assign", "-m", model, "-i", files / "day1.txt",
                        "--embedding-model", tiny_model_path, "--dtype", "float32")
    assert code == 2 and "vectors of size 64" in err and "Traceback" not in err
    code, _, err = _run(capsys, "cluster", "-i", files / "day1.txt", "-m", minilm_path, "--save-model",
                        files / "day1.txt")
    assert code == 2 and "is a file" in err
    code, _, err = _run(capsys, "cluster", "-i", files / "day1.txt", "-m", minilm_path, "--save-model",
                        tmp_path / "other", "--outlier-quantile", "2")
    assert code == 2 and "outlier_quantile" in err
    code, _, err = _run(capsys, "topics", "update", "-m", model, "-i", files / "day1.txt",
                        "--embedding-model", tmp_path / "no-such-model")
    assert code != 0 and "comes from --embedding-model DIR" in err and "--model DIR" not in err, err


def test_topic_model_targets_are_checked_first(capsys, files, minilm_path, tmp_path):
    """An unwritable --save-model/--output fails before any work; a saved model needs --replace."""
    model = tmp_path / "m"
    assert _run(capsys, "cluster", "-i", files / "day1.txt", "-m", minilm_path, "--clusters", "4",
                "--save-model", model)[0] == 0
    saved = (model / "topic_model.json").read_text(encoding="utf-8")
    bad_model = tmp_path / "no-such-model"  # loading it would fail: these must fail earlier
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine", encoding="utf-8")
    for args, message in [
        (("cluster", "--save-model", model), f"--save-model {model} already holds a topic model; pass --replace"),
        (("cluster", "--save-model", "/proc/forbidden"), "--save-model /proc/forbidden cannot be written"),
        (("cluster", "--save-model", tmp_path / "notes", "--replace"), "holds other files and no topic model"),
        (("topics", "update", "-m", model, "--output", model), "embedding model"),  # in place: no --replace
        (("topics", "update", "-m", model, "--output", "/proc/forbidden"), "--output /proc/forbidden cannot be"),
        (("topics", "update", "-m", model, "--output", model.parent / "m2", "--replace"), "embedding model"),
    ]:
        flag = "--embedding-model" if args[0] == "topics" else "-m"
        code, out, err = _run(capsys, *args, "-i", files / "day1.txt", flag, bad_model)
        # "embedding model": the target passed and the command stops at the missing model
        assert code != 0 and message in err and "Traceback" not in err and not out, err
        assert (message == "embedding model") == ("does not exist" in err) and (code == 2 or "does not" in err), err
        assert len(err.strip().splitlines()) == 1, err
    other = tmp_path / "other"
    shutil.copytree(model, other)
    code, _, err = _run(capsys, "topics", "update", "-m", model, "-i", files / "day1.txt", "--output", other)
    assert code == 2 and f"--output {other} already holds a topic model; pass --replace" in err
    assert (model / "topic_model.json").read_text(encoding="utf-8") == saved
    assert _run(capsys, "cluster", "-i", files / "day1.txt", "-m", minilm_path, "--clusters", "3",
                "--save-model", model, "--replace")[0] == 0
    assert json.loads((model / "topic_model.json").read_text(encoding="utf-8"))["topics"].__len__() == 3


def test_summarize_command(capsys, minilm_path, tmp_path):
    doc = _document(TOPICAL[1], 2)
    code, out, err = _run(capsys, "summarize", doc, "-m", minilm_path, "--sentences", "3", "--json")
    assert code == 0, err
    body = json.loads(out)
    assert body["object"] == "summary" and [s["text"] for s in body["data"]] == TOPICAL[1]
    assert body["summary"] == " ".join(TOPICAL[1]) and body["n_sentences"] == 11
    path = tmp_path / "doc.txt"
    path.write_text(doc.replace(". ", ".\n"), encoding="utf-8")
    code, out, err = _run(capsys, "summarize", "-i", path, "-m", minilm_path, "--method", "mmr", "-n", "3")
    assert code == 0 and out.strip() == " ".join(TOPICAL[1])
    for args, message in [((), "error: give a text to summarize or --input FILE\n"),
                          (("One.", "-i", path), "or --input FILE, not both"), (("  ",), "the text is empty"),
                          (("One. Two.", "-n", "0"), "sentences must be a positive integer"),
                          (("One. Two.", "--method", "lexrank"), "unknown summary method")]:
        code, _, err = _run(capsys, "summarize", *args, "-m", minilm_path)
        assert code == 2 and message in err, err
    assert FILLER
