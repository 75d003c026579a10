"""What rankers do with the features: temporal splits without leakage, ranking metrics, an
implicit-ALS adapter (candidates, cold-start items placed in factor space by their text
embedding), and the LightGBM re-ranker's feature frame.

Example:
    >>> from enrich.downstream import temporal_split, ranking_metrics
    >>> split = temporal_split(ratings, seed=0)                   # doctest: +SKIP
    >>> split.train.height, len(split.cold_items)                 # doctest: +SKIP
"""

from enrich.downstream.metrics import paired_bootstrap, ranking_metrics
from enrich.downstream.split import TemporalSplit, assert_before, temporal_split

__all__ = [
    "TemporalSplit",
    "assert_before",
    "paired_bootstrap",
    "ranking_metrics",
    "temporal_split",
]
