"""Load test of ``qembed serve``: dynamic batching against batching off and the in-process encoder.

What it does, on a random-weight Qwen3-Embedding-0.6B (real architecture and tokenizer, bf16):

1. starts ``qembed serve`` as a subprocess on a free loopback port (batching on, the defaults);
2. sends a fixed number of requests, one AFQMC dev sentence each, from 1, 8 and 64 concurrent
   clients (httpx async, a bounded pool of client tasks) and records throughput and p50/p99 latency;
3. does the same against the server started with ``--max-batch-size 1`` (batching off);
4. embeds the same sentences with the in-process :class:`~qembed.models.local.LocalEncoder`
   (one ``encode`` call, its own length-sorted batching) with no server running;
5. prints the table and the ratios (targets with 64 clients: >= 5x batching off, >= 80% of in-process).

    python benchmarks/server_load.py                      # defaults: 64 requests per level
    python benchmarks/server_load.py --requests 512 --concurrency 1,16,64,256

The model folder is built once and cached under ``~/.cache/qembed/`` (``--model`` uses another).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from qembed.testing import build_random_qwen, shared_dir  # noqa: E402

logger = logging.getLogger("server_load")
CACHE = Path(os.environ.get("QEMBED_CACHE", Path.home() / ".cache" / "qembed"))


def afqmc_sentences(n: int) -> list[str]:
    """The first ``n`` distinct sentences of AFQMC dev (sentence1, then sentence2)."""
    path = shared_dir() / "data" / "afqmc" / "dev.json"
    seen: dict[str, None] = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            for key in ("sentence1", "sentence2"):
                if row[key] and row[key] not in seen:
                    seen[row[key]] = None
            if len(seen) >= n:
                break
    sentences = list(seen)[:n]
    if len(sentences) < n:
        raise SystemExit(f"AFQMC dev has only {len(sentences)} distinct sentences")
    return sentences


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``qembed serve`` in a subprocess; stopped with SIGTERM."""

    def __init__(self, model: Path, extra: list[str], device: str, dtype: str, threads: int | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "qembed.cli", "serve", "--model-path", str(model), "--host", "127.0.0.1",
               "--port", str(self.port), "--device", device, "--dtype", dtype, "--log-level", "warning", *extra]
        logger.info("starting: %s", " ".join(cmd[2:]))
        env = dict(os.environ)
        if threads:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)

    def __enter__(self) -> "Server":
        deadline = time.monotonic() + 600
        while True:
            if self.proc.poll() is not None:
                raise SystemExit("qembed serve exited:\n" + (self.proc.stderr.read() if self.proc.stderr else ""))
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("qembed serve did not become ready")
            time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def load(url: str, model: str, sentences: list[str], concurrency: int) -> dict:
    """Send one request per sentence from ``concurrency`` client tasks; return timing figures."""
    latencies: list[float] = []
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as client:
        async def worker() -> None:
            nonlocal next_index
            while next_index < len(sentences):
                text = sentences[next_index]
                next_index += 1
                start = time.perf_counter()
                r = await client.post("/v1/embeddings", json={"model": model, "input": text,
                                                              "encoding_format": "base64"})
                latencies.append(time.perf_counter() - start)
                if r.status_code != 200:
                    raise RuntimeError(f"request failed: {r.status_code} {r.text[:200]}")

        # warm-up outside the timed window
        await asyncio.gather(*(client.post("/v1/embeddings", json={"input": s}) for s in sentences[:concurrency]))
        passes_before = await forward_passes(client)
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
        passes = await forward_passes(client) - passes_before
    lat = np.asarray(latencies) * 1000
    return {"clients": concurrency, "requests": len(sentences), "seconds": wall,
            "throughput": len(sentences) / wall, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "passes": passes}


async def forward_passes(client: httpx.AsyncClient) -> int:
    """Forward passes the server has run so far (``qembed_batch_size_count`` in /metrics)."""
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("qembed_batch_size_count"):
            return int(float(line.split()[-1]))
    return 0


def in_process(model: Path, sentences: list[str], device: str, dtype: str, threads: int | None) -> dict:
    """The same sentences through the in-process encoder, one ``encode`` call."""
    import torch

    from qembed.models.local import LocalEncoder

    if threads:
        torch.set_num_threads(threads)
    encoder = LocalEncoder(str(model), device=device, dtype=dtype)
    encoder.encode(sentences[:8])  # warm-up
    start = time.perf_counter()
    encoder.encode(sentences)
    wall = time.perf_counter() - start
    from qembed.models.encoder import plan_batches

    ids = encoder.tokenize(sentences)
    passes = len(plan_batches([len(x) for x in ids], encoder.max_batch_tokens, encoder.max_batch_size))
    return {"clients": "-", "requests": len(sentences), "seconds": wall,
            "throughput": len(sentences) / wall, "p50_ms": float("nan"), "p99_ms": float("nan"),
            "passes": passes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="model folder (default: a random-weight Qwen3-Embedding-0.6B cached in ~/.cache/qembed)")
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    parser.add_argument("--concurrency", default="1,8,64", help="comma-separated client counts")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for the server and the in-process encoder (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # a SIGTERM (e.g. from `timeout`) unwinds normally, so the server subprocess is stopped too
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    levels = [int(x) for x in args.concurrency.split(",") if x]
    model = args.model
    if model is None:
        model = CACHE / "random-qwen3-embedding-0.6b"
        if not (model / "model.safetensors").exists():
            logger.info("building a random-weight Qwen3-Embedding-0.6B in %s (once)", model)
        build_random_qwen(model, tiny=False, dtype="bfloat16")
    sentences = afqmc_sentences(args.requests)
    name = model.name

    results: dict[str, list[dict]] = {}
    for label, extra in (("batching", []), ("batching off", ["--max-batch-size", "1"])):
        results[label] = []
        with Server(model, extra, args.device, args.dtype, args.threads) as server:
            for c in levels:
                row = asyncio.run(load(server.url, name, sentences, c))
                logger.info("%s, %d clients: %.1f req/s, p50 %.0f ms, p99 %.0f ms", label, c,
                            row["throughput"], row["p50_ms"], row["p99_ms"])
                results[label].append(row)
    results["in-process"] = [in_process(model, sentences, args.device, args.dtype, args.threads)]

    print(f"\nqembed serve load test: {name}, {args.dtype} on {args.device}, {len(sentences)} AFQMC dev "
          f"sentences, one per request, {os.cpu_count()} CPU cores, torch threads: {args.threads or 'default'}")
    print(f"{'mode':<14}{'clients':>8}{'requests':>10}{'passes':>8}{'seconds':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for label, rows in results.items():
        for r in rows:
            print(f"{label:<14}{r['clients']!s:>8}{r['requests']:>10}{r['passes']:>8}{r['seconds']:>9.2f}{r['throughput']:>9.1f}"
                  f"{r['p50_ms']:>9.0f}{r['p99_ms']:>9.0f}")
    top = max(levels)
    on = next(r for r in results["batching"] if r["clients"] == top)
    off = next(r for r in results["batching off"] if r["clients"] == top)
    local = results["in-process"][0]
    ratios = {"batching_vs_off": on["throughput"] / off["throughput"],
              "server_vs_in_process": on["throughput"] / local["throughput"]}
    print(f"\n{top} clients: batching / batching off = {ratios['batching_vs_off']:.2f}x (target >= 5x); "
          f"server / in-process = {ratios['server_vs_in_process']:.0%} (target >= 80%)")
    if args.json:
        print(json.dumps({"model": name, "dtype": args.dtype, "results": results, "ratios": ratios}))


if __name__ == "__main__":
    main()
