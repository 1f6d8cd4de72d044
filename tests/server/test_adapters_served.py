"""LoRA adapters served (qembed.server.adapters): two adapters trained briefly over the tiny Qwen3,
served over the base in its engine process with `--adapter`, one loaded at run time; the real
`openai` client against the merged models (peft ``merge_and_unload``)."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from .helpers import assert_error

pytestmark = pytest.mark.slow  # trains two adapters and starts an engine process (~45 s)
pytest.importorskip("peft")
openai = pytest.importorskip("openai")

TEXTS = ["怎么还花呗", "如何归还蚂蚁花呗", "今天天气真不错,适合出去散步", "how do I reset my password?"]
QWEN3_ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ADMIN = {"Authorization": "Bearer admin-secret"}


@pytest.fixture(scope="module")
def served(tiny_model_path: Path, shared: Path, tmp_path_factory):
    """(server URL, merged reference model and weights, adapter folders): base + a1 + a2."""
    from models.test_adapters import _references, _trained_pair

    from qembed.config import Settings
    from qembed.models.spec import specs_from_settings
    from qembed.server.adapters import with_adapter_options
    from qembed.server.testing import running_server

    folders = _trained_pair(tiny_model_path, shared, tmp_path_factory.mktemp("served-adapters"), (None, QWEN3_ALL))
    settings = Settings(model=str(tiny_model_path), device="cpu", dtype="float32", compile=False,
                        served_model_name="tiny", admin_key="admin-secret")
    specs = with_adapter_options(specs_from_settings(settings), [f"{n}={p}" for n, p in folders.items()])
    with running_server(settings, specs=specs) as url:
        yield url, _references(tiny_model_path, folders), folders


def _reference(refs, texts, name) -> np.ndarray:
    model, weights = refs
    model[0].model = weights[name]
    try:
        return model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    finally:
        model[0].model = weights[None]


def _embed(url: str, model: str, texts=TEXTS) -> np.ndarray:
    client = openai.Client(base_url=url + "/v1", api_key="EMPTY")
    data = client.embeddings.create(model=model, input=texts).data
    return np.array([d.embedding for d in data], dtype=np.float32)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_each_adapter_equals_its_merged_model(served) -> None:
    url, refs, _ = served
    for model, name in (("tiny", None), ("a1", "a1"), ("a2", "a2"), ("tiny:a2", "a2")):
        assert _cos(_embed(url, model), _reference(refs, TEXTS, name)).min() >= 0.9999, model
    assert _cos(_embed(url, "a1"), _embed(url, "tiny")).min() < 0.999  # the adapter changes the vectors
    cards = {m.id: m for m in openai.Client(base_url=url + "/v1", api_key="EMPTY").models.list().data}
    assert {"tiny", "a1", "a2"} <= set(cards)
    assert cards["a1"].parent == "tiny" and cards["tiny"].parent is None and cards["a2"].dim == cards["tiny"].dim


def test_mixed_load_is_correct(served) -> None:
    url, refs, _ = served
    want = {m: _reference(refs, TEXTS, None if m == "tiny" else m) for m in ("tiny", "a1", "a2")}
    jobs = [(m, i) for i in range(len(TEXTS)) for m in ("tiny", "a1", "a2")] * 3
    with ThreadPoolExecutor(12) as pool:  # requests for the base and both adapters at once
        rows = list(pool.map(lambda job: _embed(url, job[0], [TEXTS[job[1]]])[0], jobs))
    for (model, i), row in zip(jobs, rows):
        assert _cos(row, want[model][i]) >= 0.9999, (model, i)


def test_hot_load_and_unload(served, tmp_path: Path) -> None:
    url, refs, folders = served
    body = {"name": "a3", "path": str(folders["a1"])}
    assert_error(httpx.post(url + "/v1/adapters", json=body), 401)
    assert_error(httpx.post(url + "/v1/adapters", json=body, headers={"Authorization": "Bearer nope"}), 403)
    bad = tmp_path / "bad"
    shutil.copytree(folders["a1"], bad)
    (bad / "adapter_config.json").unlink()
    assert_error(httpx.post(url + "/v1/adapters", json={"name": "a4", "path": str(bad)}, headers=ADMIN), 400,
                 code="invalid_adapter")
    assert_error(httpx.post(url + "/v1/adapters", json={"name": "a1", "path": str(folders["a1"])},
                            headers=ADMIN), 409, code="adapter_exists")
    assert_error(httpx.post(url + "/v1/adapters", json=body, headers={}), 401)
    answer = httpx.post(url + "/v1/adapters", json=body, headers=ADMIN, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == "a3" and answer.json()["parent"] == "tiny"
    assert _cos(_embed(url, "a3"), _reference(refs, TEXTS, "a1")).min() >= 0.9999
    listed = httpx.get(url + "/v1/adapters").json()["data"]
    assert [a["id"] for a in listed] == ["a1", "a2", "a3"]
    assert_error(httpx.delete(url + "/v1/adapters/a3"), 401)
    assert httpx.delete(url + "/v1/adapters/a3", headers=ADMIN).status_code == 200
    with pytest.raises(openai.NotFoundError):
        _embed(url, "a3")
    assert_error(httpx.delete(url + "/v1/adapters/a3", headers=ADMIN), 404, code="model_not_found")
    assert_error(httpx.delete(url + "/v1/adapters/a%01", headers=ADMIN), 400, param="name")
    assert "a3" not in {m["id"] for m in httpx.get(url + "/v1/models").json()["data"]}


def test_adapter_routes_in_the_schema(served) -> None:
    paths = httpx.get(served[0] + "/openapi.json").json()["paths"]
    assert {"401", "403", "409", "400"} <= set(paths["/v1/adapters"]["post"]["responses"])
    assert "404" in paths["/v1/adapters/{name}"]["delete"]["responses"]


def test_adapter_option_errors(tiny_model_path: Path) -> None:
    from qembed.errors import InputError
    from qembed.models.spec import ModelSpec
    from qembed.server.adapters import with_adapter_options

    specs = [ModelSpec(path=str(tiny_model_path), name="tiny")]
    for bad in (["a1"], ["=x"], ["a:b=x"], ["a=x", "a=y"], ["tiny=x"]):
        with pytest.raises(InputError):
            with_adapter_options(specs, bad)
    assert with_adapter_options(specs, ["a=x"])[0].adapters == {"a": "x"}
