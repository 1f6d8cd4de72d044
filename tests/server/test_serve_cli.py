"""``qembed serve`` as a real subprocess: SGLang's command line, the openai client, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

QEMBED = Path(sys.executable).with_name("qembed")
SCENARIO = "今天天气真不错,适合出去散步"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_line(proc: subprocess.Popen, needle: str, lines: list[str], timeout: float = 120) -> None:
    def pump() -> None:
        for line in proc.stderr:
            lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not any(needle in line for line in lines):
        if proc.poll() is not None:
            raise AssertionError("qembed serve exited early:\n" + "".join(lines))
        if time.monotonic() > deadline:
            raise AssertionError("no Uvicorn line:\n" + "".join(lines))
        time.sleep(0.05)


#: What ``qembed serve`` logs while it starts, in this order (the engine's lines come from its own
#: process): the user sees progress from the first second, with timings.
START_UP_STEPS = [
    "starting: loading the server code",
    "resolving the model",
    "model folder:",
    "starting the engine process",
    "qembed-engine: engine process",  # importing torch and loading …
    "loaded the weights in",
    "compiling the packed passes",  # compile auto: a server compiles at start-up
    "compiled and warmed up in",
    "loaded in",
    "the engine is ready after",
    "serving ",
    "ready after",
    "listening on http://127.0.0.1:{port}",
    "Uvicorn running on",
]


def _assert_start_up_steps(lines: list[str], port: int) -> None:
    text = "".join(lines)
    start = 0
    for step in START_UP_STEPS:
        found = text.find(step.format(port=port), start)
        assert found >= 0, f"{step!r} missing, or out of order, in:\n{text}"
        start = found
    assert "compiled" in text[text.find("the engine is ready after"):].splitlines()[0]


@pytest.mark.slow
def test_serve_subprocess_scenario_and_sigterm(tiny_model_path, tiny_encoder):
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "QEMBED_COMPILE": "auto"}  # the default a user gets: the server compiles at start-up
    proc = subprocess.Popen(
        [str(QEMBED), "serve", "--model-path", str(tiny_model_path), "--host", "127.0.0.1",
         "--port", str(port), "--is-embedding", "--dtype", "float32", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    lines: list[str] = []
    try:
        _wait_for_line(proc, f"Uvicorn running on http://127.0.0.1:{port}", lines)
        _assert_start_up_steps(lines, port)
        client = openai.Client(base_url=f"http://127.0.0.1:{port}/v1", api_key="EMPTY")
        name = tiny_model_path.name  # the served name defaults to the folder's name
        assert [m.id for m in client.models.list().data] == [name]
        r = client.embeddings.create(model=name, input=SCENARIO)
        assert len(r.data[0].embedding) == tiny_encoder.dim
        np.testing.assert_allclose(r.data[0].embedding, tiny_encoder.encode(SCENARIO)[0], atol=1e-5)
        f = client.embeddings.create(model=name, input=SCENARIO, encoding_format="float")
        np.testing.assert_allclose(f.data[0].embedding, r.data[0].embedding, atol=1e-6)

        # SIGTERM while a large request is in flight: it finishes, then the process exits 0
        big = {"input": [f"{SCENARIO} {i}" for i in range(512)]}
        result: dict = {}

        def send() -> None:
            result["r"] = httpx.post(f"http://127.0.0.1:{port}/v1/embeddings", json=big, timeout=120)

        sender = threading.Thread(target=send)
        sender.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            if "qembed_requests_in_progress 2.0" in metrics:  # the big request plus this one
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        sender.join(120)
        assert result["r"].status_code == 200, "".join(lines)
        assert len(result["r"].json()["data"]) == 512
        assert proc.wait(60) == 0, "".join(lines)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/health")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert any("Shutting down" in line for line in lines)


def test_serve_help_and_bad_model():
    out = subprocess.run([str(QEMBED), "serve", "--help"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "250", "NO_COLOR": "1"})
    assert out.returncode == 0
    for flag in ("--model-path", "--is-embedding", "--served-model-name", "--api-key", "--max-batch-tokens",
                 "--max-client-batch-size", "--max-input-tokens", "--no-truncate", "--max-queued-requests",
                 "--index", "--device", "--dtype"):
        assert flag in out.stdout, out.stdout
    bad = subprocess.run([str(QEMBED), "serve", "--model-path", "./no/such/model-folder", "--port", "0"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert bad.returncode == 2  # a local model path that names no folder is bad input (a Hub id that cannot be fetched exits 1)
    assert "error:" in bad.stderr and "does not exist" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_serving_docs_running_server_snippet_runs_as_a_script(tiny_model_path, tmp_path):
    """docs/serving.md's running_server example, saved as a file and run with python: the engine
    process starts with "spawn", so the script must guard its entry point (the page shows how)."""
    import re
    import shutil

    page = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text(encoding="utf-8")
    [code] = [b for b in re.findall(r"```python\n(.*?)```", page, flags=re.S) if "running_server(model=" in b]
    shutil.copytree(tiny_model_path, tmp_path / "Qwen3-Embedding-0.6B")
    script = tmp_path / "serve_example.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "QEMBED_COMPILE": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, check=False, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bootstrapping phase" not in proc.stderr
