"""Connectors against real files, a real DuckDB file and a real PostgreSQL server."""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from connectors import (
    ConnectorError,
    DuckDBSource,
    FileSource,
    ParquetSink,
    PostgresSink,
    PostgresSource,
)
from tests.servers import postgres_server

INJECTIONS = ["items; DROP TABLE items; --", 'items" --', "x'y", "a b", "1=1"]


@pytest.fixture
def movies(ml_items) -> pl.DataFrame:
    return ml_items.head(250)


def test_files_csv_glob_parquet_and_batches(tmp_path, movies) -> None:
    movies.head(100).write_csv(tmp_path / "a.csv")
    movies.slice(100).write_csv(tmp_path / "b.csv")
    assert_frame_equal(FileSource(tmp_path / "*.csv").read(), movies)
    movies.write_parquet(tmp_path / "m.parquet")
    batches = list(FileSource(tmp_path / "m.parquet", batch_size=64).iter_batches())
    assert max(b.height for b in batches) <= 64
    assert_frame_equal(pl.concat(batches), movies)
    with pytest.raises(ConnectorError, match="no file matches"):
        FileSource(tmp_path / "nothing-*.csv").read()


def test_partitioned_parquet_sink(tmp_path, movies) -> None:
    frame = movies.with_columns(pl.col("genres").str.split("|").list.first().alias("first"))
    ParquetSink(tmp_path / "out", partition_by=["first"]).write(frame)
    back = pl.read_parquet(tmp_path / "out", hive_partitioning=True)
    assert back.height == frame.height
    with pytest.raises(ConnectorError, match="partition column"):
        ParquetSink(tmp_path / "x", partition_by=["nope"]).write(frame)


def test_duckdb_table_query_and_batches(tmp_path, movies) -> None:
    path = tmp_path / "shop.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA cat; CREATE TABLE cat.items AS SELECT * FROM movies")
    assert_frame_equal(DuckDBSource(path, table="items", schema="cat").read(), movies)
    drama = DuckDBSource(
        path,
        query="SELECT * FROM cat.items WHERE genres LIKE ? ORDER BY item_id",
        params=["%Drama%"],
    ).read()
    assert drama.height == movies.filter(pl.col("genres").str.contains("Drama")).height
    batches = list(DuckDBSource(path, table="items", schema="cat", batch_size=100).iter_batches())
    assert sum(b.height for b in batches) == movies.height
    with pytest.raises(ConnectorError, match=r"table 'nope'"):
        DuckDBSource(path, table="nope").read()


@pytest.mark.parametrize("evil", INJECTIONS)
def test_duckdb_refuses_injected_identifiers(tmp_path, evil) -> None:
    path = tmp_path / "shop.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE items AS SELECT 1 AS item_id")
    for kwargs in (
        {"table": evil},
        {"table": "items", "schema": evil},
        {"table": "items", "columns": [evil]},
    ):
        with pytest.raises(ConnectorError, match="not a valid SQL identifier"):
            DuckDBSource(path, **kwargs).read()
    with duckdb.connect(str(path)) as con:
        assert con.execute("SELECT count(*) FROM items").fetchall() == [(1,)]


@pytest.fixture(scope="module")
def pg():
    with postgres_server() as dsn:
        yield dsn


@pytest.mark.slow
def test_postgres_source_and_sink_round_trip(pg, movies) -> None:
    import psycopg

    with psycopg.connect(pg) as conn:
        conn.execute("CREATE TABLE items (item_id bigint, title text, genres text)")
        with conn.cursor().copy("COPY items FROM STDIN") as copy:
            for row in movies.iter_rows():
                copy.write_row(row)
    src = PostgresSource(pg, table="items", batch_size=100)
    assert max(b.height for b in src.iter_batches()) <= 100
    assert_frame_equal(src.read().sort("item_id"), movies.sort("item_id"))
    q = PostgresSource(pg, query="SELECT title FROM items WHERE item_id = %s", params=[1])
    assert q.read()["title"].to_list() == ["Toy Story (1995)"]

    features = pl.DataFrame(
        {
            "item_id": ["1", "2"],
            "model": ["m", "m"],
            "prompt_version": ["p", "p"],
            "input_hash": ["h1", "h2"],
            "profile_text": ["a", "b"],
            "embedding": pl.Series(np.eye(2, 4, dtype=np.float32)).cast(pl.Array(pl.Float32, 4)),
        }
    )
    sink = PostgresSink(pg, table="item_profiles")
    assert sink.write(features)["written"] == 2
    assert sink.write(features)["written"] == 0  # same hashes: nothing changes
    changed = features.with_columns(pl.Series("input_hash", ["h1", "h3"]))
    assert sink.write(changed)["written"] == 1
    back = PostgresSource(pg, table="item_profiles").read().sort("item_id")
    assert back["input_hash"].to_list() == ["h1", "h3"]
    assert back["embedding"].to_list()[0] == [1.0, 0.0, 0.0, 0.0]


@pytest.mark.slow
def test_postgres_refuses_injection_and_hides_password(pg) -> None:
    for evil in INJECTIONS:
        for kwargs in (
            {"table": evil},
            {"table": "items", "schema": evil},
            {"table": "items", "columns": [evil]},
        ):
            with pytest.raises(ConnectorError, match="not a valid SQL identifier"):
                PostgresSource(pg, **kwargs).read()
        with pytest.raises(ConnectorError, match="not a valid SQL identifier"):
            PostgresSink(pg, table=evil).write(pl.DataFrame({"item_id": ["1"]}))
    # a value is bound, never spliced: the injection is just a string that matches nothing
    q = PostgresSource(
        pg, query="SELECT count(*) AS n FROM items WHERE title = %s", params=["x' OR '1'='1"]
    )
    assert q.read()["n"].to_list() == [0]
    secret_dsn = pg.replace("enrich@", "enrich:hunter2-secret@")
    with pytest.raises(ConnectorError, match="table 'nope'") as err:
        PostgresSource(secret_dsn, table="nope").read()
    assert "hunter2" not in str(err.value)
