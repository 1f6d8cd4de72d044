"""The results of :func:`qembed.clustering.cluster`: one assignment per text, one cluster per group.

Both :mod:`qembed.clustering.pipeline` (which builds them) and :mod:`qembed.clustering.report`
(which draws them) import these types; neither imports the other.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class TextAssignment:
    """One input text: its position, cluster id (``-1`` = outlier), label, cosine distance."""

    index: int
    text: str
    cluster: int
    label: str
    distance: float


@dataclass
class Cluster:
    """One cluster: id, label, keywords (best first), size, representative texts (the most
    central members, closest first) and a short summary (members chosen by MMR around the
    centroid, redundancy removed, in input order; empty for the outliers)."""

    cluster: int
    label: str
    keywords: list[str]
    size: int
    examples: list[str]
    keyword_scores: list[float] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)


@dataclass
class ClusterResult:
    """The outcome of :func:`cluster`: ``texts`` in input order and ``clusters`` by size."""

    texts: list[TextAssignment]
    clusters: list[Cluster]
    method: str
    params: dict[str, Any]
    embeddings: np.ndarray | None = field(default=None, repr=False)
    centroids: np.ndarray | None = field(default=None, repr=False)

    @property
    def labels(self) -> np.ndarray:
        """Cluster id of every text, in input order (``-1`` for outliers)."""
        return np.array([t.cluster for t in self.texts], dtype=np.int64)

    @property
    def n_clusters(self) -> int:
        """Number of clusters, outliers not counted."""
        return sum(1 for c in self.clusters if c.cluster >= 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"texts": […], "clusters": […], "method", "params"}``."""
        return {
            "method": self.method,
            "params": self.params,
            "n_clusters": self.n_clusters,
            "n_outliers": sum(1 for t in self.texts if t.cluster == -1),
            "texts": [asdict(t) for t in self.texts],
            "clusters": [
                {"cluster": c.cluster, "label": c.label, "keywords": c.keywords, "size": c.size,
                 "examples": c.examples, "summary": c.summary}
                for c in self.clusters
            ],
        }

    def to_csv(self, path: str | Path) -> Path:
        """Write one row per text: ``index,text,cluster,label,distance``; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter=delimiter)
            writer.writerow(["index", "text", "cluster", "label", "distance"])
            for t in self.texts:
                writer.writerow([t.index, t.text, t.cluster, t.label, f"{t.distance:.6f}"])
        return path
