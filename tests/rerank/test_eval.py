"""``qembed eval retrieval --rerank``: first-stage and reranked metrics side by side, same data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qembed.eval.retrieval import evaluate_retrieval, load_beir, score_rankings

CORPUS = [
    {"_id": "shipping", "title": "Shipping", "text": "What to do when an order has not shipped within 48 hours"},
    {"_id": "password", "title": "Account", "text": "Resetting a forgotten password to sign back in"},
    {"_id": "autopay", "title": "Billing", "text": "How to turn off automatic monthly loan deductions"},
    {"_id": "refund", "title": "", "text": "How long a refund takes to reach your bank after a return"},
    {"_id": "address", "title": "Shipping", "text": "Changing the delivery address of a placed order"},
] + [{"_id": f"other-{i}", "title": "", "text": f"Notes on topic {i}: gardening, kayaking and chess, part {i}"}
     for i in range(20)]
QUERIES = [{"_id": "q1", "text": "my package hasn't shipped after two days"},
           {"_id": "q2", "text": "I can't log in, I forgot my credentials"},
           {"_id": "q3", "text": "when do I get my money back"}]
QRELS = "query-id\tcorpus-id\tscore\nq1\tshipping\t1\nq2\tpassword\t1\nq3\trefund\t2\nq3\taddress\t1\n"


@pytest.fixture
def beir(tmp_path):
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in CORPUS), encoding="utf-8")
    (tmp_path / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in QUERIES), encoding="utf-8")
    (tmp_path / "qrels.tsv").write_text(QRELS, encoding="utf-8")
    return tmp_path


def _data(beir):
    return load_beir(beir / "corpus.jsonl", beir / "queries.jsonl", beir / "qrels.tsv")


def test_reranked_metrics_beside_the_first_stage(beir, tiny_encoder, reranker):
    from qembed.search.knowledge_base import KnowledgeBase

    data = _data(beir)
    report = evaluate_retrieval(tiny_encoder, data, reranker=reranker, candidates=10)
    assert set(report["results"]) == {"dense", "dense+rerank"}
    # recompute the reranked rankings by hand: the first stage's top 10 by the reranker's scores
    kb = KnowledgeBase.open(None, tiny_encoder, store_options={"index": "flat"}, chunk_tokens=None)
    kb.add(data.corpus, save=False)
    rankings = {}
    for q in data.qrels:
        first = kb.search(data.queries[q], top_k=10)
        scores = reranker.score([(data.queries[q], h.text) for h in first])
        rankings[q] = [first[i].id for i in np.argsort(-scores, kind="stable")]
    kb.close()
    expected = score_rankings(rankings, data.qrels)
    got = report["results"]["dense+rerank"]
    for name in ("ndcg@10", "recall@10", "mrr@10"):
        assert got[name] == pytest.approx(expected[name], abs=1e-9), name
    # the first stage is scored on the same protocol as without a reranker
    plain = evaluate_retrieval(tiny_encoder, data)["results"]["dense"]
    assert plain["ndcg@10"] == pytest.approx(report["results"]["dense"]["ndcg@10"], abs=1e-9)


def test_eval_cli_rerank_json_and_table(beir, tiny_model_path, reranker_path, capsys):
    from qembed.cli import main

    args = ["eval", "retrieval", "--model", str(tiny_model_path), "--dtype", "float32",
            "--corpus", str(beir / "corpus.jsonl"), "--queries", str(beir / "queries.jsonl"),
            "--qrels", str(beir / "qrels.tsv"), "--rerank", "--reranker", str(reranker_path), "--candidates", "10"]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["reranker"] == reranker_path.name
    assert set(report["results"]) == {"dense", "dense+rerank"}
    assert all(0.0 <= m["ndcg@10"] <= 1.0 for m in report["results"].values())
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "dense+rerank" in table and "nDCG@10" in table
    assert main([*args[:-5], "--reranker", str(reranker_path)]) == 2
    assert "add --rerank" in capsys.readouterr().err
