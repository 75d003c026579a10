"""Ranking metrics over full candidate rankings (no sampled negatives), and the statistics of a
difference between two systems with users as the unit: the same user scored under several seeds
or cut-offs is one cluster, never several independent observations.

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
    ranked: pl.DataFrame,
    relevant: pl.DataFrame,
    ks: tuple[int, ...] = (10, 20),
    ndcg_k: int = 10,
) -> pl.DataFrame:
    """Per user with at least one relevant item: ``ndcg@<ndcg_k>``, ``recall@k`` for each k,
    and ``mrr``, with binary relevance, as trec_eval defines them (``ndcg_cut``, ``recall``,
    ``recip_rank``; cross-checked against ir-measures in the tests). ``ranked`` has
    ``user_id, item_id, rank`` (1 = best); ``relevant`` has ``user_id, item_id``. Users with
    relevant items but no ranking score 0.
    """
    truth = relevant.select("user_id", "item_id").unique()
    n_rel = truth.group_by("user_id").agg(pl.len().alias("n_rel"))
    hits = ranked.select("user_id", "item_id", "rank").join(
        truth, on=["user_id", "item_id"], how="semi"
    )
    k_ndcg = ndcg_k
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


POWER_Z = 1.959963984540054 + 0.8416212335729143
"""z(0.975) + z(0.80): a two-sided 5% test with 80% power."""


def cluster_mean_se(values: np.ndarray, clusters: np.ndarray) -> tuple[float, float, int]:
    """``(mean, standard error, number of clusters)`` of ``values`` whose rows come in
    ``clusters`` (users): the cluster-robust (CR1) standard error of the row mean,
    ``sqrt(G / (G - 1) * sum_c (s_c - mean * n_c)^2) / N`` with ``s_c``, ``n_c`` the sum and count
    of cluster ``c``. One row per cluster: the usual ``sd / sqrt(n)``."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan"), 0
    _, index = np.unique(np.asarray(clusters), return_inverse=True)
    sums = np.bincount(index, weights=values)
    counts = np.bincount(index).astype(float)
    g, mean = sums.size, values.mean()
    if g < 2:
        return float(mean), float("nan"), g
    se = np.sqrt(g / (g - 1) * np.sum((sums - mean * counts) ** 2)) / values.size
    return float(mean), float(se), g


def min_detectable_effect(se: float) -> float:
    """The smallest true difference a two-sided 5% test detects with 80% power, given the
    standard error of the estimated difference: ``(z_0.975 + z_0.8) * se`` (= 2.80 se)."""
    return POWER_Z * se


def cluster_bootstrap(
    values: np.ndarray, clusters: np.ndarray, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``values`` and its 95% percentile interval, resampling *clusters* (users) with
    replacement: every row of a drawn user comes along (all of their seeds and cut-offs), and
    each resample's estimate is its row mean."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    _, index = np.unique(np.asarray(clusters), return_inverse=True)
    sums = np.bincount(index, weights=values)
    counts = np.bincount(index).astype(float)
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, sums.size, (n_resamples, sums.size))
    means = sums[draw].sum(axis=1) / counts[draw].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


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
