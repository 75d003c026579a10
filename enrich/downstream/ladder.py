"""The ablation ladder: does each enriched feature make the ranking better, per segment?

For each seed: ALS trained on the history before a period gives the top-K candidates (cold items
placed in its factor space by their raw-text embedding, the same for every rung); a LightGBM
lambdarank model per rung is trained on validation-period labels and scores the test period's
candidates, with ALS retrained on train + validation. Rungs add features one at a time:

    0   ALS score only
    1   LightGBM: ALS score/rank, popularity, item mean rating, user activity
    2   + raw item text embeddings (no LLM): history similarity, PCA dims
    3   + LLM item profile embeddings
    3b  rung 2 + LLM item profiles written with collaborative context
    4   rung 3 + LLM attributes (mood, audience) as categoricals
    5   rung 4 + LLM user profiles (user-profile / item-profile similarity)

Example:
    >>> results = run_seed(data, enriched, seed=0)                     # doctest: +SKIP
    >>> results.filter(pl.col("segment") == "cold items")             # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from enrich.downstream.als import ALSRecommender, history_vectors, with_rank
from enrich.downstream.enrichment import Enriched
from enrich.downstream.metrics import METRICS, coverage, ranking_metrics
from enrich.downstream.ranker import feature_columns, labels, ranker_features
from enrich.downstream.split import TemporalSplit, assert_before

RUNGS = ("0", "1", "2", "3", "3b", "4", "5")
RUNG_NAMES = {
    "0": "ALS only",
    "1": "LightGBM: IDs, popularity, user stats",
    "2": "+ raw text embeddings",
    "3": "+ LLM item profiles",
    "3b": "+ LLM item profiles with CF context (instead of 3)",
    "4": "+ LLM attributes as categoricals",
    "5": "+ LLM user profiles",
}
SEGMENTS = ("all", "warm items", "long-tail items", "cold items", "cold users")
COLD_USER_MAX = 3


@dataclass
class Period:
    """Candidates and everything known when one period starts."""

    name: str
    history: pl.DataFrame
    target: pl.DataFrame
    candidates: pl.DataFrame
    als: ALSRecommender


def candidates(
    split: TemporalSplit, period: str, enriched: Enriched, seed: int, k: int, factors: int
) -> Period:
    """ALS on the history before ``period``; top ``k`` per user with some history."""
    history = split.history(period)
    assert_before(history, "timestamp", split.start(period))
    target = split.validation if period == "validation" else split.test
    als = ALSRecommender(factors=factors, seed=seed).fit(history)
    als.place_items(enriched.raw)  # cold items reachable for every rung alike
    users = sorted(set(target["user_id"]) & set(als.users))
    return Period(period, history, target, als.recommend(users, k=k, exclude=history), als)


def rung_features(
    rung: str, period: Period, enriched: Enriched, seed: int
) -> tuple[pl.DataFrame, list[int], list[str]]:
    """The feature frame of ``rung`` for ``period``'s candidates."""
    sims: dict[str, tuple[pl.DataFrame, pl.DataFrame]] = {}
    reduced: dict[str, pl.DataFrame] = {}
    cats = None
    if rung in ("2", "3", "3b", "4", "5"):
        sims["text"] = (history_vectors(period.history, enriched.raw), enriched.raw)
        reduced["text"] = enriched.raw
    if rung in ("3", "4", "5"):
        sims["llm"] = (history_vectors(period.history, enriched.llm), enriched.llm)
        reduced["llm"] = enriched.llm
    if rung == "3b":
        sims["llm_cf"] = (history_vectors(period.history, enriched.llm_cf), enriched.llm_cf)
        reduced["llm_cf"] = enriched.llm_cf
    if rung in ("4", "5"):
        cats = enriched.attributes
    if rung == "5":
        sims["user_profile"] = (enriched.users[period.name], enriched.llm)  # type: ignore[index]
    return ranker_features(
        period.candidates,
        period.history,
        similarities=sims,
        reduced=reduced,
        categoricals=cats,
        seed=seed,
    )


def rank_with_lightgbm(
    rung: str, validation: Period, test: Period, enriched: Enriched, seed: int
) -> pl.DataFrame:
    """Train on the validation period's labels, rank the test period's candidates."""
    from lightgbm import LGBMRanker

    train, _, cats = rung_features(rung, validation, enriched, seed)
    y = labels(train, validation.target)
    keep = train.with_columns(pl.Series("y", y)).filter(pl.col("y").max().over("user_id") > 0)
    groups = keep.group_by("user_id", maintain_order=True).len()["len"].to_list()
    model = LGBMRanker(
        objective="lambdarank",
        n_estimators=200,
        learning_rate=0.05,
        num_leaves=31,
        min_child_samples=20,
        random_state=seed,
        n_jobs=2,
        verbose=-1,
    )
    columns = feature_columns(train)
    model.fit(
        keep.select(columns).to_pandas(),
        keep["y"].to_numpy(),
        group=groups,
        categorical_feature=cats or "auto",
    )
    frame, _, _ = rung_features(rung, test, enriched, seed)
    scores = model.predict(frame.select(columns).to_pandas())
    return with_rank(frame.select("user_id", "item_id").with_columns(pl.Series("score", scores)))


def segment_metrics(ranked: pl.DataFrame, test: Period) -> dict[str, pl.DataFrame]:
    """Per-user metrics in each segment (see :data:`SEGMENTS`)."""
    history, target = test.history, test.target
    users = set(ranked["user_id"]) | set(test.candidates["user_id"])
    relevant = target.filter(pl.col("user_id").is_in(list(users))).select("user_id", "item_id")
    popularity = (  # ties broken by id: the head/long-tail boundary is the same every run
        history.group_by("item_id").len().sort("len", "item_id", descending=[True, False])
    )
    head = set(popularity["item_id"].head(int(0.2 * popularity.height)).to_list())
    warm = set(popularity["item_id"].to_list())
    activity = history.group_by("user_id").len()
    cold_users = set(activity.filter(pl.col("len") <= COLD_USER_MAX)["user_id"].to_list())
    item = pl.col("item_id")
    subsets = {
        "all": relevant,
        "warm items": relevant.filter(item.is_in(list(warm))),
        "long-tail items": relevant.filter(item.is_in(list(warm - head))),
        "cold items": relevant.filter(~item.is_in(list(warm))),
        "cold users": relevant.filter(pl.col("user_id").is_in(list(cold_users))),
    }
    return {name: ranking_metrics(ranked, rel) for name, rel in subsets.items()}


def run_seed(
    split: TemporalSplit,
    enriched: Enriched,
    seed: int,
    rungs: tuple[str, ...] = RUNGS,
    k: int = 100,
    factors: int = 64,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(per-user metrics, summary)`` for one seed: per-user rows carry seed, rung, segment and
    one column per metric; the summary has the means, user counts and coverage."""
    validation = candidates(split, "validation", enriched, seed, k, factors)
    test = candidates(split, "test", enriched, seed, k, factors)
    catalogue = test.als.items
    per_user, summary = [], []
    for rung in rungs:
        if not _available(rung, enriched):
            continue
        ranked = (
            with_rank(test.candidates.select("user_id", "item_id", "score"))
            if rung == "0"
            else rank_with_lightgbm(rung, validation, test, enriched, seed)
        )
        cov = coverage(ranked, len(catalogue))
        for segment, frame in segment_metrics(ranked, test).items():
            tagged = frame.with_columns(
                pl.lit(seed).alias("seed"),
                pl.lit(rung).alias("rung"),
                pl.lit(segment).alias("segment"),
            )
            per_user.append(tagged)
            summary.append(
                {"seed": seed, "rung": rung, "segment": segment, "n_users": frame.height}
                | {m: float(frame[m].mean()) if frame.height else np.nan for m in METRICS}
                | {"coverage@10": cov}
            )
    return pl.concat(per_user), pl.DataFrame(summary)


def cold_item_maps(
    split: TemporalSplit, enriched: Enriched, seed: int, k: int = 100, factors: int = 64
) -> pl.DataFrame:
    """Cold items only: ALS with cold items placed by raw-text vs. LLM-profile maps, vs.
    popularity (which cannot reach them) — per-user metrics on the cold-item segment."""
    history = split.history("test")
    users = sorted(set(split.test["user_id"]) & set(history["user_id"]))
    systems: dict[str, pl.DataFrame] = {}
    als = ALSRecommender(factors=factors, seed=seed).fit(history)  # once: each map re-places
    for name, vectors in (
        ("ALS + raw-text map", enriched.raw),
        ("ALS + LLM-profile map", enriched.llm),
    ):
        if vectors is None:
            continue
        als.place_items(vectors)  # replaces the previous map's cold items
        systems[name] = als.recommend(users, k=k, exclude=history)
    popularity = history.group_by("item_id").len().sort("len", "item_id", descending=[True, False])
    systems["popularity"] = (
        pl.DataFrame({"user_id": users})
        .join(popularity.head(k + 200).select("item_id", pl.col("len").alias("score")), how="cross")
        .join(history.select("user_id", "item_id"), on=["user_id", "item_id"], how="anti")
        .pipe(with_rank)
        .filter(pl.col("rank") <= k)
    )
    warm = set(history["item_id"].to_list())
    relevant = split.test.filter(
        pl.col("user_id").is_in(users) & ~pl.col("item_id").is_in(list(warm))
    ).select("user_id", "item_id")
    frames = [
        ranking_metrics(ranked, relevant).with_columns(
            pl.lit(seed).alias("seed"), pl.lit(name).alias("system")
        )
        for name, ranked in systems.items()
    ]
    return pl.concat(frames)


def _available(rung: str, enriched: Enriched) -> bool:
    needs = {
        "3": enriched.llm,
        "3b": enriched.llm_cf,
        "4": enriched.attributes,
        "5": enriched.users,
    }
    return rung not in needs or needs[rung] is not None
