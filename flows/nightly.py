"""The nightly enrichment flow: extract → detect new or changed rows → enrich in chunks (mapped
tasks) → merge into the store (single writer) → audits → artifact and run report.

Chunks are enriched into in-memory stores by ``enrich.staging`` and merged by the flow as each
finishes, so the same flow runs on threads or on a Dask cluster, the DuckDB file has one writer,
and a killed run resumes without repeating the LLM calls of merged chunks.

    python -m flows.nightly --items ../shared/data/ml-100k/items.parquet --store features.duckdb
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from pydantic import BaseModel, Field

from enrich.config import EnrichSettings
from enrich.profiles import pending_items
from enrich.staging import StagedRun, merge, stage_items
from enrich.store import Store, audit
from flows.sources import Source

IO_RETRIES: dict[str, Any] = {"retries": 3, "retry_delay_seconds": [2, 5, 15]}


class NightlyParams(BaseModel):
    """Parameters of the nightly flow (Prefect validates them and shows them in the UI)."""

    items: Source = Field(description="where the item catalogue is read from")
    store: str = Field("features.duckdb", description="the DuckDB feature store file")
    id_col: str = "item_id"
    text_cols: list[str] | None = None
    llm: str | None = Field(None, description="spec or base URL; None: the embedded model")
    embedder: str | None = None
    chunk_size: int = Field(64, ge=1, description="rows per mapped task")
    max_concurrency: int = Field(4, ge=1, description="LLM requests in flight per task")
    max_tokens_total: int | None = Field(None, description="token budget per chunk")


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def extract(source: Source) -> pl.DataFrame:
    return source.connector().read()


@task(cache_policy=NO_CACHE)
def detect_changes(frame: pl.DataFrame, params: NightlyParams) -> pl.DataFrame:
    return pending_items(
        frame, params.store, id_col=params.id_col, text_cols=params.text_cols, llm=params.llm
    )


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def enrich_chunk(chunk: pl.DataFrame, params: NightlyParams) -> StagedRun:
    settings = EnrichSettings(
        max_concurrency=params.max_concurrency,
        chunk_size=params.chunk_size,
        max_tokens_total=params.max_tokens_total,
    )
    return stage_items(
        chunk,
        id_col=params.id_col,
        text_cols=params.text_cols,
        llm=params.llm,
        embedder=params.embedder,
        settings=settings,
    )


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def commit(staged: StagedRun, store_path: str) -> None:
    store = Store.open(store_path, lock_timeout_s=60)
    try:
        merge(store, staged)
    finally:
        store.close()


@task(cache_policy=NO_CACHE)
def run_audits(store_path: str) -> dict[str, int]:
    store = Store.open(store_path, lock_timeout_s=60)
    try:
        return {name: rows.height for name, rows in audit(store).items()}
    finally:
        store.close()


@flow(name="enrich-nightly", log_prints=True)
def nightly(params: NightlyParams) -> dict[str, Any]:
    """Enrich what is new or changed in the catalogue; return the run report."""
    started = time.perf_counter()
    logger = get_run_logger()
    frame = extract(params.items)
    todo = detect_changes(frame, params)
    logger.info("%d rows in, %d new or changed", frame.height, todo.height)
    chunks = [todo.slice(i, params.chunk_size) for i in range(0, todo.height, params.chunk_size)]
    futures = enrich_chunk.map(chunks, params=unmapped(params)) if chunks else []
    report: dict[str, Any] = {
        "rows_in": frame.height,
        "rows_skipped": frame.height - todo.height,
        "cache_hits": 0,
        "llm_calls": 0,
        "rows_generated": 0,
        "rows_enriched": 0,
        "rows_failed": 0,
        "tokens_in": 0,
        "tokens_out": 0,
        "cost": 0.0,
        "chunks": len(chunks),
        "failed_ids": [],
    }
    for future in as_completed(futures):
        staged = future.result()
        commit(staged, params.store)  # the single writer: each chunk lands as it finishes
        r = staged.report
        for key in (
            "cache_hits",
            "llm_calls",
            "rows_generated",
            "rows_enriched",
            "rows_failed",
            "tokens_in",
            "tokens_out",
            "cost",
        ):
            report[key] += getattr(r, key)
        report["failed_ids"] += sorted(r.failures)
    report["audits"] = run_audits(params.store)
    report["seconds"] = round(time.perf_counter() - started, 2)
    report["finished_at"] = datetime.now().isoformat(timespec="seconds")
    _publish(report)
    return report


def _publish(report: dict[str, Any]) -> None:
    counts = {k: v for k, v in report.items() if k not in ("failed_ids", "audits")}
    create_table_artifact(
        key="enrich-nightly-report",
        table=[counts],
        description="enrich nightly: rows in, skipped, cache hits, LLM calls, enriched, failed, "
        "tokens, cost, duration",
    )
    failed = report["failed_ids"]
    create_markdown_artifact(
        key="enrich-nightly-errors",
        markdown="No row failed."
        if not failed
        else f"{len(failed)} row(s) failed (details in the store's `enrich_errors`):\n\n"
        + ", ".join(f"`{i}`" for i in failed[:500]),
    )


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description="run the nightly enrichment once, now")
    parser.add_argument("--items", required=True, help="Parquet/CSV path or glob")
    parser.add_argument("--store", default="features.duckdb")
    parser.add_argument("--llm")
    parser.add_argument("--chunk-size", type=int, default=64)
    args = parser.parse_args()
    result = nightly(
        NightlyParams(
            items=Source(kind="file", path=args.items),
            store=args.store,
            llm=args.llm,
            chunk_size=args.chunk_size,
        )
    )
    print(json.dumps(result, default=str))
