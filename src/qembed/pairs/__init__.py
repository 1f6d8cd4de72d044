"""Pairs of texts: similarity with calibrated thresholds, classification and near-duplicate detection."""

from qembed.pairs.dedup import DedupResult, DuplicateGroup, find_duplicates
from qembed.pairs.scoring import score_pairs, similarity

__all__ = ["DedupResult", "DuplicateGroup", "find_duplicates", "score_pairs", "similarity"]
