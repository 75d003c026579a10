"""Ranking metrics over full candidate rankings (no sampled negatives), and paired bootstrap
intervals for the difference between two systems.

Example:
    >>> ranked = pl.DataFrame({"user_id": ["u", "u"], "item_id": ["a", "b"], "rank": [1, 2]})
    >>> relevant = pl.DataFrame({"user_id": ["u"], "item_id": ["b"]})
    >>> ranking_metrics(ranked, relevant)["mrr"].to_list()
    [0.5]
"""

from __future__ import annotations

import numpy as np
import polars as pl

METRICS = ("ndcg@10", "recall@10", "recall@20", "mrr")


def ranking_metrics(
    ranked: pl.DataFrame, relevant: pl.DataFrame, ks: tuple[int, ...] = (10, 20)
) -> pl.DataFrame:
    """Per user with at least one relevant item: ``ndcg@k`` (k = 10), ``recall@k`` for each k,
    and ``mrr``. ``ranked`` has ``user_id, item_id, rank`` (1 = best); ``relevant`` has
    ``user_id, item_id``. Users with relevant items but no ranking score 0.
    """
    truth = relevant.select("user_id", "item_id").unique()
    n_rel = truth.group_by("user_id").agg(pl.len().alias("n_rel"))
    hits = ranked.select("user_id", "item_id", "rank").join(
        truth, on=["user_id", "item_id"], how="semi"
    )
    k_ndcg = 10
    per_user = hits.group_by("user_id").agg(
        (1.0 / (pl.col("rank").filter(pl.col("rank") <= k_ndcg) + 1).log(2)).sum().alias("dcg"),
        *[(pl.col("rank") <= k).sum().alias(f"hits@{k}") for k in ks],
        (1.0 / pl.col("rank").min()).alias("mrr"),
    )
    ideal = pl.DataFrame(  # IDCG by number of relevant items in the top k
        {
            "m": np.arange(k_ndcg + 1),
            "idcg": np.concatenate([[1.0], np.cumsum(1.0 / np.log2(np.arange(2, k_ndcg + 2)))]),
        }
    )
    out = (
        n_rel.join(per_user, on="user_id", how="left")
        .fill_null(0)
        .with_columns(pl.col("n_rel").clip(upper_bound=k_ndcg).cast(pl.Int64).alias("m"))
        .join(ideal, on="m", how="left")
    )
    return out.select(
        "user_id",
        (pl.col("dcg") / pl.col("idcg")).alias(f"ndcg@{k_ndcg}"),
        *[(pl.col(f"hits@{k}") / pl.col("n_rel")).alias(f"recall@{k}") for k in ks],
        pl.col("mrr").cast(pl.Float64),
    ).sort("user_id")


def coverage(ranked: pl.DataFrame, catalogue_size: int, k: int = 10) -> float:
    """Share of the catalogue that appears in some user's top ``k``."""
    shown = ranked.filter(pl.col("rank") <= k)["item_id"].n_unique()
    return shown / catalogue_size if catalogue_size else 0.0


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over users and its 95% interval, resampling users with replacement."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if diff.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, (n_resamples, diff.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)
