"""``embedding_types`` on ``/v1/embeddings`` (Cohere's names, through the real ``openai`` client), and a
quantized knowledge base served through ``/v1/documents`` + ``/v1/search``. One live server."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest

from qembed.server.testing import running_server
from qembed.store import quantize as qz

from .helpers import assert_error

MODEL = "tiny-qwen3-embedding"
TEXTS = ["订单超过48小时未发货怎么办", "花呗还款失败有哪些原因", "如何关闭借呗自动扣款功能"]


@pytest.fixture(scope="module")
def served(tiny_encoder, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A server whose knowledge base was created binary-quantized (the server follows the index)."""
    from qembed.search.knowledge_base import KnowledgeBase

    index = tmp_path_factory.mktemp("quantized") / "kb"
    KnowledgeBase.open(index, tiny_encoder, store_options={"quantize": "binary", "rescore": 4}).close()
    with running_server(encoder=tiny_encoder, index=str(index)) as url:
        yield url, index


@pytest.fixture(scope="module")
def client(served):
    import openai

    with openai.Client(base_url=f"{served[0]}/v1", api_key="EMPTY", max_retries=0) as c:
        yield c


def test_one_type_is_the_embedding_as_openai_clients_read_it(client):
    floats = np.array([d.embedding for d in client.embeddings.create(input=TEXTS, model=MODEL).data], dtype=np.float32)
    for kind in ("int8", "uint8", "binary", "ubinary"):
        # encoding_format="float": the client otherwise asks for base64 and decodes it as float32
        got = client.embeddings.create(input=TEXTS, model=MODEL, encoding_format="float",
                                       extra_body={"embedding_types": [kind]}).data
        assert [d.embedding for d in got] == qz.as_type(floats, kind).tolist()
    got = client.embeddings.create(input=TEXTS[0], model=MODEL, dimensions=32, encoding_format="float",
                                   extra_body={"embedding_types": ["ubinary"]}).data[0].embedding
    assert len(got) == 4 and all(float(x).is_integer() and 0 <= x <= 255 for x in got)  # the client types them float


def test_several_types_come_by_type_and_base64_carries_the_bytes(served, client):
    url = served[0]
    floats = np.array(client.embeddings.create(input=TEXTS[:2], model=MODEL).data[1].embedding, dtype=np.float32)
    both = client.embeddings.create(input=TEXTS[:2], model=MODEL, encoding_format="float",
                                    extra_body={"embedding_types": ["float", "int8", "binary"]}).data[1].embedding
    assert set(both) == {"float", "int8", "binary"}
    assert np.allclose(both["float"], floats) and both["int8"] == qz.as_type(floats[None], "int8")[0].tolist()
    with httpx.Client(base_url=url, timeout=60) as http:
        r = http.post("/v1/embeddings", json={"input": TEXTS[1], "embedding_types": ["int8", "ubinary"],
                                              "encoding_format": "base64"})
        assert r.status_code == 200, r.text
        emb = r.json()["data"][0]["embedding"]
        assert np.array_equal(np.frombuffer(base64.b64decode(emb["int8"]), dtype=np.int8),
                              qz.as_type(floats[None], "int8")[0])
        assert np.array_equal(np.frombuffer(base64.b64decode(emb["ubinary"]), dtype=np.uint8),
                              qz.binary_codes(floats[None])[0])
        # ["float"] is the float path itself: the same bytes as no embedding_types
        plain = http.post("/v1/embeddings", json={"input": TEXTS, "model": MODEL})
        typed = http.post("/v1/embeddings", json={"input": TEXTS, "model": MODEL, "embedding_types": ["float"]})
        assert plain.content == typed.content
        for bad, needle in ([["int4"]], "embedding_types"), ([[]], "embedding_types"), \
                           ([["int8", "int8"]], "twice"), (["int8"], "embedding_types"):
            r = http.post("/v1/embeddings", json={"input": "x", "embedding_types": bad[0]})
            assert_error(r, 400, contains=needle)


def test_documents_and_search_on_a_quantized_index(served, tiny_encoder):
    url, index = served
    with httpx.Client(base_url=url, timeout=60) as http:
        docs = [{"id": f"d{i}", "text": t, "metadata": {"n": i}} for i, t in enumerate(TEXTS)]
        r = http.post("/v1/documents", json={"documents": docs})
        assert r.status_code == 200 and r.json()["count"] == 3, r.text
        r = http.post("/v1/search", json={"query": TEXTS[1], "top_k": 2, "filter": {"n": [1, 2]}})
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert [d["metadata"]["n"] for d in data] in ([1, 2], [2, 1]) and data[0]["score"] >= data[1]["score"]
        assert http.delete("/v1/documents/d2").status_code == 200
    from qembed.store import open_store

    store = open_store(index, create=False)  # what the server saved: binary codes, float rows on disk
    try:
        assert store.quantize == "binary" and store.count() == 2
        gen = index / (index / "CURRENT").read_text().strip()
        assert np.load(gen / qz.FLOATS_FILE, mmap_mode="r").shape == (2, tiny_encoder.dim)
    finally:
        store.close()
