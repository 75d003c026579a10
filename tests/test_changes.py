"""Change detection over a source read in batches (bounded memory), against the whole-frame path."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

import enrich
from connectors import FileSource
from enrich.changes import changed_items, rows_named
from enrich.errors import InputError
from enrich.profiles import pending_items
from enrich.testing import GOOD, HashEmbedder, ScriptedChat


def _llm() -> ScriptedChat:
    return ScriptedChat(script=lambda prompt, attempt: GOOD)


def test_batched_detection_finds_what_the_whole_frame_finds(tmp_path: Path, ml_items) -> None:
    items = ml_items.head(300)
    store = tmp_path / "f.duckdb"
    enrich.profile_items(items.head(200), store=str(store), llm=_llm(), embedder=HashEmbedder())
    changed = items.with_columns(
        pl.when(pl.col("item_id").is_in([3, 150]))
        .then(pl.col("title") + " (remastered)")
        .otherwise(pl.col("title"))
        .alias("title")
    )
    for i in range(3):  # three files, read 40 rows at a time
        changed.slice(i * 100, 100).write_parquet(tmp_path / f"part-{i}.parquet")
    source = FileSource(str(tmp_path / "part-*.parquet"), batch_size=40)

    changes = changed_items(source.iter_batches, str(store), llm=_llm())
    whole = pending_items(changed, str(store), llm=_llm())

    assert changes.rows_in == 300
    expected = [3, 150, *range(201, 301)]  # two changed titles, the 100 never profiled
    assert sorted(changes.rows["item_id"].to_list()) == expected
    assert sorted(whole["item_id"].to_list()) == expected
    assert changes.rows.columns == changed.columns  # the rows as the source gave them


def test_an_id_repeated_across_batches_is_refused(tmp_path: Path, ml_items) -> None:
    items = ml_items.head(30)
    pl.concat([items, items.slice(10, 1)]).write_parquet(tmp_path / "dup.parquet")
    source = FileSource(str(tmp_path / "dup.parquet"), batch_size=20)  # the repeat: batch 2
    with pytest.raises(InputError, match=r"more than one batch.*'11'"):
        changed_items(source.iter_batches, str(tmp_path / "f.duckdb"), llm=_llm())


def test_a_bad_row_is_named_with_its_place_in_the_source(tmp_path: Path, ml_items) -> None:
    items = ml_items.head(30).with_columns(
        pl.when(pl.col("item_id") == 25).then(None).otherwise(pl.col("item_id")).alias("item_id")
    )
    items.write_parquet(tmp_path / "null.parquet")
    source = FileSource(str(tmp_path / "null.parquet"), batch_size=20)
    with pytest.raises(InputError, match=r"row\(s\) \[4\].*from row 20 of the source"):
        changed_items(source.iter_batches, str(tmp_path / "f.duckdb"), llm=_llm())


def test_an_empty_store_or_source(tmp_path: Path, ml_items) -> None:
    items = ml_items.head(5)
    items.write_parquet(tmp_path / "a.parquet")
    everything = changed_items(
        FileSource(str(tmp_path / "a.parquet")).iter_batches, str(tmp_path / "f.duckdb"), llm=_llm()
    )
    assert sorted(everything.rows["item_id"].to_list()) == [1, 2, 3, 4, 5]
    nothing = changed_items(lambda: iter(()), str(tmp_path / "f.duckdb"), llm=_llm())
    assert (nothing.rows.height, nothing.rows_in, nothing.rows.columns) == (0, 0, ["item_id"])


def test_the_store_keeps_its_memory_limit(tmp_path: Path, ml_items) -> None:
    """The detection's own limit is lifted after it: the store's (default) limit is back."""
    ml_items.head(5).write_parquet(tmp_path / "a.parquet")
    store = enrich.Store.open(tmp_path / "f.duckdb")
    before = store.con.execute("SELECT current_setting('memory_limit')").fetchall()
    changed_items(FileSource(str(tmp_path / "a.parquet")).iter_batches, store, llm=_llm())
    assert store.con.execute("SELECT current_setting('memory_limit')").fetchall() == before
    with pytest.raises(InputError, match="not a size"):
        changed_items(lambda: iter(()), store, llm=_llm(), memory_limit="1GB'; DROP TABLE runs")
    store.close()


def test_rows_named_reads_only_the_items_a_log_names(tmp_path: Path, ml_items) -> None:
    """The users' change detection keeps the catalogue rows the interaction log names (ids
    compared as text: a log of string ids against integer catalogue ids), batch by batch."""
    ml_items.head(100).write_parquet(tmp_path / "items.parquet")
    batches = FileSource(str(tmp_path / "items.parquet"), batch_size=10).iter_batches
    kept = rows_named(batches, "item_id", ["7", "95", "7", "5000"])  # a repeat, an unknown id
    assert sorted(kept["item_id"].to_list()) == [7, 95]
    assert kept.columns == ml_items.columns
    assert rows_named(batches, "item_id", [5000]).height == 0
