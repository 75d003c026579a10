"""What rankers do with the features: temporal splits without leakage, ranking metrics, an
implicit-ALS adapter (candidates, cold-start items placed in factor space by their text
embedding), the LightGBM re-ranker's feature frame, ways to serve users with no history, and the
evaluation that puts them together on any log (protocols, the ladder of rungs, user-level
statistics).

Example:
    >>> from enrich.downstream import temporal_split, ranking_metrics
    >>> split = temporal_split(ratings, seed=0)                   # doctest: +SKIP
    >>> split.train.height, len(split.cold_items)                 # doctest: +SKIP
"""

from enrich.downstream.als import ALSRecommender, history_vectors, nearest_items
from enrich.downstream.data import EvalData, eval_data, movielens
from enrich.downstream.evaluate import EvalConfig, EvalResult, evaluate
from enrich.downstream.ladder import DEFAULT_RUNGS, Candidates, RankerSettings, Rung, run_fold
from enrich.downstream.metrics import (
    cluster_bootstrap,
    cluster_mean_se,
    min_detectable_effect,
    paired_bootstrap,
    ranking_metrics,
)
from enrich.downstream.new_users import new_user_systems, new_users
from enrich.downstream.protocols import Fold, Protocol, Window, assert_before_cut, make_protocol
from enrich.downstream.ranker import feature_columns, labels, ranker_features
from enrich.downstream.split import TemporalSplit, assert_before, temporal_split

__all__ = [
    "DEFAULT_RUNGS",
    "ALSRecommender",
    "Candidates",
    "EvalConfig",
    "EvalData",
    "EvalResult",
    "Fold",
    "Protocol",
    "RankerSettings",
    "Rung",
    "TemporalSplit",
    "Window",
    "assert_before",
    "assert_before_cut",
    "cluster_bootstrap",
    "cluster_mean_se",
    "eval_data",
    "evaluate",
    "feature_columns",
    "history_vectors",
    "labels",
    "make_protocol",
    "min_detectable_effect",
    "movielens",
    "nearest_items",
    "new_user_systems",
    "new_users",
    "paired_bootstrap",
    "ranker_features",
    "ranking_metrics",
    "run_fold",
    "temporal_split",
]
