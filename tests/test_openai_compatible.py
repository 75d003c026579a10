"""The OpenAI-compatible path against a real server (llama-cpp-python's, on 127.0.0.1), with a
real fault-injecting proxy in front of it."""

from __future__ import annotations

import logging

import duckdb
import polars as pl
import pytest

import enrich
from enrich.config import EnrichSettings
from tests.servers import FaultProxy, llama_server

pytestmark = pytest.mark.slow
SECRET = "sk-enrich-test-0123456789abcdef"


@pytest.fixture(scope="module")
def server():
    with llama_server(alias="smollm2") as url:
        yield url


@pytest.fixture
def items(ml_items) -> pl.DataFrame:
    return ml_items.head(6)


def dump(store: str) -> str:
    con = duckdb.connect(store, read_only=True)
    text = str(con.execute("SELECT * FROM runs").fetchall())
    text += str(con.execute("SELECT * FROM enrich_errors").fetchall())
    con.close()
    return text


def test_served_model_incremental_and_secret_free(
    server, items, tmp_path, embedder, monkeypatch
) -> None:
    monkeypatch.setenv("ENRICH_LLM_API_KEY", SECRET)
    store = str(tmp_path / "f.duckdb")
    settings = EnrichSettings(max_concurrency=3)
    with FaultProxy(server, rate=0.0) as proxy:
        url = f"{proxy.url}#smollm2"
        out, first = enrich.profile_items(
            items.head(4),
            llm=url,
            store=store,
            embedder=embedder,
            settings=settings,
            with_report=True,
        )
        assert first.rows_generated + first.rows_failed == 4 and first.balanced()
        assert out.filter(pl.col("status") == "enriched").height == first.rows_generated
        assert set(out["model"].drop_nulls()) == {"openai-compatible:smollm2"}
        assert proxy.forwarded == first.llm_calls
        assert any(
            {k.lower(): v for k, v in h.items()}.get("authorization") == f"Bearer {SECRET}"
            for h in proxy.seen_headers
        )

        before = proxy.forwarded
        _, again = enrich.profile_items(
            items.head(4),
            llm=url,
            store=store,
            embedder=embedder,
            settings=settings,
            with_report=True,
        )
        assert proxy.forwarded == before and again.llm_calls == 0
        assert again.rows_skipped == first.rows_generated

        changed = items.head(4).with_columns(
            pl.when(pl.col("item_id") == items["item_id"][0])
            .then(pl.lit("Drama"))
            .otherwise("genres")
            .alias("genres")
        )
        _, once = enrich.profile_items(
            changed, llm=url, store=store, embedder=embedder, settings=settings, with_report=True
        )
        assert proxy.forwarded - before == 1 + first.rows_failed and once.rows_generated >= 1
    assert SECRET not in dump(store)


def test_faults_are_retried_or_recorded_never_lost(
    server, items, tmp_path, embedder, monkeypatch, caplog
) -> None:
    """Faults at a 30% rate, with an API key set: every row enriched or recorded, nothing
    duplicated, the ledger adds up, and the key is in no log line, table or error."""
    monkeypatch.setenv("ENRICH_LLM_API_KEY", SECRET)
    caplog.set_level(logging.DEBUG)  # httpx, openai, langchain, enrich: everything
    store = str(tmp_path / "f.duckdb")
    settings = EnrichSettings(max_concurrency=3, timeout_s=3, max_retries=4, fix_attempts=1)
    with FaultProxy(server, rate=0.3, seed=7, hang_s=4) as proxy:
        out, report = enrich.profile_items(
            items,
            llm=f"{proxy.url}#smollm2",
            store=store,
            embedder=embedder,
            settings=settings,
            with_report=True,
        )
    assert proxy.faults, "the proxy injected no fault"
    assert report.balanced() and report.rows_in == items.height
    con = duckdb.connect(store, read_only=True)
    stored = {r[0] for r in con.execute("SELECT item_id FROM item_profiles").fetchall()}
    errors = {r[0] for r in con.execute("SELECT entity_id FROM enrich_errors").fetchall()}
    run = con.execute("SELECT rows_in, rows_generated, rows_failed, llm_calls FROM runs").fetchall()
    con.close()
    ids = {str(i) for i in items["item_id"]}
    assert stored | errors == ids and not stored & errors  # every row: a profile or an error
    assert run == [(items.height, report.rows_generated, report.rows_failed, report.llm_calls)]
    assert report.llm_calls >= items.height  # faults cost extra requests, all counted
    assert out.filter(pl.col("status") == "failed")["error"].null_count() == 0
    assert any(  # the key was sent where it belongs: the Authorization header
        {k.lower(): v for k, v in h.items()}.get("authorization") == f"Bearer {SECRET}"
        for h in proxy.seen_headers
    )
    assert caplog.records and SECRET not in caplog.text
    assert SECRET not in dump(store)
    assert SECRET not in str(out.select("error").to_dicts())
