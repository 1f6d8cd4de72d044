"""``qembed cluster`` and ``qembed eval clustering`` through the real CLI entry point."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from qembed.cli import main

from .conftest import TOPICS, flatten


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def topic_file(tmp_path_factory) -> Path:
    """The four topics as a .txt file, with blank lines in between (skipped and reported)."""
    texts, _ = flatten(TOPICS)
    path = tmp_path_factory.mktemp("cluster") / "messages.txt"
    path.write_text("\n".join(texts[:16]) + "\n\n   \n" + "\n".join(texts[16:]) + "\n", encoding="utf-8")
    return path


def test_cluster_json_csv_and_report(capsys, tmp_path, topic_file, minilm_path):
    texts, gold = flatten(TOPICS)
    csv_path, report = tmp_path / "out.csv", tmp_path / "report.html"
    code, out, err = _run(capsys, "cluster", "--input", topic_file, "--model", minilm_path, "--clusters", "4",
                          "--output", csv_path, "--report", report, "--json")
    assert code == 0, err
    assert "skipped 2 empty line(s)" in err
    data = json.loads(out)
    assert data["object"] == "cluster.result" and data["model"] == minilm_path.name
    assert data["n_clusters"] == 4 and data["output"] == str(csv_path) and data["report"] == str(report)
    assert [r["index"] for r in data["data"]] == list(range(32))
    assert [r["text"] for r in data["data"]] == texts
    assert set(data["data"][0]) == {"index", "text", "cluster", "label", "distance"}
    assert {frozenset(c) for c in data["clusters"]} == {frozenset({"cluster", "label", "keywords", "size",
                                                                   "examples", "summary"})}
    # texts of one topic share a cluster
    by_topic = {}
    for row, g in zip(data["data"], gold):
        by_topic.setdefault(g, set()).add(row["cluster"])
    assert all(len(v) == 1 for v in by_topic.values()) and len({min(v) for v in by_topic.values()}) == 4
    with csv_path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["text"] for r in rows] == texts
    assert [int(r["cluster"]) for r in rows] == [r["cluster"] for r in data["data"]]
    assert [r["label"] for r in rows] == [r["label"] for r in data["data"]]
    page = report.read_text(encoding="utf-8")
    assert page.count("<circle") == 32 and "Bake the bread" in page
    assert page.count("<td class=\"summary\"><ul><li>") == 4  # a summary per cluster


def test_cluster_text_output_and_hdbscan(capsys, topic_file, minilm_path):
    code, out, err = _run(capsys, "cluster", "-i", topic_file, "--model", minilm_path, "--method", "hdbscan",
                          "--min-cluster-size", "4", "--reassign-outliers")
    assert code == 0, err
    assert "32 texts -> 4 clusters (hdbscan)" in out
    assert out.count("keywords:") == 4 and "outliers" not in out


def test_cluster_jsonl_with_text_column(capsys, tmp_path, minilm_path):
    path = tmp_path / "msgs.jsonl"
    texts, _ = flatten(TOPICS)
    path.write_text("".join(json.dumps({"body": t}) + "\n" for t in texts[:8] + texts[8:16]), encoding="utf-8")
    code, out, err = _run(capsys, "cluster", "--input", path, "--model", minilm_path, "--text-column", "body",
                          "--clusters", "2", "--json", "--seed", "3")
    assert code == 0, err
    data = json.loads(out)
    assert len(data["data"]) == 16 and data["params"]["seed"] == 3
    # the old spellings (FILE as an argument, --k, --csv) still work, with a warning
    rows = path.with_suffix(".csv")
    code, out, err = _run(capsys, "cluster", path, "--model", minilm_path, "--text-column", "body",
                          "--k", "2", "--csv", rows, "--json", "--seed", "3")
    assert code == 0, err
    assert "--k is deprecated; use --clusters" in err and "--csv is deprecated; use --output" in err
    assert [r["cluster"] for r in json.loads(out)["data"]] == [r["cluster"] for r in data["data"]]
    assert rows.is_file()


@pytest.mark.parametrize("args, message", [
    (["--clusters", "40"], "cannot make 40 clusters from 32 texts"),
    (["--clusters", "1"], "clusters must be at least 2"),
    (["--clusters", "lots"], "--clusters must be an integer or 'auto'"),
    (["--method", "dbscan"], "unknown clustering method 'dbscan'"),
    (["--method", "hdbscan", "--clusters", "3"], "clusters applies to kmeans only"),
    (["--report", "out.pdf"], "--report must end in .html"),
    (["--output", "out.xlsx"], "--output must end in .csv or .tsv"),
    (["--n-init", "0"], "--n-init must be at least 1"),
])
def test_cluster_bad_options(capsys, topic_file, minilm_path, args, message):
    code, out, err = _run(capsys, "cluster", "--input", topic_file, "--model", minilm_path, *args)
    assert code == 2 and out == ""
    assert "error: " in err and message in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: ")


def test_cluster_bad_files(capsys, tmp_path, minilm_path):
    one = tmp_path / "one.txt"
    one.write_text("just one message\n\n", encoding="utf-8")
    code, _, err = _run(capsys, "cluster", "-i", one, "--model", minilm_path)
    assert code == 2 and "clustering needs at least 2 texts" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n", encoding="utf-8")
    code, _, err = _run(capsys, "cluster", "-i", empty, "--model", minilm_path)
    assert code == 2 and "contains no texts" in err
    code, _, err = _run(capsys, "cluster", "-i", tmp_path / "missing.txt", "--model", minilm_path)
    assert code == 2 and "file not found" in err


def test_eval_clustering(capsys, tmp_path, minilm_path):
    texts, gold = flatten(TOPICS)
    data = tmp_path / "labelled.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": g}) + "\n" for t, g in zip(texts, gold)),
                    encoding="utf-8")
    code, out, err = _run(capsys, "eval", "clustering", "--input", data, "--model", minilm_path, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["k"] == 4 and res["classes"] == 4 and res["n"] == 32
    assert res["scores"]["v_measure"] >= 0.8 and res["scores"]["ari"] >= 0.7 and res["scores"]["nmi"] >= 0.8
    assert res["baseline"]["name"].startswith("tfidf-kmeans")
    assert res["scores"]["v_measure"] > res["baseline"]["scores"]["v_measure"]
    code, out, err = _run(capsys, "eval", "clustering", "--input", data, "--model", minilm_path,
                          "--method", "hdbscan", "--min-cluster-size", "4")
    assert code == 0, err
    assert "v_measure" in out and "qembed hdbscan" in out
    bad = tmp_path / "nolabel.jsonl"
    bad.write_text(json.dumps({"text": "a"}) + "\n", encoding="utf-8")
    code, _, err = _run(capsys, "eval", "clustering", "--input", bad, "--model", minilm_path)
    assert code == 2 and "lacks column(s) label" in err


def test_help_lists_options(capsys):
    code, out, _ = _run(capsys, "cluster", "--help")
    assert code == 0
    for opt in ("--input", "--method", "--clusters", "--n-init", "--min-cluster-size", "--reassign-outliers",
                "--seed", "--output", "--report", "--json", "--text-column", "--progress"):
        assert opt in out
    assert "--k " not in out and "--csv" not in out
    code, out, _ = _run(capsys, "eval", "clustering", "--help")
    assert code == 0 and "--input" in out and "--json" in out and "--data" not in out
