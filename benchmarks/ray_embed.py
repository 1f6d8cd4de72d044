"""Scale-out throughput: ``qembed embed --ray`` (Ray Data, local runtime) against one process.

Model: Qwen3-Embedding-0.6B's real architecture and tokenizer with random weights (bf16), built from
``shared/models/Qwen3-Embedding-0.6B`` and cached under ``~/.cache/qembed`` (speed does not depend
on the weights' values). Corpus: the first ``--rows`` AFQMC sentences (sentence1 and sentence2 of
``train.json``; default 20,000), written to a JSON-lines file with ids.

Methods, on the same file in the same run:

* ``single process``: ``LocalEncoder.encode`` over all texts in this process (the model loaded
  once beforehand, so the figure is pure encoding), timed before and after the Ray runs (the
  baseline is the mean), and the same with the load counted;
* ``ray local, N actor(s)``: :func:`qembed.embed_dataset` on a local Ray runtime started once
  (``ray.init`` time is reported apart), with ``concurrency`` 1 and 2. Its time covers everything
  a run does: counting the rows, starting the actors, each loading the model, embedding,
  writing Parquet parts. ``busy`` is the time the actors spent embedding and writing, summed.

Every Ray output is checked against the single-process vectors (cosine). Run:

    .venv/bin/python benchmarks/ray_embed.py [--rows 20000] [--actors 1 2] [--shard-rows 2048]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from qembed.testing import build_random_qwen, shared_dir

CACHE = Path(os.environ.get("QEMBED_CACHE", Path.home() / ".cache" / "qembed"))


def afqmc_rows(n: int) -> list[dict]:
    out: list[dict] = []
    with open(shared_dir() / "data" / "afqmc" / "train.json", encoding="utf-8") as f:
        for lineno, line in enumerate(f):
            row = json.loads(line)
            out += [{"id": f"train-{lineno}-1", "text": row["sentence1"]},
                    {"id": f"train-{lineno}-2", "text": row["sentence2"]}]
            if len(out) >= n:
                break
    return out[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--shard-rows", type=int, default=2048)
    parser.add_argument("--model-dir", type=Path, default=CACHE / "random-qwen3-embedding-0.6b")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON at the end")
    args = parser.parse_args()

    import ray

    from qembed import embed_dataset
    from qembed.models.local import LocalEncoder

    path = build_random_qwen(args.model_dir, tiny=False, dtype="bfloat16", seed=0)
    rows = afqmc_rows(args.rows)
    texts = [r["text"] for r in rows]
    work = Path(tempfile.mkdtemp(prefix="qembed-ray-bench-"))
    corpus = work / "afqmc.jsonl"
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"model: {path} (random weights, real architecture); {len(texts)} AFQMC sentences; "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs")

    results: dict[str, dict] = {}
    t0 = time.perf_counter()
    enc = LocalEncoder(str(path), device="cpu", dtype="bfloat16")
    load_s = time.perf_counter() - t0
    enc.encode(texts[:256])  # warm-up (compiled kernels for the first shapes), as an actor's first block is
    t0 = time.perf_counter()
    reference = enc.encode(texts)
    single = [time.perf_counter() - t0]

    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    init_s = time.perf_counter() - t0
    try:
        for n in args.actors:
            out = work / f"out-{n}"
            result = embed_dataset(str(path), str(corpus), str(out), dtype="bfloat16", device="cpu",
                                   concurrency=n, shard_rows=args.shard_rows, progress=False)
            s = result.summary
            import pyarrow.dataset as pds

            table = pds.dataset(str(out), format="parquet").to_table().sort_by("index")
            got = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
            cos = float(np.min(np.sum(got * reference, axis=1)))
            results[f"ray local, {n} actor(s)"] = {"seconds": s["seconds"], "rows_per_second": s["rows_per_second"],
                                                   "busy_seconds": s["busy_seconds"], "min_cosine": cos}
            shutil.rmtree(out)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    # the single process again, after the Ray runs: the baseline is the mean of the two, so a
    # machine shared with other work loads both sides alike
    t0 = time.perf_counter()
    enc.encode(texts)
    single.append(time.perf_counter() - t0)
    enc_s = sum(single) / 2
    results = {"single process": {"seconds": enc_s, "rows_per_second": len(texts) / enc_s,
                                  "runs_s": [round(x, 1) for x in single]},
               "single process, load counted": {"seconds": enc_s + load_s,
                                                "rows_per_second": len(texts) / (enc_s + load_s)},
               **results}

    base = results["single process"]["seconds"]
    print(f"\nmodel load in one process: {load_s:.1f}s; ray.init (local runtime): {init_s:.1f}s; "
          f"single process before/after the Ray runs: {single[0]:.1f}s / {single[1]:.1f}s")
    print(f"{'method':<32} {'seconds':>8} {'rows/s':>8} {'vs single':>10} {'busy s':>8} {'min cos':>8}")
    for name, r in results.items():
        ratio = r["rows_per_second"] / results["single process"]["rows_per_second"]
        busy = f"{r['busy_seconds']:.1f}" if "busy_seconds" in r else ""
        cos = f"{r['min_cosine']:.5f}" if "min_cosine" in r else ""
        print(f"{name:<32} {r['seconds']:>8.1f} {r['rows_per_second']:>8.1f} {ratio:>9.2f}x {busy:>8} {cos:>8}")
        if "busy_seconds" in r:
            r["overhead_vs_single"] = (r["seconds"] - base) / base
    for name, r in results.items():
        if "overhead_vs_single" in r:
            print(f"{name}: Ray's time over the single process' encoding: {100 * r['overhead_vs_single']:+.0f}%")
    if args.json:
        print(json.dumps({"rows": len(texts), "model_load_s": load_s, "ray_init_s": init_s, "results": results}))


if __name__ == "__main__":
    main()
