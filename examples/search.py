"""Build a knowledge base (FAISS folder) from a help centre's FAQ and search it three ways.

    python examples/search.py [--model MODEL] [--index DIR] [QUERY]

Dense search matches by meaning, BM25 by words, hybrid fuses both; a metadata filter narrows any
of them. Without ``--index`` the index lives in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import qembed

DATA = Path(__file__).parent / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("query", nargs="?", default="it has been two days and my order still has not been sent")
    parser.add_argument("--model", "-m", default=os.environ.get("QEMBED_MODEL", qembed.DEFAULT_MODEL))
    parser.add_argument("--index", type=Path, help="index folder (default: a temporary one)")
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args()

    encoder = qembed.load_encoder(args.model)
    folder = args.index or Path(tempfile.mkdtemp()) / "kb"
    documents = [json.loads(line) for line in (DATA / "faq.jsonl").read_text(encoding="utf-8").splitlines()]

    kb = qembed.KnowledgeBase.open(folder, encoder)
    try:
        kb.add(documents)  # {"id", "text", "metadata"}; re-adding an id replaces it
        print(f"{len(documents)} documents in {folder}")
        for mode in ("dense", "bm25", "hybrid"):
            print(f"\n{mode}: {args.query}")
            for hit in kb.search(args.query, top_k=args.top_k, mode=mode):
                print(f"  {hit.score:.3f}  {hit.id:22} {hit.text}")
        print("\ndense, filter topic=refunds: when do I get my money")
        for hit in kb.search("when do I get my money", top_k=args.top_k, filter={"topic": "refunds"}):
            print(f"  {hit.score:.3f}  {hit.id:22} {hit.text}")
    finally:
        kb.close()


if __name__ == "__main__":
    main()
