"""More like this: ``KnowledgeBase.similar`` on FAISS and Milvus Lite, against a brute-force cosine
reference; the given documents never come back; filters, texts, MMR diversity, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from qembed.errors import InputError, NotFoundError
from qembed.search.knowledge_base import KnowledgeBase

WORDS = ["payment", "refund", "parcel", "password", "card", "delivery", "account", "order", "loan",
         "花呗", "快递", "退款", "借呗", "密码"]
#: 24 short documents (one chunk each) and one long document (several chunks).
DOCS = [{"id": f"d{i:02d}", "text": f"{WORDS[i % len(WORDS)]} {WORDS[(i * 5 + 3) % len(WORDS)]} question {i}",
         "metadata": {"group": "a" if i % 3 else "b"}} for i in range(24)]
LONG = {"id": "long", "text": " ".join(f"sentence {i} about {WORDS[i % len(WORDS)]}" for i in range(60)),
        "metadata": {"group": "a"}}


@pytest.fixture
def kb(tiny_encoder, store_uri):
    base = KnowledgeBase.open(store_uri, tiny_encoder, chunk_tokens=32, chunk_overlap=0)
    base.add(DOCS + [LONG])
    yield base
    base.close()


def _reference(kb, query, exclude_docs, flt=None):
    """Every stored chunk's cosine to ``query``, best first, one chunk per document, brute force."""
    records = [r for batch in kb.store.scan() for r in batch]
    full = kb.store.get([r.id for r in records], with_vectors=True)
    rows = []
    for r in full:
        doc = r.metadata["doc_id"]
        if doc in exclude_docs or (flt and r.metadata.get("group") != flt):
            continue
        rows.append((float(np.dot(r.vector, query)), r.id, doc))
    rows.sort(key=lambda x: -x[0])
    seen, out = set(), []
    for score, cid, doc in rows:
        if doc not in seen:
            seen.add(doc)
            out.append((cid, score))
    return out


def _mean_vector(kb, doc_ids):
    parts = []
    for doc in doc_ids:
        recs = kb.store.get(kb.store.ids({"doc_id": doc}), with_vectors=True)
        v = np.mean([r.vector for r in recs], axis=0)
        parts.append(v / np.linalg.norm(v))
    q = np.mean(parts, axis=0)
    return q / np.linalg.norm(q)


def test_similar_equals_brute_force_and_never_returns_the_given(kb):
    for given in (["d03"], ["d03", "d10"], ["long"], ["long", "d07"]):
        hits = kb.similar(given, top_k=8)
        ref = _reference(kb, _mean_vector(kb, given), set(given))[:8]
        assert [h.id for h in hits] == [cid for cid, _ in ref], given
        np.testing.assert_allclose([h.score for h in hits], [s for _, s in ref], atol=1e-5)
        assert not {h.metadata["doc_id"] for h in hits} & set(given)
    # every other document, when asked for more than there are
    hits = kb.similar("d00", top_k=1000)
    assert len(hits) == len(DOCS) and "d00" not in {h.metadata["doc_id"] for h in hits}
    # chunks, not documents
    chunks = kb.similar("d00", top_k=1000, unique_documents=False)
    assert len(chunks) == kb.store.count() - 1


def test_similar_filter_texts_and_diversity(kb, tiny_encoder):
    hits = kb.similar("d01", top_k=5, filter={"group": "b"})
    ref = _reference(kb, _mean_vector(kb, ["d01"]), {"d01"}, flt="b")[:5]
    assert [h.id for h in hits] == [c for c, _ in ref] and all(h.metadata["group"] == "b" for h in hits)
    # a new text: embedded as a document; a stored copy of it is left out
    text = DOCS[4]["text"]
    q = tiny_encoder.encode([text])[0]
    hits = kb.similar(texts=[text], top_k=6)
    ref = _reference(kb, q / np.linalg.norm(q), {"d04"})[:6]
    assert [h.id for h in hits] == [c for c, _ in ref] and "d04" not in {h.id for h in hits}
    # MMR: the first hit is the closest one; the set differs from plain ranking once diversity is high
    plain = kb.similar("d02", top_k=6)
    diverse = kb.similar("d02", top_k=6, diversity=0.9, candidates=25)
    assert diverse[0].id == plain[0].id and len(diverse) == 6 and "d02" not in {h.id for h in diverse}
    assert [h.id for h in kb.similar("d02", top_k=6, diversity=0.0, candidates=25)] == [h.id for h in plain]


@pytest.mark.parametrize("kwargs, error, match", [
    ({}, InputError, "give the documents"),
    ({"ids": ["nope"]}, NotFoundError, "no document with id 'nope'"),
    ({"ids": ["a#1"]}, InputError, "contains '#'"),
    ({"texts": ["  "]}, InputError, "the like text is empty"),
    ({"ids": ["d00"], "top_k": 0}, InputError, "top_k must be"),
    ({"ids": ["d00"], "diversity": 1.5}, InputError, "diversity must be"),
    ({"ids": ["d00"], "rerank": True}, InputError, "needs a reranker"),
])
def test_similar_bad_input(tiny_encoder, kwargs, error, match):
    base = KnowledgeBase.open(None, tiny_encoder)
    base.add(DOCS[:3])
    with pytest.raises(error, match=match):
        base.similar(**kwargs)
    base.close()


def test_like_on_the_search_endpoint_and_the_cli(tiny_encoder, tiny_model_path, tmp_path, capsys):
    """``like`` on ``/v1/search`` and ``qembed search --like``: the same hits as ``similar``."""
    import json

    import httpx

    from qembed.cli import main
    from qembed.server.testing import running_server

    index = tmp_path / "index"
    kb = KnowledgeBase.open(index, tiny_encoder)
    kb.add(DOCS)
    expected = [h.id for h in kb.similar(["d05"], top_k=4)]
    with_text = [h.id for h in kb.similar(["d05"], texts=["refund parcel"], top_k=4, diversity=0.5)]
    kb.close()
    with running_server(encoder=tiny_encoder, index=str(index)) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            r = client.post("/v1/search", json={"like": [{"id": "d05"}], "top_k": 4})
            assert r.status_code == 200, r.text
            assert [d["id"] for d in r.json()["data"]] == expected
            r = client.post("/v1/search", json={"like": [{"id": "d05"}, "refund parcel"], "top_k": 4,
                                                "diversity": 0.5})
            assert [d["id"] for d in r.json()["data"]] == with_text
            for body, status, match in [
                ({"like": [{"id": "nope"}]}, 404, "no document with id 'nope'"),
                ({"like": []}, 400, "like is empty"),
                ({"like": ["x"], "query": "y"}, 400, "not both"),
                ({"like": ["x"], "mode": "bm25"}, 400, "mode must be dense"),
                ({"query": "y", "diversity": 0.2}, 400, "diversity goes with like"),
                ({}, 400, "give query"),
            ]:
                r = client.post("/v1/search", json=body)
                assert r.status_code == status and match in r.json()["error"]["message"], (body, r.text)
            schema = client.get("/openapi.json").json()["components"]["schemas"]["SearchRequest"]
            assert "like" in schema["properties"] and schema["not"]["required"] == ["query", "like"]
    code = main(["search", "--like", "d05", "--index", str(index), "--model", str(tiny_model_path),
                 "--dtype", "float32", "--top-k", "4", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    body = json.loads(out)
    assert [d["id"] for d in body["data"]] == expected and body["like"] == ["d05"]
    code = main(["search", "a query", "--like", "d05", "--index", str(index), "--model", str(tiny_model_path)])
    assert code == 2 and "not both" in capsys.readouterr().err
