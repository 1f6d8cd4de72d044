"""Near-duplicate groups at scale: qembed's range search + connected components against scikit-learn.

Data: ``--n`` unit vectors in ``--dim`` dimensions (random directions), with planted groups of
near-copies: ``--groups`` groups of 2-5 copies and one large group of ``--big`` copies (larger
than any neighbour count a k-nearest-neighbour search would look at). Generation is not timed.

* qembed: :func:`qembed.pairs.dedup.similar_pairs` (FAISS ``IndexFlatIP.range_search``, queries
  in blocks of 4,096) + ``scipy.sparse.csgraph.connected_components`` — what
  :func:`qembed.pairs.find_duplicates` runs after encoding.
* baseline: scikit-learn ``NearestNeighbors(radius=1 - min_similarity, metric="cosine",
  algorithm="brute").radius_neighbors_graph`` + the same ``connected_components``.

Both must find the same groups (checked; the exit status is 1 otherwise); the script prints
both times and the ratio.

    python benchmarks/dedup.py                 # 20,000 x 384
    python benchmarks/dedup.py --n 100000      # longer (the work grows with n squared)

Measured with ``python benchmarks/dedup.py`` on a 2-core AMX CPU (24 GiB, no GPU) shared with
other jobs: 2,001 groups (largest 300), identical to scikit-learn's; qembed 7.8 s,
scikit-learn 18.1 s (2.3x).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np


def make_data(n: int, dim: int, groups: int, big: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    row = 0
    sizes = [big] + list(rng.integers(2, 6, size=groups))
    for size in sizes:
        base = x[row]
        x[row + 1:row + size] = base + 0.05 * rng.normal(size=(size - 1, dim)).astype(np.float32)
        row += size
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[rng.permutation(n)]


def groups_of(n: int, rows: np.ndarray, cols: np.ndarray) -> list[tuple[int, ...]]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for i, c in enumerate(comp.tolist()):
        members.setdefault(c, []).append(i)
    return sorted(tuple(m) for m in members.values() if len(m) > 1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--groups", type=int, default=2_000)
    p.add_argument("--big", type=int, default=300)
    p.add_argument("--min-similarity", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    from sklearn.neighbors import NearestNeighbors

    from qembed.pairs.dedup import similar_pairs

    x = make_data(args.n, args.dim, args.groups, args.big, args.seed)
    t0 = time.perf_counter()
    rows, cols = similar_pairs(x, min_similarity=args.min_similarity)
    ours = groups_of(args.n, rows, cols)
    qembed_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    nn = NearestNeighbors(radius=1.0 - args.min_similarity, metric="cosine", algorithm="brute").fit(x)
    graph = nn.radius_neighbors_graph(x, mode="connectivity").tocoo()
    keep = graph.row < graph.col
    theirs = groups_of(args.n, graph.row[keep], graph.col[keep])
    sklearn_s = time.perf_counter() - t0

    report = {
        "n": args.n, "dim": args.dim, "min_similarity": args.min_similarity,
        "groups": len(ours), "largest_group": max(map(len, ours)) if ours else 0,
        "same_groups": ours == theirs, "qembed_s": round(qembed_s, 3), "sklearn_s": round(sklearn_s, 3),
        "speedup": round(sklearn_s / qembed_s, 2),
        "machine": f"{platform.machine()}, {platform.processor() or ''}".strip(", "),
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{args.n} x {args.dim} vectors, min_similarity {args.min_similarity}: {report['groups']} groups "
              f"(largest {report['largest_group']}), identical to scikit-learn: {report['same_groups']}")
        print(f"qembed (FAISS range search + connected components): {qembed_s:.2f} s")
        print(f"scikit-learn radius_neighbors_graph (brute, cosine) + connected components: {sklearn_s:.2f} s")
        print(f"ratio: {report['speedup']:.2f}x")
    return 0 if ours == theirs else 1


if __name__ == "__main__":
    raise SystemExit(main())
