"""The ablation ladder: does each enriched feature make the ranking better, per segment?

For each fold of a protocol (see :mod:`enrich.downstream.protocols`) and seed: implicit-ALS,
trained on what is known at each window's cut, gives every user's top-K candidates (cold items
placed in its factor space by their raw-text embedding, the same for every rung). Each rung is a
LightGBM lambdarank re-ranker with its own features, trained on the labels of the fold's
training windows and judged on the evaluated window. The re-ranker starts from ALS's ranking
(``init_score`` = the per-user z-score of ALS's score) and stops adding trees when the NDCG@10 of
held-out training users stops improving, so it learns what to add to ALS, not to replace it.

Rungs are data (:class:`Rung`): a rung names the features it adds, so a new rung is one more
entry, not a copy of the loop::

    def price_features(candidates: pl.DataFrame, window: Window) -> pl.DataFrame:
        # user_id, item_id and your columns, from what is known before window.start
        return candidates.select("user_id", "item_id").join(prices, on="item_id", how="left")

    my_rung = Rung("6", "+ my price features", features=("text", "llm"), extra=price_features)
    results = run_fold(fold, pool, seed=0, rungs=(*DEFAULT_RUNGS, my_rung))

Example:
    >>> protocol = make_protocol(data.interactions, "global")             # doctest: +SKIP
    >>> pool = Candidates(enriched, k=100)                               # doctest: +SKIP
    >>> per_user = run_fold(protocol.folds[0], pool, seed=0)             # doctest: +SKIP
    >>> per_user.filter(pl.col("segment") == "cold items")              # doctest: +SKIP
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl

from enrich.cores import available_cores
from enrich.downstream.als import ALSRecommender, history_vectors, top_by_count, with_rank
from enrich.downstream.enrichment import Enriched
from enrich.downstream.metrics import ranking_metrics
from enrich.downstream.protocols import Fold, Window, assert_before_cut
from enrich.downstream.ranker import feature_columns, labels, ranker_features

ExtraFeatures = Callable[[pl.DataFrame, Window], pl.DataFrame]
"""``(candidates, window) -> frame`` keyed by ``user_id, item_id``: a rung's own features,
built only from what ``window`` knows at its cut."""


@dataclass(frozen=True)
class Rung:
    """One step of the ladder: what the re-ranker may use.

    ``features``: kinds of item vectors (``text``: raw text, no LLM; ``llm``: LLM item
    profiles; ``llm_cf``: LLM profiles written with collaborative context), each as the cosine
    to the user's recent history and as a few PCA dimensions. ``categoricals``: the LLM's
    free-text attributes (:class:`enrich.schemas.FreeTextItemProfile`). ``facets``: the
    controlled attributes of :class:`enrich.ItemProfile` (choices, label lists and 1-5 scales,
    with the user's affinity to each: see :func:`enrich.downstream.ranker.facet_features`).
    ``user_profiles``: cosine of the LLM user profile and the LLM item profile.
    ``ranker=False``: the candidate generator's own order (rung 0).
    """

    id: str
    name: str
    ranker: bool = True
    features: tuple[str, ...] = ()
    categoricals: bool = False
    facets: bool = False
    user_profiles: bool = False
    extra: ExtraFeatures | None = None

    def available(self, enriched: Enriched) -> bool:
        """Whether ``enriched`` holds everything this rung reads."""
        needs = [enriched.vectors(k) for k in self.features]
        if self.categoricals:
            needs.append(enriched.attributes)
        if self.facets:
            needs.append(enriched.facets)
        if self.user_profiles:
            needs.append(enriched.users)
        return all(n is not None for n in needs)


DEFAULT_RUNGS = (
    Rung("0", "ALS only", ranker=False),
    Rung("1", "LightGBM on ALS: popularity, user stats"),
    Rung("2", "+ raw text embeddings", features=("text",)),
    Rung("3", "+ LLM item profiles", features=("text", "llm")),
    Rung("3b", "+ LLM item profiles with CF context (instead of 3)", features=("text", "llm_cf")),
    Rung("4", "+ LLM attributes as categoricals", features=("text", "llm"), categoricals=True),
    Rung(
        "4c",
        "+ controlled LLM attributes: choices, scales, user affinity (instead of 4)",
        features=("text", "llm"),
        facets=True,
    ),
    Rung(
        "5",
        "+ LLM user profiles",
        features=("text", "llm"),
        categoricals=True,
        user_profiles=True,
    ),
)
RUNGS = tuple(r.id for r in DEFAULT_RUNGS)
RUNG_NAMES = {r.id: r.name for r in DEFAULT_RUNGS}
SEGMENTS = ("all", "warm items", "long-tail items", "cold items", "cold users")
COLD_USER_MAX = 3


@dataclass(frozen=True)
class RankerSettings:
    """LightGBM's settings, sized for small data (a few hundred users per window)."""

    n_estimators: int = 400
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_child_samples: int = 50
    reg_lambda: float = 5.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    early_stopping: int = 40
    """Rounds without a better held-out NDCG@10 before training stops."""
    holdout: float = 0.2
    """Share of training users whose labels only decide when to stop."""


@dataclass
class Period:
    """A window's candidates and the ALS model that produced them."""

    window: Window
    candidates: pl.DataFrame
    als: ALSRecommender


@dataclass
class Candidates:
    """ALS fits and candidates per (window, seed, use), made once, shared by folds and rungs.

    A window the ranker *learns* from (``train=True``) also hides ``simulate_cold`` of the items
    its target touches from its history: they are placed by the text map like real cold items,
    so the ranker sees cold items that were chosen, as many as the evaluated window will hold
    (without it, the few held-out items chosen in training windows teach it to bury them).
    """

    enriched: Enriched
    k: int = 100
    factors: int = 64
    simulate_cold: float = 0.1
    periods: dict[tuple[str, int, bool], Period] = field(default_factory=dict)

    def get(self, window: Window, seed: int, train: bool = False) -> Period:
        key = (window.name, seed, train)
        if key not in self.periods:
            if train and self.simulate_cold:
                window = simulated_cold(window, self.simulate_cold, seed)
            self.periods[key] = candidates(window, self.enriched, seed, self.k, self.factors)
        return self.periods[key]


def simulated_cold(window: Window, share: float, seed: int) -> Window:
    """``window`` with ``share`` of the items its target touches (drawn with ``seed``) removed
    from its history: cold in this window only."""
    touched = window.target["item_id"].unique().sort()
    hidden = touched.sample(fraction=share, seed=seed).to_list()
    return replace(window, history=window.history.filter(~pl.col("item_id").is_in(hidden)))


def candidates(window: Window, enriched: Enriched, seed: int, k: int, factors: int) -> Period:
    """ALS on ``window``'s history; top ``k`` for each target user with some history."""
    assert_before_cut(window.history, "timestamp", window)
    als = ALSRecommender(factors=factors, seed=seed).fit(window.history)
    als.place_items(enriched.raw)  # cold items reachable for every rung alike
    users = sorted(set(window.target["user_id"]) & set(als.users))
    return Period(window, als.recommend(users, k=k, exclude=window.history), als)


def rung_features(rung: Rung, period: Period, enriched: Enriched, seed: int) -> pl.DataFrame:
    """The feature frame of ``rung`` for ``period``'s candidates (rows by user, ALS rank)."""
    history = period.window.history
    sims = {
        kind: (history_vectors(history, enriched.vectors(kind)), enriched.vectors(kind))
        for kind in rung.features
    }
    if rung.user_profiles:
        users = enriched.users[period.window.name]  # type: ignore[index]
        sims["user_profile"] = (users, enriched.llm)
    frame, _, _ = ranker_features(
        period.candidates,
        history,
        similarities=sims,  # type: ignore[arg-type]
        reduced={kind: enriched.vectors(kind) for kind in rung.features},  # type: ignore[misc]
        categoricals=enriched.attributes if rung.categoricals else None,
        facets=enriched.facets if rung.facets else None,
        seed=seed,
    )
    if rung.extra is not None:
        frame = frame.join(rung.extra(period.candidates, period.window), on=["user_id", "item_id"])
    return frame


def rank(
    rung: Rung,
    fold: Fold,
    pool: Candidates,
    seed: int,
    settings: RankerSettings = RankerSettings(),
) -> pl.DataFrame:
    """``user_id, item_id, score, rank`` of the evaluated window's candidates under ``rung``."""
    test = pool.get(fold.test, seed)
    if not rung.ranker:
        return with_rank(test.candidates.select("user_id", "item_id", "score"))
    frames = []
    for window in fold.train:
        frame = rung_features(rung, pool.get(window, seed, train=True), pool.enriched, seed)
        frames.append(
            frame.with_columns(
                pl.Series("y", labels(frame, window.target)),
                pl.lit(window.name).alias("_window"),
            )
        )
    train = pl.concat(frames, how="diagonal_relaxed")
    test_frame = rung_features(rung, test, pool.enriched, seed)
    columns = feature_columns(test_frame)
    scores = _fit_predict(train, test_frame, columns, _categoricals(test_frame), seed, settings)
    return with_rank(test_frame.select("user_id", "item_id").with_columns(score=scores))


def _categoricals(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("cat_")]


def _fit_predict(
    train: pl.DataFrame,
    test: pl.DataFrame,
    columns: list[str],
    cats: list[str],
    seed: int,
    settings: RankerSettings,
) -> np.ndarray:
    """LightGBM lambdarank from ALS's per-user z-score; early stopping on held-out users.
    Falls back to ALS's order when the training windows hold too few users with a positive."""
    import lightgbm as lgb

    group = ["_window", "user_id"]
    useful = train.filter(pl.col("y").max().over(group) > 0)
    held = [  # a user's every window on one side: held-out users are users never fitted on
        u
        for u in useful["user_id"].unique().to_list()
        if zlib.crc32(f"{seed}:{u}".encode()) % 1000 < settings.holdout * 1000
    ]
    useful = useful.with_columns(pl.col("user_id").is_in(held).alias("_held"))
    fit, stop = useful.filter(~pl.col("_held")), useful.filter(pl.col("_held"))
    if fit.select(pl.struct(group).n_unique()).item() < 20 or not stop.height:
        return test["als_z"].to_numpy()

    def parts(frame: pl.DataFrame) -> tuple:
        sizes = frame.group_by(group, maintain_order=True).len()["len"].to_list()
        return frame.select(columns).to_pandas(), frame["y"].to_numpy(), sizes, frame["als_z"]

    x_fit, y_fit, g_fit, i_fit = parts(fit)
    x_stop, y_stop, g_stop, i_stop = parts(stop)
    model = lgb.LGBMRanker(
        objective="lambdarank",
        n_estimators=settings.n_estimators,
        learning_rate=settings.learning_rate,
        num_leaves=settings.num_leaves,
        min_child_samples=settings.min_child_samples,
        reg_lambda=settings.reg_lambda,
        subsample=settings.subsample,
        subsample_freq=1,
        colsample_bytree=settings.colsample_bytree,
        random_state=seed,
        n_jobs=available_cores(),
        verbose=-1,
    )
    model.fit(
        x_fit,
        y_fit,
        group=g_fit,
        init_score=i_fit.to_numpy(),
        eval_X=(x_stop,),
        eval_y=(y_stop,),
        eval_group=[g_stop],
        eval_init_score=[i_stop.to_numpy()],
        eval_at=[10],
        categorical_feature=cats or "auto",
        callbacks=[lgb.early_stopping(settings.early_stopping, verbose=False)],
    )
    raw = model.predict(test.select(columns).to_pandas(), num_iteration=model.best_iteration_)
    return test["als_z"].to_numpy() + raw


def segment_metrics(ranked: pl.DataFrame, period: Period) -> dict[str, pl.DataFrame]:
    """Per-user metrics in each segment (see :data:`SEGMENTS`) of ``period``'s window: every
    target user ALS could rank; items cold, long-tail or warm by the window's history."""
    history, target = period.window.history, period.window.target
    users = set(period.candidates["user_id"])
    relevant = target.filter(pl.col("user_id").is_in(list(users))).select("user_id", "item_id")
    popularity = top_by_count(history)  # ties broken by id: the same boundary every run
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


def run_fold(
    fold: Fold,
    pool: Candidates,
    seed: int,
    rungs: tuple[Rung, ...] = DEFAULT_RUNGS,
    settings: RankerSettings = RankerSettings(),
) -> pl.DataFrame:
    """Per-user metrics of every available rung on ``fold``'s evaluated window: one row per
    (rung, segment, user) with ``seed``, ``window`` and one column per metric."""
    test = pool.get(fold.test, seed)
    per_user = []
    for rung in rungs:
        if not rung.available(pool.enriched):
            continue
        ranked = rank(rung, fold, pool, seed, settings)
        for segment, frame in segment_metrics(ranked, test).items():
            per_user.append(
                frame.with_columns(
                    pl.lit(seed).alias("seed"),
                    pl.lit(fold.test.name).alias("window"),
                    pl.lit(rung.id).alias("rung"),
                    pl.lit(segment).alias("segment"),
                )
            )
    return pl.concat(per_user)


def cold_item_maps(fold: Fold, pool: Candidates, seed: int) -> pl.DataFrame:
    """Cold items only: ALS with cold items placed by raw-text vs. LLM-profile maps, vs.
    popularity (which cannot reach them) — per-user metrics on the cold-item segment."""
    window, enriched, k = fold.test, pool.enriched, pool.k
    history = window.history
    users = window.known_users()
    systems: dict[str, pl.DataFrame] = {}
    als = ALSRecommender(factors=pool.factors, seed=seed).fit(history)  # each map re-places
    for name, vectors in (
        ("ALS + raw-text map", enriched.raw),
        ("ALS + LLM-profile map", enriched.llm),
    ):
        if vectors is None:
            continue
        als.place_items(vectors)  # replaces the previous map's cold items
        systems[name] = als.recommend(users, k=k, exclude=history)
    popularity = top_by_count(history)
    systems["popularity"] = (
        pl.DataFrame({"user_id": users})
        .join(popularity.head(k + 200).select("item_id", pl.col("len").alias("score")), how="cross")
        .join(history.select("user_id", "item_id"), on=["user_id", "item_id"], how="anti")
        .pipe(with_rank)
        .filter(pl.col("rank") <= k)
    )
    warm = set(history["item_id"].to_list())
    relevant = window.target.filter(
        pl.col("user_id").is_in(users) & ~pl.col("item_id").is_in(list(warm))
    ).select("user_id", "item_id")
    frames = [
        ranking_metrics(ranked, relevant).with_columns(
            pl.lit(seed).alias("seed"),
            pl.lit(window.name).alias("window"),
            pl.lit(name).alias("system"),
        )
        for name, ranked in systems.items()
    ]
    return pl.concat(frames)
