"""Search benchmark: qembed's vector stores against raw FAISS, ANN recall, Milvus Lite, indexing.

    .venv/bin/python benchmarks/search.py                 # 100k x 1024 (about 5 minutes on 2 cores)
    .venv/bin/python benchmarks/search.py --n 1000000     # 1M where memory allows (4 GB of vectors)
    .venv/bin/python benchmarks/search.py --quick         # small sizes, a smoke run

Figures, each with its baseline measured in the same run:

1. Exact search (FAISS ``IndexFlatIP``) over ``--n`` random unit vectors of size 1024: latency of
   one query and throughput of batches at top-10, through ``FaissStore.search`` (ids, texts and
   metadata included) against ``faiss_index.search`` on the very same index object.
2. ANN (HNSW through ``FaissStore(index="hnsw")``) on ``--ann-n`` vectors: recall@10 against
   exact search and latency per efSearch, through the store and raw. Twice: uniformly random
   vectors (the worst case for any ANN index: no structure) and clustered vectors (a mixture of
   Gaussians, closer to real embeddings).
3. Milvus Lite (FLAT, inner product) on ``--milvus-n`` of the vectors against FaissStore (flat)
   on the same subset.
4. Indexing throughput of ``qembed index add``'s path (``KnowledgeBase.add``: chunking,
   embedding, upsert) with the random-weight Qwen3-Embedding-0.6B (bf16) on AFQMC sentences,
   against ``encoder.encode`` of the same sentences.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_unit(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 50_000):
        out[s:s + 50_000] = unit(rng.standard_normal((min(50_000, n - s), d), dtype=np.float32))
    return out


def clustered_unit(n: int, d: int, seed: int, centers: int = 256, spread: float = 0.6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = unit(rng.standard_normal((centers, d), dtype=np.float32))
    labels = rng.integers(0, centers, n)
    noise = rng.standard_normal((n, d), dtype=np.float32) * (spread / np.sqrt(d))
    return unit(c[labels] + noise)


def timed(fn, repeat: int = 1) -> float:
    """Best-of wall seconds of ``fn()``."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def latency_ms(fn, queries: np.ndarray) -> float:
    """Median milliseconds of ``fn(one query)`` over the rows of ``queries``, FAISS on one thread
    (a server answers concurrent requests on separate threads; OpenMP's thread wake-ups would
    otherwise dominate a single small search on a busy machine)."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        times = []
        for q in queries:
            t0 = time.perf_counter()
            fn(q[None, :])
            times.append(time.perf_counter() - t0)
    finally:
        faiss.omp_set_num_threads(threads)
    return statistics.median(times) * 1000


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth)]))


def fill_store(store, vecs: np.ndarray, batch: int = 20_000) -> float:
    t0 = time.perf_counter()
    for s in range(0, len(vecs), batch):
        part = vecs[s:s + batch]
        ids = [f"doc-{i}" for i in range(s, s + len(part))]
        store.upsert(ids, part, texts=[f"text of document {i}" for i in range(s, s + len(part))],
                     metadata=[{"shard": i % 16} for i in range(s, s + len(part))])
    return time.perf_counter() - t0


def exact_section(args, report: dict) -> np.ndarray:
    from qembed.store.faiss_store import FaissStore

    print(f"\n== exact search: {args.n:,} random unit vectors, dim {args.dim}, top-10", flush=True)
    vecs = random_unit(args.n, args.dim, 0)
    queries = random_unit(args.queries, args.dim, 1)
    store = FaissStore.create(None, args.dim, index="flat")
    fill_s = fill_store(store, vecs)
    raw = store.faiss_index
    k = 10
    lat_store = latency_ms(lambda q: store.search(q, k), queries[: args.single])
    lat_raw = latency_ms(lambda q: raw.search(q, k), queries[: args.single])
    t_store, t_raw = float("inf"), float("inf")
    for _ in range(args.repeat):  # interleaved best-of: a busy machine slows both alike
        t_store = min(t_store, timed(lambda: store.search(queries, k)))
        t_raw = min(t_raw, timed(lambda: raw.search(queries, k)))
    # same answers
    ids_store = [[int(h.id[4:]) for h in row] for row in store.search(queries[:20], k)]
    _, ids_raw = raw.search(queries[:20], k)
    same = ids_store == ids_raw.tolist()
    row = {"n": args.n, "dim": args.dim, "upsert_s": fill_s, "latency_ms_store": lat_store,
           "latency_ms_raw": lat_raw, "latency_ratio": lat_store / lat_raw,
           "qps_store": len(queries) / t_store, "qps_raw": len(queries) / t_raw,
           "batch_ratio": t_store / t_raw, "same_results": same}
    report["exact"] = row
    print(f"upsert {args.n:,} vectors (+texts, metadata): {fill_s:.1f} s")
    print(f"1 query : FaissStore {lat_store:.2f} ms | raw FAISS {lat_raw:.2f} ms | ratio {lat_store / lat_raw:.3f}x")
    print(f"batch {len(queries)}: FaissStore {len(queries) / t_store:.0f} q/s | raw FAISS {len(queries) / t_raw:.0f} q/s"
          f" | ratio {t_store / t_raw:.3f}x | identical results: {same}")
    store.close()
    return vecs


def ann_section(args, report: dict, label: str, vecs: np.ndarray, queries: np.ndarray) -> None:
    import faiss

    from qembed.store.faiss_store import FaissStore

    k = 10
    n = len(vecs)
    print(f"\n== HNSW ({label}): {n:,} vectors, M={args.hnsw_m}, efConstruction={args.ef_construction}", flush=True)
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(vecs)
    _, truth = flat.search(queries, k)
    store = FaissStore.create(None, args.dim, index="hnsw", hnsw_m=args.hnsw_m,
                              ef_construction=args.ef_construction, ef_search=64)
    build_s = fill_store(store, vecs)
    raw = store.faiss_index
    inner = faiss.downcast_index(raw.index)
    rows = []
    print(f"built in {build_s:.1f} s")
    print(f"{'efSearch':>8} {'recall@10':>10} {'store ms':>9} {'raw ms':>8} {'ratio':>6}")
    for ef in args.ef_search:
        store._meta["ef_search"] = ef  # the store's ef_search option, applied to the index
        inner.hnsw.efSearch = ef
        found = np.array([[int(h.id[4:]) for h in row] for row in store.search(queries, k)])
        r = recall(found, truth)
        lat_store = latency_ms(lambda q: store.search(q, k), queries[: args.single])
        lat_raw = latency_ms(lambda q: raw.search(q, k), queries[: args.single])
        rows.append({"ef_search": ef, "recall@10": r, "latency_ms_store": lat_store, "latency_ms_raw": lat_raw,
                     "ratio": lat_store / lat_raw})
        print(f"{ef:>8} {r:>10.4f} {lat_store:>9.2f} {lat_raw:>8.2f} {lat_store / lat_raw:>6.3f}", flush=True)
    lat_exact = latency_ms(lambda q: flat.search(q, k), queries[: args.single])
    print(f"exact flat search on the same vectors: {lat_exact:.2f} ms per query")
    report[f"hnsw_{label}"] = {"n": n, "build_s": build_s, "exact_ms": lat_exact, "rows": rows}
    store.close()


def milvus_section(args, report: dict, vecs: np.ndarray) -> None:
    from qembed.store import open_store
    from qembed.store.faiss_store import FaissStore

    n = min(args.milvus_n, len(vecs))
    sub = vecs[:n]
    queries = random_unit(args.single, args.dim, 7)
    print(f"\n== Milvus Lite (FLAT, IP) vs FaissStore (flat): {n:,} vectors", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="qembed-bench-milvus-"))
    try:
        milvus = open_store(str(tmp / "bench.db"), dim=args.dim)
        insert_s = fill_store(milvus, sub, batch=2000)
        t0 = time.perf_counter()
        milvus.save()  # flush: sealed segments are searched through their index (10x faster than growing ones)
        insert_s += time.perf_counter() - t0
        faiss_store = FaissStore.create(None, args.dim, index="flat")
        faiss_s = fill_store(faiss_store, sub)
        lat_m = latency_ms(lambda q: milvus.search(q, 10), queries)
        lat_f = latency_ms(lambda q: faiss_store.search(q, 10), queries)
        a = [[h.id for h in r] for r in milvus.search(queries[:10], 10)]
        b = [[h.id for h in r] for r in faiss_store.search(queries[:10], 10)]
        agree = float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, b)]))
        report["milvus_lite"] = {"n": n, "insert_s_milvus": insert_s, "insert_s_faiss": faiss_s,
                                 "latency_ms_milvus": lat_m, "latency_ms_faiss": lat_f, "top10_agreement": agree}
        print(f"insert (+flush): Milvus Lite {insert_s:.1f} s | FaissStore {faiss_s:.1f} s")
        print(f"1 query: Milvus Lite {lat_m:.2f} ms | FaissStore {lat_f:.2f} ms | ratio {lat_m / lat_f:.2f}x"
              f" | same top-10: {agree:.3f}")
        milvus.close()
        faiss_store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def indexing_section(args, report: dict) -> None:
    from qembed.models.local import LocalEncoder
    from qembed.search.knowledge_base import KnowledgeBase
    from qembed.testing import build_random_qwen, shared_dir

    cache = Path(os.path.expanduser("~/.cache/qembed/random-qwen3-embedding-0.6b"))  # shared with the other benchmarks
    print(f"\n== indexing: random-weight Qwen3-Embedding-0.6B (bf16) on {args.sentences} AFQMC sentences", flush=True)
    path = build_random_qwen(cache, tiny=False, dtype="bfloat16")
    encoder = LocalEncoder(str(path), device="cpu", dtype="bfloat16")
    texts: list[str] = []
    with open(shared_dir() / "data" / "afqmc" / "dev.json", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            for s in (row["sentence1"], row["sentence2"]):
                if s not in texts:
                    texts.append(s)
            if len(texts) >= args.sentences:
                break
    texts = texts[: args.sentences]
    encoder.encode(texts[:8])  # warm-up
    t_encode = timed(lambda: encoder.encode(texts))
    tmp = Path(tempfile.mkdtemp(prefix="qembed-bench-index-"))
    try:
        def add():
            kb = KnowledgeBase.open(tmp / "ix", encoder)
            kb.add([{"id": f"s{i}", "text": t} for i, t in enumerate(texts)])
            kb.close()
        t_add = timed(add)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    tokens = sum(encoder.count_tokens(texts))
    report["indexing"] = {"sentences": len(texts), "tokens": tokens, "encode_s": t_encode, "index_add_s": t_add,
                          "sentences_per_s": len(texts) / t_add, "ratio": t_add / t_encode}
    print(f"encoder.encode: {len(texts) / t_encode:.1f} sentences/s ({tokens / t_encode:.0f} tokens/s)")
    print(f"index add     : {len(texts) / t_add:.1f} sentences/s | time ratio to encode alone {t_add / t_encode:.3f}x")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--queries", type=int, default=200, help="queries in the throughput batch")
    p.add_argument("--single", type=int, default=100, help="single queries timed for latency")
    p.add_argument("--repeat", type=int, default=5, help="batch timings (best of, interleaved)")
    p.add_argument("--ann-n", type=int, default=20_000)
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=80)
    p.add_argument("--ef-search", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    p.add_argument("--milvus-n", type=int, default=20_000)
    p.add_argument("--sentences", type=int, default=300)
    p.add_argument("--skip", nargs="*", default=[], choices=["exact", "ann", "milvus", "indexing"])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = p.parse_args()
    if args.quick:
        args.n, args.ann_n, args.milvus_n, args.sentences, args.queries, args.single = 5000, 2000, 2000, 20, 50, 20
        args.ef_search = [32, 128]
    import faiss

    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads; {os.cpu_count()} CPUs")
    report: dict = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    t0 = time.perf_counter()
    vecs = exact_section(args, report) if "exact" not in args.skip else random_unit(args.milvus_n, args.dim, 0)
    if "ann" not in args.skip:
        q = random_unit(args.queries, args.dim, 3)
        ann_section(args, report, "uniform", vecs[: args.ann_n], q)
        clustered = clustered_unit(args.ann_n + args.queries, args.dim, 5)
        ann_section(args, report, "clustered", clustered[: args.ann_n], clustered[args.ann_n:])
    if "milvus" not in args.skip:
        milvus_section(args, report, vecs)
    del vecs
    if "indexing" not in args.skip:
        indexing_section(args, report)
    report["total_s"] = time.perf_counter() - t0
    print(f"\ntotal {report['total_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
