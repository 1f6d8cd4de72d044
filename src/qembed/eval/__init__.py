"""Every measurement qembed reports, in one place.

- :mod:`~qembed.eval.pairs`: pair similarity — accuracy/F1 at a threshold, calibration, sweeps;
- :mod:`~qembed.eval.classification`: classification metrics (zero-shot and trained heads) and
  the pair classifier's dev metrics;
- :mod:`~qembed.eval.retrieval`: nDCG@10, Recall@10/100, MRR@10 on BEIR data (equal to trec_eval's);
- :mod:`~qembed.eval.clustering`: V-measure, ARI, NMI against gold labels, with a lexical baseline.
"""
