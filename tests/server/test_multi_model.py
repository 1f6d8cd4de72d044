"""Several models in one server: the tiny Qwen3, all-MiniLM-L6-v2 and a tiny reranker, each in an
engine process of its own, picked by ``model``; the real ``openai`` client; one model's engine
killed while the others answer; the model specs and the ``--config`` file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from qembed.errors import InputError
from qembed.models.spec import ModelSpec, read_config, specs_from_config, specs_from_settings
from qembed.server.testing import running_server

TINY, MINILM, RERANKER = "tiny-qwen3-embedding", "all-MiniLM-L6-v2", "tiny-multi-reranker"
TEXTS = ["怎么还花呗", "如何归还蚂蚁花呗", "The weather is lovely today."]
QUERY, DOCS = "how do I repay my loan?", ["Repay it in the app.", "The shop opens at 9.", "Loans are due monthly."]


@pytest.fixture(scope="module")
def multi_reranker_path(tmp_path_factory) -> Path:
    from qembed.rerank.testing import build_random_reranker

    return build_random_reranker(tmp_path_factory.mktemp("rerankers") / RERANKER, seed=1, head_scale=8.0)


@pytest.fixture(scope="module")
def multi(tiny_model_path, minilm_path, multi_reranker_path):
    """One server with three models, each in its own engine process (fp32, eager)."""
    common = dict(dtype="float32", device="cpu", compile=False)
    specs = [ModelSpec(path=str(tiny_model_path), **common),
             ModelSpec(path=str(minilm_path), name=MINILM, **common),
             ModelSpec(path=str(multi_reranker_path), kind="reranker", **common)]
    with running_server(specs=specs, engine="process", engine_restart_limit=2, timeout=300) as url:
        yield url


@pytest.fixture(scope="module")
def client(multi):
    with openai.Client(base_url=f"{multi}/v1", api_key="EMPTY", max_retries=0) as c:
        yield c


def _cosines(a, b) -> np.ndarray:
    return np.sum(np.asarray(a) * np.asarray(b), axis=1)


@pytest.mark.slow
def test_models_lists_every_model_with_its_kind_and_dimension(client):
    cards = {m.id: m for m in client.models.list().data}
    assert list(cards) == [TINY, MINILM, RERANKER]
    assert (cards[TINY].kind, cards[TINY].dim) == ("embedding", 64)
    assert (cards[MINILM].kind, cards[MINILM].dim) == ("embedding", 384)
    assert (cards[RERANKER].kind, cards[RERANKER].dim) == ("reranker", None)


@pytest.mark.slow
def test_each_model_answers_with_its_in_process_vectors(multi, client, tiny_encoder, minilm_encoder):
    for name, encoder in ((TINY, tiny_encoder), (MINILM, minilm_encoder)):
        r = client.embeddings.create(model=name, input=TEXTS)
        assert r.model == name
        served = [d.embedding for d in r.data]
        assert _cosines(served, encoder.encode(TEXTS)).min() >= 0.9999, name
    # no model: the first embedding model, as with one model
    default = httpx.post(f"{multi}/v1/embeddings", json={"input": TEXTS[0]}, timeout=60).json()
    assert default["model"] == TINY and len(default["data"][0]["embedding"]) == 64


@pytest.mark.slow
def test_the_reranker_scores_like_in_process(multi, multi_reranker_path):
    from qembed.rerank.local import Reranker

    local = Reranker(str(multi_reranker_path), device="cpu", dtype="float32", compile=False)
    body = httpx.post(f"{multi}/v1/rerank", json={"model": RERANKER, "query": QUERY, "documents": DOCS},
                      timeout=60).json()
    expected = local.rerank(QUERY, DOCS)
    assert body["model"] == RERANKER
    assert [r["index"] for r in body["results"]] == [r.index for r in expected]
    np.testing.assert_allclose([r["relevance_score"] for r in body["results"]], [r.score for r in expected],
                               atol=1e-5)


@pytest.mark.slow
def test_task_routes_take_model(multi, minilm_encoder):
    pairs = [["怎么还花呗", "如何归还蚂蚁花呗"], ["hello", "goodbye"]]
    body = httpx.post(f"{multi}/v1/similarity", json={"pairs": pairs, "model": MINILM}, timeout=60).json()
    assert body["model"] == MINILM
    a, b = minilm_encoder.encode([p[0] for p in pairs]), minilm_encoder.encode([p[1] for p in pairs])
    np.testing.assert_allclose([d["score"] for d in body["data"]], _cosines(a, b), atol=1e-4)
    default = httpx.post(f"{multi}/v1/similarity", json={"pairs": pairs}, timeout=60).json()
    assert default["model"] == TINY


@pytest.mark.slow
def test_unknown_or_wrong_kind_model_is_openai_404(client, multi):
    with pytest.raises(openai.NotFoundError) as info:
        client.embeddings.create(model="no-such-model", input="x")
    assert info.value.code == "model_not_found"
    for route, body in (("/v1/embeddings", {"input": "x", "model": RERANKER}),
                        ("/v1/rerank", {"query": QUERY, "documents": DOCS, "model": TINY}),
                        ("/v1/similarity", {"pairs": [["a", "b"]], "model": "no-such-model"}),
                        ("/tokenize", {"prompt": "x", "model": "no-such-model"})):
        r = httpx.post(f"{multi}{route}", json=body, timeout=60)
        assert r.status_code == 404, (route, r.text)
        error = r.json()["error"]
        assert error["code"] == "model_not_found" and error["param"] == "model", route


@pytest.mark.slow
def test_health_and_metrics_list_each_model(multi):
    health = httpx.get(f"{multi}/health").json()
    assert health["status"] == "ok" and health["model"] == TINY
    models = {m["model"]: m for m in health["models"]}
    assert list(models) == [TINY, MINILM, RERANKER]
    pids = {m["engine"]["pid"] for m in models.values()}
    assert len(pids) == 3 and os.getpid() not in pids
    assert all(m["status"] == "ready" and m["engine"]["kind"] == "process" for m in models.values())
    httpx.post(f"{multi}/v1/embeddings", json={"input": "x", "model": MINILM}, timeout=60)
    httpx.post(f"{multi}/v1/rerank", json={"query": QUERY, "documents": DOCS}, timeout=60)
    text = httpx.get(f"{multi}/metrics").text
    for name in (TINY, MINILM, RERANKER):
        assert re.search(rf'^qembed_inputs_embedded_total{{model="{name}"}} [1-9]', text, re.M), name


@pytest.mark.slow
def test_a_killed_engine_restarts_while_the_others_answer(multi, client, minilm_encoder):
    registry = multi.app.state.registry
    victim = registry.find(MINILM)[0]
    pid = victim.engine.pid
    statuses: list[int] = []
    stop = threading.Event()

    def keep_asking() -> None:  # the other model, all the while
        while not stop.is_set():
            statuses.append(httpx.post(f"{multi}/v1/embeddings", json={"input": "still here", "model": TINY},
                                       timeout=60).status_code)

    asker = threading.Thread(target=keep_asking, daemon=True)
    asker.start()
    try:
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 240
        while httpx.get(f"{multi}/health").status_code == 200:  # the death is noticed ...
            assert time.monotonic() < deadline, "/health did not notice the dead engine"
            time.sleep(0.05)
        during = httpx.post(f"{multi}/v1/embeddings", json={"input": "x", "model": MINILM}, timeout=60)
        assert during.status_code == 503 or victim.status == "ready", during.text
        while httpx.get(f"{multi}/health").status_code != 200:  # ... and the engine comes back
            assert time.monotonic() < deadline, f"the engine did not come back: {victim.error}"
            time.sleep(0.2)
    finally:
        stop.set()
        asker.join(60)
    assert statuses and set(statuses) == {200}, statuses
    assert victim.engine.pid != pid and victim.restarts == 1
    health = {m["model"]: m for m in httpx.get(f"{multi}/health").json()["models"]}
    assert health[MINILM]["engine"]["restarts"] == 1 and health[TINY]["engine"]["restarts"] == 0
    assert f'qembed_engine_restarts_total{{model="{MINILM}"}} 1.0' in httpx.get(f"{multi}/metrics").text
    r = client.embeddings.create(model=MINILM, input=TEXTS)
    assert _cosines([d.embedding for d in r.data], minilm_encoder.encode(TEXTS)).min() >= 0.9999


# ---------------------------------------------------------------------- specs and --config
def test_specs_from_settings_one_per_model_with_the_shared_options(tiny_model_path, minilm_path):
    from qembed.config import Settings

    settings = Settings(model=str(tiny_model_path), dtype="fp32", served_model_name="small",
                        reranker="http://127.0.0.1:9/v1", max_batch_tokens=512)
    specs = specs_from_settings(settings, [str(tiny_model_path), str(minilm_path)])
    assert [(s.kind, s.served_name) for s in specs] == [
        ("embedding", "small"), ("embedding", minilm_path.name), ("reranker", "http://127.0.0.1:9/v1")]
    assert {s.dtype for s in specs} == {"float32"} and {s.max_batch_tokens for s in specs} == {512}
    assert specs[2].remote and specs[0].adapters == {}
    with pytest.raises(Exception):
        specs[0].dtype = "bfloat16"  # frozen: built once, passed unchanged
    with pytest.raises(InputError, match="two served models are named"):
        specs_from_settings(settings, [str(tiny_model_path), str(minilm_path), str(minilm_path)])


def test_config_file_gives_per_model_options(tmp_path, tiny_model_path, minilm_path):
    config = tmp_path / "models.toml"
    config.write_text(f'''
[[models]]
path = "{tiny_model_path}"
name = "small"
dtype = "float32"
threads = 1

[[models]]
model = "{minilm_path}"
max_batch_size = 8

[[models]]
path = "http://127.0.0.1:9/v1"
kind = "reranker"
''', encoding="utf-8")
    defaults = ModelSpec(path="-", dtype="bfloat16", device="cpu")
    specs = specs_from_config(read_config(config), defaults=defaults)
    assert [(s.served_name, s.kind, s.dtype, s.threads, s.max_batch_size, s.device) for s in specs] == [
        ("small", "embedding", "float32", 1, None, "cpu"),
        (minilm_path.name, "embedding", "bfloat16", None, 8, "cpu"),
        ("http://127.0.0.1:9/v1", "reranker", "bfloat16", None, None, "cpu")]


@pytest.mark.parametrize("text, message", [
    ("models = 3", "non-empty list 'models'"),
    ("[[models]]\ndtype = 'fp32'", "has no path"),
    ("[[models]]\npath = 'x'\ncolour = 'blue'", "unknown option(s) colour"),
    ("[[models]]\npath = 'x'\nkind = 'llm'", "model kind 'llm'"),
    ("[[models]]\npath = 'x'\n[other]\na = 1", "unknown key(s) in the config file: other"),
    ("[[models]\npath = 'x'", "not valid TOML"),
])
def test_bad_config_files_are_clear_errors(tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as info:
        specs_from_config(read_config(config))
    assert message in info.value.message and info.value.param == "config"


def test_serve_with_a_bad_config_exits_2_with_one_error_line(tmp_path, tiny_model_path):
    config = tmp_path / "bad.toml"
    config.write_text("[[models]]\npath = 'x'\nthreads = 'many'\n", encoding="utf-8")
    qembed = Path(sys.executable).with_name("qembed")
    both = subprocess.run([str(qembed), "serve", "--config", str(config), "--model", str(tiny_model_path)],
                          capture_output=True, text=True, timeout=120)
    assert both.returncode == 2 and "not both" in both.stderr and "Traceback" not in both.stderr
    missing = subprocess.run([str(qembed), "serve", "--config", str(tmp_path / "none.toml"), "--json"],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "none.toml" in missing.stderr and not missing.stdout
    assert "Traceback" not in missing.stderr


@pytest.mark.slow
def test_api_workers_serve_several_models(tiny_model_path, minilm_path, tiny_encoder, minilm_encoder):
    qembed = Path(sys.executable).with_name("qembed")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "QEMBED_COMPILE": "false"}
    proc = subprocess.Popen(
        [str(qembed), "serve", "--model", str(tiny_model_path), "--model", str(minilm_path), "--port", "0",
         "--api-workers", "2", "--dtype", "float32", "--device", "cpu", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    try:
        first = proc.stdout.readline()
        assert first, "qembed serve exited early:\n" + "".join(lines)
        info = json.loads(first)
        assert info["models"] == [TINY, minilm_path.name]
        url = info["url"]
        for name, encoder in ((TINY, tiny_encoder), (minilm_path.name, minilm_encoder)):
            r = httpx.post(f"{url}/v1/embeddings", json={"input": TEXTS, "model": name}, timeout=60)
            assert r.status_code == 200, r.text
            served = [d["embedding"] for d in r.json()["data"]]
            assert _cosines(served, encoder.encode(TEXTS)).min() >= 0.9999
        health = httpx.get(f"{url}/health").json()
        assert [m["model"] for m in health["models"]] == [TINY, minilm_path.name]
        assert health["fronts"]["alive"] == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, "".join(lines)
