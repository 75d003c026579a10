"""Staged runs: enrich into memory, merge into the real store in one transaction."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

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


def _contents(path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {
            "profiles": con.execute(
                "SELECT item_id, input_hash, profile_text FROM item_profiles ORDER BY 1"
            ).fetchall(),
            "cache": con.execute("SELECT key FROM llm_cache ORDER BY 1").fetchall(),
            "vectors": con.execute("SELECT text_hash FROM embedding_cache ORDER BY 1").fetchall(),
            "runs": con.execute("SELECT run_id, rows_enriched FROM runs ORDER BY 1").fetchall(),
            "errors": con.execute(
                "SELECT entity_id, stage FROM enrich_errors ORDER BY 1"
            ).fetchall(),
        }


def test_runs_merged_together_equal_runs_merged_one_by_one(tmp_path, embedder) -> None:
    """The nightly flow merges the chunks that finished together in one transaction; two chunks
    that asked the same prompt (item 4 reads like item 1) both hold its cached answer."""
    llm = ScriptedChat(script=script)
    a = stage_items(ITEMS, llm=llm, embedder=embedder)
    b = stage_items(pl.DataFrame({"item_id": [4], "title": ["Heat"]}), llm=llm, embedder=embedder)
    shared = set(a.tables["llm_cache"]["key"].to_pylist()) & set(
        b.tables["llm_cache"]["key"].to_pylist()
    )
    assert len(shared) == 1
    together, one_by_one = tmp_path / "together.duckdb", tmp_path / "one.duckdb"
    with Store.open(together) as store:
        merge(store, a, b)
    with Store.open(one_by_one) as store:
        merge(store, a)
        merge(store, b)
    merged = _contents(together)
    assert merged == _contents(one_by_one)
    assert [r[0] for r in merged["profiles"]] == ["1", "3", "4"]  # item 2 failed (recorded)
    assert len(merged["runs"]) == 2 and merged["errors"] == [("2", "llm")]


class _Done:
    """A finished task's future (fault injection for the flow's merge loop)."""

    def __init__(self, result: object) -> None:
        self._result = result

    def add_done_callback(self, fn) -> None:
        fn(self)  # already finished, as a Prefect future calls it at once

    def result(self) -> object:
        if isinstance(self._result, Exception):
            raise self._result
        return self._result


def test_the_flow_merges_finished_chunks_together_then_raises_a_failure(
    tmp_path, embedder, monkeypatch
) -> None:
    """Chunks that finished while the last merge ran go in one transaction; a failed chunk
    fails the flow only after the chunks finished with it are merged (their calls are paid)."""
    from flows import nightly
    from flows.sources import Source

    llm = ScriptedChat(script=lambda text, attempt: GOOD)
    a = stage_items(ITEMS.head(2), llm=llm, embedder=embedder)
    b = stage_items(ITEMS.tail(1), llm=llm, embedder=embedder)
    merges: list[int] = []
    real_merge = nightly.merge

    def counted(store, *staged) -> None:
        merges.append(len(staged))
        real_merge(store, *staged)

    monkeypatch.setattr(nightly, "merge", counted)
    store = tmp_path / "f.duckdb"
    source = Source(kind="file", path="unused.parquet")
    params = nightly.NightlyParams(items=source, store=str(store))
    futures = [_Done(a), _Done(RuntimeError("chunk 2 failed")), _Done(b)]
    with pytest.raises(RuntimeError, match="chunk 2 failed"):
        nightly._merge_all(futures, params, 4, 4)
    assert merges == [2]  # one transaction for both finished chunks
    assert [r[0] for r in _contents(store)["profiles"]] == ["1", "2", "3"]
