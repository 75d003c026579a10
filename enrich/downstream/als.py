"""implicit-ALS as a candidate generator, with cold-start items placed in its factor space.

ALS cannot take side features. Two ways in for enriched features:
1. :meth:`ALSRecommender.place_items` fits a ridge map from text embedding to item factors on the
   warm items and applies it to the cold ones, so ALS scores them like any other item;
2. :func:`nearest_items` ranks items by cosine similarity to a user vector (a user profile
   embedding, or the mean of the embeddings of the few items the user touched), for users ALS
   cannot serve.

Example:
    >>> als = ALSRecommender(factors=64, seed=0).fit(split.train)          # doctest: +SKIP
    >>> als.place_items(item_vectors)                                      # doctest: +SKIP
    >>> candidates = als.recommend(users, k=100, exclude=split.train)      # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.linear_model import Ridge
from threadpoolctl import threadpool_limits

from enrich.embedding import normalize
from enrich.errors import EnrichError
from enrich.neighbours import VectorIndex, graph_pays, seen_by


class ALSRecommender:
    """implicit's ``AlternatingLeastSquares`` over string ids, with items added by embedding."""

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 2.0,
        iterations: int = 15,
        seed: int = 0,
    ) -> None:
        self.params = {
            "factors": factors,
            "regularization": regularization,
            "alpha": alpha,
            "iterations": iterations,
            "random_state": seed,
        }
        self.users: dict[str, int] = {}
        self.items: list[str] = []
        self.item_factors = np.zeros((0, factors), dtype=np.float32)
        self.user_factors = np.zeros((0, factors), dtype=np.float32)
        self.n_warm = 0

    def fit(self, interactions: pl.DataFrame) -> ALSRecommender:
        """Train on ``user_id, item_id`` pairs (each pair counts once)."""
        from implicit.cpu.als import AlternatingLeastSquares

        pairs = interactions.select(
            pl.col("user_id").cast(pl.Utf8), pl.col("item_id").cast(pl.Utf8)
        ).unique()
        users = pairs["user_id"].unique().sort()
        items = pairs["item_id"].unique().sort()
        self.users = {u: i for i, u in enumerate(users.to_list())}
        self.items = items.to_list()
        index = {v: i for i, v in enumerate(self.items)}
        rows = pairs["user_id"].replace_strict(self.users, return_dtype=pl.Int64).to_numpy()
        cols = pairs["item_id"].replace_strict(index, return_dtype=pl.Int64).to_numpy()
        matrix = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(users), len(items))
        )
        with threadpool_limits(1, "blas"):  # implicit's own threads do the work
            model = AlternatingLeastSquares(**self.params)
            model.fit(matrix, show_progress=False)
        self.user_factors = np.asarray(model.user_factors)
        self.item_factors = np.asarray(model.item_factors)
        self.n_warm = len(self.items)
        return self

    def place_items(self, vectors: pl.DataFrame, l2: float = 1.0) -> list[str]:
        """Add the items of ``vectors`` (``item_id, embedding``) that ALS never saw, at the
        factors a ridge map from embedding to factors (fitted on warm items) predicts.
        Returns the ids added."""
        ids = vectors["item_id"].cast(pl.Utf8).to_list()
        matrix = np.asarray(vectors["embedding"].to_list(), dtype=np.float32)
        known = {v: i for i, v in enumerate(self.items[: self.n_warm])}
        warm = [(known[v], j) for j, v in enumerate(ids) if v in known]
        if len(warm) < 10:
            raise EnrichError(
                f"only {len(warm)} of the embedded items are known to ALS; the map needs warm "
                "items with embeddings to learn from"
            )
        factor_rows, vector_rows = map(list, zip(*warm, strict=True))
        ridge = Ridge(alpha=l2).fit(matrix[vector_rows], self.item_factors[factor_rows])
        new = [j for j, v in enumerate(ids) if v not in known]
        self.items = self.items[: self.n_warm] + [ids[j] for j in new]
        placed = ridge.predict(matrix[new]).astype(np.float32) if new else None
        self.item_factors = (
            np.vstack([self.item_factors[: self.n_warm], placed])
            if placed is not None
            else self.item_factors[: self.n_warm]
        )
        return [ids[j] for j in new]

    def recommend(
        self, users: list[str], k: int = 100, exclude: pl.DataFrame | None = None
    ) -> pl.DataFrame:
        """Top ``k`` items per user ALS knows (``user_id, item_id, score, rank``), without the
        items each user has in ``exclude`` (``user_id, item_id``). Unknown users get no rows."""
        known = [u for u in users if u in self.users]
        if not known:
            return _ranked([], [], [])
        scores = self.user_factors[[self.users[u] for u in known]] @ self.item_factors.T
        _mask(scores, known, self.items, exclude)
        return top_k(scores, known, self.items, k)


def nearest_items(
    user_vectors: pl.DataFrame,
    item_vectors: pl.DataFrame,
    k: int = 100,
    exclude: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Top ``k`` items by cosine similarity to each user's vector (``user_id, embedding``):
    exact, or through an HNSW graph when that is faster for this many users and items
    (:func:`enrich.neighbours.graph_pays`)."""
    users = user_vectors["user_id"].cast(pl.Utf8).to_list()
    items = item_vectors["item_id"].cast(pl.Utf8).to_list()
    u = normalize(np.asarray(user_vectors["embedding"].to_list(), dtype=np.float32))
    i = normalize(np.asarray(item_vectors["embedding"].to_list(), dtype=np.float32))
    if graph_pays(len(users), len(items)):
        return _nearest_by_graph(users, u, items, i, k, exclude)
    scores = u @ i.T
    _mask(scores, users, items, exclude)
    return top_k(scores, users, items, k)


RECENT = 50
"""How many of a user's newest interactions :func:`history_vectors` averages."""


def recent_history(history: pl.DataFrame, recent: int = RECENT) -> pl.DataFrame:
    """Each user's ``recent`` newest interactions (all of them without a ``timestamp``)."""
    if "timestamp" not in history.columns:
        return history
    return (
        history.sort("timestamp", "item_id", descending=True)
        .group_by("user_id", maintain_order=True)
        .head(recent)
    )


def history_vectors(
    history: pl.DataFrame, item_vectors: pl.DataFrame, recent: int = RECENT
) -> pl.DataFrame:
    """Each user's mean item embedding (unit length) over their ``recent`` newest interactions
    in ``history`` (``user_id, item_id``, ``timestamp`` if any); items without a vector are
    left out."""
    joined = (
        recent_history(history, recent)
        .select(pl.col("user_id").cast(pl.Utf8), pl.col("item_id").cast(pl.Utf8))
        .join(item_vectors.select(pl.col("item_id").cast(pl.Utf8), "embedding"), on="item_id")
        .sort("user_id")
    )
    if not joined.height:
        return pl.DataFrame(schema={"user_id": pl.Utf8, "embedding": pl.List(pl.Float32)})
    users = joined["user_id"].to_numpy()
    matrix = np.asarray(joined["embedding"].to_list(), dtype=np.float32)
    names, starts, counts = np.unique(users, return_index=True, return_counts=True)
    means = normalize(np.add.reduceat(matrix, starts) / counts[:, None])
    return pl.DataFrame(
        {"user_id": names.tolist(), "embedding": means.tolist()},
        schema={"user_id": pl.Utf8, "embedding": pl.List(pl.Float32)},
    )


def top_by_count(history: pl.DataFrame) -> pl.DataFrame:
    """``item_id, len``: items by number of interactions in ``history``, most first; ties broken
    by id, so the order (and every boundary drawn on it) is the same on every run."""
    return history.group_by("item_id").len().sort("len", "item_id", descending=[True, False])


def _nearest_by_graph(
    users: list[str],
    u: np.ndarray,
    items: list[str],
    i: np.ndarray,
    k: int,
    exclude: pl.DataFrame | None,
) -> pl.DataFrame:
    seen = None if exclude is None else seen_by(exclude, users)
    found = VectorIndex(items, i, exact_below=0).search(u, k, exclude=seen)
    return _ranked(
        [user for user, (ids, _) in zip(users, found, strict=True) for _ in ids],
        [item for ids, _ in found for item in ids],
        [score for _, scores in found for score in scores],
    )


def _mask(
    scores: np.ndarray, users: list[str], items: list[str], exclude: pl.DataFrame | None
) -> None:
    if exclude is None or not exclude.height:
        return
    u_index = {u: i for i, u in enumerate(users)}
    i_index = {v: i for i, v in enumerate(items)}
    pairs = exclude.select(pl.col("user_id").cast(pl.Utf8), pl.col("item_id").cast(pl.Utf8))
    pairs = pairs.filter(
        pl.col("user_id").is_in(list(u_index)) & pl.col("item_id").is_in(list(i_index))
    )
    rows = pairs["user_id"].replace_strict(u_index, return_dtype=pl.Int64).to_numpy()
    cols = pairs["item_id"].replace_strict(i_index, return_dtype=pl.Int64).to_numpy()
    scores[rows, cols] = -np.inf


def top_k(scores: np.ndarray, users: list[str], items: list[str], k: int) -> pl.DataFrame:
    """Each user's ``k`` best items by ``scores`` (users x items; ``-inf`` never shown)."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    top, top_scores = np.take_along_axis(top, order, 1), np.take_along_axis(top_scores, order, 1)
    keep = np.isfinite(top_scores)
    item_array = np.asarray(items, dtype=object)
    return _ranked(
        np.repeat(np.asarray(users, dtype=object), k)[keep.ravel()].tolist(),
        item_array[top.ravel()][keep.ravel()].tolist(),
        top_scores.ravel()[keep.ravel()].tolist(),
    )


def _ranked(users: list, items: list, scores: list) -> pl.DataFrame:
    frame = pl.DataFrame(
        {"user_id": users, "item_id": items, "score": scores},
        schema={"user_id": pl.Utf8, "item_id": pl.Utf8, "score": pl.Float64},
    )
    return with_rank(frame)


def with_rank(scored: pl.DataFrame) -> pl.DataFrame:
    """``scored`` (``user_id, item_id, score``) with each user's ``rank`` (1 = highest score;
    equal scores ranked by item id, so a tie is broken the same way on every run, whatever
    order the rows came in), sorted by user and rank.

    >>> scored = pl.DataFrame({"user_id": ["u"] * 3, "item_id": ["c", "b", "a"],
    ...                        "score": [1.0, 2.0, 1.0]})
    >>> with_rank(scored)["item_id"].to_list()
    ['b', 'a', 'c']
    """
    ordered = scored.sort(
        ["user_id", "score", "item_id"], descending=[False, True, False], nulls_last=True
    )
    return ordered.with_columns(
        (pl.int_range(pl.len()).over("user_id") + 1).cast(pl.Int32).alias("rank")
    )
