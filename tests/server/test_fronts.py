"""``qembed serve --api-workers 2``: two front processes over one engine, as a real subprocess.

One server (tiny model) started with a soft open-files limit of 128 serves every test here: one
admission limit, one ``/metrics`` and one ``/health`` across the fronts, a burst of 256
simultaneous connections all answered 200 or 429 (the server lifts its own limit; without that it
drops connections), a killed front started again, a killed engine seen by every front and
restarted, and SIGTERM stopping everything with exit code 0.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from qembed.server.errors import QueueFullError
from qembed.server.fronts import SharedAdmission, raise_open_files_limit

QEMBED = Path(sys.executable).with_name("qembed")
BURST = 256
LOW_FD_LIMIT = 128


def _low_fd_limit() -> None:  # runs in the child before exec: the usual soft limit, made small
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_FD_LIMIT, hard))


def _poll(fn, timeout: float = 180.0, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = fn()
        except httpx.HTTPError:
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(step)


@pytest.fixture(scope="module")
def fronts(tiny_model_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2 * BURST + 512:
        pytest.skip(f"hard open-files limit {hard} is too low for the burst")
    raise_open_files_limit()  # this process opens the burst's connections
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "QEMBED_COMPILE": "false"}
    proc = subprocess.Popen(
        [str(QEMBED), "serve", "--model-path", str(tiny_model_path), "--port", "0", "--api-workers", "2",
         "--dtype", "float32", "--device", "cpu", "--max-queued-requests", "32", "--json",
         "--log-level", "info"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_low_fd_limit)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    try:
        first = proc.stdout.readline()
        assert first, "qembed serve exited early:\n" + "".join(lines)
        info = json.loads(first)
        assert info["api_workers"] == 2
        yield proc, info["url"], lines
    finally:
        if proc.poll() is None:  # a test failed before SIGTERM: stop fronts and engine the same way
            proc.terminate()
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()  # the fronts notice the supervisor is gone and stop too
                proc.wait(10)


def _health(url: str) -> dict:
    r = httpx.get(f"{url}/health", timeout=10)
    return {"status_code": r.status_code, **r.json()}


def _embedded_count(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = re.search(r'^qembed_requests_total\{endpoint="/v1/embeddings",status="200"\} ([0-9.e+]+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.slow
def test_two_fronts_one_engine_one_health_one_metrics(fronts, tiny_encoder):
    proc, url, lines = fronts
    seen: set[int] = set()
    for _ in range(40):  # fresh connections: the kernel hands them to either front
        h = _health(url)
        assert h["status_code"] == 200 and h["status"] == "ok", h
        assert h["fronts"]["processes"] == 2 and h["fronts"]["alive"] == 2, h
        seen.add(h["fronts"]["this"]["index"])
        engine_pid = h["engine"]["pid"]
    assert seen <= {0, 1}
    before = _embedded_count(url)
    texts = [f"text number {i}" for i in range(20)]
    for text in texts:
        with openai.Client(base_url=f"{url}/v1", api_key="EMPTY", max_retries=0) as client:
            r = client.embeddings.create(model="tiny-qwen3-embedding", input=text)
        np.testing.assert_allclose(r.data[0].embedding, tiny_encoder.encode(text)[0], atol=1e-5)
    # one set of metrics: every front's requests, whichever front answers the scrape
    for _ in range(6):
        assert _embedded_count(url) == before + 20
    assert _health(url)["engine"]["pid"] == engine_pid  # one engine for both


async def _burst(url: str, n: int) -> Counter:
    counts: Counter = Counter()
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    gate = asyncio.Event()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        async def one(i: int) -> None:
            await gate.wait()
            try:
                r = await client.post("/v1/embeddings", json={"input": f"burst sentence {i}"})
            except httpx.HTTPError as exc:
                counts[type(exc).__name__] += 1
                return
            counts[str(r.status_code) if r.status_code != 429 or r.headers.get("retry-after") else "429-bare"] += 1

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks)
    return counts


@pytest.mark.slow
def test_burst_of_simultaneous_connections_all_answered(fronts):
    """256 connections at once against fronts started with a soft limit of 128 open files: the
    server lifts its limit, so none is dropped; each gets 200 or 429 with Retry-After."""
    proc, url, lines = fronts
    # a thread of its own: in a pytest-xdist worker that ran the browser tests before, Playwright's
    # session keeps an event loop running in the main thread, where asyncio.run refuses to start
    with ThreadPoolExecutor(1) as pool:
        counts = pool.submit(asyncio.run, _burst(url, BURST)).result()
    assert set(counts) <= {"200", "429"}, counts
    assert counts["200"] >= 32 and sum(counts.values()) == BURST, counts
    assert _health(url)["status_code"] == 200
    assert "open-files limit raised from 128" in "".join(lines)


@pytest.mark.slow
def test_a_killed_front_is_started_again(fronts):
    proc, url, lines = fronts
    victim = _health(url)["fronts"]["this"]["pid"]
    os.kill(victim, signal.SIGKILL)
    h = _poll(lambda: (lambda h: h if h["fronts"]["restarts"] >= 1 and h["fronts"]["alive"] == 2 else None)(
        _health(url)))
    assert h["status"] == "ok"
    _poll(lambda: httpx.post(f"{url}/v1/embeddings", json={"input": "after"}, timeout=30).status_code == 200)
    assert "starting it again" in "".join(lines)


@pytest.mark.slow
def test_a_killed_engine_is_seen_by_every_front_and_restarted(fronts):
    proc, url, lines = fronts
    engine_pid = _health(url)["engine"]["pid"]
    os.kill(engine_pid, signal.SIGKILL)
    r = _poll(lambda: (lambda r: r if r.status_code == 503 else None)(
        httpx.post(f"{url}/v1/embeddings", json={"input": "while down"}, timeout=30)), timeout=30, step=0.05)
    assert r.json()["error"]["code"] == "engine_unavailable"
    h = _poll(lambda: (lambda h: h if h["status_code"] == 200 and h["engine"]["pid"] != engine_pid else None)(
        _health(url)))
    assert h["engine"]["restarts"] >= 1
    text = "".join(lines)
    for index in (0, 1):  # every front saw it
        assert f"qembed-front-{index}: the engine process exited unexpectedly" in text, text[-3000:]
    # both fronts are back on the new engine: fresh connections all succeed
    for i in range(20):
        assert httpx.post(f"{url}/v1/embeddings", json={"input": f"again {i}"}, timeout=60).status_code == 200
    assert re.search(r"^qembed_engine_restarts_total\{model=\"tiny-qwen3-embedding\"\} 1\.0$", httpx.get(f"{url}/metrics").text, re.M)


@pytest.mark.slow
def test_sigterm_stops_fronts_and_engine(fronts):
    proc, url, lines = fronts
    h = _health(url)
    pids = [h["engine"]["pid"]]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) == 0, "".join(lines)
    for pid in pids:
        _poll(lambda pid=pid: not Path(f"/proc/{pid}").exists(), timeout=30)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health")


def _hold(admission: SharedAdmission, entered, release) -> None:
    admission.bind(1)
    admission.enter()
    admission.enter()
    entered.set()
    release.wait(60)


def test_shared_admission_is_one_limit_across_processes():
    ctx = multiprocessing.get_context("spawn")
    admission = SharedAdmission(ctx, 2, limit=3)
    entered, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold, args=(admission, entered, release))
    child.start()
    try:
        assert entered.wait(60)
        admission.bind(0)
        admission.enter()  # 3 of 3: two in the other process, one here
        with pytest.raises(QueueFullError) as exc:
            admission.enter()
        assert exc.value.status_code == 429 and "across every front" in exc.value.message
        admission.reset(1)  # the supervisor, when that front died
        admission.enter()
        assert admission.total() == 2
    finally:
        release.set()
        child.join(30)


def test_api_workers_needs_the_engine_process(tiny_model_path):
    out = subprocess.run([str(QEMBED), "serve", "--model-path", str(tiny_model_path), "--api-workers", "2",
                          "--engine", "thread", "--port", "0"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "--api-workers needs the model in an engine process" in out.stderr and "Traceback" not in out.stderr
