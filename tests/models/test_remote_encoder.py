"""RemoteEncoder against a real HTTP server on loopback that answers like an OpenAI endpoint."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import qembed
from qembed.errors import InputError, RemoteError
from qembed.models.remote import RemoteEncoder


class FakeOpenAI(BaseHTTPRequestHandler):
    """A small OpenAI-shaped endpoint backed by the tiny model; fails the first N calls with 429/503."""

    encoder = None
    failures: list[int] = []
    requests: list[dict] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "tiny", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": "no"}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).requests.append(body)
        if type(self).failures:
            status = type(self).failures.pop(0)
            self._send(status, {"error": {"message": "busy"}}, {"retry-after": "0"})
            return
        if body["input"] == ["boom"]:
            self._send(400, {"error": {"message": "input 0 is bad", "type": "invalid_request_error"}})
            return
        vecs = type(self).encoder.encode(body["input"])  # the server ignores `dimensions`
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode()} for i, v in enumerate(vecs)]
        self._send(200, {"object": "list", "data": data, "model": "tiny"})


@pytest.fixture()
def endpoint(tiny_encoder):
    FakeOpenAI.encoder = tiny_encoder
    FakeOpenAI.failures = []
    FakeOpenAI.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_remote_matches_local_and_splits_requests(endpoint, tiny_encoder):
    enc = qembed.load_encoder(endpoint, batch_size=2)
    assert isinstance(enc, RemoteEncoder) and enc.name == "tiny"
    texts = ["怎么还花呗", "如何归还蚂蚁花呗", "借呗能分期吗", "hi", "x"]
    np.testing.assert_allclose(enc.encode(texts), tiny_encoder.encode(texts), atol=1e-6)
    assert [len(r["input"]) for r in FakeOpenAI.requests] == [2, 2, 1]
    assert enc.dim == 64


def test_remote_instruction_as_text_and_dimensions(endpoint, tiny_encoder):
    enc = qembed.load_encoder(endpoint, model="tiny")
    got = enc.encode(["借呗能分期吗"], instruction="Retrieve semantically similar text", dimensions=32)
    want = tiny_encoder.encode(["借呗能分期吗"], instruction="Retrieve semantically similar text", dimensions=32)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert FakeOpenAI.requests[-1]["input"] == ["Instruct: Retrieve semantically similar text\nQuery:借呗能分期吗"]


def test_remote_retries_429_and_5xx(endpoint, tiny_encoder):
    enc = RemoteEncoder(endpoint, model="tiny", backoff=0.01)
    FakeOpenAI.failures = [429, 503, 502]
    np.testing.assert_allclose(enc.encode(["a"]), tiny_encoder.encode(["a"]), atol=1e-6)
    assert len(FakeOpenAI.requests) == 4


def test_remote_gives_up_and_reports(endpoint):
    enc = RemoteEncoder(endpoint, model="tiny", backoff=0.01, max_retries=1)
    FakeOpenAI.failures = [503, 503, 503]
    with pytest.raises(RemoteError, match="503"):
        enc.encode(["a"])
    with pytest.raises(RemoteError, match="input 0 is bad"):
        enc.encode(["boom"])


def test_remote_validates_before_sending(endpoint):
    enc = RemoteEncoder(endpoint, model="tiny")
    with pytest.raises(InputError):
        enc.encode([""])
    with pytest.raises(InputError):
        enc.encode([])
    assert FakeOpenAI.requests == []


def test_unreachable_endpoint():
    with pytest.raises(RemoteError, match="failed"):
        RemoteEncoder("http://127.0.0.1:9/v1", max_retries=0)
    with pytest.raises(InputError, match="http"):
        RemoteEncoder("ftp://x")
