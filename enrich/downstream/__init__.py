"""What rankers do with the features: temporal splits without leakage, ranking metrics, an
implicit-ALS adapter (candidates, cold-start items placed in factor space by their text
embedding), the LightGBM re-ranker's feature frame, and ways to serve users with no history.

Example:
    >>> from enrich.downstream import temporal_split, ranking_metrics
    >>> split = temporal_split(ratings, seed=0)                   # doctest: +SKIP
    >>> split.train.height, len(split.cold_items)                 # doctest: +SKIP
"""

from enrich.downstream.als import ALSRecommender, history_vectors, nearest_items
from enrich.downstream.metrics import paired_bootstrap, ranking_metrics
from enrich.downstream.new_users import new_user_systems, new_users
from enrich.downstream.ranker import feature_columns, labels, ranker_features
from enrich.downstream.split import TemporalSplit, assert_before, temporal_split

__all__ = [
    "ALSRecommender",
    "TemporalSplit",
    "assert_before",
    "feature_columns",
    "history_vectors",
    "labels",
    "nearest_items",
    "new_user_systems",
    "new_users",
    "paired_bootstrap",
    "ranker_features",
    "ranking_metrics",
    "temporal_split",
]
