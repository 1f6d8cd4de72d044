"""Embed queries and documents, find each query's best document, and shorten vectors (Matryoshka).

    python examples/embed.py [--model MODEL]

MODEL is a folder, a Hugging Face Hub id or the http(s)://…/v1 URL of an OpenAI-compatible
endpoint (default: $QEMBED_MODEL, else Qwen/Qwen3-Embedding-0.6B).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

import qembed

QUERIES = ["how do I reset my password", "my parcel has not arrived yet"]
DOCUMENTS = [
    "Forgot your password? Use the reset link on the sign-in page.",
    "Deliveries usually take three to five working days; track your parcel in your orders.",
    "We accept credit cards, debit cards and bank transfers.",
    "Refunds reach your bank account within ten days of the return.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", default=os.environ.get("QEMBED_MODEL", qembed.DEFAULT_MODEL))
    args = parser.parse_args()

    encoder = qembed.load_encoder(args.model)
    # Queries carry the retrieval instruction; documents carry none.
    queries = encoder.encode(QUERIES, instruction=qembed.DEFAULT_QUERY_INSTRUCTION)
    documents = encoder.encode(DOCUMENTS)
    print(f"{encoder.name}: {len(DOCUMENTS)} documents -> vectors of size {documents.shape[1]}")

    scores = queries @ documents.T  # unit rows: the dot product is the cosine
    for query, row in zip(QUERIES, scores):
        best = int(np.argmax(row))
        print(f"{query!r} -> {DOCUMENTS[best]!r} (cosine {row[best]:.3f})")

    small = encoder.encode(DOCUMENTS, dimensions=128)  # the first 128 values, re-normalised
    norms = np.linalg.norm(small, axis=1)
    print(f"Matryoshka: {small.shape[1]} dimensions, row norms {norms.min():.3f}..{norms.max():.3f}")


if __name__ == "__main__":
    main()
