"""The pair tokenizer's former home; it lives in :mod:`qembed.pairs.pair_tokens` (inference needs it too)."""

from qembed.pairs.pair_tokens import MIN_MAX_LENGTH, PairTokenizer, load_tokenizer

__all__ = ["MIN_MAX_LENGTH", "PairTokenizer", "load_tokenizer"]
