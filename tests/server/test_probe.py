"""The hostile-input probe of issue 27, kept in the suite (bounded, loopback only).

Against a live server with an API key and a knowledge base — one on FAISS, one on Milvus Lite —
the probe sends:

- every ``Authorization`` variant below to every route (and to unknown paths): one reading of the
  header for every check, so a variant is accepted or refused alike everywhere;
- crafted document ids in the path of ``DELETE /v1/documents/{id}`` (control characters after
  percent-decoding, a trailing newline first, chunk ids, quotes, path tricks) and the same ids in a
  body;
- injection payloads as filter values and field names, in every search mode.

No answer may be a 5xx, and every stored document must be unchanged afterwards. The counts (sent,
2xx, 4xx, 5xx) are logged at INFO (``pytest --log-cli-level=INFO``).
"""

from __future__ import annotations

import collections
import http.client
import json
import logging
import re
import urllib.parse

import httpx
import pytest

from qembed.server.testing import running_server

logger = logging.getLogger(__name__)

KEY = "pr0be-key"
DOCS = [{"id": f"doc-0{i}", "text": f"订单 {i} 超过48小时未发货怎么办 shipping {i}",
         "metadata": {"topic": "shipping" if i % 2 else "refund", "n": i, "flag": i == 1, "note": None}}
        for i in range(1, 6)]
LONG = {"id": "long", "text": "shipping refunds and repayments " * 200, "metadata": {"topic": "long"}}

#: Authorization header variants: (name, list of header values sent, whether the key is accepted).
AUTH_VARIANTS = [
    ("none", [], False),
    ("right", [f"Bearer {KEY}"], True),
    ("lower-scheme", [f"bearer {KEY}"], True),
    ("tab-padded", [f"Bearer \t{KEY}"], True),
    ("wrong", ["Bearer nope"], False),
    ("empty", [""], False),
    ("scheme-only", ["Bearer"], False),
    ("no-scheme", [KEY], False),
    ("basic", [f"Basic {KEY}"], False),
    ("prefix", [f"Bearer {KEY[:-1]}"], False),
    ("suffix", [f"Bearer {KEY}x"], False),
    ("upper", [f"Bearer {KEY.upper()}"], False),
    ("nbsp", [b"Bearer " + KEY.encode() + b"\xa0"], False),
    ("nel", [b"Bearer " + KEY.encode() + b"\x85"], False),
    ("utf8-nbsp", [b"Bearer " + KEY.encode() + "\u00a0".encode()], False),
    ("two-tokens", [f"Bearer {KEY} {KEY}"], False),
    ("comma", [f"Bearer {KEY}, Bearer nope"], False),
    ("dup-wrong-right", ["Bearer nope", f"Bearer {KEY}"], False),
    ("dup-right-wrong", [f"Bearer {KEY}", "Bearer nope"], False),
    ("dup-right-right", [f"Bearer {KEY}", f"Bearer {KEY}"], False),
    ("dup-none-right", ["", f"Bearer {KEY}"], False),
]

#: Paths open without the key (docs included: the default server serves them).
OPEN = {"/health", "/metrics", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"}
UNKNOWN = [("GET", "/v1/nothing-here"), ("POST", "/v1/nothing-here"), ("GET", "/v1/models/x"),
           ("DELETE", "/v1/documents"), ("GET", "/v1/models%0A"), ("GET", "/health%0A")]

#: Suffixes appended to a stored id in a DELETE path (percent-encoded as sent on the wire).
ID_SUFFIXES = ["%0A", "%0D", "%09", "%00", "%0B", "%0C", "%1F", "%7F", "%C2%85", "%C2%9F", "%0A%0A",
               "%0D%0A", "%20%0A", "%230", "%23", "/", "/..", "%2F..%2Fdoc-02", "%20", "%C2%A0"]
ID_PREFIXES = ["%0A", "%00", "%20", "./", "%2F"]
CRAFTED_IDS = ["doc-0' or '1'='1", 'doc-0" or id != "x', "doc-01') or ('1'='1", "*", "%", "doc-0%",
               "doc-0_", "long#0", "long#1", "doc-01\\", "doc-01\u2028", "doc-01\u0085", ".", "..",
               "doc-01 ", " doc-01"]

#: Filter payloads: values and field names a hostile client sends.
FILTER_VALUES = [
    "shipping\" or 1==1 or \"", "shipping' OR '1'='1", "shipping') or true or ('", "*", "%", "_",
    "shipping\\", "shipping\n", "\\\"", "1 or 1=1", "') OR 1=1 --", "shipping\u0000", "shipping\u0085",
    True, 1, 1.0, 0, -1, 2**63 - 1, 2**63, -(2**63) - 1, 1e308, None, [], [None], ["shipping", None],
    {"$ne": "x"}, {"$gt": ""}, [["shipping"]], "", " ", "a" * 10_000,
]
FILTER_FIELDS = ["topic\"] or true or metadata[\"a", "topic'", "topic\n", "$.topic", "topic]", "doc_id",
                 "chunk", "1topic", "-topic", "t" * 129, "nonexistent"]
MODES = ["dense", "bm25", "hybrid"]


class Tally:
    """Counts of answers by class, over the whole module."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    def note(self, r):
        self.counts["sent"] += 1
        self.counts[f"{r.status_code // 100}xx"] += 1
        return r


@pytest.fixture(scope="module")
def tally():
    t = Tally()
    yield t
    logger.info("probe: sent %d, 2xx %d, 4xx %d, 5xx %d", t.counts["sent"], t.counts["2xx"], t.counts["4xx"],
                t.counts["5xx"])


@pytest.fixture(scope="module", params=["faiss", "milvus"])
def probe_server(request, tiny_encoder, tmp_path_factory):
    where = tmp_path_factory.mktemp(f"probe-{request.param}")
    index = str(where / ("index" if request.param == "faiss" else "kb.db"))
    with running_server(encoder=tiny_encoder, index=index, api_key=KEY) as url:
        r = httpx.post(url + "/v1/documents", json={"documents": DOCS + [LONG]}, timeout=120,
                       headers={"authorization": f"Bearer {KEY}"})
        assert r.status_code == 200, r.text
        url.backend = request.param
        yield url


def stored(url) -> dict:
    kb = url.app.state.knowledge_base
    return {r.id: (r.text, r.metadata) for batch in kb.store.scan() for r in batch}


class Answer:
    """What the server answered: status, body text, JSON."""

    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code = status_code
        self.text = body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.text)


def send(url: str, method: str, path: str, headers: list | None = None, *, json_body=None,
         content: bytes | None = None) -> Answer:
    """One request with the path exactly as written (no re-encoding, no dot-segment removal, which
    httpx does) and the headers in order: a name given twice is sent twice."""
    host, port = url.split("//", 1)[1].split(":")
    body = json.dumps(json_body).encode() if json_body is not None else content
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers or []:
            conn.putheader(name, value)
        if json_body is not None:
            conn.putheader("content-type", "application/json")
        if body is not None:
            conn.putheader("content-length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return Answer(r.status, r.read())
    finally:
        conn.close()


def api_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, ids filled with an id no document has."""
    out = []
    for route in app.routes:
        for method in sorted(getattr(route, "methods", None) or ()):
            if method == "HEAD":
                continue
            out.append((method, re.sub(r"\{doc_id(:\w+)?\}", "no-such-doc", route.path)))
    return out


def test_auth_variants_read_alike_on_every_route(probe_server, tally):
    if probe_server.backend != "faiss":
        pytest.skip("the key check does not depend on the store")
    before = stored(probe_server)
    routes = api_routes(probe_server.app) + UNKNOWN
    assert len(routes) >= 15
    odd = []
    for name, values, accepted in AUTH_VARIANTS:
        for method, path in routes:
            headers = [("authorization", v) for v in values]
            if method == "POST":  # an empty object: an accepted key gets a 400, nothing is written
                headers.append(("content-type", "application/json"))
            r = tally.note(send(probe_server, method, path, headers, content=b"{}" if method == "POST" else None))
            assert r.status_code < 500, (name, method, path, r.text)
            if path in OPEN:
                refused = False
            else:
                refused = not accepted
            if refused and r.status_code not in (400, 401):
                odd.append((name, method, path, r.status_code))
            if not refused and r.status_code == 401:
                odd.append((name, method, path, r.status_code))
            if len(values) > 1 and path not in OPEN and r.status_code != 400:
                odd.append((name, method, path, r.status_code))
    assert stored(probe_server) == before
    assert not odd, f"{len(odd)} answers disagree with one reading of the header: {odd[:12]}"


def test_crafted_ids_never_touch_another_document(probe_server, tally):
    auth = [("authorization", f"Bearer {KEY}")]
    before = stored(probe_server)
    assert "doc-01" in before and "long#0" in before
    wrong = []
    paths = [f"/v1/documents/doc-01{s}" for s in ID_SUFFIXES]
    paths += [f"/v1/documents/{p}doc-01" for p in ID_PREFIXES]
    paths += ["/v1/documents/" + urllib.parse.quote(i, safe="") for i in CRAFTED_IDS]
    for path in paths:
        r = tally.note(send(probe_server, "DELETE", path, auth))
        assert r.status_code < 500, (path, r.text)
        if r.status_code == 200:
            wrong.append((path, r.status_code, r.text[:200]))
    for suffix in ["\n", "\r", "\t", "\x00", "\x0b", "\x85", "\x9f"]:
        body = {"documents": [{"id": "doc-01" + suffix, "text": "replaced"}]}
        r = tally.note(send(probe_server, "POST", "/v1/documents", auth, json_body=body))
        if r.status_code != 400:
            wrong.append(("POST", repr(suffix), r.status_code))
    r = tally.note(send(probe_server, "GET", "/v1/models%0A", auth))
    if r.status_code != 404:
        wrong.append(("GET /v1/models%0A", r.status_code))
    assert not wrong, wrong
    assert stored(probe_server) == before


def test_filter_injection_on_every_mode(probe_server, tally):
    auth = [("authorization", f"Bearer {KEY}")]
    before = stored(probe_server)
    leaks = []
    payloads = [{"topic": v} for v in FILTER_VALUES] + [{f: "shipping"} for f in FILTER_FIELDS]
    payloads += [{"note": None}, {"topic": "shipping", "n": [1, 3, None]}, {"flag": [True, None]}]
    for mode in MODES:
        for flt in payloads:
            body = {"query": "订单 shipping", "top_k": 20, "mode": mode, "filter": flt}
            r = tally.note(send(probe_server, "POST", "/v1/search", auth, json_body=body))
            assert r.status_code < 500, (mode, flt, r.text)
            if r.status_code == 200:
                for hit in r.json()["data"]:
                    meta = hit["metadata"]
                    for key, want in flt.items():
                        wants = want if isinstance(want, list) else [want]
                        if not any(_same(meta.get(key), w) for w in wants):  # null: null or absent
                            leaks.append((mode, flt, hit["id"]))
    # null is a filter value on both stores: the field is null (doc-01..05) or absent (long)
    nulls = []
    for mode in MODES:
        r = tally.note(send(probe_server, "POST", "/v1/search", auth, json_body={
            "query": "订单 shipping", "top_k": 20, "mode": mode, "filter": {"note": None}}))
        found = {h["metadata"]["doc_id"] for h in r.json()["data"]} if r.status_code == 200 else None
        if found != {d["id"] for d in DOCS} | {"long"}:
            nulls.append((mode, r.status_code, r.text[:200]))
        r = tally.note(send(probe_server, "POST", "/v1/search", auth, json_body={
            "query": "订单 shipping", "top_k": 20, "mode": mode, "filter": {"n": [None, 2]}}))
        found = {h["metadata"]["doc_id"] for h in r.json()["data"]} if r.status_code == 200 else None
        if found != {"doc-02", "long"}:
            nulls.append((mode, r.status_code, r.text[:200]))
    assert not leaks, leaks[:10]
    assert not nulls, nulls
    assert stored(probe_server) == before


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b
