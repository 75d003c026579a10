"""Failure memory: a request whose answer failed validation is not paid for again on every run;
it waits by a backoff schedule, a changed input is asked at once, transient errors still retry."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

import enrich
from enrich.config import EnrichSettings
from enrich.errors import TransientError
from enrich.plan import plan_items
from enrich.report import utc_now
from enrich.sqlfiles import read_sql
from enrich.store import Store
from enrich.testing import GOOD, HashEmbedder, ScriptedChat

CATALOGUE = pl.DataFrame(
    {"item_id": [1, 2, 3], "title": ["Heat (1995)", "Cursed Film (1990)", "Babe (1995)"]}
)


def _bad_for_cursed(text: str, attempt: int) -> object:
    return {"summary": 7} if "Cursed" in text else GOOD  # never valid for item 2


def _run(store: Store, llm: ScriptedChat, data: pl.DataFrame = CATALOGUE, **settings: object):
    return enrich.profile_items(
        data,
        llm=llm,
        embedder=HashEmbedder(),
        store=store,
        settings=EnrichSettings(fix_attempts=1, **settings),  # type: ignore[arg-type]
    )


def _age_errors(store: Store, hours: float) -> None:
    """Move every recorded error ``hours`` into the past (the clock of the backoff)."""
    store.con.execute(
        "UPDATE enrich_errors SET created_at = created_at - to_microseconds(?::BIGINT)",
        [int(hours * 3600 * 1e6)],
    )


def _calls_for(llm: ScriptedChat, word: str) -> int:
    return sum(word in c for c in llm.calls)


def test_a_failing_row_is_not_asked_again_on_the_next_run() -> None:
    store = Store.open(None)
    first = ScriptedChat(script=_bad_for_cursed)
    out = _run(store, first)
    assert _calls_for(first, "Cursed") == 2  # the answer and one re-ask with the error
    assert out.filter(pl.col("item_id") == 2)["status"].item() == "failed"

    again = ScriptedChat(script=_bad_for_cursed)
    out = _run(store, again)
    assert _calls_for(again, "Cursed") == 0  # held, not paid for
    row = out.filter(pl.col("item_id") == 2)
    assert row["status"].item() == "failed"
    assert row["error"].item().startswith("held: failed validation in 1 run(s)")
    held = store.con.execute(
        "SELECT count(*) FROM enrich_errors WHERE entity_id = '2' AND stage = 'held'"
    ).fetchone()
    assert held == (1,)


def test_the_cost_ledger_counts_held_and_empty_rows_as_no_entities() -> None:
    """Per-1,000-entity figures divide by the rows a request was sent for: a re-run that holds
    a failing row or meets an empty one adds no entity (it used to add one per held row)."""
    store = Store.open(None)
    with_empty = pl.concat([CATALOGUE, pl.DataFrame({"item_id": [4], "title": ["  "]})])
    _run(store, ScriptedChat(script=_bad_for_cursed), with_empty)  # 2 stored, 1 failed, 1 empty
    again = ScriptedChat(script=_bad_for_cursed)
    _run(store, again, with_empty)  # 2 skipped, item 2 held, item 4 empty again
    assert again.calls == []  # all 4 calls (items 1 and 3 once, item 2 twice) were in run 1
    ledger = store.con.sql(read_sql("queries/llm_cost_per_prompt.sql")).pl()
    assert ledger.select("calls", "entities").rows() == [(4, 3)]  # entities: items 1, 2, 3


def test_the_backoff_doubles_with_each_failure() -> None:
    store = Store.open(None)
    _run(store, ScriptedChat(script=_bad_for_cursed), retry_failed_after_h=10)
    _age_errors(store, 11)  # past the first wait (10 h): asked again, fails again
    second = ScriptedChat(script=_bad_for_cursed)
    _run(store, second, retry_failed_after_h=10)
    assert _calls_for(second, "Cursed") == 2
    _age_errors(store, 11)  # the second wait is 20 h: still held
    third = ScriptedChat(script=_bad_for_cursed)
    _run(store, third, retry_failed_after_h=10)
    assert _calls_for(third, "Cursed") == 0
    _age_errors(store, 10)  # 21 h after the second failure
    fourth = ScriptedChat(script=_bad_for_cursed)
    _run(store, fourth, retry_failed_after_h=10)
    assert _calls_for(fourth, "Cursed") == 2


def test_a_changed_input_is_asked_at_once() -> None:
    store = Store.open(None)
    _run(store, ScriptedChat(script=_bad_for_cursed))
    fixed = CATALOGUE.with_columns(
        pl.when(pl.col("item_id") == 2)
        .then(pl.lit("Blessed Film (1990)"))
        .otherwise(pl.col("title"))
        .alias("title")
    )
    llm = ScriptedChat(script=_bad_for_cursed)
    out = _run(store, llm, fixed)
    assert _calls_for(llm, "Blessed") == 1
    assert out.filter(pl.col("item_id") == 2)["status"].item() == "enriched"


def test_memory_off_asks_every_run() -> None:
    store = Store.open(None)
    _run(store, ScriptedChat(script=_bad_for_cursed), retry_failed_after_h=0)
    llm = ScriptedChat(script=_bad_for_cursed)
    _run(store, llm, retry_failed_after_h=0)
    assert _calls_for(llm, "Cursed") == 2


def test_transient_errors_are_retried_by_the_next_run() -> None:
    def down_for_cursed(text: str, attempt: int) -> object:
        if "Cursed" in text:
            raise TransientError("503 from the provider")
        return GOOD

    store = Store.open(None)
    out = _run(store, ScriptedChat(script=down_for_cursed), max_retries=0)
    assert out.filter(pl.col("item_id") == 2)["error"].item().startswith("llm:")
    llm = ScriptedChat()
    out = _run(store, llm)
    assert _calls_for(llm, "Cursed") == 1
    assert out.filter(pl.col("item_id") == 2)["status"].item() == "enriched"


def test_the_plan_counts_held_rows_and_plans_no_call_for_them() -> None:
    store = Store.open(None)
    _run(store, ScriptedChat(script=_bad_for_cursed))
    plan = plan_items(
        CATALOGUE, llm=ScriptedChat(script=_bad_for_cursed), store=store, embedder=HashEmbedder()
    )
    assert (plan.stored, plan.held, plan.to_generate) == (2, 1, 0)


def test_enrich_errors_lists_what_keeps_failing() -> None:
    store = Store.open(None)
    _run(store, ScriptedChat(script=_bad_for_cursed), retry_failed_after_h=10)
    _age_errors(store, 11)
    _run(store, ScriptedChat(script=_bad_for_cursed), retry_failed_after_h=10)
    _run(store, ScriptedChat(script=_bad_for_cursed), retry_failed_after_h=10)  # held
    rows = store.failing_rows(10 * 3600, 30 * 86400)
    assert rows["entity_id"].to_list() == ["2"]
    row = rows.row(0, named=True)
    assert (row["kind"], row["stage"], row["attempts"]) == ("items", "held", 2)
    assert row["error"].startswith("Failed to parse ItemProfile")  # the reason, not "held"
    waited = row["retry_at"] - utc_now()
    assert timedelta(hours=19) < waited <= timedelta(hours=20)


def test_enrich_errors_cli_shows_why_and_when(tmp_path, capsys) -> None:
    from enrich.cli import main

    path = tmp_path / "f.duckdb"
    store = Store.open(path)
    _run(store, ScriptedChat(script=_bad_for_cursed))
    _run(store, ScriptedChat(script=_bad_for_cursed))  # held
    store.close()
    assert main(["errors", "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 entities still failing (1 failed validation")
    assert "Failed to parse ItemProfile" in out and "held" in out
    assert main(["errors", "--store", str(tmp_path / "missing.duckdb")]) == 2


def test_a_worker_holds_what_the_store_remembers() -> None:
    """The flows' path: workers start from empty stores, so the writer ships them the failures
    on record (failure_history) and merges what they return."""
    from enrich.staging import failure_history, merge, stage_items

    store = Store.open(None)
    _run(store, ScriptedChat(script=_bad_for_cursed))
    history = failure_history(store, "items", CATALOGUE["item_id"].to_list())
    assert history.num_rows == 1  # item 2's validation failure
    llm = ScriptedChat(script=_bad_for_cursed)
    staged = stage_items(CATALOGUE, history=history, llm=llm, embedder=HashEmbedder())
    assert _calls_for(llm, "Cursed") == 0 and staged.report.rows_failed == 1
    before = store.scalar("SELECT count(*) FROM enrich_errors")
    merge(store, staged)
    stages = store.con.execute(
        "SELECT stage FROM enrich_errors ORDER BY created_at"
    ).fetchall()  # the history is not merged twice; the held row is added
    assert store.scalar("SELECT count(*) FROM enrich_errors") == before + 1
    assert stages[-1] == ("held",)
