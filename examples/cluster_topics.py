"""Cluster support messages and name every cluster by its keywords; optionally write the HTML map.

    python examples/cluster_topics.py [--model MODEL] [--input FILE] [--clusters N|auto] [--report FILE]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import qembed
from qembed.clustering import write_report

DATA = Path(__file__).parent / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", default=os.environ.get("QEMBED_MODEL", qembed.DEFAULT_MODEL))
    parser.add_argument("--input", "-i", type=Path, default=DATA / "messages.txt", help="a text per line")
    parser.add_argument("--clusters", default="4", help="number of clusters, or 'auto'")
    parser.add_argument("--report", type=Path, help="write the self-contained HTML report here")
    args = parser.parse_args()

    texts = [line.strip() for line in args.input.read_text(encoding="utf-8").splitlines() if line.strip()]
    clusters = args.clusters if args.clusters == "auto" else int(args.clusters)
    encoder = qembed.load_encoder(args.model)
    result = qembed.cluster(encoder, texts, clusters=clusters, seed=0)

    print(f"{len(texts)} texts -> {result.n_clusters} clusters")
    for c in result.clusters:
        print(f"\n#{c.cluster} {c.label} ({c.size} texts)")
        print(f"  keywords: {', '.join(c.keywords[:6])}")
        for t in result.texts:
            if t.cluster == c.cluster:
                print(f"  - {t.text}")
    if args.report:
        write_report(result, args.report)
        print(f"\nreport: {args.report}")


if __name__ == "__main__":
    main()
