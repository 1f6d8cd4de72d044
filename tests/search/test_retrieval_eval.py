"""Retrieval metrics on hand-made judgements, BEIR loading, and the eval through the search path."""

from __future__ import annotations

import json
import math

import pytest

from qembed.errors import InputError
from qembed.eval.retrieval import (
    evaluate_retrieval, load_beir, mrr_at, ndcg_at, read_qrels, recall_at, score_rankings,
)


def test_metrics_against_hand_computation():
    qrels = {"q1": {"d1": 2, "d3": 1, "d9": 0}, "q2": {"d5": 1}}
    rankings = {"q1": ["d3", "d2", "d1"], "q2": [f"x{i}" for i in range(11)] + ["d5"]}
    # q1: DCG = 1/log2(2) + 2/log2(4) = 2; IDCG = 2/log2(2) + 1/log2(3)
    ndcg_q1 = 2 / (2 + 1 / math.log2(3))
    assert ndcg_at(rankings["q1"], qrels["q1"], 10) == pytest.approx(ndcg_q1)
    assert ndcg_q1 == pytest.approx(0.760188, abs=1e-6)  # 2 / 2.630930
    assert ndcg_at(rankings["q2"], qrels["q2"], 10) == 0.0
    assert recall_at(rankings["q2"], qrels["q2"], 10) == 0.0
    assert recall_at(rankings["q2"], qrels["q2"], 100) == 1.0
    assert mrr_at(rankings["q1"], qrels["q1"], 10) == 1.0
    assert mrr_at(["d2", "d1"], qrels["q1"], 10) == 0.5
    assert recall_at(["d1"], qrels["q1"], 10) == 0.5  # a score-0 judgement is not relevant
    mean = score_rankings(rankings, qrels)
    assert mean == pytest.approx({"ndcg@10": ndcg_q1 / 2, "recall@10": 0.5, "recall@100": 1.0, "mrr@10": 0.5})
    perfect = score_rankings({"q1": ["d1", "d3"], "q2": ["d5"]}, qrels)
    assert perfect == pytest.approx({"ndcg@10": 1.0, "recall@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0})


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_trec_eval(seed):
    """Each query's figures equal trec_eval's (pytrec_eval) on random graded judgements and rankings."""
    import numpy as np
    import pytrec_eval

    rng = np.random.default_rng(seed)
    docs = [f"d{i}" for i in range(300)]
    qrels: dict[str, dict[str, int]] = {}
    rankings: dict[str, list[str]] = {}
    for q in range(40):
        judged = rng.choice(300, size=int(rng.integers(1, 30)), replace=False)
        qrels[f"q{q}"] = {docs[i]: int(rng.integers(0, 4)) for i in judged}
        rankings[f"q{q}"] = [docs[i] for i in rng.permutation(300)[:int(rng.integers(1, 150))]]
    qrels = {q: r for q, r in qrels.items() if any(v > 0 for v in r.values())}
    runs = {q: {d: float(len(ranked) - i) for i, d in enumerate(ranked)} for q, ranked in rankings.items()}
    top10 = {q: {d: float(10 - i) for i, d in enumerate(ranked[:10])} for q, ranked in rankings.items()}
    trec = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10", "recall.100"}).evaluate(runs)
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    for q in qrels:
        assert ndcg_at(rankings[q], qrels[q], 10) == pytest.approx(trec[q]["ndcg_cut_10"], abs=1e-4)
        assert recall_at(rankings[q], qrels[q], 10) == pytest.approx(trec[q]["recall_10"], abs=1e-4)
        assert recall_at(rankings[q], qrels[q], 100) == pytest.approx(trec[q]["recall_100"], abs=1e-4)
        assert mrr_at(rankings[q], qrels[q], 10) == pytest.approx(rr[q]["recip_rank"], abs=1e-4)
    mean = score_rankings(rankings, qrels)
    assert mean["ndcg@10"] == pytest.approx(np.mean([trec[q]["ndcg_cut_10"] for q in qrels]), abs=1e-4)
    assert mean["recall@100"] == pytest.approx(np.mean([trec[q]["recall_100"] for q in qrels]), abs=1e-4)


CORPUS = [
    {"_id": "shipping-delay", "title": "Shipping", "text": "What to do when an order has not been dispatched within 48 hours, and how to contact the seller or the courier about the delay"},
    {"_id": "password", "title": "Account", "text": "Resetting a forgotten password to sign back into your account"},
    {"_id": "autopay-off", "title": "Billing", "text": "How to turn off automatic monthly loan deductions"},
    {"_id": "refund-time", "title": "", "text": "How long a refund takes to reach your bank after a return"},
    {"_id": "address", "title": "Shipping", "text": "Changing the delivery address on an order that is already placed"},
]
QUERIES = [
    {"_id": "q1", "text": "my package hasn't shipped after two days"},
    {"_id": "q2", "text": "I can't log in, I don't remember my credentials"},
    {"_id": "q3", "text": "when will I get my money back for the item I sent back"},
]
QRELS = "query-id\tcorpus-id\tscore\nq1\tshipping-delay\t1\nq2\tpassword\t1\nq3\trefund-time\t2\nq3\taddress\t0\n"
#: Distractors: 150 documents on other subjects, so that recall@10 and recall@100 can fail.
SUBJECTS = ["tomato seedlings", "river kayaking", "jazz piano chords", "medieval castles", "sourdough starters",
            "mountain weather", "chess openings", "coral reefs", "vintage cameras", "beekeeping",
            "marathon training", "origami cranes", "volcano eruptions", "watercolour paints", "bird migration"]
DISTRACTORS = [{"_id": f"other-{i}", "title": "", "text": f"Notes on {SUBJECTS[i % 15]}, part {i // 15 + 1}: "
                f"{SUBJECTS[(i * 7) % 15]} and {SUBJECTS[(i * 11 + 3) % 15]} compared"} for i in range(150)]


@pytest.fixture
def beir(tmp_path):
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in CORPUS), encoding="utf-8")
    (tmp_path / "large.jsonl").write_text("\n".join(json.dumps(r) for r in CORPUS + DISTRACTORS), encoding="utf-8")
    (tmp_path / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in QUERIES), encoding="utf-8")
    (tmp_path / "qrels.tsv").write_text(QRELS, encoding="utf-8")
    return tmp_path


def test_load_beir_and_bad_files(beir, tmp_path):
    data = load_beir(beir / "corpus.jsonl", beir / "queries.jsonl", beir / "qrels.tsv")
    assert len(data.corpus) == 5 and data.qrels["q3"] == {"refund-time": 2, "address": 0}
    assert data.corpus[3]["title"] is None
    bad = tmp_path / "bad.tsv"
    bad.write_text("q1\tshipping-delay\t1\n")
    with pytest.raises(InputError, match="header"):
        read_qrels(bad)
    bad.write_text("query-id\tcorpus-id\tscore\nq1\tnot-in-corpus\t1\n")
    with pytest.raises(InputError, match="not-in-corpus"):
        load_beir(beir / "corpus.jsonl", beir / "queries.jsonl", bad)
    empty_doc = tmp_path / "c.jsonl"
    empty_doc.write_text(json.dumps({"_id": "x", "text": " "}))
    with pytest.raises(InputError, match="has no text"):
        load_beir(empty_doc, beir / "queries.jsonl", beir / "qrels.tsv")


def test_eval_minilm_dense_beats_bm25_through_the_knowledge_base(beir, minilm_encoder, tiny_encoder):
    data = load_beir(beir / "large.jsonl", beir / "queries.jsonl", beir / "qrels.tsv")
    report = evaluate_retrieval(minilm_encoder, data, modes=("dense", "bm25", "hybrid"))
    assert report["documents"] == 155 and report["chunks"] == 155 and report["queries"] == 3
    dense = report["results"]["dense"]
    assert dense["ndcg@10"] == pytest.approx(1.0) and dense["mrr@10"] == pytest.approx(1.0)
    assert report["results"]["bm25"]["ndcg@10"] < dense["ndcg@10"]
    # the same figures from a model that knows nothing: the measurement can fail
    random_model = evaluate_retrieval(tiny_encoder, data)["results"]["dense"]
    assert random_model["ndcg@10"] < 0.5 and random_model["recall@10"] < 1.0
    chunked = evaluate_retrieval(minilm_encoder, load_beir(beir / "corpus.jsonl", beir / "queries.jsonl",
                                                           beir / "qrels.tsv"), chunk_tokens=16, chunk_overlap=2)
    assert chunked["chunks"] > 5 and "chunked" in chunked["protocol"]
    assert chunked["results"]["dense"]["mrr@10"] == pytest.approx(1.0)  # scored per document


def test_eval_cli_json(beir, tiny_model_path, capsys):
    from qembed.cli import main

    rc = main(["eval", "retrieval", "--model", str(tiny_model_path), "--corpus", str(beir / "corpus.jsonl"),
               "--queries", str(beir / "queries.jsonl"), "--qrels", str(beir / "qrels.tsv"),
               "--baseline", "bm25", "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    report = json.loads(out)
    assert set(report["results"]) == {"dense", "bm25"}
    for metrics in report["results"].values():
        assert set(metrics) >= {"ndcg@10", "recall@10", "recall@100", "mrr@10"}
        assert all(0.0 <= metrics[k] <= 1.0 for k in ("ndcg@10", "recall@10", "recall@100", "mrr@10"))
    assert report["protocol"].startswith("MTEB")
    rc = main(["eval", "retrieval", "--model", str(tiny_model_path), "--corpus", str(beir / "corpus.jsonl"),
               "--queries", str(beir / "queries.jsonl"), "--qrels", str(beir / "nope.tsv")])
    assert rc == 2 and "file not found" in capsys.readouterr().err
