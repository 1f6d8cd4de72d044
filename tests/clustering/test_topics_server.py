"""``/v1/topics/*`` and ``/v1/summarize`` on a live server (uvicorn on a loopback port), MiniLM."""

from __future__ import annotations

import httpx
import pytest

from qembed.server.testing import running_server

from .conftest import HELD_BACK, NEW_TOPIC, TOPICS, flatten
from .test_summarize import TOPICAL, _document


@pytest.fixture(scope="module")
def topics_server(minilm_encoder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("served-topics") / "model"
    with running_server(encoder=minilm_encoder, topic_model=str(folder)) as url:
        yield url, folder


def test_fit_assign_update_show(topics_server, minilm_encoder):
    url, folder = topics_server
    with httpx.Client(base_url=url, timeout=120) as client:
        r = client.get("/v1/topics")
        assert r.status_code == 404 and r.json()["error"]["code"] == "no_topic_model"
        texts, _ = flatten(TOPICS)
        r = client.post("/v1/topics/fit", json={"input": texts, "clusters": 4})
        assert r.status_code == 200, r.text
        fitted = r.json()
        assert fitted["object"] == "topics" and len(fitted["data"]) == 4 and (folder / "topic_model.json").is_file()
        r = client.post("/v1/topics/fit", json={"input": texts, "clusters": 4})
        assert r.status_code == 400 and r.json()["error"]["code"] == "topic_model_exists"
        held, _ = flatten(HELD_BACK)
        r = client.post("/v1/topics/assign", json={"input": held + NEW_TOPIC[:2]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["object"] == "topics.assignment" and [x["outlier"] for x in body["data"][-2:]] == [True, True]
        # the same placements as the Python API with the saved folder
        from qembed.clustering.topic_model import TopicModel

        local = TopicModel.load(folder).assign(held + NEW_TOPIC[:2], encoder=minilm_encoder)
        assert [x["topic"] for x in body["data"]] == [a.topic for a in local]
        r = client.post("/v1/topics/update", json={"input": held + NEW_TOPIC})
        assert r.status_code == 200, r.text
        update = r.json()
        assert update["object"] == "topics.update" and update["revision"] == 1
        assert [t["topic"] for t in update["proposed"]] == [4]
        assert {c["status"] for c in update["changes"]} <= {"grew", "unchanged", "appeared"}
        shown = client.get("/v1/topics").json()
        assert shown["revision"] == 1 and [t["topic"] for t in shown["data"]] == [0, 1, 2, 3, 4]
        assert TopicModel.load(folder).revision == 1  # saved before the answer
        for path, body, match in [
            ("/v1/topics/assign", {"input": []}, "input is empty"),
            ("/v1/topics/assign", {"input": ["ok", " "]}, "input[1] is empty"),
            ("/v1/topics/assign", {"input": ["ok"], "model": "other"}, "is not served here"),
            ("/v1/topics/update", {"input": ["ok"], "extra": 1}, "extra"),
            ("/v1/topics/fit", {"input": ["a", "b"], "replace": True, "outlier_quantile": 0.1}, "outlier_quantile"),
        ]:
            r = client.post(path, json=body)
            assert r.status_code in (400, 404, 422) and match in r.text, (path, r.text)


def test_summarize_endpoint(topics_server):
    url, _ = topics_server
    doc = _document(TOPICAL[2], 5)
    r = httpx.post(f"{url}/v1/summarize", json={"input": doc, "sentences": 3}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "summary" and [s["text"] for s in body["data"]] == TOPICAL[2]
    r = httpx.post(f"{url}/v1/summarize", json={"input": [doc, TOPICAL[2][0]], "sentences": 2, "method": "mmr"},
                   timeout=120)
    assert r.status_code == 200 and len(r.json()["data"]) == 2
    for body, match in [({"input": "  "}, "the text is empty"), ({"input": "ok.", "sentences": 0}, "sentences"),
                        ({"input": "ok.", "method": "x"}, "unknown summary method"),
                        ({"input": "...!"}, "holds no sentence")]:
        r = httpx.post(f"{url}/v1/summarize", json=body, timeout=60)
        assert r.status_code == 400 and match in r.json()["error"]["message"], r.text


def test_a_server_refuses_a_topic_model_of_another_model(topics_server, tiny_encoder):
    from qembed.clustering.topic_model import TopicModelMismatchError
    from qembed.config import Settings
    from qembed.server.app import create_app

    _, folder = topics_server
    with pytest.raises(TopicModelMismatchError, match="vectors of size 64"):
        create_app(Settings(model="tiny", topic_model=str(folder)), tiny_encoder)
    with running_server(encoder=tiny_encoder) as url:
        r = httpx.post(f"{url}/v1/topics/assign", json={"input": ["x"]}, timeout=60)
        assert r.status_code == 404 and "qembed serve --topic-model" in r.json()["error"]["message"]
