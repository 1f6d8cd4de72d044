"""Extractive summaries over sentence embeddings.

- :mod:`~qembed.summarize.sentences`: :func:`split_sentences` (Chinese and English punctuation);
- :mod:`~qembed.summarize.extractive`: :func:`summarize` (centroid or MMR scoring, redundancy
  removed, original order kept), :func:`select` (the same choice over given vectors) and the
  Lead-k baseline :func:`lead`.
"""

from qembed.summarize.extractive import Summary, SummarySentence, lead, select, summarize
from qembed.summarize.sentences import Sentence, split_sentences

__all__ = ["Sentence", "Summary", "SummarySentence", "lead", "select", "split_sentences", "summarize"]
