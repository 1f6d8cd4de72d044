"""Issue 27: paths taken exactly as sent, one reading of ``Authorization``, the open routes.

``DELETE /v1/documents/doc-01%0A`` once deleted ``doc-01``: Starlette's ``$`` anchor matched before
the final line feed and the ``path`` convertor stopped at it. Every route that takes an id is
attacked here on both stores (FAISS and Milvus Lite), and every stored document must be unchanged.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from qembed.server.testing import running_server

from .helpers import assert_error

KEY = "k3y"
AUTH = {"authorization": f"Bearer {KEY}"}
DOCS = [{"id": f"doc-0{i}", "text": f"document {i} about shipping", "metadata": {"n": i}} for i in range(1, 4)]
#: Control characters after the id, as sent on the wire (C0, DEL and C1 NEL / APC in UTF-8).
CONTROLS = ["%0A", "%0D", "%09", "%00", "%0B", "%0C", "%1B", "%7F", "%C2%85", "%C2%9F", "%0D%0A", "%0A%0A"]


def raw(url: str, method: str, path: str, headers: list[tuple[str, str]] = ()) -> tuple[int, dict]:
    """A request whose path goes on the wire exactly as written (httpx would normalise it)."""
    host, port = url.split("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        r = conn.getresponse()
        body = r.read()
        return r.status, json.loads(body) if body.startswith(b"{") else {}
    finally:
        conn.close()


def stored(url) -> dict:
    kb = url.app.state.knowledge_base
    return {r.id: (r.text, r.metadata) for batch in kb.store.scan() for r in batch}


@pytest.fixture(scope="module", params=["faiss", "milvus"])
def kb_server(request, tiny_encoder, tmp_path_factory):
    where = tmp_path_factory.mktemp(f"paths-{request.param}")
    index = str(where / ("index" if request.param == "faiss" else "kb.db"))
    with running_server(encoder=tiny_encoder, index=index, api_key=KEY) as url:
        r = httpx.post(url + "/v1/documents", json={"documents": DOCS}, headers=AUTH, timeout=120)
        assert r.status_code == 200, r.text
        yield url


#: Every route that takes a document id in its path: (method, path template).
ID_ROUTES = [("DELETE", "/v1/documents/{id}")]


def test_the_id_routes_listed_here_are_all_the_app_has(kb_server):
    schema = httpx.get(kb_server + "/openapi.json").json()
    templated = sorted((m.upper(), p.replace("{doc_id}", "{id}")) for p, item in schema["paths"].items()
                       for m in item if "{" in p and not p.startswith("/v1/adapters/"))  # a name, not an id
    assert templated == sorted(ID_ROUTES)


@pytest.mark.parametrize("method,template", ID_ROUTES)
@pytest.mark.parametrize("control", CONTROLS)
def test_a_control_character_in_a_path_id_is_a_400_and_touches_nothing(kb_server, method, template, control):
    before = stored(kb_server)
    for path in (template.format(id=f"doc-01{control}"), template.format(id=f"{control}doc-01"),
                 template.format(id=f"doc{control}-01")):
        status, body = raw(kb_server, method, path, list(AUTH.items()))
        assert status == 400, (path, status, body)
        assert body["error"]["param"] == "id" and "control character" in body["error"]["message"], body
    assert stored(kb_server) == before


def test_path_ids_follow_the_body_rules(kb_server):
    before = stored(kb_server)
    for path, status in [("/v1/documents/doc-01%230", 400), ("/v1/documents/", 400), ("/v1/documents/%20", 400),
                         ("/v1/documents/" + "x" * 513, 400), ("/v1/documents/doc-0", 404),
                         ("/v1/documents/./doc-01", 404), ("/v1/documents/doc-01/", 404)]:
        got, body = raw(kb_server, "DELETE", path, list(AUTH.items()))
        assert got == status, (path, got, body)
    assert stored(kb_server) == before
    got, body = raw(kb_server, "DELETE", "/v1/documents/doc-03", list(AUTH.items()))
    assert got == 200 and body["id"] == "doc-03"
    assert set(stored(kb_server)) == set(before) - {"doc-03"}
    r = httpx.post(kb_server + "/v1/documents", json={"documents": DOCS[2:]}, headers=AUTH, timeout=120)
    assert r.status_code == 200 and stored(kb_server) == before


@pytest.mark.parametrize("path", ["/v1/models%0A", "/v1/models%0A%0A", "/health%0A", "/metrics%0A", "/docs%0A",
                                  "/openapi.json%0A", "/v1/search%0A", "/v1/models%0D", "/v1/models%00"])
def test_static_routes_never_match_a_path_with_more_after_it(kb_server, path):
    method = "POST" if "search" in path else "GET"
    status, body = raw(kb_server, method, path, list(AUTH.items()))
    assert status == 404, (path, status, body)
    assert body["error"]["type"] == "not_found_error"
    assert raw(kb_server, method, path)[0] == 401  # without the key: refused first, as any unknown path


def test_unmatched_paths_are_labelled_unmatched_in_metrics(kb_server):
    raw(kb_server, "GET", "/v1/models%0A", list(AUTH.items()))
    text = httpx.get(kb_server + "/metrics").text
    assert 'qembed_requests_total{endpoint="unmatched",status="404"}' in text


@pytest.mark.parametrize("values", [["Bearer nope", f"Bearer {KEY}"], [f"Bearer {KEY}", "Bearer nope"],
                                    [f"Bearer {KEY}", f"Bearer {KEY}"]])
@pytest.mark.parametrize("method,path", [("GET", "/v1/models"), ("POST", "/v1/embeddings"),
                                         ("DELETE", "/v1/documents/doc-01"), ("GET", "/v1/no-such-route"),
                                         ("GET", "/v1/models%0A")])
def test_a_repeated_authorization_header_is_refused_everywhere(kb_server, values, method, path):
    before = stored(kb_server)
    status, body = raw(kb_server, method, path, [("authorization", v) for v in values])
    assert status == 400, (status, body)
    assert body["error"]["code"] == "duplicate_authorization"
    assert stored(kb_server) == before


def test_open_routes_need_no_key_and_a_repeated_header_does_not_matter_there(kb_server):
    for path in ("/health", "/metrics", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        assert raw(kb_server, "GET", path)[0] == 200, path
        assert raw(kb_server, "GET", path, [("authorization", "x"), ("authorization", "y")])[0] == 200, path


def test_no_api_docs_closes_the_docs(tiny_encoder):
    with running_server(encoder=tiny_encoder, api_key=KEY, api_docs=False) as url:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            assert_error(httpx.get(url + path), 401)  # no longer open: the key comes first
            assert_error(httpx.get(url + path, headers=AUTH), 404)
        assert httpx.get(url + "/health").status_code == 200
        assert httpx.get(url + "/metrics").status_code == 200
    with running_server(encoder=tiny_encoder, api_docs=False) as url:
        assert_error(httpx.get(url + "/openapi.json"), 404)


def test_api_docs_setting_reads_the_environment(monkeypatch):
    from qembed.config import Settings

    monkeypatch.setenv("QEMBED_API_DOCS", "false")
    assert Settings().api_docs is False


def test_serve_help_lists_every_open_route():
    qembed = Path(sys.executable).with_name("qembed")
    out = subprocess.run([str(qembed), "serve", "--help"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "400", "NO_COLOR": "1", "PYTHONPATH": os.environ.get(
                             "PYTHONPATH", "")})
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    for route in ("/health", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json",
                  "--no-api-docs"):
        assert route in text, route
