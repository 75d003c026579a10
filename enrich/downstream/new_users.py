"""New users — no interaction before the period — cannot be ranked by ALS or by their history.
What serves them best? Compared on the test period's new users, ML-100K (which has age, gender
and occupation per user):

    popularity                  the most interacted items before the period
    popularity in their group   the same among users of their gender and age band (no LLM)
    attribute text -> items     "age 24, gender M, occupation technician" embedded, nearest raw
                                item texts (no LLM: the control for the next two)
    LLM profile -> LLM items    the LLM's profile of the user from those attributes, nearest LLM
                                item profiles
    popularity + LLM profile    z-scored log popularity + z-scored profile similarity

Example:
    >>> per_user = new_user_systems(split, users, enriched, profiles)   # doctest: +SKIP
    >>> per_user.group_by("system").agg(pl.col("recall@20").mean())     # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import polars as pl

from enrich.downstream.als import nearest_items, top_k, unit, with_rank
from enrich.downstream.enrichment import Enriched
from enrich.downstream.metrics import ranking_metrics
from enrich.downstream.split import TemporalSplit

AGE_BANDS = (25, 35, 50)
"""Upper bounds of the age bands of the group-popularity baseline (last band: 50 and over)."""


def new_users(split: TemporalSplit, period: str = "test") -> list[str]:
    """Users with an interaction in ``period`` and none before it."""
    target = split.validation if period == "validation" else split.test
    known = set(split.history(period)["user_id"].to_list())
    return sorted(set(target["user_id"].to_list()) - known)


def _popularity(history: pl.DataFrame, users: list[str], k: int) -> pl.DataFrame:
    top = (
        history.group_by("item_id")
        .len()
        .sort("len", "item_id", descending=[True, False])
        .head(k)
        .select("item_id", pl.col("len").cast(pl.Float64).alias("score"))
    )
    return with_rank(pl.DataFrame({"user_id": users}).join(top, how="cross"))


def _group_popularity(
    history: pl.DataFrame, attrs: pl.DataFrame, users: list[str], k: int
) -> pl.DataFrame:
    """Items by popularity among users of the same gender and age band; overall popularity
    breaks ties (and fills groups with few interactions)."""
    band = pl.col("age").cut(list(AGE_BANDS), left_closed=True).alias("band")
    groups = attrs.select(pl.col("user_id").cast(pl.Utf8), "gender", band)
    overall = history.group_by("item_id").len().rename({"len": "overall"})
    in_group = (
        history.join(groups, on="user_id")
        .group_by("gender", "band", "item_id")
        .len()
        .rename({"len": "in_group"})
    )
    wanted = groups.filter(pl.col("user_id").is_in(users))
    scored = (
        wanted.join(overall, how="cross")
        .join(in_group, on=["gender", "band", "item_id"], how="left")
        .with_columns(pl.col("in_group").fill_null(0))
        .sort(["user_id", "in_group", "overall", "item_id"], descending=[False, True, True, False])
        .group_by("user_id", maintain_order=True)
        .head(k)
        .with_columns(pl.int_range(pl.len(), 0, -1).over("user_id").cast(pl.Float64).alias("score"))
    )
    return with_rank(scored.select("user_id", "item_id", "score"))


def _blend(
    history: pl.DataFrame, profiles: pl.DataFrame, item_vectors: pl.DataFrame, k: int
) -> pl.DataFrame:
    """z(log popularity) + z(cosine of user profile and item profile), over all items."""
    items = item_vectors["item_id"].cast(pl.Utf8).to_list()
    counts = (
        pl.DataFrame({"item_id": items})
        .join(history.group_by("item_id").len(), on="item_id", how="left")
        .fill_null(0)["len"]
        .to_numpy()
    )
    pop = np.log1p(counts.astype(np.float64))
    pop = (pop - pop.mean()) / (pop.std() or 1.0)
    u = unit(np.asarray(profiles["embedding"].to_list(), dtype=np.float32))
    i = unit(np.asarray(item_vectors["embedding"].to_list(), dtype=np.float32))
    cos = u @ i.T
    cos = (cos - cos.mean(axis=1, keepdims=True)) / (cos.std(axis=1, keepdims=True) + 1e-9)
    scores = cos + pop[None, :]
    return top_k(scores, profiles["user_id"].cast(pl.Utf8).to_list(), items, k)


def new_user_systems(
    split: TemporalSplit,
    attrs: pl.DataFrame,
    enriched: Enriched,
    attribute_vectors: pl.DataFrame,
    profiles: pl.DataFrame | None,
    k: int = 100,
) -> pl.DataFrame:
    """Per-user metrics (``system, user_id, ndcg@10, ...``) of each system on the test period's
    new users. ``attribute_vectors``: embedded attribute text; ``profiles``: their LLM profile
    vectors (``user_id, embedding``; None skips the LLM systems)."""
    users = new_users(split, "test")
    history = split.history("test")
    systems = {
        "popularity": _popularity(history, users, k),
        "popularity in their group": _group_popularity(history, attrs, users, k),
        "attribute text -> raw item text": nearest_items(attribute_vectors, enriched.raw, k=k),
    }
    if profiles is not None and profiles.height and enriched.llm is not None:
        systems["LLM profile -> LLM item profiles"] = nearest_items(profiles, enriched.llm, k=k)
        systems["popularity + LLM profile"] = _blend(history, profiles, enriched.llm, k)
    relevant = split.test.filter(pl.col("user_id").is_in(users)).select("user_id", "item_id")
    return pl.concat(
        [
            ranking_metrics(ranked, relevant).with_columns(pl.lit(name).alias("system"))
            for name, ranked in systems.items()
        ]
    )
