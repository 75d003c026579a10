"""Turning interaction logs into what the LLM reads about a user, strictly before ``as_of``.

Everything is polars expressions over the whole log; no per-user Python loop.

Example:
    >>> hist = verbalize(ratings, items, as_of=datetime(1998, 1, 1))    # doctest: +SKIP
    >>> hist.select("_key", "n_interactions", "recent").head(1)         # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import polars as pl

from enrich.errors import InputError
from enrich.inputs import KEY, to_polars
from enrich.timestamps import TimeLike, datetime_column, to_datetime

NO_HISTORY = datetime(1970, 1, 1)
"""``as_of`` of a profile built from no interaction at all (attributes only)."""


@dataclass(frozen=True)
class HistoryOptions:
    """What of a user's history the prompt shows; part of the prompt version."""

    recent: int = 10
    """The most recent N interactions (title and rating)."""
    liked: int = 5
    """The N highest-rated interactions at or above ``like_at``."""
    disliked: int = 3
    """The N lowest-rated interactions at or below ``dislike_at``."""
    like_at: float = 4.0
    dislike_at: float = 2.0
    cold_max: int = 2
    """Users with at most this many interactions are flagged ``is_cold``."""

    def as_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


DEFAULT_HISTORY = HistoryOptions()


@dataclass(frozen=True)
class Columns:
    user: str = "user_id"
    item: str = "item_id"
    time: str = "timestamp"
    rating: str | None = "rating"


def verbalize(
    interactions: Any,
    items: Any | None,
    *,
    as_of: TimeLike | None,
    cols: Columns = Columns(),
    item_text_cols: tuple[str, ...] = ("title",),
    users: Any | None = None,
    user_attr_cols: tuple[str, ...] = (),
    options: HistoryOptions = HistoryOptions(),
) -> pl.DataFrame:
    """One row per user: ``_key``, ``n_interactions``, ``as_of`` (newest interaction used),
    ``is_cold`` and the text fields the prompt shows (``history``, ``recent``, ``liked``,
    ``disliked``, ``about``; null where there is nothing to say)."""
    log = _checked(to_polars(interactions), cols)
    window = log if as_of is None else log.filter(pl.col(cols.time) < to_datetime(as_of, "as_of"))
    if items is not None:
        item_frame = to_polars(items)
        missing = [c for c in (cols.item, *item_text_cols) if c not in item_frame.columns]
        if missing:
            raise InputError(f"items frame lacks column(s) {missing}; it has {item_frame.columns}")
        label = pl.concat_str(
            [pl.col(c).cast(pl.Utf8) for c in item_text_cols], separator=", ", ignore_nulls=True
        )
        window = window.join(
            item_frame.select(pl.col(cols.item), label.alias("_label")), on=cols.item, how="left"
        )
    else:
        window = window.with_columns(pl.lit(None, pl.Utf8).alias("_label"))
    name = pl.coalesce("_label", pl.format("item {}", pl.col(cols.item)))
    shown = (
        pl.format("{} ({})", name, pl.col(cols.rating).round(1)) if cols.rating else name
    ).alias("_shown")
    window = window.with_columns(shown)
    aggs: list[pl.Expr] = [
        pl.len().alias("n_interactions"),
        pl.col(cols.time).max().alias("as_of"),
        pl.col("_shown")
        .sort_by(cols.time, descending=True)
        .head(options.recent)
        .str.join("; ")
        .alias("recent"),
    ]
    count = pl.format("{} interactions", pl.len())
    if cols.rating:
        r = pl.col(cols.rating)
        count = pl.format("{} interactions, average rating {}", pl.len(), r.mean().round(2))
        liked = pl.when(r >= options.like_at).then(pl.col("_shown"))
        disliked = pl.when(r <= options.dislike_at).then(pl.col("_shown"))
        aggs += [
            liked.sort_by(r, descending=True, nulls_last=True)
            .drop_nulls()
            .head(options.liked)
            .str.join("; ")
            .alias("liked"),
            disliked.sort_by(r, nulls_last=True)
            .drop_nulls()
            .head(options.disliked)
            .str.join("; ")
            .alias("disliked"),
        ]
    per_user = window.group_by(cols.user).agg(*aggs, count.alias("history"))
    everyone = log.select(cols.user).unique()
    if users is not None:
        people = to_polars(users)
        missing = [c for c in (cols.user, *user_attr_cols) if c not in people.columns]
        if missing:
            raise InputError(f"users frame lacks column(s) {missing}; it has {people.columns}")
        about = (
            pl.concat_str(
                [pl.format(f"{c}: {{}}", pl.col(c)) for c in user_attr_cols],
                separator=", ",
                ignore_nulls=True,
            )
            if user_attr_cols
            else pl.lit(None, pl.Utf8)
        )
        attrs = people.select(pl.col(cols.user), about.alias("about"))
        everyone = pl.concat([everyone, people.select(cols.user)]).unique()
    else:
        attrs = everyone.with_columns(pl.lit(None, pl.Utf8).alias("about"))
    out = (
        everyone.join(per_user, on=cols.user, how="left")
        .join(attrs, on=cols.user, how="left")
        .with_columns(
            pl.col("n_interactions").fill_null(0).cast(pl.Int32),
            pl.col("as_of").fill_null(NO_HISTORY).cast(pl.Datetime("us")),
            pl.col(cols.user).cast(pl.Utf8).alias(KEY),
            *[
                pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c)
                for c in ("recent", "liked", "disliked")
                if c in per_user.columns
            ],
        )
        .with_columns((pl.col("n_interactions") <= options.cold_max).alias("is_cold"))
        .sort(KEY)
    )
    for c in ("liked", "disliked"):
        if c not in out.columns:
            out = out.with_columns(pl.lit(None, pl.Utf8).alias(c))
    return out


def _checked(log: pl.DataFrame, cols: Columns) -> pl.DataFrame:
    needed = [c for c in (cols.user, cols.item, cols.time, cols.rating) if c]
    missing = [c for c in needed if c not in log.columns]
    if missing:
        raise InputError(
            f"interactions lack column(s) {missing}; they have {log.columns}. "
            "Name them with user_col=, item_col=, time_col=, rating_col= (None if unrated)"
        )
    log = datetime_column(log, cols.time)
    nulls = log.filter(pl.col(cols.user).is_null() | pl.col(cols.time).is_null()).height
    if nulls:
        raise InputError(
            f"{nulls} interaction(s) have a null {cols.user!r} or {cols.time!r}; drop them first"
        )
    return log
