"""A single global temporal split with held-out cold items, and the guard that keeps later data
out. (The evaluation's protocols — several windows, rolling cut-offs, leave-last — are in
:mod:`enrich.downstream.protocols`; this split is the simplest case, for quick experiments.)

Interactions are cut by time into train / validation / test (the same instants for every user,
as a nightly job sees them). A share of items is held out of train and validation entirely, so
they are cold in the test period. Every feature built for a period must come from data before its
start: :func:`assert_before` checks it and raises on leakage.

Example:
    >>> split = temporal_split(ratings, validation=0.1, test=0.1, cold_items=0.1, seed=0)
    ...                                                           # doctest: +SKIP
    >>> assert_before(user_profiles, "as_of", split.test_start)   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from enrich.errors import EnrichError, InputError
from enrich.timestamps import datetime_column


@dataclass(frozen=True)
class TemporalSplit:
    """Interactions by period. ``train`` and ``validation`` hold no cold item."""

    train: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame
    validation_start: datetime
    test_start: datetime
    cold_items: frozenset[str]
    """Items held out of train and validation (ids as strings)."""

    def history(self, period: str) -> pl.DataFrame:
        """What is known when ``period`` ("validation" or "test") starts."""
        if period == "validation":
            return self.train
        if period == "test":
            return pl.concat([self.train, self.validation])
        raise EnrichError(f"period must be 'validation' or 'test', not {period!r}")


def temporal_split(
    ratings: pl.DataFrame,
    *,
    validation: float = 0.1,
    test: float = 0.1,
    cold_items: float = 0.1,
    seed: int = 0,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str = "timestamp",
) -> TemporalSplit:
    """Split ``ratings`` at the global time quantiles ``1 - validation - test`` and ``1 - test``.

    ``cold_items`` of the items (drawn with ``seed``) lose all their train and validation
    interactions; their test interactions stay, so they are cold-start items there.
    """
    missing = [c for c in (user_col, item_col, time_col) if c not in ratings.columns]
    if missing:
        raise InputError(f"ratings lack column(s) {missing}; have {ratings.columns}")
    if not 0 < validation < 1 or not 0 < test < 1 or validation + test >= 1:
        raise InputError(f"validation ({validation}) and test ({test}) must be shares below 1")
    frame = (
        datetime_column(ratings, time_col)  # epoch seconds become datetimes, as everywhere
        .with_columns(
            pl.col(user_col).cast(pl.Utf8).alias("user_id"),
            pl.col(item_col).cast(pl.Utf8).alias("item_id"),
            pl.col(time_col).alias("timestamp"),
        )
        .sort("timestamp", "user_id", "item_id")
    )
    times = frame["timestamp"]
    validation_start = times.quantile(1 - validation - test, "lower")
    test_start = times.quantile(1 - test, "lower")
    items = frame["item_id"].unique().sort()
    cold = (
        frozenset(items.sample(fraction=cold_items, seed=seed).to_list())
        if cold_items
        else frozenset()
    )
    warm = ~pl.col("item_id").is_in(list(cold))
    return TemporalSplit(
        train=frame.filter((pl.col("timestamp") < validation_start) & warm),
        validation=frame.filter(
            pl.col("timestamp").is_between(validation_start, test_start, "left") & warm
        ),
        test=frame.filter(pl.col("timestamp") >= test_start),
        validation_start=validation_start,
        test_start=test_start,
        cold_items=cold,
    )


def assert_before(frame: pl.DataFrame, column: str, start: datetime) -> None:
    """Raise if any row of ``frame`` has ``column`` at or after ``start`` (leakage)."""
    late = frame.filter(pl.col(column) >= start)
    if late.height:
        raise EnrichError(
            f"leakage: {late.height} row(s) have {column} >= {start} (first: {late.row(0)}); "
            "features for a period may only use data from before it starts"
        )
