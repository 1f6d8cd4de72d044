"""Placing new texts in a saved topic model at scale: ``TopicModel.assign`` over 100k vectors.

A topic model is fitted (K-Means, ``--topics`` topics) on ``--fit`` vectors of a normalised Gaussian
mixture (the embeddings of a day's messages), saved and loaded back; then ``--sizes`` new vectors are
placed with :meth:`qembed.clustering.topic_model.TopicModel.assign` (precomputed embeddings: the
embedding itself is measured by ``encode_throughput.py``). Beside it, in the same run, what placing
replaces: re-clustering the fitted and the new vectors together from scratch with
:func:`qembed.cluster` (K-Means, the same k, ``--n-init`` initialisations). ``--update`` also times
:meth:`TopicModel.update` (fold the new vectors in; needs their texts: synthetic ones are used).

Prints a table (seconds, vectors per second, the share of placements that agree with the mixture's
components by V-measure) and, with ``--json``, the rows as JSON.

    python benchmarks/topics_assign.py                       # 100k new vectors, dim 1024, 50 topics
    python benchmarks/topics_assign.py --sizes 10000,100000 --dim 384 --no-recluster
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from typing import Any

import numpy as np


def mixture(n: int, dim: int, components: int, seed: int, centres: np.ndarray | None = None):
    rng = np.random.default_rng(seed)
    if centres is None:
        centres = np.random.default_rng(12345).standard_normal((components, dim), dtype=np.float32)
    labels = rng.integers(0, components, n)
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 8192):
        stop = min(n, start + 8192)
        chunk = centres[labels[start:stop]] + 1.5 * rng.standard_normal((stop - start, dim), dtype=np.float32)
        x[start:stop] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return x, labels


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000", help="New vectors to place (comma-separated).")
    ap.add_argument("--fit", type=int, default=10_000, help="Vectors the topic model is fitted on.")
    ap.add_argument("--dim", type=int, default=1024, help="Vector size (1024: Qwen3-Embedding-0.6B).")
    ap.add_argument("--topics", type=int, default=50, help="Topics (K-Means k, mixture components).")
    ap.add_argument("--n-init", type=int, default=1, help="K-Means initialisations (fit and re-cluster).")
    ap.add_argument("--no-recluster", action="store_true", help="Skip the re-clustering baseline.")
    ap.add_argument("--update", action="store_true", help="Also time TopicModel.update on the new vectors.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="Print the rows as JSON.")
    args = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import qembed
    from qembed.clustering.topic_model import TopicModel
    from sklearn.metrics import v_measure_score

    fit_x, _ = mixture(args.fit, args.dim, args.topics, args.seed)
    texts = [f"message {i} about topic" for i in range(args.fit)]
    t0 = time.perf_counter()
    tm = TopicModel.fit(None, texts, embeddings=fit_x, clusters=args.topics, seed=args.seed, n_init=args.n_init)
    fit_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        tm.save(tmp + "/model")
        tm = TopicModel.load(tmp + "/model")
        io_s = time.perf_counter() - t0
    rows: list[dict[str, Any]] = []
    print(f"topic model: {args.topics} topics fitted on {args.fit} x {args.dim} in {fit_s:.1f}s; "
          f"save + load {io_s:.2f}s", file=sys.stderr)
    for n in [int(s) for s in args.sizes.split(",")]:
        new_x, new_labels = mixture(n, args.dim, args.topics, args.seed + 1)
        t0 = time.perf_counter()
        placed = tm.assign(embeddings=new_x)
        assign_s = time.perf_counter() - t0
        topics = np.array([a.topic for a in placed])
        row: dict[str, Any] = {"n": n, "dim": args.dim, "topics": args.topics, "assign_s": round(assign_s, 3),
                               "assign_per_s": round(n / assign_s), "outliers": int((topics == -1).sum()),
                               "v_measure": round(float(v_measure_score(new_labels, topics)), 4)}
        if not args.no_recluster:
            both = np.vstack([fit_x, new_x])
            t0 = time.perf_counter()
            res = qembed.cluster(None, [f"t{i}" for i in range(len(both))], embeddings=both, clusters=args.topics,
                                 seed=args.seed, n_init=args.n_init, top_keywords=1)
            row["recluster_s"] = round(time.perf_counter() - t0, 3)
            row["recluster_v_measure"] = round(float(v_measure_score(new_labels, res.labels[args.fit:])), 4)
            row["speedup"] = round(row["recluster_s"] / assign_s, 1)
        if args.update:
            t0 = time.perf_counter()
            tm.update([f"new message {i}" for i in range(n)], embeddings=new_x)
            row["update_s"] = round(time.perf_counter() - t0, 3)
        rows.append(row)
    cpu = platform.processor() or platform.machine()
    if args.json:
        print(json.dumps({"cpu": cpu, "cores": os.cpu_count(), "rows": rows}))
        return 0
    print(f"{'new vectors':>12} {'assign s':>9} {'vec/s':>10} {'V-measure':>10} {'re-cluster s':>13} "
          f"{'re-cluster V':>13} {'speed-up':>9}")
    for r in rows:
        print(f"{r['n']:>12,} {r['assign_s']:>9.2f} {r['assign_per_s']:>10,} {r['v_measure']:>10.4f} "
              f"{r.get('recluster_s', float('nan')):>13.2f} {r.get('recluster_v_measure', float('nan')):>13.4f} "
              f"{r.get('speedup', float('nan')):>8.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
