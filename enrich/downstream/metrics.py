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

from typing import Any

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


def summarize(
    per_user: pl.DataFrame,
    n_resamples: int,
    seed: int = 0,
    baseline: str = "2",
    candidates: str = "0",
) -> pl.DataFrame:
    """Per rung and segment of a ladder's per-user rows (``rung, segment, seed, window,
    user_id`` + one column per metric): the mean over (seed, window, user) rows and, against
    the ``baseline`` rung on the same rows, the difference with a 95% interval that resamples
    users (every row of a drawn user comes along), its cluster-robust standard error and the
    minimum detectable effect at 80% power; also the difference to the ``candidates`` rung
    (ALS alone: does the re-ranker beat its own candidates?). ``n_users`` counts distinct
    users, ``n_rows`` the rows behind the mean."""
    rows = []
    keys = ["seed", "window", "user_id"]
    for (rung, segment), group in per_user.group_by("rung", "segment", maintain_order=True):
        for metric in METRICS:
            row = {"rung": rung, "segment": segment} | _level(group, metric, n_resamples, seed)
            for base_rung, name in ((baseline, "vs_2"), (candidates, "vs_0")):
                base = per_user.filter(
                    (pl.col("rung") == base_rung) & (pl.col("segment") == segment)
                )
                paired = group.join(base, on=keys, suffix="_base")
                diff = paired[metric].to_numpy() - paired[f"{metric}_base"].to_numpy()
                clusters = paired["user_id"].to_numpy()
                d, d_low, d_high = cluster_bootstrap(diff, clusters, n_resamples, seed)
                _, se, _ = cluster_mean_se(diff, clusters)
                found = bool(base.height)
                row |= {
                    f"delta_{name}": d if found else np.nan,
                    f"delta_{name}_low": d_low if found else np.nan,
                    f"delta_{name}_high": d_high if found else np.nan,
                }
                if name == "vs_2":  # the baseline against itself has no effect to detect
                    row["mde"] = min_detectable_effect(se) if found and rung != baseline else np.nan
            rows.append(row)
    return pl.DataFrame(rows).rename(
        {"delta_vs_2_low": "delta_low", "delta_vs_2_high": "delta_high"}
    )


def systems_summary(per_user: pl.DataFrame, n_resamples: int, seed: int = 0) -> pl.DataFrame:
    """Per system of per-user rows (``system, user_id`` + metrics; cold-item placements,
    new-user servers): metric means with user-level 95% intervals."""
    return pl.DataFrame(
        [
            {"system": system} | _level(group, metric, n_resamples, seed)
            for (system,), group in per_user.group_by("system", maintain_order=True)
            for metric in METRICS
        ]
    )


def _level(group: pl.DataFrame, metric: str, n_resamples: int, seed: int) -> dict[str, Any]:
    """One metric's mean over ``group``'s rows, its user-level 95% interval and the counts."""
    users = group["user_id"].to_numpy()
    mean, low, high = cluster_bootstrap(group[metric].to_numpy(), users, n_resamples, seed)
    return {
        "metric": metric,
        "value": mean,
        "ci_low": low,
        "ci_high": high,
        "n_users": int(np.unique(users).size),
        "n_rows": group.height,
    }


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
