"""The studio's routes over HTTP (no browser): what ``/`` and its files answer, with and without a key,
with ``--no-studio``; and the two API additions the page uses (``projection`` on ``/v1/cluster``,
``device``/``dtype`` on ``/v1/models``). The page itself is driven in Chromium by test_studio_browser.py.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from qembed.server.testing import running_server

KEY = "studio-http-key"


@pytest.fixture(scope="module")
def keyed(tiny_encoder, tmp_path_factory):
    """A server with an API key and a knowledge base."""
    index = tmp_path_factory.mktemp("studio-http") / "kb"
    with running_server(encoder=tiny_encoder, api_key=KEY, index=str(index)) as url:
        yield url


def _config(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="studio-config">(.*?)</script>', html, re.S)
    assert found, html[:500]
    return json.loads(found.group(1))


def test_page_and_files_are_open_cached_and_locked_down(keyed):
    page = httpx.get(keyed + "/")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    config = _config(page.text)
    assert config["auth"] is True and config["knowledge_base"] is True and config["reranker"] is False
    assert config["topic_model"] is False  # no --topic-model: Explore offers no saved topic model
    assert KEY not in page.text  # flags only, never the key
    assert "{{" not in page.text

    # a revisit costs a 304
    again = httpx.get(keyed + "/", headers={"if-none-match": page.headers["etag"]})
    assert again.status_code == 304 and again.content == b""

    # the files: linked by a content hash, cached for a year
    for name, kind in (("studio.css", "text/css"), ("studio.js", "text/javascript")):
        link = re.search(rf'/studio/{re.escape(name)}\?v=([0-9a-f]{{12}})', page.text)
        assert link, name
        asset = httpx.get(f"{keyed}/studio/{name}?v={link.group(1)}")
        assert asset.status_code == 200
        assert asset.headers["content-type"].startswith(kind)
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert httpx.head(f"{keyed}/studio/{name}").status_code == 200
        assert httpx.get(f"{keyed}/studio/{name}", headers={"if-none-match": asset.headers["etag"]}).status_code == 304
    assert httpx.get(keyed + "/studio/other.js").status_code == 401  # only the page's own files are open


def test_the_api_still_needs_the_key_and_the_schema_has_no_studio(keyed):
    assert httpx.post(keyed + "/v1/similarity", json={"pairs": [["a", "b"]]}).status_code == 401
    schema = httpx.get(keyed + "/openapi.json").json()
    assert "/" not in schema["paths"] and not any(p.startswith("/studio") for p in schema["paths"])
    assert "projection" in schema["components"]["schemas"]["ClusterRequest"]["properties"]


def test_no_studio_leaves_root_unserved(tiny_encoder):
    with running_server(encoder=tiny_encoder, studio=False, api_key=KEY) as url:
        assert httpx.get(url + "/").status_code == 401  # no longer an open path
        auth = {"authorization": f"Bearer {KEY}"}
        assert httpx.get(url + "/", headers=auth).status_code == 404
        assert httpx.get(url + "/studio/studio.js", headers=auth).status_code == 404
        assert httpx.get(url + "/docs").status_code == 200  # Swagger stays


def test_serve_flag_and_environment_turn_the_studio_off(tiny_model_path, monkeypatch):
    import uvicorn

    from qembed.cli import main
    from qembed.config import Settings

    monkeypatch.setenv("QEMBED_STUDIO", "false")
    assert Settings().studio is False
    monkeypatch.delenv("QEMBED_STUDIO")
    seen = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, *a, **k: seen.append(self.config.app))
    assert main(["serve", "--model", str(tiny_model_path), "--engine", "thread", "--no-compile",
                 "--dtype", "float32", "--port", "0", "--no-studio"]) == 0
    (app,) = seen
    assert app.state.settings.studio is False
    assert not any(getattr(r, "path", None) == "/" for r in app.routes)
    app.state.encoder.close()


def test_models_card_says_device_and_dtype(keyed):
    card = httpx.get(keyed + "/v1/models", headers={"authorization": f"Bearer {KEY}"}).json()["data"][0]
    assert card["device"] == "cpu" and card["dtype"] == "float32" and card["dim"] == 64


def test_cluster_projection_gives_map_coordinates(keyed):
    texts = ["red apple", "green apple", "ripe banana", "blue sky", "grey clouds", "rain today"]
    auth = {"authorization": f"Bearer {KEY}"}
    body = httpx.post(keyed + "/v1/cluster", headers=auth, timeout=120,
                      json={"input": texts, "clusters": 2, "projection": "pca"}).json()
    assert body["projection"] == "pca"
    assert [r["text"] for r in body["data"]] == texts
    xy = [(r["x"], r["y"]) for r in body["data"]]
    assert all(isinstance(v, float) for pair in xy for v in pair) and len(set(xy)) > 1
    plain = httpx.post(keyed + "/v1/cluster", headers=auth, timeout=120, json={"input": texts, "clusters": 2}).json()
    assert "projection" not in plain and "x" not in plain["data"][0]
    same = httpx.post(keyed + "/v1/cluster", headers=auth, timeout=120,
                      json={"input": ["same text"] * 3, "clusters": 2, "projection": "pca"})
    assert same.status_code in (200, 400), same.text  # never a 500 for texts that do not spread
    if same.status_code == 200:
        assert all(isinstance(r["x"], float) and isinstance(r["y"], float) for r in same.json()["data"])
    bad = httpx.post(keyed + "/v1/cluster", headers=auth, json={"input": texts, "projection": "tsne"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "projection"
