"""``/v1/search`` and ``/v1/documents`` on a live server (uvicorn on a loopback port)."""

from __future__ import annotations

import httpx
import pytest

from qembed.server.testing import running_server

DOCS = [
    {"id": "ship-48h", "text": "订单超过48小时未发货怎么办", "metadata": {"topic": "shipping"}},
    {"id": "huabei-fail", "text": "花呗还款失败有哪些原因", "metadata": {"topic": "repayment"}},
    {"id": "jiebei-auto", "text": "如何关闭借呗自动扣款功能", "metadata": {"topic": "repayment"}},
]


def test_documents_and_search_endpoints(tiny_encoder, tmp_path):
    index = tmp_path / "served-index"
    with running_server(encoder=tiny_encoder, index=str(index)) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            r = client.post("/v1/documents", json={"documents": DOCS + ["退款申请提交后多久到账"]})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["documents"] == 4 and body["count"] == 4 and body["ids"][:3] == [d["id"] for d in DOCS]
            r = client.post("/v1/search", json={"query": "买了东西两天了怎么还不发快递?", "top_k": 3})
            assert r.status_code == 200, r.text
            data = r.json()["data"]
            assert len(data) == 3 and set(data[0]) == {"id", "score", "text", "metadata"}
            assert data[0]["score"] >= data[1]["score"] >= data[2]["score"]
            # the same ranking as the Python API on the same index
            from qembed.search.knowledge_base import KnowledgeBase

            local = KnowledgeBase.open(index, tiny_encoder, create=False)
            assert [h.id for h in local.search("买了东西两天了怎么还不发快递?", 3)] == [d["id"] for d in data]
            local.close()

            r = client.post("/v1/search", json={"query": "花呗还款失败", "mode": "bm25", "top_k": 2})
            assert r.json()["data"][0]["id"] == "huabei-fail"
            r = client.post("/v1/search", json={"query": "还款", "mode": "hybrid",
                                                "filter": {"topic": "repayment"}, "top_k": 10})
            assert {d["id"] for d in r.json()["data"]} == {"huabei-fail", "jiebei-auto"}

            r = client.delete("/v1/documents/jiebei-auto")
            assert r.status_code == 200 and r.json()["deleted"] is True
            # ids made from file paths keep their slashes
            r = client.post("/v1/documents", json={"documents": [{"id": "guides/returns.md", "text": "退货指南"}]})
            assert r.status_code == 200 and r.json()["count"] == 4
            r = client.delete("/v1/documents/guides/returns.md")
            assert r.status_code == 200 and r.json()["id"] == "guides/returns.md"
            r = client.delete("/v1/documents/jiebei-auto")
            assert r.status_code == 404 and r.json()["error"]["code"] == "document_not_found"

            # bad input: OpenAI-shaped 4xx, never 500, nothing lost
            for payload, status, needle in [
                ({"query": ""}, 400, "query is empty"),
                ({"query": "x", "filter": {"colour": "red"}}, 400, "unknown metadata field"),
                ({"query": "x", "mode": "semantic"}, 400, "mode must be one of"),
                ({"query": "x", "top_k": 0}, 400, "top_k"),
                ({"top_k": 3}, 400, "query"),
            ]:
                r = client.post("/v1/search", json=payload)
                assert r.status_code == status, (payload, r.text)
                assert needle in r.json()["error"]["message"]
            for payload in ({"documents": []}, {"documents": [{"id": "z", "text": "  "}]},
                            {"documents": [{"id": "z"}]}, {"documents": [{"text": "x", "metadata": {"doc_id": 1}}]}):
                r = client.post("/v1/documents", json=payload)
                assert r.status_code == 400, (payload, r.text)
            r = client.post("/v1/search", json={"query": "订单", "top_k": 10})
            assert len(r.json()["data"]) == 3


def test_server_without_index_answers_404(tiny_encoder):
    with running_server(encoder=tiny_encoder) as url:
        r = httpx.post(url + "/v1/search", json={"query": "hello"}, timeout=30)
        assert r.status_code == 404 and "--index" in r.json()["error"]["message"]


def test_server_refuses_an_index_of_another_model(tiny_encoder, minilm_encoder, tmp_path):
    from qembed.search.knowledge_base import KnowledgeBase

    kb = KnowledgeBase.open(tmp_path / "ix", minilm_encoder)
    kb.add(["hello world"])
    kb.close()
    with pytest.raises(Exception, match="384"):
        with running_server(encoder=tiny_encoder, index=str(tmp_path / "ix")):
            pass
