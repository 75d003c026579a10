"""The feature frame a LightGBM ``LGBMRanker`` (lambdarank) takes, built from candidates, the
history before the period, and enriched features — joins in polars, vector maths in numpy.

Features, by kind:
- base: ALS score, its z-score within the user's candidates (``als_z``: the re-ranker's starting
  point) and rank; item popularity (all history and its newest tenth), mean rating; user
  activity and mean rating;
- ``similarities``: cosine between a user vector and an item vector per name, e.g. the mean
  embedding of the user's history vs. the item's text or LLM-profile embedding, or the user's
  LLM profile vs. the item's profile;
- ``reduced``: item embeddings reduced by PCA to a few dimensions;
- ``categoricals``: item attributes (the LLM's mood, audience...) as LightGBM categoricals.
- ``facets``: controlled attributes (:class:`enrich.ItemProfile`'s choices and scales): each
  label as a categorical (``cat_f_*``), each list of labels multi-hot (``mh_*``), each scale as a
  number (``num_*``); and per user, how much of their history shares the candidate's labels
  (``aff_*``) and how far the candidate's scale is from their history's mean (``gap_*``).

Example:
    >>> frame, groups, cats = ranker_features(candidates, history, similarities={
    ...     "llm": (history_vectors(history, llm_items), llm_items)})     # doctest: +SKIP
    >>> LGBMRanker().fit(frame.select(feature_columns(frame)), labels, group=groups,
    ...                  categorical_feature=cats)                        # doctest: +SKIP
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl
from sklearn.decomposition import PCA

from enrich.embedding import normalize

KEYS = ("user_id", "item_id")
_NOT_WORD = re.compile(r"\W+")
TOP_CATEGORIES = 30


def ranker_features(
    candidates: pl.DataFrame,
    history: pl.DataFrame,
    *,
    similarities: dict[str, tuple[pl.DataFrame, pl.DataFrame]] | None = None,
    reduced: dict[str, pl.DataFrame] | None = None,
    categoricals: pl.DataFrame | None = None,
    facets: pl.DataFrame | None = None,
    pca_dims: int = 8,
    seed: int = 0,
) -> tuple[pl.DataFrame, list[int], list[str]]:
    """``(frame, group sizes, categorical columns)``; rows sorted by user then ALS rank.

    ``candidates``: ``user_id, item_id, score, rank``. ``history``: ``user_id, item_id, rating``
    before the period (nothing later may reach a feature). ``similarities``: name -> (user
    vectors ``user_id, embedding``, item vectors ``item_id, embedding``). ``reduced``: name ->
    item vectors. ``categoricals``: ``item_id`` plus string columns. ``facets``: ``item_id``
    plus label (string), label-list and numeric columns.
    """
    hist = history.select(
        pl.col("user_id").cast(pl.Utf8), pl.col("item_id").cast(pl.Utf8), "rating"
    )
    recent = _newest_tenth(history)
    items = hist.group_by("item_id").agg(
        pl.len().alias("item_pop"), pl.col("rating").mean().alias("item_mean_rating")
    )
    if recent is not None:
        items = items.join(recent, on="item_id", how="left")
    users = hist.group_by("user_id").agg(
        pl.len().alias("user_n"), pl.col("rating").mean().alias("user_mean_rating")
    )
    frame = (
        candidates.select(
            *KEYS, pl.col("score").alias("als_score"), pl.col("rank").alias("als_rank")
        )
        .join(items, on="item_id", how="left")
        .join(users, on="user_id", how="left")
        .with_columns(
            pl.col("^item_pop.*$").fill_null(0),
            pl.col("user_n").fill_null(0),
            (
                (pl.col("als_score") - pl.col("als_score").mean().over("user_id"))
                / (pl.col("als_score").std().over("user_id").fill_null(1.0) + 1e-9)
            ).alias("als_z"),
        )
        .sort("user_id", "als_rank")
    )
    for name, (user_vectors, item_vectors) in (similarities or {}).items():
        frame = frame.with_columns(
            pl.Series(f"sim_{name}", pair_cosine(frame, user_vectors, item_vectors))
        )
    for name, item_vectors in (reduced or {}).items():
        frame = frame.join(_pca(item_vectors, name, pca_dims, seed), on="item_id", how="left")
    cats: list[str] = []
    if categoricals is not None:
        coded = _codes(categoricals)
        cats = [c for c in coded.columns if c != "item_id"]
        frame = frame.join(coded, on="item_id", how="left")
    if facets is not None:
        frame, facet_cats = facet_features(frame, history, facets)
        cats += facet_cats
    frame = frame.sort("user_id", "als_rank")  # joins may reorder; groups must be contiguous
    groups = frame.group_by("user_id", maintain_order=True).len()["len"].to_list()
    return frame, groups, cats


def facet_features(
    frame: pl.DataFrame, history: pl.DataFrame, facets: pl.DataFrame
) -> tuple[pl.DataFrame, list[str]]:
    """``frame`` with the facet columns (see the module docstring), and its categorical ones.

    Example:
        >>> facets = pl.DataFrame({"item_id": ["a", "b"], "mood": ["dark", "funny"],
        ...                        "themes": [["war"], ["love", "war"]], "scale": [1, 5]})
        >>> pairs = pl.DataFrame({"user_id": ["u", "u"], "item_id": ["a", "b"]})
        >>> seen = pl.DataFrame({"user_id": ["u"], "item_id": ["a"]})
        >>> out, cats = facet_features(pairs, seen, facets)
        >>> out.select("item_id", "aff_mood", "aff_themes", "gap_scale").rows()
        [('a', 1.0, 1.0, 0.0), ('b', 0.0, 0.5, 4.0)]
    """
    facets = facets.with_columns(pl.col("item_id").cast(pl.Utf8))
    seen = history.select(
        pl.col("user_id").cast(pl.Utf8), pl.col("item_id").cast(pl.Utf8)
    ).unique()  # an item seen twice is one item of the user's history
    n_seen = seen.group_by("user_id").len("n_seen")
    cats: list[str] = []
    for column, dtype in facets.schema.items():
        if column == "item_id":
            continue
        values = facets.select("item_id", pl.col(column).alias("label"))
        if isinstance(dtype, pl.List):
            values = values.explode("label")
        values = values.drop_nulls("label")
        if dtype == pl.Utf8 or isinstance(dtype, pl.List):
            coded = (
                _multi_hot(facets, column)
                if isinstance(dtype, pl.List)
                else _codes(facets.select("item_id", column), prefix="cat_f_")
            )
            cats += [c for c in coded.columns if c.startswith("cat_")]
            frame = frame.join(coded, on="item_id", how="left", maintain_order="left")
            frame = frame.join(
                _affinity(frame, seen, n_seen, values, column),
                on=list(KEYS),
                how="left",
                maintain_order="left",
            )
        elif dtype.is_numeric():
            mean = (
                seen.join(facets.select("item_id", column), on="item_id")
                .group_by("user_id")
                .agg(pl.col(column).mean().alias("_mean"))
            )
            frame = (
                frame.join(
                    facets.select("item_id", pl.col(column).alias(f"num_{column}")),
                    on="item_id",
                    how="left",
                    maintain_order="left",
                )
                .join(mean, on="user_id", how="left", maintain_order="left")
                .with_columns(
                    (pl.col(f"num_{column}") - pl.col("_mean")).abs().alias(f"gap_{column}")
                )
                .drop("_mean")
            )
    return frame, cats


def _affinity(
    frame: pl.DataFrame,
    seen: pl.DataFrame,
    n_seen: pl.DataFrame,
    values: pl.DataFrame,
    column: str,
) -> pl.DataFrame:
    """``user_id, item_id, aff_<column>``: the mean, over the candidate's labels, of the share of
    the user's history items carrying that label (0: none shares them). Null where it is
    unknown: a user without history, or a candidate without labels (no row here)."""
    share = (
        seen.join(values, on="item_id")
        .group_by("user_id", "label")
        .agg(pl.col("item_id").n_unique().alias("_hits"))
        .join(n_seen, on="user_id")
        .select("user_id", "label", (pl.col("_hits") / pl.col("n_seen")).alias("_share"))
    )
    return (
        frame.select(*KEYS)
        .unique()
        .join(values, on="item_id")
        .join(share, on=["user_id", "label"], how="left")
        .join(n_seen, on="user_id", how="left")
        .group_by(*KEYS)
        .agg(
            pl.when(pl.col("n_seen").first().is_not_null())
            .then(pl.col("_share").fill_null(0.0).mean())
            .alias(f"aff_{column}")
        )
    )


def _multi_hot(facets: pl.DataFrame, column: str) -> pl.DataFrame:
    """``item_id`` and one 0/1 column ``mh_<column>_<label>`` per label seen (labels that read
    the same once spaces become ``_`` get a number, so no two columns share a name)."""
    labels = sorted(facets[column].explode().drop_nulls().unique().to_list())
    names: dict[str, str] = {}
    for label in labels:
        slug = _NOT_WORD.sub("_", label)
        name = f"mh_{column}_{slug}"
        names[label] = name if name not in names.values() else f"{name}_{len(names)}"
    return facets.select(
        "item_id",
        *[
            pl.col(column).list.contains(label).fill_null(False).cast(pl.Int8).alias(names[label])
            for label in labels
        ],
    )


def _newest_tenth(history: pl.DataFrame) -> pl.DataFrame | None:
    """``item_id, item_pop_recent``: interactions in the newest tenth of ``history``."""
    if "timestamp" not in history.columns or not history.height:
        return None
    since = history["timestamp"].quantile(0.9, "lower")
    return (
        history.filter(pl.col("timestamp") >= since)
        .group_by(pl.col("item_id").cast(pl.Utf8))
        .len()
        .rename({"len": "item_pop_recent"})
    )


def feature_columns(frame: pl.DataFrame) -> list[str]:
    """Every column of a :func:`ranker_features` frame except the keys."""
    return [c for c in frame.columns if c not in KEYS]


def labels(frame: pl.DataFrame, period: pl.DataFrame) -> np.ndarray:
    """1 where the user interacted with the candidate during ``period``, else 0."""
    hits = period.select(pl.col("user_id").cast(pl.Utf8), pl.col("item_id").cast(pl.Utf8))
    return (
        frame.select(*KEYS)
        .join(
            hits.unique().with_columns(pl.lit(1).alias("y")),
            on=list(KEYS),
            how="left",
            maintain_order="left",
        )["y"]
        .fill_null(0)
        .to_numpy()
    )


def pair_cosine(
    pairs: pl.DataFrame, user_vectors: pl.DataFrame, item_vectors: pl.DataFrame
) -> np.ndarray:
    """Cosine between each pair's user vector and item vector (NaN where one is missing)."""
    u = normalize(np.asarray(user_vectors["embedding"].to_list(), dtype=np.float32))
    i = normalize(np.asarray(item_vectors["embedding"].to_list(), dtype=np.float32))
    u_row = _rows(pairs["user_id"], user_vectors["user_id"])
    i_row = _rows(pairs["item_id"], item_vectors["item_id"])
    out = np.full(pairs.height, np.nan, dtype=np.float32)
    ok = (u_row >= 0) & (i_row >= 0)
    out[ok] = np.einsum("ij,ij->i", u[u_row[ok]], i[i_row[ok]])
    return out


def _rows(keys: pl.Series, ids: pl.Series) -> np.ndarray:
    """Row of each key in ``ids`` (-1 where absent)."""
    ids = ids.cast(pl.Utf8)
    return (
        keys.cast(pl.Utf8)
        .replace_strict(ids, pl.int_range(len(ids), eager=True), default=-1)
        .to_numpy()
    )


def _pca(item_vectors: pl.DataFrame, name: str, dims: int, seed: int) -> pl.DataFrame:
    matrix = np.asarray(item_vectors["embedding"].to_list(), dtype=np.float32)
    reduced = PCA(n_components=min(dims, *matrix.shape), random_state=seed).fit_transform(matrix)
    return pl.DataFrame(
        {"item_id": item_vectors["item_id"].cast(pl.Utf8)}
        | {f"{name}_pc{j}": reduced[:, j] for j in range(reduced.shape[1])}
    )


def _codes(categoricals: pl.DataFrame, prefix: str = "cat_") -> pl.DataFrame:
    """Integer codes of the ``TOP_CATEGORIES`` commonest lowercased values (0: rare, missing)."""
    out = categoricals.select(pl.col("item_id").cast(pl.Utf8))
    for column in categoricals.columns:
        if column == "item_id":
            continue
        values = categoricals[column].cast(pl.Utf8).str.to_lowercase().str.strip_chars()
        counts = values.drop_nulls().value_counts()
        common = counts.sort(["count", column], descending=[True, False]).head(TOP_CATEGORIES)[
            column
        ]
        code = {v: j + 1 for j, v in enumerate(common.to_list())}
        out = out.with_columns(
            values.replace_strict(code, default=0, return_dtype=pl.Int32).alias(f"{prefix}{column}")
        )
    return out
