"""Clustering: group texts by meaning, name each group by its keywords, draw the map."""

from qembed.clustering.pipeline import Cluster, ClusterResult, TextAssignment, cluster

__all__ = ["Cluster", "ClusterResult", "TextAssignment", "cluster"]
