"""Tune an embedding model on labelled pairs (CoSENT, LoRA merged into the weights), then use it.

    python examples/finetune_small.py [--model MODEL] [--output DIR] [--epochs N]

Needs the ``train`` extra (``pip install "qembed[train]"``). The defaults train for one epoch on the
small English pair sets in ``examples/data``; point ``--input``/``--dev`` at AFQMC for real runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import qembed
from qembed.train import EmbeddingTuneConfig, load_pairs, tune_embeddings

DATA = Path(__file__).parent / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", default=os.environ.get("QEMBED_MODEL", qembed.DEFAULT_MODEL))
    parser.add_argument("--input", "-i", type=Path, default=DATA / "pairs_train.jsonl",
                        help="labelled training pairs")
    parser.add_argument("--dev", type=Path, default=DATA / "pairs_dev.jsonl", help="labelled pairs to measure on")
    parser.add_argument("--output", "-o", type=Path, help="model folder (default: a temporary one)")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()

    output = args.output or Path(tempfile.mkdtemp()) / "tuned"
    config = EmbeddingTuneConfig(model=args.model, loss="cosent", epochs=args.epochs, batch_size=8)
    report = tune_embeddings(load_pairs(args.input), output, config, dev=load_pairs(args.dev),
                             merge=True, overwrite=True, progress=False)
    for when in ("before", "after"):
        m = report[when]
        print(f"{when:6}: dev Spearman {m['spearman']:.3f}, calibrated accuracy {m['accuracy']:.3f}")
    print(f"saved ({report['saved']}) to {output}")

    tuned = qembed.load_encoder(str(output))  # a complete model folder: load it like any other
    score = qembed.score_pairs(tuned, ["I forgot my password"], ["How can I recover my password?"])[0]
    print(f"tuned model: cosine {score:.3f} for a paraphrase pair")


if __name__ == "__main__":
    main()
