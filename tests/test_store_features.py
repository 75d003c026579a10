"""The feature store as a product: views, similarity, point in time, audits, migrations,
concurrency and export, on real DuckDB files."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from enrich.cli import main as cli
from enrich.errors import StoreError
from enrich.sqlfiles import read_sql
from enrich.store import SCHEMA_VERSION, Store, audit, export_parquet
from tests.test_store import rows as item_rows


def user_rows(as_ofs: list[datetime], vectors: np.ndarray, user: str = "u1") -> pa.Table:
    n = len(as_ofs)
    return pa.table(
        {
            "user_id": [user] * n,
            "model": ["m"] * n,
            "prompt_version": ["p"] * n,
            "as_of": as_ofs,
            "input_hash": [f"h{i}" for i in range(n)],
            "n_interactions": pa.array([5] * n, pa.int32()),
            "is_cold": [False] * n,
            "profile_text": [f"likes {i}" for i in range(n)],
            "attributes": ['{"a": 1}'] * n,
            "embedding": list(vectors.astype(np.float32)),
            "embedding_model": ["e"] * n,
            "run_id": ["r"] * n,
            "created_at": [datetime(2026, 1, 1)] * n,
        }
    )


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store.open(tmp_path / "f.duckdb")
    s.ensure_profile_tables(4)
    s.upsert_profiles("items", item_rows(["a", "b", "c"]))  # item i has embedding e_i
    early, late = datetime(1997, 1, 1), datetime(1998, 1, 1)
    s.upsert_profiles("users", user_rows([early, late], np.eye(2, 4)))  # early ~ item 0
    return s


def test_similarity_macro_and_point_in_time(store) -> None:
    store.con.execute(
        "CREATE TABLE cands AS SELECT * FROM (VALUES ('u1', 0), ('u1', 1), "
        "('u9', 0)) AS t(user_id, item_id)"
    )
    latest = store.con.sql(
        "SELECT item_id, similarity FROM user_item_similarity('cands') ORDER BY user_id, item_id"
    ).fetchall()
    assert latest == [(0, 0.0), (1, 1.0), (0, None)]  # newest profile (1998) points at item 1
    past = store.con.sql(
        "SELECT item_id, similarity FROM user_item_similarity_as_of('cands', TIMESTAMP "
        "'1997-06-01') WHERE user_id = 'u1' ORDER BY item_id"
    ).fetchall()
    assert past == [(0, 1.0), (1, 0.0)]  # as of mid-1997 only the 1997 profile may be used
    assert store.con.sql(
        "SELECT count(*) FROM user_features_as_of(TIMESTAMP '1996-01-01')"
    ).fetchall() == [(0,)]


def test_audits_pass_then_catch_bad_rows(store, tmp_path) -> None:
    assert all(r.height == 0 for r in audit(store).values())
    bad = item_rows(["z"]).set_column(0, "item_id", pa.array(["zero"]))
    bad = bad.set_column(6, "embedding", pa.array([np.zeros(4, np.float32)]))
    store.upsert_profiles("items", bad)
    empty = item_rows(["e"]).set_column(0, "item_id", pa.array(["blank"]))
    store.upsert_profiles("items", empty.set_column(4, "profile_text", pa.array(["  "])))
    found = audit(store)
    assert found["embeddings_invalid"]["entity_id"].to_list() == ["zero"]
    assert found["profiles_empty_text"]["entity_id"].to_list() == ["blank"]
    store.close()
    assert cli(["audit", "--store", str(tmp_path / "f.duckdb")]) == 1


def test_forward_migration_from_an_older_store(tmp_path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))  # what enrich with schema version 1 wrote
    con.execute(
        "CREATE TABLE enrich_schema_version (version INTEGER PRIMARY KEY, "
        "applied_at TIMESTAMP NOT NULL)"
    )
    con.execute(read_sql("migrations/0001_core.sql"))
    con.execute("INSERT INTO enrich_schema_version VALUES (1, now())")
    con.execute(
        "INSERT INTO runs (run_id, kind, started_at, status, model, prompt_version, "
        "embedding_model) VALUES ('old', 'items', now(), 'ok', 'm', 'p', 'e')"
    )
    con.close()
    store = Store.open(path)
    assert store.schema_version() == SCHEMA_VERSION
    assert store.con.execute("SELECT run_id, settings FROM runs").fetchall() == [("old", None)]
    assert store.con.execute("SELECT count(*) FROM eval_runs").fetchall() == [(0,)]


HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS t (x INT)")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def test_second_writer_gets_a_clear_error_or_waits(tmp_path) -> None:
    path = str(tmp_path / "busy.duckdb")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, path, "3"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    with pytest.raises(StoreError, match="open for writing in another process"):
        Store.open(path)
    started = time.monotonic()
    store = Store.open(path, lock_timeout_s=30)  # waits for the holder to finish
    assert time.monotonic() - started > 0.5
    assert store.schema_version() == SCHEMA_VERSION
    store.close()
    holder.wait(timeout=10)


def test_export_parquet_partitioned(store, tmp_path) -> None:
    counts = export_parquet(store, tmp_path / "out", partition_by=("model",))
    assert counts["item_profiles"] == 3 and counts["user_profiles"] == 2
    back = pl.read_parquet(tmp_path / "out" / "item_profiles", hive_partitioning=True)
    assert sorted(back["item_id"].to_list()) == ["0", "1", "2"]
    assert back["model"].unique().to_list() == ["m"]
