from __future__ import annotations

import re
from datetime import datetime

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from enrich.errors import StoreError
from enrich.sqlfiles import quote_ident, sql_files
from enrich.store import SCHEMA_VERSION, Store


def rows(hashes: list[str], dim: int = 4) -> pa.Table:
    n = len(hashes)
    vec = np.eye(n, dim, dtype=np.float32)
    return pa.table(
        {
            "item_id": [str(i) for i in range(n)],
            "model": ["m"] * n,
            "prompt_version": ["p"] * n,
            "input_hash": hashes,
            "profile_text": [f"text {h}" for h in hashes],
            "attributes": ['{"a": 1}'] * n,
            "embedding": list(vec),
            "embedding_model": ["e"] * n,
            "run_id": ["r"] * n,
            "created_at": [datetime(2026, 1, 1)] * n,
        }
    )


def test_migrations_create_tables_and_record_version(tmp_path) -> None:
    store = Store.open(tmp_path / "s.duckdb")
    tables = {r[0] for r in store.con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert {"llm_cache", "runs", "enrich_errors", "embedding_cache", "store_meta"} <= tables
    assert store.schema_version() == SCHEMA_VERSION
    store.close()
    again = Store.open(tmp_path / "s.duckdb")  # reopening applies no migration twice
    applied = again.con.execute("SELECT version FROM enrich_schema_version ORDER BY 1").fetchall()
    assert [v for (v,) in applied] == list(range(1, SCHEMA_VERSION + 1))


def test_upsert_is_idempotent_and_updates_changed_rows() -> None:
    store = Store.open(None)
    store.ensure_profile_tables(4)
    store.upsert_profiles("items", rows(["a", "b"]))
    before = store.con.execute("SELECT * FROM item_profiles ORDER BY item_id").fetchall()
    store.upsert_profiles("items", rows(["a", "b"]))
    assert store.con.execute("SELECT * FROM item_profiles ORDER BY item_id").fetchall() == before
    store.upsert_profiles("items", rows(["a", "c"]))
    texts = store.con.execute("SELECT profile_text FROM item_profiles ORDER BY item_id").fetchall()
    assert texts == [("text a",), ("text c",)]


def test_change_detection_returns_only_new_and_changed_keys() -> None:
    store = Store.open(None)
    probe = pl.DataFrame({"_key": ["0", "1", "2"], "input_hash": ["a", "changed", "c"]})
    assert store.not_profiled("items", probe, "m", "p").to_list() == ["0", "1", "2"]  # no table
    store.ensure_profile_tables(4)
    store.upsert_profiles("items", rows(["a", "b"]))  # ids 0 and 1
    assert sorted(store.not_profiled("items", probe, "m", "p").to_list()) == ["1", "2"]
    assert sorted(store.not_profiled("items", probe, "m", "p2").to_list()) == ["0", "1", "2"]
    assert sorted(store.not_profiled("items", probe, "m2", "p").to_list()) == ["0", "1", "2"]
    assert sorted(store.not_profiled("users", probe, "m", "p").to_list()) == ["0", "1", "2"]
    assert store.not_profiled("items", probe.clear(), "m", "p").to_list() == []


def test_views_give_latest_per_item() -> None:
    store = Store.open(None)
    store.ensure_profile_tables(4)
    store.upsert_profiles("items", rows(["a"]))
    newer = rows(["b"]).set_column(2, "prompt_version", pa.array(["p2"]))
    newer = newer.set_column(9, "created_at", pa.array([datetime(2026, 2, 1)]))
    store.upsert_profiles("items", newer)
    assert store.con.execute("SELECT count(*) FROM item_profiles").fetchall()[0] == (2,)
    latest = store.con.execute("SELECT prompt_version FROM item_features").fetchall()
    assert latest == [("p2",)]
    pinned = store.con.execute("SELECT input_hash FROM item_features_for('m', 'p')").fetchall()
    assert pinned == [("a",)]


def test_dimension_is_fixed_per_store() -> None:
    store = Store.open(None)
    store.ensure_profile_tables(4)
    store.ensure_profile_tables(4)
    with pytest.raises(StoreError, match="holds 4-d embeddings; this embedder gives 8-d"):
        store.ensure_profile_tables(8)


def test_not_a_duckdb_file(tmp_path) -> None:
    bogus = tmp_path / "x.duckdb"
    bogus.write_text("hello, I am a text file" * 100)
    with pytest.raises(StoreError, match="not a DuckDB database file"):
        Store.open(bogus)


def test_newer_schema_is_refused(tmp_path) -> None:
    path = tmp_path / "s.duckdb"
    Store.open(path).close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO enrich_schema_version VALUES (?, now())", [SCHEMA_VERSION + 1])
    con.close()
    with pytest.raises(StoreError, match="newer than this enrich"):
        Store.open(path)


def test_read_only_open_does_not_write(tmp_path) -> None:
    path = tmp_path / "s.duckdb"
    Store.open(path).close()
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    store = Store.open(path, read_only=True)
    assert store.schema_version() == SCHEMA_VERSION
    with pytest.raises(duckdb.Error, match="read-only"):
        store.con.execute("CREATE TABLE x (a INT)")
    store.close()
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert not path.with_name("s.duckdb.wal").exists()


def test_transaction_rolls_back() -> None:
    store = Store.open(None)
    store.ensure_profile_tables(4)
    with pytest.raises(RuntimeError), store.transaction():
        store.upsert_profiles("items", rows(["a"]))
        raise RuntimeError("disk full")
    assert store.con.execute("SELECT count(*) FROM item_profiles").fetchall()[0] == (0,)


def test_every_sql_file_runs() -> None:
    store = Store.open(None)  # runs sql/migrations
    store.ensure_profile_tables(4)  # runs sql/tables and sql/views
    store.upsert_profiles("items", rows(["a", "b", "c"]))
    for folder in ("migrations", "views", "audits"):
        for path in sql_files(folder):
            store.con.execute(path.read_text()).fetchall()  # re-runnable, or a query
    values = {
        **{"item_id": "0", "k": 2, "model": "m", "prompt_version": "p", "kind": "items"},
        "endpoint": "http://127.0.0.1:9/v1",
        "embedder": "other-embedder",
        **{"base_s": 3600.0, "max_s": 86400.0, "now": datetime(2026, 1, 1)},
        "ids": ["a"],
    }
    store.con.register("wanted", pa.table({"request_key": ["k"]}))  # relations queries read
    store.con.register("enrich_wanted", pa.table({"item_id": ["1", "0"], "pos": [0, 1]}))
    store.con.register("enrich_probe", pa.table({"_key": ["0", "9"], "input_hash": ["x", "y"]}))
    store.con.register("enrich_batch", pa.table({"_key": ["0"], "input_hash": ["x"]}))
    store.con.execute("CREATE TEMP TABLE enrich_digests AS SELECT '9' AS _key, 1::UBIGINT digest")
    store.con.execute(
        "CREATE TEMP VIEW profiled AS SELECT 'items' AS kind, 'a' AS entity_id, "
        "now()::TIMESTAMP AS at"
    )
    for path in sql_files("queries"):
        text = path.read_text()
        params = {k: v for k, v in values.items() if re.search(rf"\${k}\b", text)}
        answer = store.con.execute(text, params).fetchall()
        if "$item_id" in text or any(
            n in path.name for n in ("plan_rates", "spend", "reembed", "index_", "not_profiled")
        ):
            assert answer, path.name  # these answer with rows even on a nearly empty store


def test_identifiers_are_validated() -> None:
    assert quote_ident("item_id") == '"item_id"'
    for bad in ['x"; DROP TABLE runs; --', "1abc", "a b", ""]:
        with pytest.raises(ValueError, match="not a valid SQL identifier"):
            quote_ident(bad)
