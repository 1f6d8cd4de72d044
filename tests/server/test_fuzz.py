"""Fuzz a live server against its own OpenAPI schema, with every schemathesis check (issues 11, 27).

The server has what a real deployment has: an API key, a FAISS knowledge base with a document, and
a reranker (tiny random models, engine threads, loopback only). Schemathesis' command line — the
tool the issue's probe ran — reads the schema the server serves (the limits of the served model
filled in) and runs its examples, coverage and fuzzing phases with ``--checks all``: no 5xx, every
status documented for its operation (no ``default``), responses as the schema says, requests that
break the schema refused, requests the schema allows accepted (no ST202), unexpected methods
answered 405 with ``Allow``, a missing key answered 401. The number of examples is bounded and
generation deterministic, so the run takes the same time every time (~30-60 s on 2 shared cores).

Two operations have rules a JSON schema cannot state, so their 400s are allowed for schema-valid
requests (``positive_data_acceptance`` tuned for them alone, as schemathesis documents for
"a cross-field rule"): ``/v1/cluster`` (``clusters``, ``min_cluster_size`` and ``min_samples`` at
most the number of texts; texts that all embed alike cannot be split) and ``/v1/classify`` (the
labels must name two distinct names, the part before ``:``); ``/v1/summarize`` (a text must hold a
sentence: a letter or a digit) and ``/v1/topics/fit`` (as ``/v1/cluster``).
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import pytest

from qembed.server.testing import running_server

logger = logging.getLogger(__name__)

KEY = "fuzz-key"
#: Examples per operation and phase.
MAX_EXAMPLES = 25
CONFIG = """
[[operations]]
include-path-regex = "^/v1/(cluster|classify|summarize|topics/fit)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "409", "429"]
"""


@pytest.fixture(scope="module")
def fuzz_server(tiny_encoder, tmp_path_factory):
    from qembed.rerank.testing import build_random_reranker

    where = tmp_path_factory.mktemp("fuzz")
    reranker = build_random_reranker(where / "tiny-reranker", seed=1, head_scale=8.0)
    with running_server(encoder=tiny_encoder, index=str(where / "index"), reranker=str(reranker),
                        engine="thread", compile=False, api_key=KEY, max_client_batch_size=64,
                        max_request_bytes=1024 * 1024, topic_model=str(where / "topics")) as url:
        import httpx

        r = httpx.post(url + "/v1/documents", headers={"authorization": f"Bearer {KEY}"}, timeout=120,
                       json={"documents": [{"id": "faq-1", "text": "订单超过48小时未发货怎么办",
                                            "metadata": {"topic": "shipping", "n": 1}}]})
        assert r.status_code == 200, r.text
        r = httpx.post(url + "/v1/topics/fit", headers={"authorization": f"Bearer {KEY}"}, timeout=120,
                       json={"input": ["花呗还款失败", "花呗怎么还款", "快递没到", "快递丢了", "密码忘了", "登录不了"],
                             "clusters": 3})
        assert r.status_code == 200, r.text
        yield url


@pytest.mark.slow
def test_schemathesis_with_every_check_finds_nothing(fuzz_server, tmp_path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color", "run",
         f"{fuzz_server}/openapi.json", "--checks", "all", "--max-examples", str(MAX_EXAMPLES),
         "--generation-deterministic", "--phases", "examples,coverage,fuzzing",
         "--header", f"Authorization: Bearer {KEY}", "--request-timeout", "120"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = run.stdout + run.stderr
    cases = re.search(r"(\d+) generated", out)
    logger.info("schemathesis: %s", " ".join(out.split("Test cases:")[-1].split())[:200])
    assert run.returncode == 0, out[-6000:]
    assert cases and int(cases.group(1)) >= 500, out[-2000:]  # the run really exercised the API
    assert "ST202" not in out and "Undocumented" not in out and "Server error" not in out, out[-4000:]


def test_served_schema_states_the_served_model_limits(fuzz_server):
    import httpx

    schema = httpx.get(fuzz_server + "/openapi.json").json()
    c = schema["components"]["schemas"]
    dims = [b for b in c["EmbeddingRequest"]["properties"]["dimensions"]["anyOf"] if b.get("type") == "integer"][0]
    assert (dims["minimum"], dims["maximum"]) == (32, 64)  # the tiny model's size
    assert all(ex.get("dimensions", 32) <= 64 for ex in c["EmbeddingRequest"]["examples"])
    assert c["TokenizeRequest"]["properties"]["prompt"]["minLength"] == 1
    assert c["SearchRequest"]["properties"]["rerank"].get("enum") is None  # a reranker runs here
    flt = c["SearchRequest"]["properties"]["filter"]["anyOf"][0]
    assert {"topic", "n", "doc_id", "chunk"} <= set(flt["propertyNames"]["enum"])  # and what the fuzzer added
    doc_id = schema["paths"]["/v1/documents/{doc_id}"]["delete"]["parameters"][0]["schema"]
    assert doc_id["maxLength"] == 512 and doc_id["not"]["pattern"] == r"[\x00-\x1f\x7f-\x9f#]"
    for path, item in schema["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            assert "default" not in codes and "422" not in codes, (method, path)
            assert {"405", "408", "413"} <= codes, (method, path)
            if path not in ("/health", "/metrics"):
                assert {"400", "401", "429", "503"} <= codes, (method, path)


def test_schema_without_a_reranker_or_model_says_so(tiny_encoder):
    from qembed.config import Settings
    from qembed.server.app import create_app

    bare = create_app(Settings()).openapi()  # no model loaded yet: bounds that do not depend on it
    props = bare["components"]["schemas"]["SearchRequest"]["properties"]
    assert props["rerank"]["enum"] == [False]
    assert "dimensions" not in bare["components"]["schemas"]["EmbeddingRequest"]["examples"][-1]
    with running_server(encoder=tiny_encoder) as url:
        import httpx

        schema = httpx.get(url + "/openapi.json").json()
        emb = schema["components"]["schemas"]["EmbeddingRequest"]
        assert emb["examples"][-1]["dimensions"] == 64
        r = httpx.post(url + "/v1/embeddings", json=emb["examples"][-1])
        assert r.status_code == 200, r.text  # the example is valid for the served model
