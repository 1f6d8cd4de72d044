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
