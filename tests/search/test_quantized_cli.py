"""``qembed index add --quantize``, ``search --rescore`` and ``eval retrieval --quantize`` on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qembed.cli import main


def run(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


DOCS = [{"id": f"doc{i}", "text": text, "topic": topic} for i, (text, topic) in enumerate([
    ("退款申请提交后多久到账", "refund"), ("快递丢失怎么申请赔偿", "shipping"), ("信用卡怎么提额", "card"),
    ("如何修改收货地址", "shipping"), ("花呗还款失败有哪些原因", "card"), ("订单超过48小时未发货怎么办", "shipping")])]


@pytest.mark.slow
def test_index_add_quantize_is_recorded_and_followed(capsys, tmp_path, tiny_model_path):
    index = tmp_path / "kb"
    first = write(tmp_path / "a.jsonl", DOCS[:4])
    rc, out, err = run(capsys, "index", "add", "-i", first, "--index", index, "--model", tiny_model_path,
                       "--quantize", "binary", "--rescore", "5", "--json")
    assert rc == 0, err
    assert json.loads(out)["count"] == 4
    rc, out, _ = run(capsys, "index", "info", "--index", index, "--json")
    info = json.loads(out)
    assert info["quantize"] == "binary" and info["rescore"] == 5
    # a conflicting value is refused before anything is written
    rc, _, err = run(capsys, "index", "add", "-i", write(tmp_path / "b.jsonl", DOCS[4:]), "--index", index,
                     "--model", tiny_model_path, "--quantize", "int8")
    assert rc == 2 and "holds binary vectors" in err and "cannot take --quantize int8" in err
    # without the option, later adds follow the recorded type
    rc, out, err = run(capsys, "index", "add", "-i", tmp_path / "b.jsonl", "--index", index, "--json")
    assert rc == 0, err
    assert json.loads(out)["count"] == 6
    rc, out, err = run(capsys, "search", "快递丢失怎么申请赔偿", "--index", index, "--rescore", "3", "-k", "2",
                       "--no-instruction", "--filter", "topic=shipping", "--json")
    assert rc == 0, err
    hits = json.loads(out)["data"]
    assert hits[0]["id"] == "doc1" and hits[0]["score"] > 0.99 and {h["metadata"]["topic"] for h in hits} == {"shipping"}
    for bad in (["--quantize", "int4"], ["--rescore", "0"]):
        rc, _, err = run(capsys, "index", "add", "-i", first, "--index", tmp_path / "other", "--model",
                         tiny_model_path, *bad)
        assert rc == 2 and "error:" in err and not (tmp_path / "other").exists()


@pytest.mark.slow
def test_eval_retrieval_reports_quantized_beside_float(capsys, tmp_path, tiny_model_path):
    corpus = write(tmp_path / "corpus.jsonl", [{"_id": d["id"], "text": d["text"]} for d in DOCS])
    queries = write(tmp_path / "queries.jsonl", [{"_id": f"q{i}", "text": d["text"]} for i, d in enumerate(DOCS)])
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\tdoc{i}\t1\n" for i in range(len(DOCS))))
    rc, out, err = run(capsys, "eval", "retrieval", "--model", tiny_model_path, "--corpus", corpus,
                       "--queries", queries, "--qrels", qrels, "--no-instruction", "--quantize", "int8",
                       "--quantize", "binary", "--json")
    assert rc == 0, err
    results = json.loads(out)["results"]
    assert set(results) == {"dense", "dense[int8]", "dense[binary]"}
    for name in ("dense[int8]", "dense[binary]"):  # a query equal to its document: float and quantized agree
        assert results[name]["ndcg@10"] == results["dense"]["ndcg@10"] == 1.0
        assert results[name]["ndcg@10_vs_float"] == 1.0 and results[name]["rescore"] in (4, 10)
    rc, out, _ = run(capsys, "eval", "retrieval", "--model", tiny_model_path, "--corpus", corpus,
                     "--queries", queries, "--qrels", qrels, "--quantize", "binary", "--rescore", "2")
    assert rc == 0 and "dense[binary]" in out and "x float nDCG@10 (rescore 2)" in out
    rc, _, err = run(capsys, "eval", "retrieval", "--model", tiny_model_path, "--corpus", corpus,
                     "--queries", queries, "--qrels", qrels, "--quantize", "int4")
    assert rc == 2 and "--quantize takes int8 or binary" in err
