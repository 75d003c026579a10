"""New users — no interaction before the period — cannot be ranked by ALS or by their history.
What serves them best? Compared on an evaluated window's new users, where the data has user
attributes (ML-100K: age, gender and occupation):

    popularity                  the most interacted items before the window
    popularity in their group   the same among users of their group (ML-100K: gender and age
                                band; numbers in quartile bands) (no LLM)
    attribute text -> items     "age 24, gender M, occupation technician" embedded, nearest raw
                                item texts (no LLM: the control for the next two)
    LLM profile -> LLM items    the LLM's profile of the user from those attributes, nearest LLM
                                item profiles
    popularity + LLM profile    z-scored log popularity + z-scored profile similarity

Example:
    >>> per_user = new_user_systems(window, data.users, enriched,
    ...                             attribute_vectors, profiles)        # doctest: +SKIP
    >>> per_user.group_by("system").agg(pl.col("recall@20").mean())     # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import polars as pl

from enrich.downstream.als import nearest_items, top_by_count, top_k, with_rank
from enrich.downstream.enrichment import Enriched
from enrich.downstream.metrics import ranking_metrics
from enrich.downstream.protocols import Window
from enrich.embedding import normalize

AGE_BANDS = (25, 35, 50)
"""Upper bounds of the age bands of ``age`` (last band: 50 and over); other numeric attributes
are banded at their quartiles."""


def new_users(window: Window) -> list[str]:
    """Users with an interaction in ``window`` and none before its cut."""
    return window.new_users()


def _popularity(history: pl.DataFrame, users: list[str], k: int) -> pl.DataFrame:
    top = (
        top_by_count(history)
        .head(k)
        .select("item_id", pl.col("len").cast(pl.Float64).alias("score"))
    )
    return with_rank(pl.DataFrame({"user_id": users}).join(top, how="cross"))


def _bands(attrs: pl.DataFrame, group_cols: tuple[str, ...]) -> pl.DataFrame:
    """``user_id`` and one group label per column: numbers banded, text as is."""
    out = []
    for col in group_cols:
        dtype = attrs.schema[col]
        if dtype.is_numeric():
            cuts = (
                list(AGE_BANDS)
                if col == "age"
                else sorted({float(attrs[col].quantile(q)) for q in (0.25, 0.5, 0.75)})
            )
            out.append(pl.col(col).cut(cuts, left_closed=True).cast(pl.Utf8).alias(col))
        else:
            out.append(pl.col(col).cast(pl.Utf8))
    return attrs.select(pl.col("user_id").cast(pl.Utf8), *out)


def _group_popularity(
    history: pl.DataFrame,
    attrs: pl.DataFrame,
    users: list[str],
    k: int,
    group_cols: tuple[str, ...] = ("gender", "age"),
) -> pl.DataFrame:
    """Items by popularity among users of the same group (``group_cols``); overall popularity
    breaks ties (and fills groups with few interactions)."""
    groups = _bands(attrs, group_cols)
    cols = list(group_cols)
    overall = history.group_by("item_id").len().rename({"len": "overall"})
    in_group = (
        history.join(groups, on="user_id")
        .group_by(*cols, "item_id")
        .len()
        .rename({"len": "in_group"})
    )
    wanted = groups.filter(pl.col("user_id").is_in(users))
    scored = (
        wanted.join(overall, how="cross")
        .join(in_group, on=[*cols, "item_id"], how="left", nulls_equal=True)
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
    u = normalize(np.asarray(profiles["embedding"].to_list(), dtype=np.float32))
    i = normalize(np.asarray(item_vectors["embedding"].to_list(), dtype=np.float32))
    cos = u @ i.T
    cos = (cos - cos.mean(axis=1, keepdims=True)) / (cos.std(axis=1, keepdims=True) + 1e-9)
    scores = cos + pop[None, :]
    return top_k(scores, profiles["user_id"].cast(pl.Utf8).to_list(), items, k)


def new_user_systems(
    window: Window,
    attrs: pl.DataFrame,
    enriched: Enriched,
    attribute_vectors: pl.DataFrame,
    profiles: pl.DataFrame | None,
    k: int = 100,
    group_cols: tuple[str, ...] = ("gender", "age"),
) -> pl.DataFrame:
    """Per-user metrics (``system, user_id, ndcg@10, ...``) of each system on ``window``'s new
    users. ``attribute_vectors``: embedded attribute text; ``profiles``: their LLM profile
    vectors (``user_id, embedding``; None skips the LLM systems)."""
    users = new_users(window)
    history = window.history
    systems = {
        "popularity": _popularity(history, users, k),
        "popularity in their group": _group_popularity(history, attrs, users, k, group_cols),
        "attribute text -> raw item text": nearest_items(attribute_vectors, enriched.raw, k=k),
    }
    if profiles is not None and profiles.height and enriched.llm is not None:
        systems["LLM profile -> LLM item profiles"] = nearest_items(profiles, enriched.llm, k=k)
        systems["popularity + LLM profile"] = _blend(history, profiles, enriched.llm, k)
    relevant = window.target.filter(pl.col("user_id").is_in(users)).select("user_id", "item_id")
    return pl.concat(
        [
            ranking_metrics(ranked, relevant).with_columns(pl.lit(name).alias("system"))
            for name, ranked in systems.items()
        ]
    )
