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


def test_a_write_holding_a_key_twice_is_refused() -> None:
    """The tables have no primary key (migration 0008): the upsert itself keeps one row a key."""
    store = Store.open(None)
    store.ensure_profile_tables(4)
    twice = pa.concat_tables([rows(["a", "b"]), rows(["c"])])  # item "0" in it twice
    with pytest.raises(StoreError, match=r"more than once.*\('0', 'm', 'p'\)"):
        store.upsert_profiles("items", twice)
    assert store.con.execute("SELECT count(*) FROM item_profiles").fetchall() == [(0,)]


def _primary_keys(store: Store) -> list[str]:
    return [
        t
        for (t,) in store.con.execute(
            "SELECT table_name FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY' "
            "AND table_name LIKE '%_profiles' ORDER BY 1"
        ).fetchall()
    ]


def test_migration_8_drops_the_profile_keys_and_keeps_every_row(tmp_path) -> None:
    path = tmp_path / "s.duckdb"
    store = Store.open(path)
    store.ensure_profile_tables(4)
    with store.transaction():
        store.upsert_profiles("items", rows(["a", "b", "c"]))
    before = store.con.execute("SELECT * FROM item_profiles ORDER BY item_id").fetchall()
    con = store.con  # turn it back into what schema version 7 wrote: the same tables with keys
    for table, key in (
        ("item_profiles", "item_id, model, prompt_version"),
        ("user_profiles", "user_id, model, prompt_version, as_of"),
    ):
        con.execute(f"CREATE TABLE v7 AS SELECT * FROM {table}")
        con.execute(f"DROP TABLE {table}")
        ddl = re.search(rf"CREATE TABLE IF NOT EXISTS {table} \(.*?\n\);", _ddl(), re.S)
        assert ddl is not None
        con.execute(ddl.group(0).replace("\n);", f",\n    PRIMARY KEY ({key})\n);"))
        con.execute(f"INSERT INTO {table} SELECT * FROM v7")
        con.execute("DROP TABLE v7")
    con.execute("DELETE FROM enrich_schema_version WHERE version >= 8")
    assert _primary_keys(store) == ["item_profiles", "user_profiles"]
    store.close()

    migrated = Store.open(path)
    assert migrated.schema_version() == SCHEMA_VERSION == 9
    assert _primary_keys(migrated) == []
    after = migrated.con.execute("SELECT * FROM item_profiles ORDER BY item_id").fetchall()
    assert after == before
    assert migrated.con.execute("SELECT count(*) FROM item_features").fetchall() == [(3,)]
    with migrated.transaction():
        migrated.upsert_profiles("items", rows(["a", "b", "d"]))  # the upsert still keeps one
    texts = migrated.con.execute("SELECT profile_text FROM item_profiles ORDER BY 1").fetchall()
    assert texts == [("text a",), ("text b",), ("text d",)]
    migrated.close()


def test_migration_8_on_a_store_without_profile_tables(tmp_path) -> None:
    path = tmp_path / "s.duckdb"
    Store.open(path).close()  # no profile written yet: no dimension, no profile tables
    con = duckdb.connect(str(path))
    con.execute("DELETE FROM enrich_schema_version WHERE version >= 8")
    con.close()
    store = Store.open(path)
    assert store.schema_version() == SCHEMA_VERSION == 9
    store.ensure_profile_tables(4)  # created from today's file: without the key
    assert _primary_keys(store) == []
    store.close()


def _ddl() -> str:
    from enrich.sqlfiles import read_sql

    return read_sql("tables/profiles.sql").replace("{dim}", "4")


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
            text = path.read_text().replace("{profile_tables}", _ddl())
            store.con.execute(text).fetchall()  # re-runnable, or a query
    values = {
        **{"item_id": "0", "k": 2, "model": "m", "prompt_version": "p", "kind": "items"},
        "endpoint": "http://127.0.0.1:9/v1",
        "embedder": "other-embedder",
        **{"base_s": 3600.0, "max_s": 86400.0, "now": datetime(2026, 1, 1)},
        "fix_attempts": 1,
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


def test_the_store_memory_limit_comes_from_the_environment(tmp_path, monkeypatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("ENRICH_STORE_MEMORY_LIMIT", "300MB")
    store = Store.open(tmp_path / "s.duckdb")
    assert store.con.execute("SELECT current_setting('memory_limit')").fetchall() == [
        ("286.1 MiB",)  # DuckDB shows 300 MB in MiB
    ]
    store.close()
    monkeypatch.setenv("ENRICH_STORE_MEMORY_LIMIT", "lots")
    with pytest.raises(ValidationError, match="store_memory_limit"):
        Store.open(tmp_path / "s.duckdb")


def _limit(store: Store) -> str:
    return store.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def test_profile_writes_hold_duckdb_to_the_write_limit_and_set_it_back(
    tmp_path, monkeypatch
) -> None:
    """A store file opened without ENRICH_STORE_MEMORY_LIMIT writes profiles under 128 MB (DuckDB
    would otherwise keep every key a write scanned cached), and is back at DuckDB's default
    after the write, committed or rolled back."""
    monkeypatch.delenv("ENRICH_STORE_MEMORY_LIMIT", raising=False)
    store = Store.open(tmp_path / "s.duckdb")
    default = _limit(store)
    assert store.write_memory_limit == "128MB"
    store.ensure_profile_tables(4)
    with store.transaction(store.write_memory_limit):
        store.upsert_profiles("items", rows(["a", "b"]))
        assert _limit(store) == "122.0 MiB"  # DuckDB shows 128 MB in MiB
    assert _limit(store) == default
    twice = pa.concat_tables([rows(["c"]), rows(["c"])])
    with (
        pytest.raises(StoreError, match="more than once"),
        store.transaction(store.write_memory_limit),
    ):
        store.upsert_profiles("items", twice)
    assert _limit(store) == default
    assert store.scalar("SELECT count(*) FROM item_profiles") == 2
    store.close()
    assert Store.open(None).write_memory_limit is None  # memory: nothing to evict to
    monkeypatch.setenv("ENRICH_STORE_MEMORY_LIMIT", "300MB")  # the user's limit rules
    with Store.borrow(tmp_path / "s.duckdb") as limited:
        assert limited.write_memory_limit is None


def test_runs_and_merges_write_under_the_write_limit(tmp_path, monkeypatch) -> None:
    from enrich import profile_items
    from enrich.duckdb_memory import default_limit
    from enrich.staging import merge, stage_items
    from enrich.testing import HashEmbedder, ScriptedChat

    monkeypatch.delenv("ENRICH_STORE_MEMORY_LIMIT", raising=False)
    seen: list[str] = []
    upsert = Store.upsert_profiles

    def spy(self: Store, kind: str, table: pa.Table) -> None:
        seen.append(_limit(self))
        upsert(self, kind, table)

    monkeypatch.setattr(Store, "upsert_profiles", spy)
    frame = pl.DataFrame({"item_id": [1, 2, 3], "title": ["Heat", "Alien", "Brazil"]})
    out = profile_items(
        frame, llm=ScriptedChat(), embedder=HashEmbedder(), store=str(tmp_path / "f.duckdb")
    )
    assert out.height == 3
    assert seen == ["122.0 MiB"]
    staged = stage_items(frame.head(1), llm=ScriptedChat(), embedder=HashEmbedder())
    assert seen == ["122.0 MiB", default_limit()]  # the staging store, in memory: not held
    with Store.borrow(tmp_path / "f.duckdb") as store:
        merge(store, staged)
    assert seen[2:] == ["122.0 MiB"]
