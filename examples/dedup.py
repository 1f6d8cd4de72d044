"""Find near-duplicate questions and keep the first of each group.

    python examples/dedup.py [--model MODEL] [--input FILE] [--min-similarity X]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import qembed

DATA = Path(__file__).parent / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", default=os.environ.get("QEMBED_MODEL", qembed.DEFAULT_MODEL))
    parser.add_argument("--input", "-i", type=Path, default=DATA / "questions.txt", help="a text per line")
    parser.add_argument("--min-similarity", type=float, default=0.9,
                        help="cosine at or above which two texts are near-duplicates")
    args = parser.parse_args()

    texts = [line.strip() for line in args.input.read_text(encoding="utf-8").splitlines() if line.strip()]
    encoder = qembed.load_encoder(args.model)
    result = qembed.find_duplicates(encoder, texts, min_similarity=args.min_similarity)

    print(f"{len(texts)} texts, {len(result.groups)} group(s) of near-duplicates")
    for group in result.groups:
        print(f"\nkeep:    {texts[group.representative]}")
        for index, score in zip(group.members[1:], group.scores[1:]):
            print(f"  {score:.3f} {texts[index]}")
    print(f"\nkept {len(result.keep)} of {len(texts)}:")
    for i in result.keep:
        print(f"  {texts[i]}")


if __name__ == "__main__":
    main()
