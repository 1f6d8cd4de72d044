"""Clustering at scale: qembed's K-Means and HDBSCAN against scikit-learn defaults, same run.

Data: a Gaussian mixture of ``--components`` clusters in ``--dim`` dimensions, rows L2-normalised
like embeddings, with known labels (so V-measure is reported). Generation is not timed.

For every size (``--sizes``, default 10000,100000) and method:

* ``kmeans``: qembed's :func:`qembed.clustering.pipeline.kmeans_labels` (``backend="auto"``: faiss
  spherical k-means above 5,000 vectors) against scikit-learn ``KMeans(n_clusters=k)`` with its
  defaults (k-means++, ``n_init="auto"``), both with k = the number of components.
* ``hdbscan``: qembed's :func:`qembed.clustering.pipeline.hdbscan_labels` (PCA to ``--hdbscan-dims``
  dimensions above 5,000 vectors, ``min_samples=min(min_cluster_size, 10)``) against
  scikit-learn ``HDBSCAN(min_cluster_size=…)`` with its defaults on the raw vectors; the raw
  baseline only runs up to ``--baseline-max`` vectors (and within ``--timeout`` seconds) because
  HDBSCAN's neighbour search in hundreds of dimensions is brute force.

Every measurement runs in a fresh process: wall time, and peak resident memory while clustering
(Linux: the peak counter VmHWM is reset through ``/proc/self/clear_refs`` once the data is
built; elsewhere ``ru_maxrss`` of the whole process), shown as the peak and as the growth above the
memory held before clustering (interpreter, libraries and the input vectors).
Prints a table and the time ratio baseline / qembed; ``--json`` prints the rows as JSON.

    python benchmarks/cluster_scale.py                       # 10k and 100k, both methods
    python benchmarks/cluster_scale.py --sizes 2000 --methods kmeans
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from typing import Any

import numpy as np


def make_data(n: int, dim: int, components: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors, labels)``: a normalised Gaussian mixture (centres N(0,1), noise sd ``1.5``).

    Built in float32 chunks, so generating the data does not set the process's memory peak.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((components, dim), dtype=np.float32)
    labels = rng.integers(0, components, n)
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 8192):
        stop = min(n, start + 8192)
        chunk = centres[labels[start:stop]] + 1.5 * rng.standard_normal((stop - start, dim), dtype=np.float32)
        x[start:stop] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return x, labels


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _rss_mb() -> float:
    value = _status_mb("VmRSS")
    return value if value is not None else float("nan")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mb(reset_ok: bool) -> float:
    """Peak RSS since :func:`_reset_peak` (VmHWM), else since the process started (ru_maxrss)."""
    if reset_ok:
        value = _status_mb("VmHWM")
        if value is not None:
            return value
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _case(spec: dict[str, Any], queue: "mp.Queue") -> None:
    """One measurement in a fresh process; puts a result dict on ``queue``."""
    import warnings

    warnings.filterwarnings("ignore")
    from sklearn.metrics import v_measure_score

    from qembed.clustering.pipeline import default_min_cluster_size, hdbscan_labels, kmeans_backend, kmeans_labels

    x, y = make_data(spec["n"], spec["dim"], spec["components"], spec["seed"])
    n, k, seed = spec["n"], spec["components"], spec["seed"]
    mcs = default_min_cluster_size(n)
    # warm the imports the timed code needs, so import time is not measured
    from sklearn.cluster import HDBSCAN, KMeans  # noqa: F401
    if spec["impl"] == "qembed" and spec["method"] == "kmeans" and kmeans_backend(n) == "faiss":
        import faiss  # noqa: F401
    import gc

    gc.collect()
    before = _rss_mb()
    reset_ok = _reset_peak()
    t0 = time.perf_counter()
    note = ""
    if spec["method"] == "kmeans":
        if spec["impl"] == "qembed":
            labels = kmeans_labels(x, k, seed=seed)
            note = f"backend={kmeans_backend(n)}"
        else:
            labels = KMeans(n_clusters=k, random_state=seed).fit_predict(x)
            note = "sklearn KMeans defaults"
    else:
        if spec["impl"] == "qembed":
            labels = hdbscan_labels(x, min_cluster_size=mcs, reduce="auto", reduce_dims=spec["hdbscan_dims"],
                                    seed=seed)
            note = (f"PCA->{spec['hdbscan_dims']}d, " if n > 5000 else "raw, ") + f"min_cluster_size={mcs}"
        else:
            labels = HDBSCAN(min_cluster_size=mcs, copy=True).fit_predict(x)
            note = f"sklearn HDBSCAN raw {spec['dim']}d, min_cluster_size={mcs}"
    seconds = time.perf_counter() - t0
    labels = np.asarray(labels)
    queue.put({
        **spec, "seconds": seconds, "rss_before_mb": before, "peak_rss_mb": _peak_mb(reset_ok),
        "peak_above_data_mb": _peak_mb(reset_ok) - before, "peak_reset": reset_ok,
        "v_measure": float(v_measure_score(y, labels)), "clusters": int(len(set(labels.tolist()) - {-1})),
        "outliers": float((labels == -1).mean()), "note": note,
    })


def run_case(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run :func:`_case` in a spawned process with a time limit."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_case, args=(spec, queue))
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.terminate()
        proc.join()
        return {**spec, "seconds": None, "note": f"stopped after {timeout:.0f} s"}
    if queue.empty():
        return {**spec, "seconds": None, "note": f"failed (exit code {proc.exitcode})"}
    return queue.get()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated numbers of vectors")
    ap.add_argument("--dim", type=int, default=384, help="vector dimension (384: MiniLM; 1024: Qwen3-0.6B)")
    ap.add_argument("--components", type=int, default=20, help="mixture components = k")
    ap.add_argument("--methods", default="kmeans,hdbscan")
    ap.add_argument("--hdbscan-dims", type=int, default=10, help="PCA dimensions before HDBSCAN")
    ap.add_argument("--baseline-max", type=int, default=10000,
                    help="largest size the raw-vector HDBSCAN baseline runs at")
    ap.add_argument("--timeout", type=float, default=240, help="seconds per measurement")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    rows = []
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
          file=sys.stderr)
    for n in sizes:
        for method in methods:
            for impl in ("qembed", "baseline"):
                spec = {"n": n, "dim": args.dim, "components": args.components, "method": method, "impl": impl,
                        "seed": args.seed, "hdbscan_dims": args.hdbscan_dims}
                if method == "hdbscan" and impl == "baseline" and n > args.baseline_max:
                    row = {**spec, "seconds": None,
                           "note": f"skipped: raw {args.dim}-d HDBSCAN above {args.baseline_max} vectors"}
                else:
                    print(f"running {method} {impl} n={n} ...", file=sys.stderr, flush=True)
                    row = run_case(spec, args.timeout)
                rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"\n{'n':>7} {'method':8} {'impl':9} {'seconds':>8} {'peak RSS':>9} {'+peak':>8} {'V':>6} "
          f"{'clusters':>8} {'outl.':>6}  note")
    for r in rows:
        secs = f"{r['seconds']:.2f}" if r.get("seconds") is not None else "-"
        mem = f"{r['peak_rss_mb']:.0f}MB" if "peak_rss_mb" in r else "-"
        extra = f"{r['peak_above_data_mb']:.0f}MB" if "peak_above_data_mb" in r else "-"
        v = f"{r['v_measure']:.3f}" if "v_measure" in r else "-"
        cl = str(r.get("clusters", "-"))
        out = f"{r['outliers']:.1%}" if "outliers" in r else "-"
        print(f"{r['n']:>7} {r['method']:8} {r['impl']:9} {secs:>8} {mem:>9} {extra:>8} {v:>6} {cl:>8} {out:>6}  "
              f"{r['note']}")
    print()
    for n in sizes:
        for method in methods:
            q = next(r for r in rows if r["n"] == n and r["method"] == method and r["impl"] == "qembed")
            b = next(r for r in rows if r["n"] == n and r["method"] == method and r["impl"] == "baseline")
            if q.get("seconds") and b.get("seconds"):
                print(f"n={n} {method}: baseline/qembed time ratio = {b['seconds'] / q['seconds']:.1f}x")
            else:
                print(f"n={n} {method}: no ratio ({b.get('note') if not b.get('seconds') else q.get('note')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
