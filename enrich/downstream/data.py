"""Any interaction log and catalogue, in the one form the evaluation reads — with every change
made to them counted, never silent.

The canonical log has ``user_id`` and ``item_id`` (text), ``timestamp`` (naive UTC datetime)
and ``rating`` (float; 1.0 for implicit feedback). What :func:`eval_data` does to the input:

- times: datetimes, dates, ISO strings or unix epoch seconds (see :mod:`enrich.timestamps`);
- null user, item or time: refused, naming the column and the first row (nothing is guessed);
- repeated events of a user with an item (plays, clicks): one interaction, at the first event,
  with the latest rating for explicit feedback; counted as ``duplicate_events``;
- interactions with items the catalogue lacks: kept (they are real behaviour), the items have
  no text; counted as ``interactions_with_unknown_items`` and ``unknown_items``;
- catalogue items whose text columns are all empty or markup-free nothing: kept, no text
  vector (they cannot be placed as cold items); counted as ``items_without_text``.

MovieLens is a preset built on the same path (:func:`movielens`).

Example:
    >>> import polars as pl
    >>> log = pl.DataFrame({"uid": ["a", "a", "b"], "sku": [7, 7, 8], "t": [10, 20, 30]})
    >>> cat = pl.DataFrame({"sku": [7], "title": ["Red kettle"]})
    >>> data = eval_data(log, cat, user_col="uid", item_col="sku", time_col="t",
    ...                  text_cols=("title",))
    >>> data.counts["duplicate_events"], data.counts["unknown_items"], data.implicit
    (1, 1, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from enrich.errors import InputError
from enrich.inputs import to_polars
from enrich.prompts import clean_text
from enrich.timestamps import datetime_column


@dataclass(frozen=True)
class EvalData:
    """An interaction log and its catalogue, canonical (see the module docstring)."""

    interactions: pl.DataFrame
    """``user_id, item_id, timestamp, rating``: one row per (user, item), sorted by time."""
    items: pl.DataFrame
    """``item_id`` and the text columns (strings), one row per catalogue or log item."""
    text_cols: tuple[str, ...]
    name: str = "custom"
    implicit: bool = False
    """No rating column: every interaction is a positive (rating 1.0)."""
    users: pl.DataFrame | None = None
    """``user_id`` and ``user_attr_cols``, for users with no history (None: none given)."""
    user_attr_cols: tuple[str, ...] = ()
    group_cols: tuple[str, ...] = ()
    """Attributes the group-popularity baseline groups new users by (numbers in quartiles)."""
    domain: str = ""
    """What the items are ("movie"), for prompts; empty: just "items"."""
    tags: pl.DataFrame | None = None
    """Item text that accrues over time (``item_id, tag, timestamp``): joined to the item text
    only up to the evaluation's earliest cut-off (:meth:`items_before`)."""
    counts: dict[str, int] = field(default_factory=dict)
    """What was done to the input, by name (rows in, duplicates collapsed, unknown items...)."""

    def items_before(self, start: datetime | None) -> pl.DataFrame:
        """The catalogue with the tags given before ``start`` (all items kept)."""
        if self.tags is None:
            return self.items
        tags = self.tags if start is None else self.tags.filter(pl.col("timestamp") < start)
        joined = tags.group_by("item_id").agg(
            pl.col("tag").str.to_lowercase().unique().sort().str.join(", ").alias("tags")
        )
        return self.items.join(joined, on="item_id", how="left", maintain_order="left")


def eval_data(
    interactions: Any,
    items: Any | None = None,
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str = "timestamp",
    rating_col: str | None = None,
    item_id_col: str | None = None,
    text_cols: tuple[str, ...] | None = None,
    users: Any | None = None,
    user_attr_cols: tuple[str, ...] = (),
    name: str = "custom",
    domain: str = "",
) -> EvalData:
    """Canonicalize a log (polars, pandas or Arrow) and its catalogue for the evaluation.

    ``item_id_col``: the catalogue's id column (default: ``item_col``). ``text_cols``: what the
    embedder and the LLM read of an item (default: every string column of the catalogue but the
    id). ``rating_col=None``: implicit feedback. ``users``/``user_attr_cols``: attributes of
    users (e.g. age, country) that serve users with no history.
    """
    log = to_polars(interactions)
    needed = [c for c in (user_col, item_col, time_col, rating_col) if c]
    missing = [c for c in needed if c not in log.columns]
    if missing:
        raise InputError(
            f"interactions lack column(s) {missing}; they have {log.columns}. Name them with "
            "--user-col/--item-col/--time-col/--rating-col (user_col=... in Python)"
        )
    for col in needed:
        nulls = log[col].is_null()
        if nulls.any():
            raise InputError(
                f"interactions: {int(nulls.sum())} row(s) have a null {col!r} (first: row "
                f"{int(nulls.arg_true()[0])}); drop or fill them before evaluating"
            )
    log = datetime_column(log, time_col)
    rating = pl.col(rating_col).cast(pl.Float64) if rating_col else pl.lit(1.0)
    canonical = log.select(
        pl.col(user_col).cast(pl.Utf8).alias("user_id"),
        pl.col(item_col).cast(pl.Utf8).alias("item_id"),
        pl.col(time_col).alias("timestamp"),
        rating.alias("rating"),
    ).sort("timestamp", "user_id", "item_id")
    deduped = canonical.group_by("user_id", "item_id", maintain_order=True).agg(
        pl.col("timestamp").first(), pl.col("rating").last()
    )
    catalogue, text_cols, no_text = _catalogue(items, item_id_col or item_col, text_cols)
    known = set(catalogue["item_id"].to_list())
    unknown = deduped.filter(~pl.col("item_id").is_in(list(known)))
    if unknown.height:  # items the catalogue lacks: kept, without text
        extra = pl.DataFrame({"item_id": unknown["item_id"].unique().sort()})
        catalogue = pl.concat([catalogue, extra], how="diagonal_relaxed")
    people = None
    if users is not None:
        people = to_polars(users)
        lacking = [c for c in (user_col, *user_attr_cols) if c not in people.columns]
        if lacking:
            raise InputError(
                f"users lack column(s) {lacking}; they have {people.columns} (the id column is "
                "named like the log's user column)"
            )
        people = people.select(pl.col(user_col).cast(pl.Utf8).alias("user_id"), *user_attr_cols)
    counts = {
        "events_in": log.height,
        "duplicate_events": canonical.height - deduped.height,
        "interactions": deduped.height,
        "users": deduped["user_id"].n_unique(),
        "items_in_log": deduped["item_id"].n_unique(),
        "catalogue_items": len(known),
        "unknown_items": unknown["item_id"].n_unique(),
        "interactions_with_unknown_items": unknown.height,
        "items_without_text": no_text + unknown["item_id"].n_unique(),
    }
    return EvalData(
        interactions=deduped.sort("timestamp", "user_id", "item_id"),
        items=catalogue,
        text_cols=text_cols,
        name=name,
        implicit=rating_col is None,
        users=people,
        user_attr_cols=tuple(user_attr_cols),
        group_cols=tuple(user_attr_cols[:2]),
        domain=domain,
        counts=counts,
    )


def _catalogue(
    items: Any | None, id_col: str, text_cols: tuple[str, ...] | None
) -> tuple[pl.DataFrame, tuple[str, ...], int]:
    """``(item_id + text columns, the text columns, items without any text)``."""
    if items is None:
        return pl.DataFrame(schema={"item_id": pl.Utf8}), (), 0
    frame = to_polars(items)
    if id_col not in frame.columns:
        raise InputError(
            f"items lack the id column {id_col!r}; they have {frame.columns}. Name it with "
            "--item-id-col (item_id_col=...)"
        )
    if text_cols is None:
        text_cols = tuple(c for c, t in frame.schema.items() if c != id_col and t == pl.Utf8)
    missing = [c for c in text_cols if c not in frame.columns]
    if missing:
        raise InputError(f"items lack text column(s) {missing}; they have {frame.columns}")
    duplicated = frame[id_col].is_duplicated()
    if duplicated.any():
        raise InputError(
            f"items: id {frame[id_col][int(duplicated.arg_true()[0])]!r} appears more than once "
            f"in {id_col!r} ({int(duplicated.sum())} rows); keep one row per item"
        )
    out = frame.select(
        pl.col(id_col).cast(pl.Utf8).alias("item_id"),
        *[pl.col(c).cast(pl.Utf8).str.strip_chars().replace("", None).alias(c) for c in text_cols],
    )
    empty = out.select(pl.all_horizontal(pl.col(c).is_null() for c in text_cols)).to_series()
    return out, tuple(text_cols), int(empty.sum()) if text_cols else out.height


def has_text(items: pl.DataFrame, text_cols: tuple[str, ...]) -> pl.Expr:
    """True where an item has some text in ``text_cols`` once cleaned (markup alone is none)."""
    if not text_cols:
        return pl.lit(False)
    cleaned = (
        pl.col(c).cast(pl.Utf8).map_elements(clean_text, return_dtype=pl.Utf8, skip_nulls=True)
        for c in text_cols
    )
    return pl.any_horizontal(c.str.len_chars().fill_null(0) > 0 for c in cleaned)


def movielens(name: str = "ml-100k", folder: str | Path | None = None) -> EvalData:
    """A MovieLens dataset as :class:`EvalData` (ratings explicit; ml-100k with user
    attributes; ml-latest-small with its user tags as timed item text)."""
    from enrich import movielens as ml

    path = Path(folder) if folder is not None else ml.find_data_dir(name)
    if path is None or not path.is_dir():
        raise InputError(ml.not_found_message(name))
    if name == "ml-100k":
        data = eval_data(
            ml.load_ml100k_ratings(path),
            ml.load_ml100k_items(path),
            rating_col="rating",
            text_cols=("title", "genres"),
            users=ml.load_ml100k_users(path),
            user_attr_cols=("age", "gender", "occupation"),
            name=name,
            domain="movie",
        )
        return _replace(data, group_cols=("gender", "age"))
    if name == "ml-latest-small":
        tags = pl.read_csv(path / "tags.csv").select(
            pl.col("movieId").cast(pl.Utf8).alias("item_id"),
            pl.col("tag").cast(pl.Utf8),
            pl.from_epoch("timestamp", time_unit="s"),
        )
        data = eval_data(
            ml.load_latest_small_ratings(path),
            ml.load_latest_small_items(path, tags_before=datetime(1900, 1, 1)).drop("tags"),
            rating_col="rating",
            text_cols=("title", "genres"),
            name=name,
            domain="movie",
        )
        return _replace(data, tags=tags, text_cols=(*data.text_cols, "tags"))
    raise InputError(f"unknown dataset {name!r}; presets: ml-100k, ml-latest-small")


def _replace(data: EvalData, **changes: Any) -> EvalData:
    from dataclasses import replace

    return replace(data, **changes)
