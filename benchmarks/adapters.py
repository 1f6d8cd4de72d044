"""LoRA adapters over one base: one mixed-adapter pass against one pass per adapter against the base alone.

Model: Qwen3-Embedding-0.6B's architecture and tokenizer with random weights (bf16), built once under
``$QEMBED_CACHE`` (default ``~/.cache/qembed``), with ``--adapters`` random rank-``--rank`` LoRA
adapters written as PEFT folders (what ``qembed finetune embedding`` saves) on ``--targets``
(default: finetune's q/k/v/o). Inputs: AFQMC dev sentences. Two workloads, each in three modes:

- **64 one-sentence requests** in one pass (what the server packs from 64 concurrent clients), the
  requests spread round-robin over the base and the adapters;
- **8 x 64**: 8 requests of 64 sentences, each request naming one adapter (or the base), embedded
  in-process (``embed_token_ids`` plans the passes).

Modes: ``base`` (every input on the base: the cost without adapters), ``mixed`` (rows of several
adapters share a pass; each adapter adds its two small products on its rows), ``grouped`` (one pass
per adapter). Prints sentences per second of wall time and per second of the process's CPU time
(median of ``--repeats``; the ratios are taken on CPU time, which other jobs on a shared machine
disturb far less than wall time), and the worst cosine between the mixed and grouped vectors.

    python benchmarks/adapters.py                      # 4 adapters of rank 16
    python benchmarks/adapters.py --adapters 2 --repeats 5 --json adapters.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CACHE = Path(os.environ.get("QEMBED_CACHE", Path.home() / ".cache" / "qembed"))


def write_random_adapter(base: Path, folder: Path, *, rank: int, targets: list[str], seed: int) -> Path:
    """A PEFT LoRA folder over ``base`` with random A and B (B ~ 0.01 scale, so the delta is real work)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(base))
    hidden, inter = config.hidden_size, config.intermediate_size
    heads, kv, d = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    shapes = {"q_proj": (heads * d, hidden), "k_proj": (kv * d, hidden), "v_proj": (kv * d, hidden),
              "o_proj": (hidden, heads * d), "gate_proj": (inter, hidden), "up_proj": (inter, hidden),
              "down_proj": (hidden, inter)}
    where = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
             "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(config.num_hidden_layers):
        for t in targets:
            out, inp = shapes[t]
            key = f"base_model.model.layers.{layer}.{where[t]}.{t}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(rank, inp, generator=gen) / inp ** 0.5
            tensors[f"{key}.lora_B.weight"] = torch.randn(out, rank, generator=gen) * 0.01
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": targets, "bias": "none",
        "base_model_name_or_path": str(base), "task_type": "FEATURE_EXTRACTION"}, indent=2))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=CACHE / "random-qwen3-embedding-0.6b")
    parser.add_argument("--adapters", type=int, default=4, help="random adapters (default 4)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of 64 requests per mode (median)")
    parser.add_argument("--large-repeats", type=int, default=1, help="timed runs of 8 x 64 per mode (median)")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import numpy as np
    import torch

    from qembed.models.local import LocalEncoder
    from qembed.testing import build_random_qwen, shared_dir

    path = build_random_qwen(args.model_dir, tiny=False, dtype="bfloat16", seed=0)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    folder = CACHE / f"random-lora-r{args.rank}-{'-'.join(targets)}"
    names = [f"lora{i}" for i in range(args.adapters)]
    enc = LocalEncoder(str(path), device="cpu", dtype=args.dtype, compile=False)
    for i, name in enumerate(names):
        ad = folder / name
        if not (ad / "adapter_model.safetensors").exists():
            write_random_adapter(path, ad, rank=args.rank, targets=targets, seed=i + 1)
        enc.load_adapter(name, ad)
    texts: list[str] = []
    with (shared_dir() / "data" / "afqmc" / "dev.json").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            texts += [row["sentence1"], row["sentence2"]]
            if len(texts) >= 8 * 64:
                break
    ids = enc.tokenize(texts[: 8 * 64])
    choices = [None, *names]
    one_pass = [choices[i % len(choices)] for i in range(64)]  # 64 requests, round-robin
    per_request = [choices[r % len(choices)] for r in range(8) for _ in range(64)]  # 8 requests of 64

    def run_pass(mode: str) -> np.ndarray:
        return enc.forward_batch(ids[:64]) if mode == "base" else enc.forward_batch(ids[:64], one_pass)

    def run_requests(mode: str) -> np.ndarray:
        return enc.embed_token_ids(ids) if mode == "base" else enc.embed_token_ids(ids, adapter=per_request)

    modes = ("base", "mixed", "grouped")
    workloads = {"64 one-sentence requests, one pass": (run_pass, 64, args.repeats, True),
                 "8 requests x 64 sentences": (run_requests, 8 * 64, args.large_repeats, False)}
    results: dict = {"model": str(path), "dtype": args.dtype, "threads": torch.get_num_threads(),
                     "adapters": args.adapters, "rank": args.rank, "targets": targets,
                     "adapter_bytes": enc.adapters()[0]["bytes"], "sentences_per_s": {}, "sentences_per_cpu_s": {},
                     "worst_cosine": {}}
    for label, (fn, count, repeats, warm_up) in workloads.items():
        vectors = {}
        if warm_up:  # the first passes (the 8 x 64 runs come after these: warm already)
            for mode in modes:
                enc.set_adapter_mode("grouped" if mode == "grouped" else "mixed")
                vectors[mode] = fn(mode)
        times: dict[str, list[float]] = {m: [] for m in modes}
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        for r in range(max(1, repeats)):
            for mode in modes:  # interleaved, so drifting load hits every mode alike
                enc.set_adapter_mode("grouped" if mode == "grouped" else "mixed")
                t, c = time.perf_counter(), time.process_time()
                vectors[mode] = fn(mode)
                times[mode].append(time.perf_counter() - t)
                cpu[mode].append(time.process_time() - c)
            logging.getLogger("benchmark").warning("%s: round %d: wall %s cpu %s", label, r + 1,
                                                   {m: round(v[-1], 2) for m, v in times.items()},
                                                   {m: round(v[-1], 2) for m, v in cpu.items()})
        results["sentences_per_s"][label] = {m: count / statistics.median(v) for m, v in times.items()}
        results["sentences_per_cpu_s"][label] = {m: count / statistics.median(v) for m, v in cpu.items()}
        results["worst_cosine"][label] = float((vectors["mixed"] * vectors["grouped"]).sum(-1).min())
    enc.set_adapter_mode("mixed")

    print(f"{path.name} ({args.dtype}, {results['threads']} threads): {args.adapters} random LoRA adapters of rank "
          f"{args.rank} on {','.join(targets)} ({results['adapter_bytes'] / 2**20:.1f} MiB each), AFQMC sentences\n")
    print("| workload | base sent/s | mixed sent/s | grouped sent/s | base / mixed / grouped sent per CPU-s "
          "| mixed / base | grouped / base | mixed / grouped |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, s in results["sentences_per_s"].items():
        c = results["sentences_per_cpu_s"][label]
        print(f"| {label} | {s['base']:.1f} | {s['mixed']:.1f} | {s['grouped']:.1f} | "
              f"{c['base']:.1f} / {c['mixed']:.1f} / {c['grouped']:.1f} | {c['mixed'] / c['base']:.2f}x | "
              f"{c['grouped'] / c['base']:.2f}x | {c['mixed'] / c['grouped']:.2f}x |")
    print("\nworst cosine mixed vs grouped: " + ", ".join(f"{k}: {v:.5f}" for k, v in results["worst_cosine"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
