"""Simultaneous clients against ``qembed serve``: every connection must get a 200 or a 429 with
``Retry-After``, and the server must be healthy afterwards (bar 8-serve-1024-connections).

``--clients`` connections (default 1,024) are opened at once, each sending one one-sentence
request, ``--rounds`` times (default 2: 2,048 requests). Answers are counted by kind (HTTP status,
or the client-side exception: ``ReadError`` is a connection the server reset, ``ConnectError`` one
it never accepted). ``--server-open-files N`` starts the server under a soft open-files limit of N
(the usual default is 1,024) to show what happens when a burst needs more descriptors than that;
``qembed serve`` lifts its own limit towards the hard one, so it is still answered in full.

    python benchmarks/burst.py                                     # MiniLM, 1,024 x 2
    python benchmarks/burst.py --server-open-files 1024 --json burst.json
    python benchmarks/burst.py --model qwen --api-workers 2

Exit code 1 when any request got something other than 200 or 429 with Retry-After, or the server
was not healthy afterwards.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server_load as sl  # noqa: E402 - the load test's server management and burst round

logger = logging.getLogger("burst")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="minilm (default), qwen (random 0.6B), or a folder")
    parser.add_argument("--clients", type=int, default=1024, help="simultaneous connections per round (default 1024)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (default 2)")
    parser.add_argument("--api-workers", type=int, default=1, help="qembed serve --api-workers (default 1)")
    parser.add_argument("--server-open-files", type=int, default=None,
                        help="soft open-files limit the server starts with (default: this process's, raised)")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra argument for qembed serve")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds per round at most")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # SIGTERM unwinds normally, so the server's process group is stopped at exit
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    fd_limit = sl.raise_fd_limit()
    if fd_limit < args.clients + 64:
        logger.warning("this process's open-files limit %d is below --clients %d: the client side may fail",
                       fd_limit, args.clients)
    if args.model in ("minilm", "qwen"):
        ns = argparse.Namespace(models=[args.model], minilm_path=None, qwen_path=None)
        path = sl.model_dirs(ns)[args.model]
    else:
        path = Path(args.model)
    name = "all-MiniLM-L6-v2" if args.model == "minilm" else path.name
    ns = argparse.Namespace(threads=None, device="cpu", backend="torch", backend_dtype="auto",
                            serve_arg=[*args.serve_arg, *(["--api-workers", str(args.api_workers)] if args.api_workers > 1 else [])])
    spec = sl.server_spec("qembed", ns, path, name, args.dtype)
    if args.server_open_files:
        spec.cmd = ["/bin/sh", "-c", f"ulimit -Sn {int(args.server_open_files)} && exec {shlex.join(spec.cmd)}"]
    log_dir = Path(tempfile.mkdtemp(prefix="burst-"))
    server = sl.ManagedServer(spec, log_dir / "qembed.log", 900)
    pool = sl.afqmc_sentences()
    bodies = sl.request_bodies(name, [[pool[i % len(pool)]] for i in range(args.clients * args.rounds)])
    try:
        server.start()
        result = sl.run_burst(server.url, spec.embeddings_path, bodies, args.rounds, args.time_limit)
        health = httpx.get(server.url + "/health", timeout=30, trust_env=False).status_code
    finally:
        server.stop()
    result.update({"model": args.model, "api_workers": args.api_workers, "health_after": health,
                   "server_open_files": args.server_open_files, "cmd": spec.cmd})
    result["passed"] = bool(result["passed"] and health == 200)
    print(f"\n| clients x rounds | fronts | server soft open-files limit | 200 | 429 (Retry-After) | anything else "
          f"| healthy after | passed |\n|---|---:|---:|---:|---:|---|---|---|\n"
          f"| {args.clients} x {args.rounds} | {args.api_workers} | {args.server_open_files or fd_limit} "
          f"| {result['200']} | {result['429']} | {result['other'] or 0} | {'yes' if health == 200 else health} "
          f"| {'yes' if result['passed'] else 'no'} |")
    print(f"{result['seconds']:.1f} s; server log {log_dir / 'qembed.log'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
