"""KnowledgeBase: add/replace/delete, dense/BM25/hybrid search, filters, manifest, bad input."""

from __future__ import annotations

import pytest

from qembed.errors import InputError
from qembed.store import open_store
from qembed.search.knowledge_base import KnowledgeBase, rrf
from qembed.store.base import Hit

HELP_CENTRE_ZH = [
    {"id": "ship-48h", "text": "订单超过48小时未发货怎么办", "metadata": {"topic": "shipping"}},
    {"id": "huabei-fail", "text": "花呗还款失败有哪些原因", "metadata": {"topic": "repayment"}},
    {"id": "jiebei-auto", "text": "如何关闭借呗自动扣款功能", "metadata": {"topic": "repayment"}},
    {"id": "refund", "text": "退款申请提交后多久到账", "metadata": {"topic": "refund"}},
]

HELP_CENTRE_EN = [
    {"id": "shipping-delay", "text": "What to do when an order has not been dispatched within 48 hours",
     "metadata": {"topic": "shipping"}},
    {"id": "repayment-failed", "text": "Reasons a credit card bill payment can be declined",
     "metadata": {"topic": "billing"}},
    {"id": "autopay-off", "text": "How to turn off automatic monthly loan deductions",
     "metadata": {"topic": "billing"}},
    {"id": "password", "text": "Resetting a forgotten password to sign back into your account",
     "metadata": {"topic": "account"}},
    {"id": "refund-time", "text": "How long a refund takes to reach your bank after a return",
     "metadata": {"topic": "refund"}},
    {"id": "address", "text": "Changing the delivery address on an order that is already placed",
     "metadata": {"topic": "shipping"}},
]


@pytest.fixture
def kb(tiny_encoder, tmp_path):
    base = KnowledgeBase.open(tmp_path / "kb", tiny_encoder, chunk_tokens=24, chunk_overlap=4)
    yield base
    base.close()


def test_add_search_and_reload(kb, tiny_encoder, tmp_path):
    from qembed.models.prompts import DEFAULT_QUERY_INSTRUCTION

    out = kb.add(HELP_CENTRE_ZH)
    assert out == {"documents": 4, "chunks": 4, "replaced": 0}
    query = "买了东西两天了怎么还不发快递?"
    hits = kb.search(query, top_k=3)
    # plumbing with random weights: the query embedded WITH the retrieval instruction, the
    # documents WITHOUT one, ranked by inner product
    q = tiny_encoder.encode([query], instruction=DEFAULT_QUERY_INSTRUCTION)[0]
    d = tiny_encoder.encode([doc["text"] for doc in HELP_CENTRE_ZH])
    sims = d @ q
    order = sims.argsort()[::-1][:3]
    assert [h.id for h in hits] == [HELP_CENTRE_ZH[i]["id"] for i in order]
    assert [h.score for h in hits] == pytest.approx(sims[order].tolist(), abs=1e-5)
    no_instruction = tiny_encoder.encode([query])[0]
    assert not (d @ no_instruction) == pytest.approx(sims, abs=1e-4)
    top = kb.search(HELP_CENTRE_ZH[3]["text"], 1)[0]
    assert top.text == HELP_CENTRE_ZH[3]["text"] or top.id in {x["id"] for x in HELP_CENTRE_ZH}
    hit = next(h for h in kb.search(query, 4) if h.id == "ship-48h")
    assert hit.metadata == {"topic": "shipping", "doc_id": "ship-48h", "chunk": 0}
    assert hit.text == "订单超过48小时未发货怎么办"
    kb.close()
    again = KnowledgeBase.open(tmp_path / "kb", tiny_encoder)
    assert len(again) == 4 and [h.id for h in again.search(query, 3)] == [h.id for h in hits]
    again.close()


def test_long_documents_are_chunked_and_replaced(kb):
    long_text = "。".join(f"第{i}条说明:花呗账单每月自动还款,余额不足时会还款失败" for i in range(12))
    kb.add([{"id": "manual", "text": long_text, "metadata": {"topic": "manual"}}])
    chunks = kb.store.ids({"doc_id": "manual"})
    assert len(chunks) > 3 and all(c.startswith("manual#") for c in chunks)
    records = kb.store.get(chunks)
    assert all(r.metadata["doc_id"] == "manual" and r.metadata["topic"] == "manual" for r in records)
    assert all(len(kb.encoder.tokenize([r.text])[0]) <= 24 + 2 for r in records)
    # re-adding a shorter version replaces every old chunk
    out = kb.add([{"id": "manual", "text": "花呗账单每月自动还款"}])
    assert out["replaced"] == 1 and kb.store.ids({"doc_id": "manual"}) == ["manual"]
    assert kb.search("花呗", 10, unique_documents=True)[0].metadata["doc_id"] == "manual"
    assert kb.delete("manual") == 1 and len(kb) == 0
    assert kb.delete("manual") == 0


def test_modes_filters_and_bm25_persistence(kb, tmp_path):
    kb.add(HELP_CENTRE_ZH)
    bm = kb.search("花呗还款失败", 3, mode="bm25")
    assert bm[0].id == "huabei-fail" and bm[0].score > 0
    assert (tmp_path / "kb" / "bm25" / "qembed-bm25.json").exists()
    hy = kb.search("花呗还款失败", 4, mode="hybrid")
    assert hy[0].id == "huabei-fail"
    for mode in ("dense", "bm25", "hybrid"):
        hits = kb.search("还款", 4, mode=mode, filter={"topic": "repayment"})
        assert hits and {h.metadata["topic"] for h in hits} == {"repayment"}
    # BM25 follows deletes and adds (the stored index is marked stale and rebuilt)
    kb.delete("huabei-fail")
    assert all(h.id != "huabei-fail" for h in kb.search("花呗还款失败", 3, mode="bm25"))
    kb.add([{"id": "new", "text": "花呗还款失败怎么办", "metadata": {"topic": "repayment"}}])
    assert kb.search("花呗还款失败", 1, mode="bm25")[0].id == "new"


def test_bad_input_is_refused_and_data_kept(kb, tiny_encoder, minilm_encoder, tmp_path):
    kb.add(HELP_CENTRE_ZH)
    bad = [
        lambda: kb.search("", 3),
        lambda: kb.search("   ", 3),
        lambda: kb.search("x", 0),
        lambda: kb.search("x", 3, mode="semantic"),
        lambda: kb.search("x", 3, filter={"colour": "red"}),
        lambda: kb.search("x", 3, mode="bm25", filter={"colour": "red"}),
        lambda: kb.add([{"id": "ok", "text": "有效文本"}, {"id": "empty", "text": "  "}]),
        lambda: kb.add([{"id": "no-text"}]),
        lambda: kb.add([]),
        lambda: kb.add([{"id": "a#1", "text": "x"}]),
        lambda: kb.add([{"id": "d", "text": "x", "metadata": {"doc_id": "other"}}]),
        lambda: kb.add([{"id": "d", "text": "x"}, {"id": "d", "text": "y"}]),
        lambda: kb.delete([""]),
        lambda: kb.add([{"id": "m", "text": "x", "metadata": ["not", "an", "object"]}]),
        lambda: kb.add([{"id": "m", "text": "x", "metadata": {"bad key": 1}}]),
        lambda: kb.add([42]),
    ]
    for call in bad:
        with pytest.raises(InputError):
            call()
    assert len(kb) == 4 and kb.store.get(["ok"]) == [None]
    assert kb.store.get(["ship-48h"])[0].text == "订单超过48小时未发货怎么办"
    with pytest.raises(InputError, match="size 64, not 384"):
        KnowledgeBase.open(tmp_path / "kb", minilm_encoder)
    # same size, another model: refused by the manifest
    other = open_store(tmp_path / "kb")
    other.set_meta("model", "some-other-model")
    with pytest.raises(InputError, match="built with model 'some-other-model'"):
        KnowledgeBase(tiny_encoder, other)
    other.close()


def test_rrf_matches_hand_computation():
    a = [Hit("x", 0.9), Hit("y", 0.8), Hit("z", 0.1)]
    b = [Hit("y", 7.0), Hit("w", 3.0)]
    fused = rrf([a, b], 4)
    expected = {"y": 1 / 62 + 1 / 61, "x": 1 / 61, "w": 1 / 62, "z": 1 / 63}
    assert [h.id for h in fused] == ["y", "x", "w", "z"]
    for h in fused:
        assert h.score == pytest.approx(expected[h.id])


def test_meaning_decides_the_order_minilm(minilm_encoder, tmp_path):
    kb = KnowledgeBase.open(None, minilm_encoder)
    kb.add(HELP_CENTRE_EN)
    cases = {
        "my package hasn't shipped after two days": "shipping-delay",
        "I can't log in, I don't remember my credentials": "password",
        "stop the bank from taking money for my loan every month": "autopay-off",
        "when will I get my money back for the item I sent back": "refund-time",
    }
    for query, expected in cases.items():
        hits = kb.search(query, top_k=3)
        assert hits[0].id == expected, (query, [h.id for h in hits])
    # the filter keeps the ranking inside the shipping topic
    hits = kb.search("my package hasn't shipped after two days", 5, filter={"topic": "shipping"})
    assert [h.id for h in hits] == ["shipping-delay", "address"]


def test_milvus_backend_knowledge_base(tiny_encoder, tmp_path):
    uri = str(tmp_path / "kb.db")
    kb = KnowledgeBase.open(uri, tiny_encoder, chunk_tokens=24, chunk_overlap=4)
    kb.add(HELP_CENTRE_ZH)
    assert {h.id for h in kb.search("如何关闭借呗自动扣款功能", 4)} == {d["id"] for d in HELP_CENTRE_ZH}
    assert kb.search("借呗扣款", 2, mode="bm25")[0].id == "jiebei-auto"
    assert kb.search("还款", 4, mode="hybrid", filter={"topic": "repayment"})
    assert kb.delete("jiebei-auto") == 1
    kb.close()
    again = KnowledgeBase.open(uri, tiny_encoder)
    assert len(again) == 3 and again.store.get_meta("model") == tiny_encoder.name
    again.close()
