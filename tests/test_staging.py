"""Staged runs: enrich into memory, merge into the real store in one transaction."""

from __future__ import annotations

import duckdb
import polars as pl

from enrich.staging import merge, stage_items
from enrich.store import Store
from enrich.testing import GOOD, ScriptedChat

ITEMS = pl.DataFrame({"item_id": [1, 2, 3], "title": ["Heat", "Alien", "Brazil"]})


def script(text: str, attempt: int):
    if "Alien" in text:
        raise ValueError("boom")
    return GOOD


def test_staged_rows_merge_once_with_errors_and_ledger(tmp_path, embedder) -> None:
    staged = stage_items(ITEMS, llm=ScriptedChat(script=script), embedder=embedder)
    assert staged.report.rows_generated == 2 and staged.report.rows_failed == 1
    path = tmp_path / "f.duckdb"
    store = Store.open(path)
    merge(store, staged)
    merge(store, staged)  # merging twice changes nothing
    store.close()
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM item_profiles").fetchall() == [(2,)]
        assert con.execute("SELECT count(*) FROM llm_cache").fetchall() == [(2,)]
        assert con.execute("SELECT count(*) FROM runs").fetchall() == [(1,)]
        errors = con.execute("SELECT entity_id, stage FROM enrich_errors").fetchall()
    assert errors == [("2", "llm")]
