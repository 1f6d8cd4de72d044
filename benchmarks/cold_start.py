"""Cold start: how long the first answer takes, and where compiling pays back.

Measured as a user meets them, each in fresh processes:

* ``embed``: wall time of a one-text ``qembed embed --model M "…"`` with ``compile`` auto (the
  default), on and off — and, with ``--before SRC`` (the ``src`` folder of an older checkout),
  that checkout's default in the same run; beside them the imports alone and the imports plus the
  model load (``LocalEncoder(compile=False)``), the floor a one-text run can reach;
* ``serve``: ``qembed serve`` until its first line on stderr and until ``GET /health`` answers
  200, with the start-up lines it printed (``--show-log``);
* ``ray``: ``qembed embed --ray local`` on a small JSON-lines file until its first line on
  stderr, its first progress line (``rows … done``) and its end;
* ``break-even``: in one process, the model's eager and compiled throughput on AFQMC sentences and
  the time compiling takes with torch's cache warm and cold (a fresh ``TORCHINDUCTOR_CACHE_DIR``);
  the tokens after which compiling has paid for itself are ``compile seconds / (seconds per
  eager token - seconds per compiled token)``. :data:`qembed.models.compile.BREAK_EVEN_TOKENS`
  holds the figure the ``auto`` setting uses.

Models: ``tiny`` (2 layers, hidden 64, the real tokenizer) and ``0.6b`` (Qwen3-Embedding-0.6B's
architecture with random weights in bf16), built once under ``~/.cache/qembed``. Run:

    .venv/bin/python benchmarks/cold_start.py [--models tiny 0.6b] [--parts embed serve ray break-even]
        [--repeats 2] [--before ../old-checkout/src]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CACHE = Path(os.environ.get("QEMBED_CACHE", Path.home() / ".cache" / "qembed"))
SRC = Path(__file__).resolve().parents[1] / "src"
TEXT = "今天天气真不错,适合出去散步"
PROGRESS = re.compile(r"rows? .*done|\d+/\d+ rows")


def model_dir(name: str) -> Path:
    from qembed.testing import build_random_qwen

    if name == "tiny":
        return build_random_qwen(CACHE / "tiny-qwen3-embedding", tiny=True, seed=0)
    return build_random_qwen(CACHE / "random-qwen3-embedding-0.6b", tiny=False, dtype="bfloat16", seed=0)


def env_for(src: Path, **extra: str) -> dict[str, str]:
    """The environment of a measured run: ``src`` first on the path, offline, and one inductor
    cache folder for every variant (warmed before the runs that are timed)."""
    env = {k: v for k, v in os.environ.items() if k != "QEMBED_COMPILE"}
    env.update(PYTHONPATH=str(src), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               TORCHINDUCTOR_CACHE_DIR=str(CACHE / "torchinductor"))
    env.update(extra)
    return env


def qembed(*args: str) -> list[str]:
    return [sys.executable, "-m", "qembed.cli", *args]


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return seconds


class Watched:
    """A subprocess whose stderr lines are collected with their time since start."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stderr:
            self.lines.append((time.perf_counter() - self.t0, line.rstrip()))

    def first(self, pattern: re.Pattern | None = None) -> float | None:
        for t, line in list(self.lines):
            if pattern is None or pattern.search(line):
                return t
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def variants(before: Path | None) -> list[tuple[str, dict[str, str]]]:
    out = []
    if before is not None:
        out.append(("before (its default: compile on)", env_for(before)))
    out += [("compile auto (default)", env_for(SRC)), ("compile on", env_for(SRC, QEMBED_COMPILE="true")),
            ("compile off", env_for(SRC, QEMBED_COMPILE="false"))]
    return out


# ------------------------------------------------------------------------------ parts
def part_embed(model: Path, repeats: int, before: Path | None) -> list[dict]:
    runs = [
        ("imports only (torch, sentence-transformers)",
         [sys.executable, "-c", "import torch, sentence_transformers"], env_for(SRC)),
        ("imports + model load (LocalEncoder, no compile)",
         [sys.executable, "-c", f"from qembed.models.local import LocalEncoder; LocalEncoder({str(model)!r}, compile=False)"],
         env_for(SRC)),
    ]
    runs += [(f"qembed embed, one text: {label}", qembed("embed", "--model", str(model), TEXT), env)
             for label, env in variants(before)]
    timed(qembed("embed", "--model", str(model), TEXT), env_for(SRC, QEMBED_COMPILE="true"))  # warm the cache
    seconds: dict[str, list[float]] = {label: [] for label, _, _ in runs}
    for _ in range(repeats):  # round-robin, so a busy moment of the machine hits every variant alike
        for label, cmd, env in runs:
            seconds[label].append(timed(cmd, env))
    return [{"what": label, "seconds": s} for label, s in seconds.items()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except Exception:  # noqa: BLE001 - not up yet
        return False


def part_serve(model: Path, before: Path | None, show_log: bool, timeout: float = 900) -> list[dict]:
    rows = []
    for label, env in variants(before):
        if label == "compile on":  # the server's auto is compile on
            continue
        port = free_port()
        w = Watched(qembed("serve", "--model", str(model), "--port", str(port)), env)
        try:
            while not healthy(port):
                if w.proc.poll() is not None or time.perf_counter() - w.t0 > timeout:
                    raise SystemExit("qembed serve did not become healthy:\n" + "\n".join(x for _, x in w.lines))
                time.sleep(0.1)
            ready = time.perf_counter() - w.t0
        finally:
            w.stop()
        rows.append({"what": f"qembed serve: {label}", "first_line": w.first(), "healthy": ready})
        if show_log:
            for t, line in w.lines:
                if t <= ready + 0.5:
                    print(f"    {t:6.1f}s  {line}")
    return rows


def part_ray(model: Path, before: Path | None, rows_in: int) -> list[dict]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "texts.jsonl"
        with data.open("w", encoding="utf-8") as f:
            for i in range(rows_in):
                f.write(json.dumps({"id": str(i), "text": f"{TEXT} {i}"}, ensure_ascii=False) + "\n")
        for label, env in variants(before):
            if label != "compile auto (default)" and not label.startswith("before"):
                continue
            target = Path(tmp) / f"out-{len(out)}"
            w = Watched(qembed("embed", "--ray", "local", "--model", str(model), "-i", str(data),
                               "-o", str(target)), env)
            code = w.proc.wait()
            end = time.perf_counter() - w.t0
            if code != 0:
                raise SystemExit("the Ray run failed:\n" + "\n".join(x for _, x in w.lines))
            time.sleep(0.2)
            out.append({"what": f"qembed embed --ray local, {rows_in} rows: {label}", "first_line": w.first(),
                        "first_progress": w.first(PROGRESS), "end": end})
    return out


BREAK_EVEN_WORKER = r"""
import json, sys, time
from qembed.models import packed
from qembed.models.local import LocalEncoder
path, n = sys.argv[1], int(sys.argv[2])
rows = []
with open(sys.argv[3], encoding="utf-8") as f:
    for line in f:
        r = json.loads(line)
        rows += [r["sentence1"], r["sentence2"]]
        if len(rows) >= n:
            break
enc = LocalEncoder(path, compile=False)
runner = enc._packed
ids = enc.tokenize(rows[:n])
tokens = sum(map(len, ids))
eager_fns = (runner._add_norm, runner._qk, runner._silu)
t0 = time.perf_counter()
runner.enable_compile()
compile_s = time.perf_counter() - t0
compiled_fns = (runner._add_norm, runner._qk, runner._silu)
times = {"eager": [], "compiled": []}
for _ in range(2):  # interleaved, the best of two each
    for kind, fns in (("eager", eager_fns), ("compiled", compiled_fns)):
        runner._add_norm, runner._qk, runner._silu = fns
        t0 = time.perf_counter()
        enc.embed_token_ids(ids)
        times[kind].append(time.perf_counter() - t0)
print(json.dumps({"tokens": tokens, "eager": min(times["eager"]), "compiled": min(times["compiled"]),
                  "compile": compile_s}))
"""


def part_break_even(model: Path, sentences: int) -> list[dict]:
    from qembed.testing import shared_dir

    afqmc = shared_dir() / "data" / "afqmc" / "dev.json"
    out = []
    with tempfile.TemporaryDirectory() as cold:
        for cache in ("cold cache", "warm cache"):  # the first run fills the fresh cache folder
            done = subprocess.run([sys.executable, "-c", BREAK_EVEN_WORKER, str(model), str(sentences), str(afqmc)],
                                  env=env_for(SRC, TORCHINDUCTOR_CACHE_DIR=cold), capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(done.stderr)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            per_eager, per_compiled = r["eager"] / r["tokens"], r["compiled"] / r["tokens"]
            saved = per_eager - per_compiled
            out.append({"what": f"break-even, {cache}", "tokens": r["tokens"],
                        "eager_tok_s": r["tokens"] / r["eager"], "compiled_tok_s": r["tokens"] / r["compiled"],
                        "compile_s": r["compile"],
                        "break_even_tokens": r["compile"] / saved if saved > 0 else None})
    return out


def show(model: str, rows: list[dict]) -> None:
    for r in rows:
        if "seconds" in r:
            s = r["seconds"]
            print(f"  {r['what']:<58} {statistics.median(s):6.1f}s  (runs: {', '.join(f'{x:.1f}' for x in s)})")
        elif "healthy" in r:
            print(f"  {r['what']:<58} first line {r['first_line'] or float('nan'):5.1f}s, healthy {r['healthy']:6.1f}s")
        elif "end" in r:
            fp = r["first_progress"]
            print(f"  {r['what']:<58} first line {r['first_line'] or float('nan'):5.1f}s, first progress "
                  f"{'none' if fp is None else f'{fp:.1f}s'}, done {r['end']:.1f}s")
        else:
            be = r["break_even_tokens"]
            print(f"  {r['what']:<58} eager {r['eager_tok_s']:,.0f} tok/s, compiled {r['compiled_tok_s']:,.0f} tok/s "
                  f"({r['compiled_tok_s'] / r['eager_tok_s']:.2f}x), compiling {r['compile_s']:.1f}s -> pays back after "
                  f"{'never' if be is None else f'{be:,.0f} tokens'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny", "0.6b"], choices=["tiny", "0.6b"])
    parser.add_argument("--parts", nargs="+", default=["embed", "serve", "ray", "break-even"],
                        choices=["embed", "serve", "ray", "break-even"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--before", type=Path, help="the src folder of an older checkout, measured alongside")
    parser.add_argument("--ray-rows", type=int, default=200)
    parser.add_argument("--sentences", type=int, default=1000, help="AFQMC sentences for the break-even part")
    parser.add_argument("--show-log", action="store_true", help="print serve's start-up lines")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(SRC))
    results = {}
    for name in args.models:
        path = model_dir(name)
        print(f"model {name} ({path})", flush=True)
        rows: list[dict] = []
        for part, run in (("embed", lambda: part_embed(path, args.repeats, args.before)),
                          ("serve", lambda: part_serve(path, args.before, args.show_log)),
                          ("ray", lambda: part_ray(path, args.before, args.ray_rows)),
                          ("break-even", lambda: part_break_even(path, args.sentences))):
            if part in args.parts:
                new = run()
                show(name, new)  # as each part ends: a long run shows its figures early
                sys.stdout.flush()
                rows += new
        results[name] = rows
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
