"""Users' change detection over an interaction log read in batches, against the whole-log path."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

import enrich
from connectors import FileSource
from enrich.errors import InputError
from enrich.movielens import load_ml100k_ratings, load_ml100k_users
from enrich.testing import HashEmbedder, ScriptedChat
from enrich.user_changes import changed_users
from enrich.user_profiles import pending_users

LIKES = {"summary": "Likes dramas.", "liked": ["drama"], "disliked": [], "keywords": ["film"]}


def _llm() -> ScriptedChat:
    return ScriptedChat(script=lambda prompt, attempt: LIKES)


@pytest.fixture(scope="module")
def log(ml100k: Path) -> pl.DataFrame:
    """60 ML-100K users' ratings, shuffled: a log not sorted by user, as logs come."""
    ratings = load_ml100k_ratings(ml100k).filter(pl.col("user_id") <= 60)
    return ratings.sample(fraction=1.0, shuffle=True, seed=7)


def test_batched_detection_finds_what_the_whole_log_finds(tmp_path: Path, log, ml_items) -> None:
    store = str(tmp_path / "f.duckdb")
    profiled = log.filter(pl.col("user_id") <= 40)
    enrich.profile_users(profiled, ml_items, store=store, llm=_llm(), embedder=HashEmbedder())
    newer = log.filter(pl.col("user_id").is_in([3, 17])).group_by("user_id").head(1)
    tonight = pl.concat([log, newer.with_columns(pl.col("timestamp").dt.offset_by("1y"))])
    for i, part in enumerate(tonight.iter_slices(2_000)):  # files read 700 events at a time
        part.write_parquet(tmp_path / f"log-{i}.parquet")
    ml_items.write_parquet(tmp_path / "items.parquet")
    events = FileSource(str(tmp_path / "log-*.parquet"), batch_size=700)
    catalogue = FileSource(str(tmp_path / "items.parquet"), batch_size=300)

    users = changed_users(
        events.iter_batches, catalogue.iter_batches, store, llm=_llm(), partition_rows=1_000
    )
    whole = pending_users(tonight, ml_items, store, llm=_llm())

    expected = [3, 17, *range(41, 61)]  # two with a new event, the 20 never profiled
    assert sorted(whole) == expected
    assert sorted(users.ids) == expected
    assert users.users_in == 60
    mine = tonight.filter(pl.col("user_id").is_in(expected))
    assert users.log.columns == tonight.columns  # the events as the log gave them
    assert users.log.sort(pl.all()).equals(mine.sort(pl.all()))
    assert users.items is not None
    assert sorted(users.items["item_id"].to_list()) == sorted(mine["item_id"].unique().to_list())
    assert users.items.columns == ml_items.columns


def test_users_known_only_by_their_attributes_are_found_and_counted(
    tmp_path: Path, log, ml100k: Path
) -> None:
    people = load_ml100k_users(ml100k).filter(pl.col("user_id") <= 70)  # 61-70: no events
    log.write_parquet(tmp_path / "log.parquet")
    events = FileSource(str(tmp_path / "log.parquet"), batch_size=1_000)
    options = {"user_attr_cols": ("age", "occupation"), "llm": _llm()}
    users = changed_users(
        events.iter_batches, None, None, people=people, partition_rows=2_000, **options
    )
    assert sorted(users.ids) == list(range(1, 71))
    assert users.users_in == 70
    assert users.items is None
    assert users.people is not None
    assert sorted(users.people["user_id"].to_list()) == list(range(1, 71))


def test_a_log_without_the_user_column_is_refused_naming_it(tmp_path: Path, log) -> None:
    log.rename({"user_id": "member"}).write_parquet(tmp_path / "log.parquet")
    events = FileSource(str(tmp_path / "log.parquet"), batch_size=1_000)
    with pytest.raises(InputError, match=r"lack column 'user_id'.*member"):
        changed_users(events.iter_batches, None, None, llm=_llm())
