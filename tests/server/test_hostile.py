"""A hostile or careless client against a live server (issue 11, items 1, 4-7 and 9).

Every request here is one a fuzzer, an injection list or a broken client sent; every answer must
be a 4xx with an OpenAI-shaped body (never a 500), nothing stored may change, and the server must
go on serving.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.parse

import httpx
import pytest

from qembed.server import middleware
from qembed.server.testing import running_server
from qembed.store import open_store

from .helpers import assert_error

CRAFTED = "zz'] or id != 'q' or id in ['zz"
LONG_TEXT = "shipping refunds and repayments " * 200  # several 512-token chunks


def post_raw(url: str, path: str, body, headers: dict | None = None) -> httpx.Response:
    """POST ``body`` as JSON with ASCII escapes, so unpaired surrogates travel as ``\\ud800``."""
    return httpx.post(url + path, content=json.dumps(body).encode("ascii"), timeout=120,
                      headers={"content-type": "application/json", **(headers or {})})


@pytest.fixture(scope="module")
def kb_server(tiny_encoder, tmp_path_factory):
    index = tmp_path_factory.mktemp("hostile") / "index"
    with running_server(encoder=tiny_encoder, index=str(index)) as url:
        r = httpx.post(url + "/v1/documents", timeout=120, json={"documents": [
            {"id": "ship", "text": "订单超过48小时未发货怎么办", "metadata": {"topic": "shipping", "n": 1}},
            {"id": "refund", "text": "退款申请提交后多久到账", "metadata": {"topic": "refund", "n": 2}},
            {"id": "long", "text": LONG_TEXT, "metadata": {"topic": "long"}},
        ]})
        assert r.status_code == 200, r.text
        yield url


def stored(url) -> dict:
    kb = url.app.state.knowledge_base
    return {r.id: (r.text, r.metadata) for batch in kb.store.scan() for r in batch}


SURROGATE_REQUESTS = [
    ("/v1/embeddings", {"input": "a\ud800"}),
    ("/v1/embeddings", {"input": ["fine", "\udc00"]}),
    ("/v1/embeddings", {"input": "hi", "instruction": "\ud800"}),
    ("/v1/embeddings", {"input": "hi", "user": "\ud83d"}),
    ("/tokenize", {"prompt": "a\ud800b"}),
    ("/v1/search", {"query": "\ud800"}),
    ("/v1/search", {"query": "x", "filter": {"topic": "\ud800"}}),
    ("/v1/search", {"query": "x", "filter": {"topic": ["shipping", "\udfff"]}}),
    ("/v1/cluster", {"input": ["a", "\ud800", "c"]}),
    ("/v1/cluster", {"input": ["a", "b", "c"], "words": ["\ud800"]}),
    ("/v1/classify", {"input": "\ud800", "labels": ["a", "b"]}),
    ("/v1/classify", {"input": ["x"], "labels": ["a", "b\ud800"]}),
    ("/v1/similarity", {"pairs": [["a", "\ud800"]]}),
    ("/v1/dedup", {"input": ["a", "\ud800"]}),
    ("/v1/documents", {"documents": ["\ud800"]}),
    ("/v1/documents", {"documents": [{"text": "x\ud800"}]}),
    ("/v1/documents", {"documents": [{"id": "ship", "text": "x", "title": "\ud800"}]}),
    ("/v1/documents", {"documents": [{"id": "s\ud800", "text": "x"}]}),
    ("/v1/documents", {"documents": [{"id": "ship", "text": "x", "metadata": {"note": "\ud800"}}]}),
    ("/v1/documents", {"documents": [{"id": "ship", "text": "x", "metadata": {"n": {"k\ud800": 1}}}]}),
]


@pytest.mark.parametrize("path,body", SURROGATE_REQUESTS, ids=[f"{p}-{i}" for i, (p, _) in enumerate(SURROGATE_REQUESTS)])
def test_unpaired_surrogates_answer_400_on_every_route(kb_server, path, body):
    before = stored(kb_server)
    assert_error(post_raw(kb_server, path, body), 400, contains="surrogate")
    assert stored(kb_server) == before
    assert httpx.post(kb_server + "/v1/embeddings", json={"input": "still serving"}).status_code == 200


@pytest.mark.parametrize("body,param", [
    ({"input": ["a", "b", "c"], "seed": -1}, "seed"),
    ({"input": ["a", "b", "c"], "seed": 2**32}, "seed"),
    ({"input": ["a", "b", "c"], "seed": 2**70}, "seed"),
    ({"input": ["a", "b", "c"], "method": "hdbscan", "min_samples": 4}, "min_samples"),
    ({"input": ["a", "b", "c"], "method": "hdbscan", "min_samples": 10**6}, "min_samples"),
])
def test_cluster_parameters_out_of_range_answer_400(kb_server, body, param):
    assert_error(post_raw(kb_server, "/v1/cluster", body), 400, param=param)


def test_cluster_largest_seed_is_fine(kb_server):
    r = post_raw(kb_server, "/v1/cluster", {"input": ["a cat", "a dog", "a car", "a bus"], "k": 2, "seed": 2**32 - 1})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path,body,param", [
    ("/tokenize", {"prompt": "hi", "add_special_tokens": "no"}, "add_special_tokens"),
    ("/tokenize", {"prompt": "hi", "add_special_tokens": 0}, "add_special_tokens"),
    ("/v1/dedup", {"input": ["a", "b"], "return_texts": "no"}, "return_texts"),
    ("/v1/dedup", {"input": ["a", "b"], "return_texts": 1}, "return_texts"),
    ("/v1/search", {"query": "x", "unique_documents": 0}, "unique_documents"),
    ("/v1/cluster", {"input": ["a", "b"], "reassign_outliers": "yes"}, "reassign_outliers"),
])
def test_non_strict_booleans_are_refused(kb_server, path, body, param):
    assert_error(post_raw(kb_server, path, body), 400, param=param)


def test_delete_by_chunk_id_deletes_nothing(kb_server):
    chunks = sorted(c for c in stored(kb_server) if c.startswith("long"))
    assert len(chunks) >= 2 and "long#0" in chunks
    assert_error(httpx.delete(kb_server + "/v1/documents/long%230"), 400, param="id", contains="'#'")
    assert_error(httpx.delete(kb_server + "/v1/documents/x%00y"), 400, param="id", contains="control character")
    assert sorted(c for c in stored(kb_server) if c.startswith("long")) == chunks


def test_documents_are_written_whole_or_not_at_all(kb_server):
    before = stored(kb_server)
    good = [{"id": f"batch-{i}", "text": f"document {i}"} for i in range(299)]
    deep: object = "leaf"
    for _ in range(40):
        deep = {"k": deep}
    for bad in ({"id": "bad", "text": "x", "metadata": {"deep": deep}},
                {"id": "bad", "text": "x", "metadata": {"n": 2**64}},
                {"id": "bad", "text": "x", "metadata": {"lang\n": "zh"}},
                {"id": "bad\x00", "text": "x"}):
        assert_error(post_raw(kb_server, "/v1/documents", {"documents": good + [bad]}), 400)
    assert stored(kb_server) == before


def test_deep_metadata_refused_at_the_door_and_search_keeps_working(kb_server):
    deep: object = "leaf"
    for _ in range(900):
        deep = {"k": deep}
    assert_error(post_raw(kb_server, "/v1/documents", {"documents": [{"id": "deep", "text": "x", "metadata": {"d": deep}}]}),
                 400, contains="nested more than 16 levels")
    ok: object = "leaf"
    for _ in range(14):
        ok = {"k": ok}
    r = post_raw(kb_server, "/v1/documents", {"documents": [{"id": "deep-ok", "text": "深层元数据", "metadata": {"d": ok}}]})
    assert r.status_code == 200, r.text
    r = post_raw(kb_server, "/v1/search", {"query": "深层元数据", "top_k": 50})
    assert r.status_code == 200 and "deep-ok" in {d["id"] for d in r.json()["data"]}
    assert httpx.delete(kb_server + "/v1/documents/deep-ok").status_code == 200


def test_filters_beyond_int64_and_with_too_many_values(kb_server):
    assert_error(post_raw(kb_server, "/v1/search", {"query": "x", "filter": {"n": 2**63}}), 400, contains="64-bit")
    assert_error(post_raw(kb_server, "/v1/search", {"query": "x", "filter": {"n": [-(2**63) - 1]}}), 400)
    assert_error(post_raw(kb_server, "/v1/search", {"query": "x", "filter": {"n": list(range(1025))}}), 400,
                 contains="limit of 1024")
    assert_error(post_raw(kb_server, "/v1/search", {"query": "x", "filter": {"topic\n": "shipping"}}), 400)
    assert_error(post_raw(kb_server, "/v1/search", {"query": "x", "filter": {"topic": "a\x00"}}), 400,
                 contains="control character")
    r = post_raw(kb_server, "/v1/search", {"query": "订单", "mode": "hybrid", "filter": {"n": list(range(1000))}})
    assert r.status_code == 200 and {d["id"] for d in r.json()["data"]} == {"ship", "refund"}


def test_openapi_documents_400_not_422(kb_server):
    schema = httpx.get(kb_server + "/openapi.json").json()
    text = json.dumps(schema)
    assert '"422"' not in text and "HTTPValidationError" not in text
    for path, item in schema["paths"].items():
        for method, op in item.items():
            assert "default" not in op["responses"], (method, path)  # every status listed (issue 27)
            if method in ("post", "delete"):
                ref = op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorResponse", (method, path)
    assert set(schema["components"]["schemas"]["ErrorDetail"]["properties"]) == {"message", "type", "param", "code"}


def _request_counts(url) -> dict[tuple[str, str], float]:
    out = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("qembed_requests_total{"):
            labels, value = line[len("qembed_requests_total{"):].split("} ")
            pairs = dict(part.split("=", 1) for part in labels.split(","))
            out[(pairs["endpoint"].strip('"'), pairs["status"].strip('"'))] = float(value)
    return out


def test_metrics_label_task_routes_by_path_template(kb_server):
    before = _request_counts(kb_server)
    httpx.post(kb_server + "/v1/search", json={"query": "订单"})
    httpx.post(kb_server + "/v1/similarity", json={"pairs": [["a", "b"]]})
    httpx.post(kb_server + "/v1/documents", json={"documents": []})
    httpx.delete(kb_server + "/v1/documents/no-such-doc")
    httpx.get(kb_server + "/v1/not-a-route")
    after = _request_counts(kb_server)
    grown = {key: after[key] - before.get(key, 0.0) for key in after
             if after[key] != before.get(key, 0.0) and key[0] != "/metrics"}
    assert grown == {("/v1/search", "200"): 1, ("/v1/similarity", "200"): 1, ("/v1/documents", "400"): 1,
                     ("/v1/documents/{doc_id:any}", "404"): 1, ("unmatched", "404"): 1}


def test_a_500_keeps_the_connection_open(kb_server):
    app = kb_server.app

    async def broken() -> dict:
        raise RuntimeError("a bug in a handler")

    app.add_api_route("/test/broken", broken, methods=["GET"], include_in_schema=False)
    host, port = kb_server.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("GET", "/test/broken")
        r = conn.getresponse()
        body = json.loads(r.read())
        assert r.status == 500 and "RuntimeError: a bug in a handler" in body["error"]["message"]
        assert (r.getheader("connection") or "").lower() != "close"
        sock = conn.sock
        conn.request("GET", "/health")  # the same connection serves the next request
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["status"] == "ok"
        assert conn.sock is sock
    finally:
        conn.close()


def test_a_body_shorter_than_its_content_length_gets_408(kb_server, monkeypatch):
    monkeypatch.setattr(middleware, "BODY_TIMEOUT", 0.5)
    host, port = kb_server.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"input\": \"only part")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)  # bounded by the socket timeout: a hang fails the test
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), reply
    assert "stopped arriving" in json.loads(body)["error"]["message"]
    assert httpx.post(kb_server + "/v1/embeddings", json={"input": "next"}).status_code == 200


def test_corrupt_index_answers_503(tiny_encoder, tmp_path):
    index = tmp_path / "index"
    with running_server(encoder=tiny_encoder, index=str(index)) as url:
        assert httpx.post(url + "/v1/documents", json={"documents": ["one", "two"]}, timeout=120).status_code == 200
        other = open_store(index)  # another process' save, then damage to that generation
        other.upsert(["x"], [[0.1] * tiny_encoder.dim])
        other.save()
        other.close()
        gen = (index / "CURRENT").read_text().strip()
        (index / gen / "vectors.faiss").write_bytes(b"damaged")
        r = httpx.post(url + "/v1/search", json={"query": "one"}, timeout=60)
        assert_error(r, 503, code="index_corrupt", contains="corrupt")
        assert httpx.post(url + "/v1/embeddings", json={"input": "other routes still work"}).status_code == 200


def test_documents_refused_with_429_write_nothing(tiny_encoder, tmp_path):
    index = tmp_path / "index"
    with running_server(encoder=tiny_encoder, index=str(index), max_queued_requests=1) as url:
        assert httpx.post(url + "/v1/documents", json={"documents": ["one", "two"]}, timeout=120).status_code == 200
        batcher = url.app.state.encoder.batcher
        results: list[httpx.Response] = []
        with batcher.pause():
            t = threading.Thread(target=lambda: results.append(
                httpx.post(url + "/v1/embeddings", json={"input": "queued"}, timeout=120)))
            t.start()
            while batcher.queue_depth < 1:
                threading.Event().wait(0.01)
            docs = [{"id": f"d{i}", "text": f"document {i}"} for i in range(300)]
            assert_error(httpx.post(url + "/v1/documents", json={"documents": docs}, timeout=120), 429)
        t.join(60)
        assert [r.status_code for r in results] == [200]
        assert url.app.state.knowledge_base.store.count() == 2
        r = httpx.post(url + "/v1/documents", json={"documents": ["three"]}, timeout=120)
        assert r.status_code == 200 and r.json()["count"] == 3
    store = open_store(index)
    try:
        assert store.count() == 3
    finally:
        store.close()


def test_crafted_id_over_http_on_milvus(tiny_encoder, tmp_path):
    # Before: 16 documents, then DELETE of the crafted id -> 0 documents.
    with running_server(encoder=tiny_encoder, index=str(tmp_path / "kb.db")) as url:
        docs = [{"id": f"doc-{i}", "text": f"document number {i}"} for i in range(16)]
        r = httpx.post(url + "/v1/documents", json={"documents": docs + [{"id": CRAFTED, "text": "x"}]}, timeout=120)
        assert r.status_code == 200 and r.json()["count"] == 17
        r = httpx.delete(url + "/v1/documents/" + urllib.parse.quote(CRAFTED, safe=""))
        assert r.status_code == 200 and r.json()["id"] == CRAFTED
        for awkward in ("a\\b", 'c"d', "e'f"):
            r = httpx.post(url + "/v1/documents", json={"documents": [{"id": awkward, "text": "y"}]}, timeout=120)
            assert r.status_code == 200, r.text
            assert httpx.delete(url + "/v1/documents/" + urllib.parse.quote(awkward, safe="")).status_code == 200
        store = url.app.state.knowledge_base.store
        assert store.count() == 16 and sorted(store.ids()) == sorted(d["id"] for d in docs)


@pytest.fixture(scope="module")
def keyed_server(tiny_encoder, tmp_path_factory):
    index = tmp_path_factory.mktemp("keyed") / "index"
    with running_server(encoder=tiny_encoder, index=str(index), api_key="s3cret") as url:
        yield url


@pytest.mark.parametrize("path", ["/v1/embeddings", "/v1/search", "/v1/documents", "/v1/cluster", "/tokenize"])
def test_malformed_json_without_a_key_answers_401(keyed_server, path):
    for headers in ({"content-type": "application/json"}, {}):
        assert_error(httpx.post(keyed_server + path, content=b"{oops", headers=headers), 401)
    r = httpx.post(keyed_server + path, content=b"{oops", headers={"content-type": "application/json",
                                                                   "authorization": "Bearer s3cret"})
    assert_error(r, 400, contains="not valid JSON")


@pytest.mark.parametrize("token", ["s3cret\u00a0", "\u00a0s3cret", "s3cret\u0085", "s3cret\u3000", "S3CRET", "s3cre"])
def test_padded_or_altered_tokens_are_refused(keyed_server, token):
    try:  # the raw bytes a client puts on the wire (0xA0 is NBSP, 0x85 NEL in latin-1)
        header = b"Bearer " + token.encode("latin-1")
    except UnicodeEncodeError:
        header = b"Bearer " + token.encode("utf-8")
    r = httpx.post(keyed_server + "/v1/embeddings", json={"input": "hi"}, headers={"authorization": header})
    assert_error(r, 401, contains="invalid API key")
    r = httpx.delete(keyed_server + "/v1/documents/anything", headers={"authorization": header})
    assert_error(r, 401)
    ok = httpx.post(keyed_server + "/v1/embeddings", json={"input": "hi"}, headers={"authorization": "Bearer s3cret"})
    assert ok.status_code == 200


def test_integral_numbers_are_integers_as_json_schema_has_it(kb_server):
    # JSON Schema's "integer" includes 41.0: what the schema allows, the server takes
    r = post_raw(kb_server, "/v1/embeddings", {"input": "hi", "dimensions": 48.0})
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 48
    r = post_raw(kb_server, "/v1/embeddings", {"input": [350.0, 351]})
    assert r.status_code == 200, r.text
    assert post_raw(kb_server, "/v1/search", {"query": "订单", "top_k": 2.0}).status_code == 200
    for body, param in (({"input": "hi", "dimensions": 48.5}, "dimensions"),
                        ({"input": "hi", "dimensions": "48"}, "dimensions"),
                        ({"input": [350.5]}, "input"), ({"input": "hi", "dimensions": True}, "dimensions")):
        assert_error(post_raw(kb_server, "/v1/embeddings", body), 400, param=param)


def test_parameters_out_of_range_are_refused_whatever_the_mode(kb_server):
    # candidates is read only with rerank, min_samples only by hdbscan: still one rule for each field
    assert_error(post_raw(kb_server, "/v1/search", {"query": "x", "candidates": 1001}), 400, param="candidates")
    assert_error(post_raw(kb_server, "/v1/search", {"query": "x", "candidates": 0}), 400, param="candidates")
    texts = ["a cat", "a dog", "a car", "a bus"]
    assert_error(post_raw(kb_server, "/v1/cluster", {"input": texts, "clusters": 2, "min_samples": 0}), 400,
                 param="min_samples")
    assert_error(post_raw(kb_server, "/v1/cluster", {"input": texts, "clusters": 2, "min_cluster_size": 1}), 400,
                 param="min_cluster_size")
