"""The engine and a run's accounting, with a scripted model for fault injection."""

from __future__ import annotations

import polars as pl
import pytest

import enrich
from enrich.config import EnrichSettings
from enrich.errors import TransientError
from enrich.testing import GOOD, ScriptedChat

ITEMS = pl.DataFrame(
    {"item_id": [1, 2, 3, 4], "title": ["Heat", "Alien", "Heat", None], "genres": ["Crime"] * 4}
)


def run(llm, items=ITEMS, store=None, embedder=None, **settings):
    return enrich.profile_items(
        items,
        llm=llm,
        store=store,
        embedder=embedder,
        with_report=True,
        settings=EnrichSettings(**settings) if settings else None,
    )


def test_identical_prompts_are_sent_once_and_accounted(embedder) -> None:
    llm = ScriptedChat()
    out, report = run(llm, embedder=embedder)
    assert len(llm.calls) == 3  # items 1 and 3 share a prompt
    assert report.rows_generated == 3 and report.cache_hits == 1 and report.rows_failed == 0
    assert report.balanced() and report.llm_calls == 3
    assert out["status"].to_list() == ["enriched"] * 4
    assert out["item_id"].to_list() == [1, 2, 3, 4]


def test_rerun_makes_no_calls_and_one_change_makes_one(tmp_path, embedder) -> None:
    store = str(tmp_path / "f.duckdb")
    run(ScriptedChat(), store=store, embedder=embedder)
    again = ScriptedChat()
    out, report = run(again, store=store, embedder=embedder)
    assert again.calls == [] and report.rows_skipped == 4 and report.llm_calls == 0
    assert out["status"].to_list() == ["skipped"] * 4
    assert out["profile_text"].null_count() == 0
    changed = ITEMS.with_columns(
        pl.when(pl.col("item_id") == 2).then(pl.lit("Aliens")).otherwise("title").alias("title")
    )
    once = ScriptedChat()
    _, report = run(once, items=changed, store=store, embedder=embedder)
    assert len(once.calls) == 1 and report.rows_skipped == 3 and report.rows_generated == 1


def test_cache_serves_a_new_store_row_without_a_call(tmp_path, embedder) -> None:
    store = str(tmp_path / "f.duckdb")
    run(ScriptedChat(), store=store, embedder=embedder)
    import duckdb

    con = duckdb.connect(store)
    con.execute("DELETE FROM item_profiles")
    con.close()
    llm = ScriptedChat()
    _, report = run(llm, store=store, embedder=embedder)
    assert llm.calls == [] and report.cache_hits == 4 and report.rows_generated == 0


def test_invalid_answer_is_re_asked_with_the_error_then_recorded(tmp_path, embedder) -> None:
    def script(text: str, attempt: int):
        if "Alien" in text:
            return {"summary": "short"}  # always invalid
        if "Heat" in text and "does not fit" not in text:
            return "{not json"
        return GOOD

    llm = ScriptedChat(script=script)
    store = str(tmp_path / "f.duckdb")
    out, report = run(llm, items=ITEMS.head(2), store=store, embedder=embedder)
    assert report.rows_generated == 1 and report.rows_failed == 1 and report.balanced()
    assert any("does not fit what was asked" in c and "summary" in c for c in llm.calls)
    failed = out.filter(pl.col("status") == "failed")
    assert failed["item_id"].to_list() == [2] and "validation" in failed["error"][0]
    import duckdb

    con = duckdb.connect(store)
    err = con.execute("SELECT entity_id, stage, raw_output FROM enrich_errors").fetchall()
    assert err == [("2", "validation", '{"summary": "short"}')]
    run_row = con.execute("SELECT status, rows_failed, rows_in FROM runs").fetchall()[0]
    assert run_row == ("partial", 1, 2)


def test_transient_errors_are_retried(embedder) -> None:
    def script(text: str, attempt: int):
        if attempt == 0:
            raise TransientError("503 upstream busy")
        return GOOD

    llm = ScriptedChat(script=script)
    _, report = run(llm, items=ITEMS.head(2), embedder=embedder, max_retries=2)
    assert report.rows_generated == 2 and report.llm_calls == 4


def test_a_failing_row_does_not_sink_the_batch(embedder) -> None:
    def script(text: str, attempt: int):
        if "Alien" in text:
            raise ValueError("model exploded")
        return GOOD

    out, report = run(ScriptedChat(script=script), embedder=embedder, max_retries=0)
    assert report.rows_failed == 1 and report.rows_enriched == 3 and report.balanced()
    assert "model exploded" in out.filter(pl.col("item_id") == 2)["error"][0]


def test_rows_without_text_are_recorded_not_dropped(embedder) -> None:
    items = pl.DataFrame({"item_id": ["a", "b", "c"], "title": ["Heat", None, "  "]})
    out, report = run(ScriptedChat(), items=items, embedder=embedder)
    assert report.rows_failed == 2 and report.balanced()
    errors = out.filter(pl.col("status") == "failed")["error"].to_list()
    assert all("no text in columns ['title']" in e for e in errors)


def test_embedder_failure_stores_no_row(tmp_path, embedder) -> None:
    class Broken:
        name, dim = embedder.name, embedder.dim

        def embed(self, texts):
            raise RuntimeError("CUDA out of memory")

    store = str(tmp_path / "f.duckdb")
    _, report = run(ScriptedChat(), store=store, embedder=Broken())
    assert report.rows_failed == 4 and report.rows_enriched == 0 and report.balanced()
    import duckdb

    con = duckdb.connect(store)
    assert con.execute("SELECT count(*) FROM item_profiles").fetchall()[0] == (0,)
    assert con.execute("SELECT count(*) FROM llm_cache").fetchall()[0] == (3,)  # nothing paid twice


def test_budget_stops_cleanly_and_records_the_rest(embedder) -> None:
    out, report = run(ScriptedChat(), embedder=embedder, max_tokens_total=1, chunk_size=1)
    assert report.status == "budget_exceeded" and report.rows_enriched == 1
    assert report.rows_failed == 3 and report.balanced()
    assert out.filter(pl.col("status") == "failed")["error"].str.contains("budget").all()


def test_empty_frame() -> None:
    out, report = run(ScriptedChat(), items=ITEMS.clear())
    assert out.height == 0 and report.rows_in == 0 and report.status == "ok"


@pytest.mark.parametrize("kind", ["pandas", "arrow"])
def test_other_frame_libraries(kind, embedder) -> None:
    data = ITEMS.head(2).to_pandas() if kind == "pandas" else ITEMS.head(2).to_arrow()
    out, _ = run(ScriptedChat(), items=data, embedder=embedder)
    assert out["item_id"].to_list() == [1, 2]
