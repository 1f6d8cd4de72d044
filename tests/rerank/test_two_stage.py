"""Two-stage search: the first stage's top candidates reordered by the reranker's own scores —
in Python, on ``/v1/search`` and with ``qembed search --rerank``."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from qembed.errors import InputError

CORPUS = [
    "Click 'Forgot password' on the sign-in page to reset your password.",
    "Our shop opens at 9 and closes at 18 on weekdays.",
    "Refunds reach your card within 5 working days.",
    "重置密码请在登录页点击忘记密码。",
    "借呗支持分几期还款?最多可以分12期。",
    "花呗逾期会影响信用记录吗?",
    "Parcels ship within 48 hours of payment.",
    "You can change the delivery address before the parcel ships.",
    "The app supports English and Chinese.",
    "Contact support by chat from 8 to 22 every day.",
    "Two-factor authentication adds a code sent to your phone.",
    "Gift cards cannot be exchanged for cash.",
]
QUERY = "I forgot my password, how do I get back in?"


@pytest.fixture(scope="module")
def kb(tiny_encoder, reranker):
    from qembed.search.knowledge_base import KnowledgeBase

    kb = KnowledgeBase.open(None, tiny_encoder, reranker=reranker)
    kb.add([{"id": f"d{i}", "text": t} for i, t in enumerate(CORPUS)])
    yield kb
    kb.close()


def _expected(kb, reranker, query, candidates, top_k, mode="dense"):
    """The first stage's top ``candidates`` ordered by the reranker's own scores of (query, chunk)."""
    first = kb.search(query, candidates, mode=mode)
    scores = reranker.score([(query, h.text) for h in first])
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [first[i].id for i in order], scores[order]


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_reranked_order_is_the_rerankers_own_scores(kb, reranker, mode):
    hits = kb.search(QUERY, top_k=4, mode=mode, rerank=True, candidates=8)
    ids, scores = _expected(kb, reranker, QUERY, 8, 4, mode)
    assert [h.id for h in hits] == ids
    np.testing.assert_allclose([h.score for h in hits], scores, atol=1e-6)
    # every hit's score is the reranker's score of its own text
    np.testing.assert_allclose([h.score for h in hits], reranker.score([(QUERY, h.text) for h in hits]), atol=1e-6)


def test_rerank_changes_the_first_stage_order_and_keeps_its_candidates(kb, reranker):
    first = kb.search(QUERY, top_k=len(CORPUS))
    second = kb.search(QUERY, top_k=len(CORPUS), rerank=reranker, candidates=len(CORPUS))
    assert {h.id for h in first} == {h.id for h in second}
    assert [h.id for h in first] != [h.id for h in second]  # the tiny models disagree somewhere
    assert [h.score for h in second] == sorted((h.score for h in second), reverse=True)
    # only the candidates are reranked: with 3 candidates the hits come from the first stage's top 3
    top3 = {h.id for h in first[:3]}
    assert {h.id for h in kb.search(QUERY, top_k=3, rerank=True, candidates=3)} == top3


def test_batch_of_queries_and_unique_documents(kb, reranker):
    queries = [QUERY, "when does my parcel ship?"]
    batched = kb.search(queries, top_k=3, rerank=True, candidates=6, unique_documents=True)
    for q, hits in zip(queries, batched):
        assert [h.id for h in hits] == _expected(kb, reranker, q, 6, 3)[0]


def test_default_candidates_follow_the_rerankers_device(kb, reranker):
    """No candidates given: 10 for a reranker on a CPU (a query under 2 s on a 2-core machine), 100
    on a GPU or behind a URL, never fewer than top_k."""
    from types import SimpleNamespace

    from qembed.search.knowledge_base import RERANK_CANDIDATES, RERANK_CANDIDATES_CPU, default_candidates

    assert str(reranker.device) == "cpu"
    assert default_candidates(reranker, 3) == RERANK_CANDIDATES_CPU == 10
    assert default_candidates(reranker, 25) == 25
    assert default_candidates(SimpleNamespace(device="cuda:0"), 3) == RERANK_CANDIDATES == 100
    assert default_candidates(SimpleNamespace(info_data={"info": {"device": "cpu"}}), 3) == 10  # a served one
    assert default_candidates(SimpleNamespace(), 3) == 100  # remote: the device is not ours to know
    # the search itself: the first stage's top 10 reordered, as if candidates=10 had been given
    assert [h.id for h in kb.search(QUERY, top_k=5, rerank=True)] == \
        [h.id for h in kb.search(QUERY, top_k=5, rerank=True, candidates=10)]
    assert [h.id for h in kb.search(QUERY, top_k=5, rerank=True)] != \
        [h.id for h in kb.search(QUERY, top_k=5, rerank=True, candidates=len(CORPUS))]  # 10, not all 12
    assert len(kb.search(QUERY, top_k=len(CORPUS), rerank=True)) == len(CORPUS)  # top_k 12 > 10: 12 reranked


def test_bad_rerank_arguments(tiny_encoder, kb):
    from qembed.search.knowledge_base import KnowledgeBase

    plain = KnowledgeBase.open(None, tiny_encoder)
    plain.add(CORPUS[:3])
    with pytest.raises(InputError, match="needs a reranker"):
        plain.search(QUERY, rerank=True)
    with pytest.raises(InputError, match="candidates"):
        kb.search(QUERY, rerank=True, candidates=0)
    with pytest.raises(InputError, match="rerank must be"):
        kb.search(QUERY, rerank="yes")
    plain.close()


def test_search_endpoint_reranks(tiny_encoder, reranker_path, reranker, kb, tmp_path):
    from qembed.server.testing import running_server

    index = tmp_path / "index"
    with running_server(encoder=tiny_encoder, index=str(index), reranker=str(reranker_path), engine="thread",
                        dtype="float32", compile=False) as url:
        assert httpx.post(url + "/v1/documents", json={"documents": [{"id": f"d{i}", "text": t}
                                                                     for i, t in enumerate(CORPUS)]}).status_code == 200
        body = httpx.post(url + "/v1/search", json={"query": QUERY, "top_k": 4, "rerank": True,
                                                    "candidates": 8}, timeout=60).json()
        ids, scores = _expected(kb, reranker, QUERY, 8, 4)
        assert [h["id"] for h in body["data"]] == ids
        np.testing.assert_allclose([h["score"] for h in body["data"]], scores, atol=1e-5)
        bad = httpx.post(url + "/v1/search", json={"query": QUERY, "rerank": True, "candidates": 0})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "candidates"
    with running_server(encoder=tiny_encoder, index=str(index)) as url:
        response = httpx.post(url + "/v1/search", json={"query": QUERY, "rerank": True})
        assert response.status_code == 400 and response.json()["error"]["code"] == "no_reranker"


def test_search_cli_reranks(tiny_model_path, reranker_path, reranker, tmp_path, capsys):
    from qembed.cli import main

    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    index = tmp_path / "cli-index"
    assert main(["index", "add", "--index", str(index), "--input", str(docs), "-m", str(tiny_model_path),
                 "--dtype", "float32"]) == 0
    capsys.readouterr()
    assert main(["search", QUERY, "--index", str(index), "--dtype", "float32", "--json", "--top-k", "8"]) == 0
    first = json.loads(capsys.readouterr().out)["data"]
    assert main(["search", QUERY, "--index", str(index), "--dtype", "float32", "--json", "--top-k", "3",
                 "--rerank", "--reranker", str(reranker_path), "--candidates", "8"]) == 0
    body = json.loads(capsys.readouterr().out)
    scores = reranker.score([(QUERY, h["text"]) for h in first])
    expected = [first[i]["id"] for i in np.argsort(-scores, kind="stable")[:3]]
    assert [h["id"] for h in body["data"]] == expected
    assert main(["search", QUERY, "--index", str(index), "--reranker", str(reranker_path)]) == 2
    assert "add --rerank" in capsys.readouterr().err


def test_more_like_this_reranks_with_the_given_documents_as_query(kb, reranker):
    """``similar(..., rerank=)``: the given document's text is the reranker's query; it never comes back."""
    hits = kb.similar(["d0"], top_k=4, rerank=reranker, candidates=8)
    first = kb.similar(["d0"], top_k=8)
    assert "d0" not in {h.id for h in hits} and len(hits) == 4
    scores = reranker.score([(CORPUS[0], h.text) for h in first])
    order = np.argsort(-np.asarray(scores), kind="stable")[:4]
    assert [h.id for h in hits] == [first[i].id for i in order]
    np.testing.assert_allclose([h.score for h in hits], np.asarray(scores)[order], atol=1e-6)
