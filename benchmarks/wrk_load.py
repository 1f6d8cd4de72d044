"""One-sentence load on a running embedding server from wrk, a load generator written in C.

``server_load.py`` drives servers from Python (httpx): on a 2-core machine that generator itself
takes 30–55% of a core at 64 clients, CPU the server under test no longer has. wrk sends the same
requests (one AFQMC dev sentence each, base64, every request a different sentence) for a few
percent of a core, so its figure is closer to what the server does when its clients live elsewhere.

    qembed serve --model-path MODEL --port 30000 &
    python benchmarks/wrk_load.py --url http://127.0.0.1:30000 --connections 64 --duration 20

Needs ``wrk`` on the PATH (Debian: ``apt-get install wrk``). Any OpenAI-compatible server works
(``--path /embeddings`` for Infinity).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from qembed.testing import shared_dir


def lua_script(n: int, path: str, model: str | None) -> str:
    """A wrk script that posts the first ``n`` AFQMC dev sentences in turn."""
    bodies = []
    with open(shared_dir() / "data" / "afqmc" / "dev.json", encoding="utf-8") as f:
        for line in f:
            body = {"input": json.loads(line)["sentence1"], "encoding_format": "base64"}
            if model:
                body["model"] = model
            bodies.append(json.dumps(body, ensure_ascii=False))
            if len(bodies) >= n:
                break
    rows = ",\n".join(f"  [==[{b}]==]" for b in bodies)
    return (f"bodies = {{\n{rows}\n}}\ncounter = 0\nwrk.method = \"POST\"\n"
            "wrk.headers[\"Content-Type\"] = \"application/json\"\n"
            "request = function()\n  counter = counter + 1\n"
            f"  return wrk.format(nil, \"{path}\", nil, bodies[(counter % #bodies) + 1])\nend\n")


def run(url: str, connections: int, duration: int, script: Path) -> dict[str, float | int | str]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "60s",
                          "--latency", "-s", str(script), url], capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"connections": connections, "req_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": ms("50%"), "p99_ms": ms("99%"), "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else "none"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the server's base URL, e.g. http://127.0.0.1:30000")
    parser.add_argument("--path", default="/v1/embeddings")
    parser.add_argument("--model", default=None, help="`model` field of the requests (default: none)")
    parser.add_argument("--connections", default="64", help="comma-separated levels (default 64)")
    parser.add_argument("--duration", type=int, default=20, help="seconds per level (default 20)")
    parser.add_argument("--sentences", type=int, default=2000)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bodies.lua"
        script.write_text(lua_script(args.sentences, args.path, args.model), encoding="utf-8")
        run(args.url, 8, 3, script)  # warm-up
        print("| connections | req/s | p50 ms | p99 ms | non-2xx | socket errors |")
        print("|---:|---:|---:|---:|---:|---|")
        for c in (int(x) for x in args.connections.split(",")):
            r = run(args.url, c, args.duration, script)
            print(f"| {c} | {r['req_per_s']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['non_2xx']} | "
                  f"{r['socket_errors']} |", flush=True)


if __name__ == "__main__":
    main()
