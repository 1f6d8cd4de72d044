"""Soak test of ``qembed serve``: many clients for many minutes, mixed lengths and models; memory
must stay flat, latency stable, nothing must fail.

The server runs an embedding model and a reranker (``--reranker``; the default is a tiny random
Qwen3 reranker built once under ``~/.cache/qembed``). ``--clients`` keep-alive clients (default 64)
send requests back to back for ``--minutes`` (default 10): 80% ``/v1/embeddings`` with 1 to 8 texts
of 1 to 12 AFQMC sentences each (about 10 to 300 tokens), 20% ``/v1/rerank`` with one query and 4
to 16 such documents (during the first half of the warm-up every request is of the largest size, so
each engine reaches its largest passes — and its peak working set — early; the second half sends
the run's mix, so the kernels of its pass sizes are built before memory is compared). Every ``--sample`` seconds the resident memory (``VmRSS``) of every server
process is read from ``/proc`` (the front or fronts, the supervisor with ``--api-workers`` > 1, and
each engine), and latency is summarised per window.

Verdict, after a warm-up (``--warmup`` seconds, default a fifth of the run): each process's
highest resident memory over the last ``--window`` seconds (default 60) within 5% of its highest
over the window ending with the warm-up; the p99 latency of the
last third of the run within 1.25x of the first third's (a shared machine can move it); no request
that is not a 200.

    python benchmarks/soak.py                       # MiniLM + tiny reranker, 64 clients, 10 minutes
    python benchmarks/soak.py --minutes 3 --json soak.json
    python benchmarks/soak.py --model qwen --api-workers 2

Exit code 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server_load as sl  # noqa: E402 - the load test's server management

logger = logging.getLogger("soak")


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def process_tree(root: int) -> dict[int, str]:
    """``{pid: name}`` of ``root`` and its descendants (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
        names[int(entry.name)] = cmdline
    out: dict[int, str] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in names:
            cmd = names[pid]
            kind = ("engine" if "multiprocessing" in cmd and "spawn_main" in cmd else "server")
            if "resource_tracker" in cmd:
                kind = None
            if kind:
                out[pid] = kind
        todo.extend(children.get(pid, []))
    return out


def texts(pool: list[str], rng: random.Random, exactly: int | None = None) -> str:
    """1 to 12 AFQMC sentences joined (``exactly`` of them when given)."""
    return "".join(rng.choice(pool) for _ in range(exactly or rng.randint(1, 12)))


async def soak(url: str, name: str, rerank_name: str | None, pool: list[str], clients: int, seconds: float,
               sample: float, pids: list[int], warmup: float) -> dict:
    records: list[tuple[float, float, str]] = []  # (end time, latency, route)
    errors: dict[str, int] = {}
    memory: list[tuple[float, dict[int, int | None]]] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    start = time.monotonic()
    deadline = start + seconds
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120, trust_env=False) as client:
        async def worker(k: int) -> None:
            rng = random.Random(k)
            while time.monotonic() < deadline:
                # first half of the warm-up: the largest requests, so each engine reaches its biggest
                # passes early; second half: the run's mix, so the kernels of its pass sizes are built
                big = time.monotonic() - start < warmup / 2
                if rerank_name and rng.random() < 0.2:
                    route = "/v1/rerank"
                    docs = 16 if big else rng.randint(4, 16)
                    body = {"model": rerank_name, "query": rng.choice(pool),
                            "documents": [texts(pool, rng, 12 if big else None) for _ in range(docs)], "top_n": 3}
                else:
                    route = "/v1/embeddings"
                    n = 8 if big else rng.randint(1, 8)
                    body = {"model": name, "input": [texts(pool, rng, 12 if big else None) for _ in range(n)],
                            "encoding_format": "base64"}
                t0 = time.perf_counter()
                try:
                    r = await client.post(route, json=body)
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                if r.status_code != 200:
                    key = f"{route} {r.status_code}"
                    errors[key] = errors.get(key, 0) + 1
                    continue
                records.append((time.monotonic() - start, time.perf_counter() - t0, route))

        async def sampler() -> None:
            while time.monotonic() < deadline:
                memory.append((time.monotonic() - start, {pid: rss_kib(pid) for pid in pids}))
                logger.info("%4.0f s: %d answered, errors %s, RSS %s MiB", time.monotonic() - start, len(records),
                            errors or "none", {pid: round((v or 0) / 1024) for pid, v in memory[-1][1].items()})
                await asyncio.sleep(sample)
            memory.append((time.monotonic() - start, {pid: rss_kib(pid) for pid in pids}))

        await asyncio.gather(sampler(), *(worker(k) for k in range(clients)))
    return {"records": records, "errors": errors, "memory": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="minilm (default), qwen (random 0.6B), or a folder")
    parser.add_argument("--reranker", default="tiny",
                        help="tiny (a tiny random Qwen3 reranker, default), 0.6b (random 0.6B), a folder, or none")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=None, help="seconds of warm-up (default: a fifth of the run)")
    parser.add_argument("--window", type=float, default=60.0,
                        help="seconds over which the highest RSS is taken, at the warm-up's end and the run's end")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between memory samples")
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--serve-arg", action="append", default=[], help="extra argument for qembed serve")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # SIGTERM unwinds normally, so the server's process group is stopped at exit
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sl.raise_fd_limit()

    if args.model in ("minilm", "qwen"):
        path = sl.model_dirs(argparse.Namespace(models=[args.model], minilm_path=None, qwen_path=None))[args.model]
    else:
        path = Path(args.model)
    name = "all-MiniLM-L6-v2" if args.model == "minilm" else path.name
    serve_args = [*args.serve_arg, *(["--api-workers", str(args.api_workers)] if args.api_workers > 1 else [])]
    rerank_name = None
    if args.reranker != "none":
        if args.reranker in ("tiny", "0.6b"):
            from qembed.rerank.testing import build_random_reranker

            tiny = args.reranker == "tiny"
            rpath = build_random_reranker(sl.CACHE / ("tiny-qwen3-reranker" if tiny else "random-qwen3-reranker-0.6b"),
                                          tiny=tiny, dtype="bfloat16", seed=0)
        else:
            rpath = Path(args.reranker)
        serve_args += ["--reranker", str(rpath)]
        rerank_name = Path(rpath).name
    ns = argparse.Namespace(threads=None, device="cpu", backend="torch", backend_dtype="auto", serve_arg=serve_args)
    spec = sl.server_spec("qembed", ns, path, name, args.dtype)
    log_dir = Path(tempfile.mkdtemp(prefix="soak-"))
    server = sl.ManagedServer(spec, log_dir / "qembed.log", 900)
    seconds = args.minutes * 60
    warmup = args.warmup if args.warmup is not None else seconds / 5
    try:
        server.start()
        tree = process_tree(server.proc.pid)
        logger.info("server processes: %s", tree)
        run = asyncio.run(soak(server.url, name, rerank_name, sl.afqmc_sentences(), args.clients, seconds,
                               args.sample, list(tree), warmup))
        health = httpx.get(server.url + "/health", timeout=30, trust_env=False).status_code
    finally:
        server.stop()

    records = run["records"]
    after = [r for r in records if r[0] >= warmup]
    third = (seconds - warmup) / 3
    first = np.array([r[1] for r in after if r[0] < warmup + third]) * 1000
    last = np.array([r[1] for r in after if r[0] >= seconds - third]) * 1000
    p99_first = float(np.percentile(first, 99)) if len(first) else None
    p99_last = float(np.percentile(last, 99)) if len(last) else None
    # each process's highest RSS over the window ending at the warm-up's end, and at the run's end:
    # one sample can fall inside or outside a large pass's working set (±10% for an engine)
    def peak(until: float) -> dict[int, int]:
        window = [m for t, m in run["memory"] if until - args.window <= t <= until] or [run["memory"][-1][1]]
        return {pid: max((m.get(pid) or 0) for m in window) for pid in window[-1]}

    base = peak(warmup)
    end = peak(run["memory"][-1][0])
    growth = {pid: ((end[pid] - base[pid]) / base[pid] if base.get(pid) and end.get(pid) else None) for pid in base}
    mem_ok = all(g is not None and g <= 0.05 for g in growth.values())
    p99_ok = p99_first is not None and p99_last is not None and p99_last <= 1.25 * p99_first
    ok = mem_ok and p99_ok and not run["errors"] and health == 200
    routes = {route: sum(1 for r in records if r[2] == route) for route in ("/v1/embeddings", "/v1/rerank")}
    print(f"\n{args.clients} clients for {args.minutes:g} min ({warmup:.0f} s warm-up): {len(records)} requests answered "
          f"({routes}), {len(records) / seconds:.1f} req/s; errors: {run['errors'] or 'none'}; health after: {health}")
    print("| process | pid | RSS after warm-up (MiB) | RSS at the end (MiB) | growth |\n|---|---:|---:|---:|---:|")
    for pid, kind in tree.items():
        g = growth.get(pid)
        print(f"| {kind} | {pid} | {(base.get(pid) or 0) / 1024:.0f} | {(end.get(pid) or 0) / 1024:.0f} | "
              f"{'-' if g is None else f'{100 * g:+.1f}%'} |")
    print(f"p99 latency: first third after warm-up {p99_first or 0:.0f} ms, last third {p99_last or 0:.0f} ms "
          f"(ratio {(p99_last or 0) / (p99_first or 1):.2f}); p50 overall {np.percentile([r[1] for r in after], 50) * 1000:.0f} ms")
    print(f"memory flat (<= 5%): {'yes' if mem_ok else 'no'}; p99 stable (<= 1.25x): {'yes' if p99_ok else 'no'}; "
          f"no error: {'yes' if not run['errors'] else 'no'} -> {'passed' if ok else 'FAILED'}")
    print(f"server log: {log_dir / 'qembed.log'}")
    if args.json:
        args.json.write_text(json.dumps({
            "clients": args.clients, "minutes": args.minutes, "warmup_s": warmup, "answered": len(records),
            "routes": routes, "errors": run["errors"], "health_after": health, "processes": tree,
            "rss_kib_after_warmup": base, "rss_kib_end": end, "growth": growth, "p99_first_ms": p99_first,
            "p99_last_ms": p99_last, "memory": run["memory"], "passed": ok, "cmd": spec.cmd,
        }, indent=2, default=str), encoding="utf-8")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
