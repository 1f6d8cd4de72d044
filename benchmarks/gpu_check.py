"""One-call GPU check of the random-weight Qwen3-Embedding-0.6B: in process, served, and pass times.

Meant for a machine with one GPU, in under 8 minutes on an H100 (``--budget``, default 420 s: later
steps are skipped past it); ``--smoke`` runs the same steps on tiny models with tiny sizes (on the
CPU when no GPU is there) so the script is tested anywhere (tests/server/test_gpu_check_smoke.py).

1. in-process ``qembed.load_encoder(path).encode`` of (a) 40,000 short AFQMC sentences and (b) 1,000
   documents of ~350 tokens (AFQMC sentences joined): tokens/s and the share of the card's dense
   bf16 peak (FLOPs per token from ``config.json``: 2 x the non-embedding parameters, plus attention
   over each sequence's real length);
2. one forward pass over 64 short sentences, idle (the encoder's ``forward_batch`` or whatever the
   engine exposes, found at run time; skipped with a message if there is none);
3. ``qembed serve`` as a subprocess at 1, 64 and 256 concurrent clients, one sentence per request
   (``encoding_format: base64``; each level bounded in requests and seconds); during the 256-client
   level the 64-sentence pass of step 2 is timed again, in this process, while the server is under
   load, and the server's own pass-time metric is read from ``/metrics`` when it has one.

4. sentence-transformers' ``encode`` (its default batch size, 32) and two bare forward passes — the
   encoder's own passes over ready token ids (no tokenisation), and transformers' padded forward over
   length-sorted batches of 32 — on the same short sentences: tokens/s of each beside qembed's;
5. vector parity: the device's vectors against float32 vectors computed on the CPU (worst cosine);
6. the reranker (a random-weight Qwen3-Reranker-0.6B): in-process pairs/s over AFQMC pairs;
7. the LoRA recipe of ``benchmarks/finetune_afqmc.py --gpu`` (batch 128, length 64, bf16) on fewer
   pairs: pairs/s and peak GPU memory (``--no-lora`` skips it).

Figures go to ``$OUT/gpu_check.json`` when ``OUT`` is set (or ``--json FILE``), and a table is printed.
This script imports neither the server stack (fastapi, uvicorn, pydantic) nor httpx: the load
generator speaks HTTP/1.1 over asyncio streams. The server subprocess runs ``qembed serve`` from this
interpreter (``--qembed-cmd`` replaces it) with this process's environment (``--serve-env K=V`` adds).

    python benchmarks/gpu_check.py                  # on the GPU machine
    python benchmarks/gpu_check.py --smoke          # anywhere, a minute or two on a CPU
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

logger = logging.getLogger("gpu_check")
CACHE = Path(os.environ.get("QEMBED_CACHE", Path.home() / ".cache" / "qembed"))

# Dense bf16 tensor-core peak in TFLOP/s, by a substring of torch.cuda.get_device_name().
# H100/H200-class: ~790 TFLOP/s as in the project's earlier figures (--peak-tflops to use another).
PEAK_TFLOPS = (("H200", 790.0), ("H100", 790.0), ("H800", 790.0), ("GH200", 790.0), ("B200", 2250.0),
               ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0), ("A10", 125.0),
               ("L4", 121.0), ("RTX 4090", 165.0), ("A6000", 155.0))

FULL = {"short": 40_000, "docs": 1_000, "doc_tokens": 350, "pass_size": 64,
        "levels": ((1, 300), (64, 6_000), (256, 30_000)), "level_seconds": 20.0, "passes": 20,
        "compare": 8_000, "parity": 256, "rerank_pairs": 4_096, "lora_pairs": 128 * 16}
SMOKE = {"short": 256, "docs": 16, "doc_tokens": 350, "pass_size": 64,
         "levels": ((1, 8), (64, 64), (256, 256)), "level_seconds": 60.0, "passes": 3,
         "compare": 64, "parity": 32, "rerank_pairs": 32, "lora_pairs": 0}


# ----------------------------------------------------------------------------- inputs
def afqmc_pool(n: int) -> list[str]:
    """``n`` distinct AFQMC sentences: dev first, then train."""
    from qembed.testing import shared_dir

    seen: dict[str, None] = {}
    for split in ("dev", "train"):
        path = shared_dir() / "data" / "afqmc" / f"{split}.json"
        with path.open(encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                for key in ("sentence1", "sentence2"):
                    text = (row.get(key) or "").strip()
                    if text:
                        seen.setdefault(text, None)
                if len(seen) >= n:
                    return list(seen)[:n]
    pool = list(seen)
    return (pool * (n // len(pool) + 1))[:n]


def make_documents(sentences: list[str], count_tokens: Any, n: int, target: int) -> list[str]:
    """``n`` documents of about ``target`` tokens, each AFQMC sentences joined with '。'."""
    lengths = count_tokens(sentences)
    docs, i = [], 0
    for _ in range(n):
        parts, total = [], 1
        while total < target:
            parts.append(sentences[i % len(sentences)])
            total += lengths[i % len(sentences)]
            i += 1
        docs.append("。".join(parts))
    return docs


# ----------------------------------------------------------------------------- FLOPs and peak
def flops_per_token(config: dict) -> tuple[float, float]:
    """(2 x non-embedding parameters, attention FLOPs per token per context position).

    Llama-style decoder (Qwen2/3): q/k/v/o projections, a gated MLP of three matrices, norms. The
    attention term: QK^T and AV cost 2 x 2 x heads x head_dim per (query, key) pair and layer.
    """
    h = config["hidden_size"]
    layers = config["num_hidden_layers"]
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or h // heads
    kv = config.get("num_key_value_heads") or heads
    inter = config["intermediate_size"]
    per_layer = h * heads * head_dim * 2 + h * kv * head_dim * 2 + 3 * h * inter + 2 * h + 2 * head_dim
    params = layers * per_layer + h  # final norm
    return 2.0 * params, 4.0 * layers * heads * head_dim


def sequence_flops(lengths: list[int], config: dict, causal: bool = True) -> float:
    dense, attn = flops_per_token(config)
    pairs = sum(n * (n + 1) / 2 if causal else n * n for n in lengths)
    return dense * sum(lengths) + attn * pairs


def peak_tflops(device: str, override: float | None) -> tuple[float | None, str]:
    if override:
        return override, "--peak-tflops"
    if not device.startswith("cuda"):
        return None, "cpu: no peak"
    import torch

    name = torch.cuda.get_device_name(0)
    for key, value in PEAK_TFLOPS:
        if key.lower() in name.lower():
            return value, name
    return None, f"{name}: unknown peak (pass --peak-tflops)"


# ----------------------------------------------------------------------------- the engine's pass
def pass_candidates(encoder: Any) -> list[tuple[str, Any]]:
    """Callables that may run one forward pass over token-id lists, looked up at run time; the first
    that accepts a list of token-id lists is used."""
    holders = [("encoder", encoder)]
    for attr in ("engine", "_engine", "runner", "model_runner", "backend"):
        obj = getattr(encoder, attr, None)
        if obj is not None:
            holders.append((f"encoder.{attr}", obj))
    found = []
    for where, obj in holders:
        for name in ("forward_batch", "forward_ids", "forward_packed", "run_batch"):
            fn = getattr(obj, name, None)
            if callable(fn):
                found.append((f"{where}.{name}", fn))
    fn = getattr(encoder, "embed_token_ids", None)
    if callable(fn):
        found.append(("encoder.embed_token_ids (may split into several passes)", fn))
    return found


def token_ids(encoder: Any, texts: list[str]) -> list[list[int]] | None:
    fn = getattr(encoder, "tokenize", None)
    if callable(fn):
        return [list(x) for x in fn(texts)]
    tok = getattr(encoder, "tokenizer", None)
    if tok is not None:
        return tok(texts, add_special_tokens=True)["input_ids"]
    return None


def time_passes(fn: Any, ids: list[list[int]], n: int, sync: Any) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn(ids)
        sync()
        out.append((time.perf_counter() - t) * 1000)
    return out


# ----------------------------------------------------------------------------- comparisons
def compare_forward(model: Path, encoder: Any, texts: list[str], device: str, dtype: str, sync: Any) -> dict:
    """Tokens/s on the same texts: qembed ``encode``, sentence-transformers ``encode`` (batch 32),
    qembed's passes over ready token ids, and transformers' padded forward (sorted batches of 32)."""
    import torch
    from sentence_transformers import SentenceTransformer

    from qembed.models.encoder import plan_batches

    ids = token_ids(encoder, texts)
    tokens = int(sum(map(len, ids)))
    out: dict[str, Any] = {"texts": len(texts), "tokens": tokens}

    def timed(label: str, fn: Any) -> None:
        t = time.perf_counter()
        fn()
        sync()
        wall = time.perf_counter() - t
        out[label] = {"seconds": wall, "tokens_s": tokens / wall, "texts_s": len(texts) / wall}

    timed("qembed_encode", lambda: encoder.encode(texts))
    forward = getattr(encoder, "forward_batch", None)
    if callable(forward):
        batches = plan_batches([len(x) for x in ids], encoder.max_batch_tokens, encoder.max_batch_size,
                               packed=bool(getattr(encoder, "packed", False)))
        timed("qembed_passes", lambda: [forward([ids[i] for i in b]) for b in batches])
    st = SentenceTransformer(str(model), device=device, local_files_only=True,
                             model_kwargs={"dtype": getattr(torch, dtype)})
    st.encode(texts[:32], batch_size=32)
    timed("sentence_transformers", lambda: st.encode(texts, batch_size=32))
    hf = st[0].auto_model
    pad = st.tokenizer.pad_token_id or 0
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))

    def bare() -> None:
        with torch.inference_mode():
            for k in range(0, len(order), 32):
                rows = [ids[i] for i in order[k:k + 32]]
                width = max(map(len, rows))
                x = torch.full((len(rows), width), pad, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, seq in enumerate(rows):
                    x[r, :len(seq)] = torch.tensor(seq)
                    mask[r, :len(seq)] = 1
                hf(input_ids=x.to(device), attention_mask=mask.to(device))

    timed("transformers_padded_forward", bare)
    del st, hf
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    base = out["qembed_encode"]["tokens_s"]
    out["ratios"] = {k: base / v["tokens_s"] for k, v in out.items() if isinstance(v, dict) and "tokens_s" in v}
    return out


def cpu_parity(model: Path, encoder: Any, texts: list[str]) -> dict:
    """Worst and mean cosine between the encoder's vectors and float32 vectors computed on the CPU."""
    import qembed

    reference = qembed.load_encoder(str(model), device="cpu", dtype="float32", compile=False)
    cos = np.sum(encoder.encode(texts) * reference.encode(texts), axis=1)
    return {"texts": len(texts), "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}


def reranker_speed(path: Path, device: str, dtype: str, pairs: list[tuple[str, str]], sync: Any) -> dict:
    from qembed.rerank.local import Reranker

    reranker = Reranker(str(path), device=device, dtype=dtype)
    reranker.score(pairs[:16])
    sync()
    t = time.perf_counter()
    scores = reranker.score(pairs)
    sync()
    wall = time.perf_counter() - t
    assert len(scores) == len(pairs) and np.isfinite(scores).all()
    return {"pairs": len(pairs), "seconds": wall, "pairs_s": len(pairs) / wall,
            "packed": bool(getattr(reranker, "packed", False))}


def lora_recipe(work: Path, pairs: int, cuda: bool) -> dict:
    """benchmarks/finetune_afqmc.py's GPU recipe (batch 128, length 64, bf16) on ``pairs`` pairs;
    on a CPU its dry run (tiny architecture)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from finetune_afqmc import gpu_recipe  # type: ignore[import-not-found]

    options = argparse.Namespace(gpu_train_pairs=pairs, gpu_grad_accum=1, gpu_gradient_checkpointing=False)
    result = gpu_recipe(options, work, dry_run=not cuda)
    if result.get("peak_memory_gb") != result.get("peak_memory_gb"):  # NaN: no GPU memory to read
        result.update(peak_memory_gb=None, memory_ratio=None)
    return result


# ----------------------------------------------------------------------------- server subprocess
_SERVERS: list[subprocess.Popen] = []


def _stop(proc: subprocess.Popen, grace: float = 30.0) -> None:
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _stop_all() -> None:
    while _SERVERS:
        _stop(_SERVERS.pop())


atexit.register(_stop_all)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """A one-off GET on 127.0.0.1 (stdlib only)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def start_server(cmd: list[str], port: int, env: dict[str, str], log_path: Path, timeout: float) -> subprocess.Popen:
    logger.info("starting: %s", " ".join(cmd))
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **env}, start_new_session=True)
    _SERVERS.append(proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"qembed serve exited with code {proc.returncode}")
        try:
            if http_get(port, "/health")[0] == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"qembed serve not ready after {timeout:.0f} s")


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join("    " + x[:300] for x in path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def pass_metrics(port: int) -> dict[str, float]:
    """Sums and counts of the server's histograms about forward passes (names vary by engine)."""
    try:
        status, body = http_get(port, "/metrics", timeout=10)
    except OSError:
        return {}
    if status != 200:
        return {}
    out: dict[str, float] = {}
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = line.split("{")[0].split()[0]
        if not name.endswith(("_sum", "_count")):
            continue
        base = name.rsplit("_", 1)[0]
        if any(k in base for k in ("forward", "pass", "engine", "step", "batch_seconds", "batch_duration")) \
                and "request" not in base and ("seconds" in base or "duration" in base or "time" in base):
            try:
                out[name] = out.get(name, 0.0) + float(line.split()[-1])
            except ValueError:
                pass
    return out


# ----------------------------------------------------------------------------- load generator (stdlib HTTP/1.1)
async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            chunks.append(chunk[:-2])
        body = b"".join(chunks)
    else:
        body = await reader.read()
    return status, body, headers


async def _drive(port: int, bodies: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` keep-alive connections sending ``bodies`` (one request at a time each)."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    next_index = 0
    t0 = time.monotonic()
    deadline = t0 + seconds

    async def client() -> None:
        nonlocal next_index
        reader = writer = None
        while next_index < len(bodies) and time.monotonic() < deadline:
            body = bodies[next_index]
            next_index += 1
            start = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                status, payload, headers = await asyncio.wait_for(_read_response(reader),
                                                                  max(1.0, deadline + 30 - time.monotonic()))
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
                errors[type(exc).__name__] += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            elapsed = time.perf_counter() - start
            if headers.get("connection", "").lower() == "close":
                writer.close()
                reader = writer = None
            if status != 200:
                errors[f"http_{status}"] += 1
                continue
            if b'"data"' not in payload:
                errors["bad_body"] += 1
                continue
            latencies.append(elapsed)
        if writer is not None:
            writer.close()

    cpu0 = time.process_time()
    await asyncio.gather(*(client() for _ in range(clients)))
    return {"latencies": latencies, "errors": dict(errors), "t0": t0, "t1": time.monotonic(),
            "cpu": time.process_time() - cpu0}


def _generator_main(conn: Any, port: int, bodies: list[bytes], clients: int, seconds: float, go: Any) -> None:
    conn.send("ready")
    go.wait()
    try:
        conn.send(asyncio.run(_drive(port, bodies, clients, seconds)))
    except BaseException as exc:
        conn.send({"error": repr(exc)})


class Load:
    """A load level driven from ``procs`` spawned processes; ``start()`` returns at once."""

    def __init__(self, port: int, bodies: list[bytes], clients: int, seconds: float, procs: int) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        procs = max(1, min(procs, clients))
        self.go = ctx.Event()
        self.workers = []
        for i in range(procs):
            parent, child = ctx.Pipe()
            share = clients // procs + (1 if i < clients % procs else 0)
            p = ctx.Process(target=_generator_main, daemon=True,
                            args=(child, port, bodies[i::procs], share, seconds, self.go))
            p.start()
            self.workers.append((p, parent))
        for _, conn in self.workers:
            if not conn.poll(120):
                raise RuntimeError("a load-generator process did not start")
            conn.recv()
        self.seconds = seconds
        self.clients = clients
        self.t1: float | None = None

    def start(self) -> None:
        self.go.set()

    def result(self) -> dict:
        parts = []
        for p, conn in self.workers:
            part = conn.recv() if conn.poll(self.seconds + 120) else {"error": "no result"}
            p.join(10)
            if "error" in part:
                raise RuntimeError(f"load generator failed: {part['error']}")
            parts.append(part)
        lat = np.asarray([x for part in parts for x in part["latencies"]]) * 1000
        errors: Counter[str] = Counter()
        for part in parts:
            errors.update(part["errors"])
        self.t1 = max(p["t1"] for p in parts)
        wall = self.t1 - min(p["t0"] for p in parts)
        return {"clients": self.clients, "ok": int(len(lat)), "seconds": wall,
                "req_s": len(lat) / wall if wall > 0 else 0.0,
                "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
                "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
                "errors": dict(errors), "load_procs": len(parts),
                "generator_cpu": max(p["cpu"] / wall for p in parts) if wall > 0 else None}


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny model and sizes (CPU when no GPU)")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: random-weight 0.6B, cached)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak (default: by name)")
    parser.add_argument("--load-procs", type=int, default=None,
                        help="load-generator processes (default: 4 on GPU, 1 on CPU)")
    parser.add_argument("--level-seconds", type=float, default=None, help="time limit per served level")
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds for the whole check; later steps are skipped past it (default 420)")
    parser.add_argument("--no-lora", action="store_true", help="skip the LoRA recipe step")
    parser.add_argument("--start-timeout", type=float, default=240.0, help="seconds for the server to be ready")
    parser.add_argument("--qembed-cmd", default=None,
                        help="command that runs the qembed CLI (default: this python -m qembed.cli)")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra `qembed serve` argument, repeatable")
    parser.add_argument("--serve-env", action="append", default=[], help="KEY=VALUE for the server, repeatable")
    parser.add_argument("--no-server", action="store_true", help="in-process steps only")
    parser.add_argument("--reranker", type=Path, default=None,
                        help="reranker folder (default: a random-weight Qwen3-Reranker-0.6B, cached)")
    parser.add_argument("--json", type=Path, default=None, help="figures file (default: $OUT/gpu_check.json if OUT is set)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    began = time.monotonic()
    sizes = dict(SMOKE if args.smoke else FULL)
    if args.level_seconds:
        sizes["level_seconds"] = args.level_seconds

    import torch

    import qembed
    from qembed.testing import build_random_qwen

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    procs = args.load_procs or (4 if cuda else 1)
    out_path = args.json or (Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None)
    results: dict[str, Any] = {"meta": {"argv": sys.argv[1:], "smoke": args.smoke, "device": device, "dtype": args.dtype,
                                        "torch": torch.__version__, "cpu_count": os.cpu_count(), "sizes": {
                                            k: v for k, v in sizes.items() if k != "levels"}},
                               "in_process": {}, "pass": {}, "served": [], "skipped": [], "compare": {},
                               "parity": {}, "reranker": {}, "lora": {}}

    def over_budget(step: str) -> bool:
        if time.monotonic() - began > args.budget:
            logger.warning("budget of %.0f s spent: skipping %s", args.budget, step)
            results["skipped"].append(step)
            return True
        return False

    def save() -> None:
        results["meta"]["seconds"] = time.monotonic() - began
        if out_path:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")

    if cuda:
        results["meta"]["gpu"] = torch.cuda.get_device_name(0)
    peak, peak_source = peak_tflops(device, args.peak_tflops)
    results["meta"].update({"peak_tflops": peak, "peak_source": peak_source})

    # model
    if args.model:
        model = args.model
    elif args.smoke:
        model = build_random_qwen(CACHE / "random-qwen3-tiny", tiny=True, dtype="float32")
    else:
        path = CACHE / "random-qwen3-embedding-0.6b"
        if not (path / "model.safetensors").exists():
            logger.info("building a random-weight Qwen3-Embedding-0.6B in %s (once)", path)
        model = build_random_qwen(path, tiny=False, dtype="bfloat16")
    config = json.loads((Path(model) / "config.json").read_text(encoding="utf-8"))
    dense, _ = flops_per_token(config)
    results["meta"].update({"model": str(model), "gflop_per_token_dense": dense / 1e9})
    logger.info("model %s: %.4g GFLOP per token before attention; device %s (%s); peak %s TFLOP/s (%s)",
                model, dense / 1e9, device, results["meta"].get("gpu", "-"), peak, peak_source)

    # 1. in process
    t = time.monotonic()
    encoder = qembed.load_encoder(str(model), device=device, dtype=args.dtype)
    results["meta"]["load_seconds"] = time.monotonic() - t
    count = getattr(encoder, "count_tokens", None) or (lambda texts: [len(x) for x in token_ids(encoder, texts)])
    short = afqmc_pool(sizes["short"] + 300)
    warm, short = short[:200], short[300:]
    docs = make_documents(short, count, sizes["docs"], sizes["doc_tokens"])
    encoder.encode(warm)
    encoder.encode(docs[:16])
    sync()
    for label, texts in (("short", short), ("documents", docs)):
        if over_budget(f"in-process {label}"):
            continue
        lengths = count(texts)
        t = time.perf_counter()
        try:
            vectors = encoder.encode(texts)
            sync()
        except Exception as exc:  # report, go on with the other steps
            logger.exception("in-process encode of %s failed", label)
            results["skipped"].append(f"in-process {label}: {exc!r}")
            continue
        wall = time.perf_counter() - t
        tokens = int(sum(lengths))
        flops = sequence_flops(lengths, config)
        row = {"texts": len(texts), "tokens": tokens, "mean_tokens": tokens / len(texts), "seconds": wall,
               "texts_s": len(texts) / wall, "tokens_s": tokens / wall, "tflop_s": flops / wall / 1e12,
               "share_of_peak": flops / wall / 1e12 / peak if peak else None}
        assert len(vectors) == len(texts)
        results["in_process"][label] = row
        logger.info("in process, %s: %d texts, %.0f tokens/s, %.1f TFLOP/s%s", label, len(texts), row["tokens_s"],
                    row["tflop_s"], f" ({100 * row['share_of_peak']:.1f}% of peak)" if peak else "")
        del vectors
    save()

    # 2. one pass over 64 short sentences, idle
    found = None
    ids = token_ids(encoder, short[: sizes["pass_size"]])
    tried = []
    for name, fn in (pass_candidates(encoder) if ids is not None else []):
        try:
            time_passes(fn, ids, 3, sync)  # warm-up, and the check that it takes token-id lists
        except Exception as exc:  # another signature: try the next one
            tried.append(f"{name}: {exc!r}"[:200])
            continue
        found = (name, fn)
        break
    if found is None:
        msg = "no forward-pass method found on the encoder (looked for forward_batch, engine.forward_batch, ...)"
        logger.warning("%s; tried: %s", msg, tried)
        results["pass"]["skipped"] = f"{msg}; tried: {tried}"
    else:
        name, fn = found
        results["pass"].update({"method": name, "sentences": len(ids), "tokens": int(sum(map(len, ids)))})
        idle = time_passes(fn, ids, sizes["passes"], sync)
        results["pass"]["idle_ms"] = {"p50": float(np.median(idle)), "min": float(min(idle)), "runs": idle}
        logger.info("one pass over %d sentences via %s, idle: p50 %.1f ms", len(ids), name, np.median(idle))
    save()

    # 4. sentence-transformers and bare forward passes on the same sentences
    if not over_budget("sentence-transformers and bare passes"):
        try:
            results["compare"] = compare_forward(Path(model), encoder, short[: sizes["compare"]], device,
                                                 args.dtype, sync)
            logger.info("same %d sentences, tokens/s: %s", sizes["compare"], {
                k: round(v["tokens_s"]) for k, v in results["compare"].items() if isinstance(v, dict) and "tokens_s" in v})
        except Exception as exc:  # noqa: BLE001 - report, go on
            logger.exception("comparison failed")
            results["skipped"].append(f"comparison: {exc!r}")
        save()
    # 5. vectors against the CPU
    if not over_budget("parity with the CPU"):
        try:
            results["parity"] = cpu_parity(Path(model), encoder, short[: sizes["parity"]] + docs[:8])
            logger.info("parity with float32 on the CPU: worst cosine %.6f", results["parity"]["min_cosine"])
        except Exception as exc:  # noqa: BLE001
            logger.exception("parity check failed")
            results["skipped"].append(f"parity: {exc!r}")
        save()
    # 6. reranker
    if not over_budget("reranker"):
        try:
            from qembed.rerank.testing import build_random_reranker

            rr_path = args.reranker or build_random_reranker(
                CACHE / ("random-qwen3-reranker-tiny" if args.smoke else "random-qwen3-reranker-0.6b"),
                tiny=args.smoke, dtype="float32" if args.smoke else "bfloat16")
            pool = afqmc_pool(2 * sizes["rerank_pairs"])
            pairs = list(zip(pool[0::2], pool[1::2]))
            results["reranker"] = {"model": str(rr_path), **reranker_speed(Path(rr_path), device, args.dtype, pairs, sync)}
            logger.info("reranker: %.1f pairs/s", results["reranker"]["pairs_s"])
        except Exception as exc:  # noqa: BLE001
            logger.exception("reranker step failed")
            results["skipped"].append(f"reranker: {exc!r}")
        save()
    # 7. LoRA recipe
    if args.no_lora:
        results["skipped"].append("LoRA recipe (--no-lora)")
    elif not over_budget("LoRA recipe"):
        try:
            # the random model is built once under the cache; the adapter is overwritten each run
            results["lora"] = lora_recipe(CACHE / "gpu_check-lora", sizes["lora_pairs"] or 256, cuda)
            logger.info("LoRA recipe: %.1f pairs/s, peak %s GB", results["lora"]["pairs_per_s"],
                        _fmt(results["lora"]["peak_memory_gb"]))
        except Exception as exc:  # noqa: BLE001
            logger.exception("LoRA recipe failed")
            results["skipped"].append(f"LoRA recipe: {exc!r}")
        save()
    if cuda:
        torch.cuda.empty_cache()

    # 3. served
    if not args.no_server and not over_budget("server"):
        port = free_port()
        base = shlex.split(args.qembed_cmd) if args.qembed_cmd else [sys.executable, "-m", "qembed.cli"]
        cmd = [*base, "serve", "--model-path", str(model), "--host", "127.0.0.1", "--port", str(port),
               "--device", device, "--dtype", args.dtype, "--served-model-name", "m", "--log-level", "warning",
               *args.serve_arg]
        env = dict(kv.split("=", 1) for kv in args.serve_env)
        log_path = Path(tempfile.mkdtemp(prefix="gpu_check-")) / "serve.log"
        if os.environ.get("OUT"):
            log_path = Path(os.environ["OUT"]) / "gpu_check_serve.log"
        results["meta"]["serve_cmd"] = cmd
        proc = None
        try:
            t = time.monotonic()
            proc = start_server(cmd, port, env, log_path, args.start_timeout)
            results["meta"]["serve_start_seconds"] = time.monotonic() - t
            logger.info("server ready after %.0f s", results["meta"]["serve_start_seconds"])
            feed = iter(afqmc_pool(sizes["short"] + 20_000)[sizes["short"] + 300:] * 4)

            def bodies(n: int) -> list[bytes]:
                return [json.dumps({"model": "m", "input": next(feed), "encoding_format": "base64"},
                                   ensure_ascii=False).encode() for _ in range(n)]

            warmup = Load(port, bodies(256), 64, 60, 1)
            warmup.start()
            warmup.result()
            for clients, requests in sizes["levels"]:
                if over_budget(f"served {clients} clients") or proc.poll() is not None:
                    continue
                load = Load(port, bodies(requests), clients, sizes["level_seconds"], procs)
                metrics0 = pass_metrics(port)
                load.start()
                busy = None
                if clients == max(c for c, _ in sizes["levels"]) and found is not None:
                    time.sleep(min(1.0, sizes["level_seconds"] / 10))  # let the queue fill
                    try:
                        busy = time_passes(found[1], ids, sizes["passes"], sync)
                    except Exception as exc:
                        logger.warning("timing under load failed: %r", exc)
                busy_end = time.monotonic()
                row = load.result()
                metrics1 = pass_metrics(port)
                if busy:
                    # whether the load was still running when the last timed pass ended
                    overlapped = busy_end <= load.t1 if load.t1 is not None else None
                    results["pass"]["under_load_ms"] = {"clients": clients, "p50": float(np.median(busy)),
                                                        "max": float(max(busy)), "runs": busy,
                                                        "load_still_running": overlapped}
                server_pass = {}
                for key in metrics1:
                    if key.endswith("_sum"):
                        base_name = key[:-4]
                        n = metrics1.get(base_name + "_count", 0) - metrics0.get(base_name + "_count", 0)
                        if n > 0:
                            server_pass[base_name] = {"passes": n, "mean_ms": 1000 * (metrics1[key] - metrics0.get(key, 0)) / n}
                row["server_pass_metrics"] = server_pass
                short_row = results["in_process"].get("short")
                row["vs_in_process"] = row["req_s"] / short_row["texts_s"] if short_row else None
                results["served"].append(row)
                logger.info("served, %d clients: %.1f req/s, p50 %s ms, p99 %s ms, errors %s%s", clients, row["req_s"],
                            _fmt(row["p50_ms"]), _fmt(row["p99_ms"]), row["errors"] or "none",
                            f"; in-process pass meanwhile p50 {np.median(busy):.1f} ms" if busy else "")
                save()
            if proc.poll() is not None:
                results["skipped"].append(f"server exited with code {proc.returncode}:\n{log_tail(log_path)}")
        except RuntimeError as exc:
            logger.error("%s; log %s:\n%s", exc, log_path, log_tail(log_path))
            results["skipped"].append(f"server: {exc}")
        finally:
            if proc is not None:
                _SERVERS.remove(proc) if proc in _SERVERS else None
                _stop(proc)
    save()
    print(report(results))
    if out_path:
        print(f"\nfigures: {out_path}")


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def report(results: dict) -> str:
    meta = results["meta"]
    out = [f"\n## gpu_check: {Path(meta['model']).name} on {meta.get('gpu', meta['device'])}, {meta['dtype']}, "
           f"torch {meta['torch']}{' (smoke)' if meta['smoke'] else ''}; peak {meta['peak_tflops'] or '-'} TFLOP/s, "
           f"{meta['gflop_per_token_dense']:.4g} GFLOP/token + attention\n"]
    out.append("| in-process encode | texts | mean tokens | texts/s | tokens/s | TFLOP/s | share of peak |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    for label, r in results["in_process"].items():
        share = f"{100 * r['share_of_peak']:.1f}%" if r["share_of_peak"] is not None else "-"
        out.append(f"| {label} | {r['texts']} | {r['mean_tokens']:.0f} | {r['texts_s']:.0f} | {r['tokens_s']:.0f} "
                   f"| {r['tflop_s']:.2f} | {share} |")
    p = results["pass"]
    if "idle_ms" in p:
        under = p.get("under_load_ms")
        out.append(f"\nOne pass over {p['sentences']} short sentences ({p['tokens']} tokens) via {p['method']}: "
                   f"idle p50 {p['idle_ms']['p50']:.1f} ms (min {p['idle_ms']['min']:.1f})"
                   + (f"; while the server has {under['clients']} clients: p50 {under['p50']:.1f} ms "
                      f"(max {under['max']:.1f}){'' if under['load_still_running'] else ' [the load ended first]'}"
                      if under else ""))
    elif p.get("skipped"):
        out.append(f"\nForward pass: skipped ({p['skipped']})")
    if results["served"]:
        out.append("\n| served, 1 sentence per request | ok | req/s | served/in-process | p50 ms | p99 ms | errors "
                   "| server pass metric | generator CPU |")
        out.append("|---|---:|---:|---:|---:|---:|---|---|---:|")
        for r in results["served"]:
            metric = "; ".join(f"{k}: {v['mean_ms']:.1f} ms x {v['passes']:.0f}" for k, v in r["server_pass_metrics"].items())
            errors = ", ".join(f"{k} {v}" for k, v in sorted(r["errors"].items())) or "0"
            out.append(f"| {r['clients']} clients | {r['ok']} | {r['req_s']:.1f} | {_fmt(r.get('vs_in_process'), '.3f')}x "
                       f"| {_fmt(r['p50_ms'], '.0f')} "
                       f"| {_fmt(r['p99_ms'], '.0f')} | {errors} | {metric or '-'} | {100 * (r['generator_cpu'] or 0):.0f}% |")
        short = results["in_process"].get("short")
        top = next((r for r in results["served"] if r["clients"] == 64), None)
        if short and top:
            out.append(f"\n64 clients / in-process short sentences: {top['req_s'] / short['texts_s']:.3f}x")
    c = results.get("compare") or {}
    if c:
        out.append(f"\n| same {c['texts']} short sentences ({c['tokens']} tokens) | tokens/s | qembed encode / this |")
        out.append("|---|---:|---:|")
        for key, label in (("qembed_encode", "qembed encode"), ("qembed_passes", "qembed passes over token ids (bare)"),
                           ("sentence_transformers", "sentence-transformers encode (batch 32)"),
                           ("transformers_padded_forward", "transformers forward, padded batches of 32 (bare)")):
            if key in c:
                out.append(f"| {label} | {c[key]['tokens_s']:.0f} | {c['ratios'][key]:.2f}x |")
    if results.get("parity"):
        p = results["parity"]
        out.append(f"\nParity with float32 on the CPU over {p['texts']} texts: worst cosine {p['min_cosine']:.6f} "
                   f"(mean {p['mean_cosine']:.6f})")
    if results.get("reranker"):
        r = results["reranker"]
        out.append(f"\nReranker {Path(r['model']).name}: {r['pairs_s']:.1f} pairs/s over {r['pairs']} pairs"
                   f"{' (packed)' if r['packed'] else ''}")
    if results.get("lora"):
        lo = results["lora"]
        out.append(f"\nLoRA recipe (batch {lo['batch_size']}, length {lo['max_length']}, {lo['train_pairs']} pairs) on "
                   f"{lo['device']}: {lo['pairs_per_s']:.1f} pairs/s, peak {_fmt(lo['peak_memory_gb'])} GB "
                   f"(recipe {lo['recipe_memory_gb']} GB)")
    for s in results["skipped"]:
        out.append(f"\nskipped: {s}")
    out.append(f"\nwall time {meta.get('seconds', 0):.0f} s")
    return "\n".join(out)


if __name__ == "__main__":
    main()
