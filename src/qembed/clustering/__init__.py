"""Clustering: group texts by meaning, name each group by its keywords, draw the map.

- :mod:`~qembed.clustering.pipeline`: :func:`cluster` (K-Means or HDBSCAN over embeddings);
- :mod:`~qembed.clustering.keywords`: c-TF-IDF keywords and labels;
- :mod:`~qembed.clustering.report`: :func:`write_report`, the self-contained HTML map;
- :mod:`~qembed.clustering.topic_model`: :class:`TopicModel` (fit, save, load, assign, update) and
  :func:`diff`, topic models that last;
- :mod:`~qembed.clustering.types`: the result types both build on.
"""

from qembed.clustering.pipeline import cluster
from qembed.clustering.report import write_report
from qembed.clustering.topic_model import TopicModel, diff
from qembed.clustering.types import Cluster, ClusterResult, TextAssignment

__all__ = ["Cluster", "ClusterResult", "TextAssignment", "TopicModel", "cluster", "diff", "write_report"]
