"""Readers for the MovieLens files users and tests point at (never copied into the project).

Example:
    >>> items = load_ml100k_items(find_data_dir("ml-100k"))
    >>> items.columns
    ['item_id', 'title', 'release_date', 'genres']
"""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import polars as pl

from enrich.config import Environment
from enrich.errors import InputError

ML100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]


def find_data_dir(name: str = "ml-100k") -> Path | None:
    """``$ENRICH_DATA/<name>`` when ``ENRICH_DATA`` is set (and only there: a folder that was
    named but lacks the data is not replaced by another one), else ``../shared/data/<name>``
    (from here or the project). None when not found."""
    named = Environment().data
    roots = (
        [str(named)]
        if named
        else [str(Path.cwd() / "../shared/data"), str(Path(__file__).parents[2] / "shared/data")]
    )
    for root in roots:
        candidate = Path(root) / name
        if candidate.is_dir():
            return candidate.resolve()
    return None


def not_found_message(name: str) -> str:
    """What to tell a user whose MovieLens folder was not found."""
    named = Environment().data
    where = f"ENRICH_DATA={named} holds no {name}/ folder" if named else f"{name} not found"
    return (
        f"{where}: set ENRICH_DATA to the folder that holds {name}/ (get it from "
        "https://grouplens.org/datasets/movielens/)"
    )


def _require(path: str | Path, name: str) -> Path:
    file = Path(path) / name
    if not file.exists():
        raise InputError(
            f"{file} not found: point --data at a MovieLens folder (get ml-100k from "
            "https://grouplens.org/datasets/movielens/100k/)"
        )
    return file


def load_ml100k_items(path: str | Path) -> pl.DataFrame:
    """u.item (latin-1, pipe-separated) with the 19 genre flags turned into ``A|B|C`` names."""
    text = _require(path, "u.item").read_bytes().decode("latin-1")
    cols = ["item_id", "title", "release_date", "video_release_date", "url", *ML100K_GENRES]
    raw = pl.read_csv(
        io.StringIO(text),
        separator="|",
        has_header=False,
        new_columns=cols,
        quote_char=None,
        schema_overrides={"video_release_date": pl.Utf8, "url": pl.Utf8},
    )
    genres = pl.concat_str(
        [pl.when(pl.col(g) == 1).then(pl.lit(g)) for g in ML100K_GENRES],
        separator="|",
        ignore_nulls=True,
    )
    return raw.select(
        pl.col("item_id").cast(pl.Int64), "title", "release_date", genres.alias("genres")
    )


def load_ml100k_ratings(path: str | Path) -> pl.DataFrame:
    """u.data as ``user_id, item_id, rating, timestamp`` (timestamp as a datetime)."""
    return pl.read_csv(
        _require(path, "u.data"),
        separator="\t",
        has_header=False,
        new_columns=["user_id", "item_id", "rating", "ts"],
    ).select(
        pl.col("user_id").cast(pl.Int64),
        pl.col("item_id").cast(pl.Int64),
        pl.col("rating").cast(pl.Float64),
        pl.from_epoch("ts", time_unit="s").alias("timestamp"),
    )


def load_ml100k_users(path: str | Path) -> pl.DataFrame:
    """u.user as ``user_id, age, gender, occupation, zip_code``."""
    return pl.read_csv(
        _require(path, "u.user"),
        separator="|",
        has_header=False,
        new_columns=["user_id", "age", "gender", "occupation", "zip_code"],
        schema_overrides={"zip_code": pl.Utf8},
    ).with_columns(pl.col("user_id").cast(pl.Int64))


def load_latest_small_items(path: str | Path, tags_before: datetime | None = None) -> pl.DataFrame:
    """movies.csv with the users' tags gathered per movie (``tags``: distinct, comma-joined);
    with ``tags_before``, only tags given before that time (no later data in item text)."""
    movies = pl.read_csv(_require(path, "movies.csv")).rename({"movieId": "item_id"})
    tags = pl.read_csv(_require(path, "tags.csv"))
    if tags_before is not None:
        tags = tags.filter(pl.from_epoch("timestamp", time_unit="s") < tags_before)
    tags = (
        tags.group_by("movieId")
        .agg(pl.col("tag").str.to_lowercase().unique().sort().str.join(", ").alias("tags"))
        .rename({"movieId": "item_id"})
    )
    return movies.join(tags, on="item_id", how="left", maintain_order="left")


def load_latest_small_ratings(path: str | Path) -> pl.DataFrame:
    return pl.read_csv(_require(path, "ratings.csv")).select(
        pl.col("userId").alias("user_id"),
        pl.col("movieId").alias("item_id"),
        pl.col("rating").cast(pl.Float64),
        pl.from_epoch("timestamp", time_unit="s"),
    )


def load_sample_catalogue() -> pl.DataFrame:
    """The small catalogue shipped with enrich (written for it; free to use)."""
    return pl.read_csv(Path(__file__).parent / "data" / "sample_catalogue.csv")
