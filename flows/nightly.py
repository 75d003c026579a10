"""The nightly enrichment flow: extract → detect new or changed rows → enrich in chunks (mapped
tasks) → merge into the store (single writer) → audits → artifact and run report.

Items are read and compared a batch at a time (``enrich.changes``): the extract task's result is
the rows that changed, not the catalogue. With users, the interaction log is read a batch at a
time into a temporary table of the store and compared a partition of users at a time
(``enrich.user_changes``), the catalogue read a batch at a time keeping only the items the log
names; the task's result is the changed users' events and items, and each user task gets only
its own users' events and items.

In batch mode (``settings.batch``) the new or changed rows go to the provider's Batches API in
one run on the store itself; with ``batch_wait=False`` the flow submits and returns, and the
next night's run collects what finished (rows pending meanwhile are recorded as such).

Chunks are enriched into in-memory stores by ``enrich.staging`` and merged by the flow as each
finishes, so the same flow runs on threads or on a Dask cluster, the DuckDB file has one writer,
and a killed run resumes without repeating the LLM calls of merged chunks.

    python -m flows.nightly --items ../shared/data/ml-100k/items.parquet --store features.duckdb
    python -m flows.nightly --items catalogue.parquet --llm openai:gpt-4o-mini --batch
"""

from __future__ import annotations

import dataclasses
import queue
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
from prefect import flow, get_run_logger, runtime, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from enrich import snapshots
from enrich.changes import Changes, changed_items, rows_with
from enrich.config import EnrichSettings
from enrich.neighbours import update_index
from enrich.profiles import profile_items
from enrich.report import RunReport
from enrich.schemas import ItemProfile
from enrich.staging import StagedRun, failure_history, merge, stage_items, stage_users
from enrich.store import Store, audit
from enrich.user_changes import UserChanges, changed_users
from enrich.user_profiles import profile_users
from enrich.vocab import Vocabulary, controlled
from flows.sources import Source

IO_RETRIES: dict[str, Any] = {"retries": 3, "retry_delay_seconds": [2, 5, 15]}


class NightlyParams(BaseModel):
    """Parameters of the nightly flow (Prefect validates them and shows them in the UI)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt or retired parameter is an error

    items: Source = Field(description="where the item catalogue is read from")
    store: str = Field("features.duckdb", description="the DuckDB feature store file")
    id_col: str = "item_id"
    text_cols: list[str] | None = None
    llm: str | None = Field(None, description="spec or base URL; None: the embedded model")
    embedder: str | None = None
    settings: EnrichSettings = Field(
        default_factory=EnrichSettings,
        description="how each task calls the LLM; settings.chunk_size is also the rows per "
        "mapped task; the budget (max_tokens_total, max_cost) and the rate limits hold for the "
        "whole flow run, across every task and worker (shared through settings.shared_quota, "
        "by default a file next to the store)",
    )
    interactions: Source | None = Field(None, description="interaction log; None: items only")
    users: Source | None = Field(None, description="user attributes (optional)")
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    rating_col: str | None = "rating"
    as_of: datetime | None = Field(None, description="profile users from data before this")
    item_text_cols: list[str] = Field(default_factory=lambda: ["title"])
    user_attr_cols: list[str] = Field(default_factory=list)
    read_snapshots: bool = Field(
        True,
        description="publish a read snapshot of the store after each merge, so readers "
        "(Store.open_reader, the CLI) query the newest committed features while the flow runs "
        "and never block it",
    )
    snapshot_every_s: float = Field(
        10.0,
        ge=0,
        description="publish read snapshots at most this often (and at most a tenth of the "
        "flow's time: a snapshot copies the whole store, 16 s at 1M profiles); the state after "
        "the last merge is always published",
    )
    neighbour_index: bool = Field(
        True,
        description="bring the item neighbour index beside the store up to date after the "
        "merges (changed rows only; enrich.neighbours)",
    )
    vocabularies: dict[str, str] = Field(
        default_factory=dict,
        description="item schema field -> stored vocabulary name (`enrich vocab`): the field "
        "chooses from it; the newest stored version is pinned when the run starts",
    )

    @property
    def chunk_size(self) -> int:
        return self.settings.chunk_size

    def user_kwargs(self) -> dict[str, Any]:
        return {
            "user_col": self.user_col,
            "item_col": self.item_col,
            "time_col": self.time_col,
            "rating_col": self.rating_col,
            "as_of": self.as_of,
            "item_text_cols": tuple(self.item_text_cols),
            "user_attr_cols": tuple(self.user_attr_cols),
            "llm": self.llm,
        }


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def extract_user_changes(params: NightlyParams) -> UserChanges:
    """The users whose shown history changed, with their events, attribute rows and the
    catalogue rows their events name: the log read a batch at a time and compared a partition
    of users at a time, the catalogue a batch at a time (``enrich.user_changes``)."""
    assert params.interactions is not None
    return changed_users(
        params.interactions.connector().iter_batches,
        params.items.connector().iter_batches,
        params.store,
        people=None if params.users is None else params.users.connector().read(),
        **params.user_kwargs(),
    )


@task(cache_policy=NO_CACHE)
def start_snapshots(store_path: str) -> None:
    """Turn read snapshots on for the store (one published now if none is); every merge then
    publishes the next when it closes the store."""
    if snapshots.newest(store_path) is None:
        store = Store.open(store_path, lock_timeout_s=60)
        try:
            snapshots.publish(store)
        finally:
            store.close()


@task(cache_policy=NO_CACHE)
def pin_vocabularies(params: NightlyParams) -> dict[str, list[str]]:
    """The labels of each vocabulary the item schema chooses from, read once per run (workers
    get the labels, not the store)."""
    if not params.vocabularies:
        return {}
    store = Store.open(params.store, lock_timeout_s=60)
    try:
        pinned = {f: Vocabulary.load(store, n) for f, n in params.vocabularies.items()}
    finally:
        store.close()
    for field, vocab in pinned.items():
        get_run_logger().info("%s chooses from %s@%s", field, vocab.name, vocab.version)
    return {f: list(v.labels) for f, v in pinned.items()}


def item_schema(labels: dict[str, list[str]]) -> type[BaseModel]:
    return controlled(ItemProfile, **labels) if labels else ItemProfile


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def extract_changes(params: NightlyParams, labels: dict[str, list[str]]) -> Changes:
    """The new or changed items, read from the source a batch at a time (twice: hashes, then
    the rows that changed), so the task's result is what changed, not the whole catalogue."""
    store = Store.open(params.store, lock_timeout_s=60)
    try:
        return changed_items(
            params.items.connector().iter_batches,
            store,
            id_col=params.id_col,
            text_cols=params.text_cols,
            llm=params.llm,
            schema=item_schema(labels),
        )
    finally:
        store.close()


@task(cache_policy=NO_CACHE)
def failures_on_record(params: NightlyParams, kind: str, ids: list[Any]) -> pa.Table:
    """The validation failures of the rows to enrich, shipped to the workers so that the
    failure memory holds there what still waits (their stores start empty)."""
    store = Store.open(params.store, lock_timeout_s=60)
    try:
        return failure_history(store, kind, ids)
    finally:
        store.close()


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def enrich_chunk(
    chunk: pl.DataFrame, params: NightlyParams, labels: dict[str, list[str]], history: pa.Table
) -> StagedRun:
    return stage_items(chunk, history=history, **item_kwargs(params, labels))


def item_kwargs(params: NightlyParams, labels: dict[str, list[str]]) -> dict[str, Any]:
    """The ``profile_items`` arguments of a night (chunked or batched)."""
    return {
        "id_col": params.id_col,
        "text_cols": params.text_cols,
        "llm": params.llm,
        "embedder": params.embedder,
        "settings": params.settings,
        "schema": item_schema(labels),
    }


@task(cache_policy=NO_CACHE)
def enrich_batched(
    rows: pl.DataFrame, params: NightlyParams, labels: dict[str, list[str]]
) -> RunReport:
    """Batch mode: the night's new or changed items in one run on the store itself — one
    submission (cut only at the provider's file limits), collected now or by the next night
    (``settings.batch_wait``). The provider does the work, so nothing is mapped."""
    store = Store.open(params.store, lock_timeout_s=60)
    try:
        _, report = profile_items(
            rows, store=store, with_report=True, **item_kwargs(params, labels)
        )
    finally:
        store.close()
    return report


@task(cache_policy=NO_CACHE)
def enrich_users_batched(
    log: pl.DataFrame, items: pl.DataFrame, people: pl.DataFrame | None, params: NightlyParams
) -> RunReport:
    """Batch mode for users: as :func:`enrich_batched`."""
    store = Store.open(params.store, lock_timeout_s=60)
    try:
        _, report = profile_users(
            log,
            items,
            users=people,
            embedder=params.embedder,
            settings=params.settings,
            store=store,
            with_report=True,
            **params.user_kwargs(),
        )
    finally:
        store.close()
    return report


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def enrich_user_chunk(
    log: pl.DataFrame,
    items: pl.DataFrame,
    people: pl.DataFrame | None,
    params: NightlyParams,
    history: pa.Table,
) -> StagedRun:
    return stage_users(
        log,
        items,
        history=history,
        users=people,
        embedder=params.embedder,
        settings=params.settings,
        **params.user_kwargs(),
    )


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def commit(staged: list[StagedRun], store_path: str, publish: bool = True) -> float:
    """Merge chunks in one transaction; with ``publish`` (and snapshots on) publish a read
    snapshot as the store closes. Returns the seconds the close took (the snapshot's cost)."""
    store = Store.open(store_path, lock_timeout_s=60)
    store.publish_on_close = publish
    try:
        merge(store, *staged)
    finally:
        started = time.perf_counter()
        store.close()
    return time.perf_counter() - started


@task(cache_policy=NO_CACHE)
def publish_snapshot(store_path: str) -> None:
    """Publish the store's committed state as a read snapshot (the flow's last merges)."""
    store = Store.open(store_path, lock_timeout_s=60)
    try:
        snapshots.publish(store)
    finally:
        store.publish_on_close = False
        store.close()


@task(cache_policy=NO_CACHE)
def refresh_neighbours(store_path: str) -> dict[str, Any]:
    """The item neighbour index beside the store, brought up to date (changed rows only)."""
    store = Store.open(store_path, lock_timeout_s=60)
    try:
        if not store.scalar(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'item_profiles'"
        ) or not store.scalar("SELECT count(*) FROM item_profiles"):
            return {}
        return dataclasses.asdict(update_index(store))
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
    """Enrich what is new or changed among items (and users); return the run report."""
    started = time.perf_counter()
    logger = get_run_logger()
    params = one_quota(params, str(runtime.flow_run.id or "local"))
    if params.read_snapshots:
        start_snapshots(params.store)
    labels = pin_vocabularies(params)
    changes = extract_changes(params, labels)
    todo, items_in = changes.rows, changes.rows_in
    logger.info("items: %d in, %d new or changed", items_in, todo.height)
    batch = params.settings.batch
    report: dict[str, Any] = {}
    if batch:
        report["items"] = _summary(
            [enrich_batched(todo, params, labels)] if todo.height else [],
            items_in,
            todo.height,
        )
    else:
        chunks = [
            todo.slice(i, params.chunk_size) for i in range(0, todo.height, params.chunk_size)
        ]
        history = failures_on_record(params, "items", todo[params.id_col].to_list())
        futures = (
            enrich_chunk.map(
                chunks, params=unmapped(params), labels=unmapped(labels), history=unmapped(history)
            )
            if chunks
            else []
        )
        report["items"] = _merge_all(futures, params, items_in, todo.height)
    if params.interactions is not None:
        users = extract_user_changes(params)
        ids, log, items, people = users.ids, users.log, users.items, users.people
        everyone = users.users_in
        logger.info("users: %d in, %d new or changed", everyone, len(ids))
        step = max(len(ids), 1) if batch else params.chunk_size
        parts = [ids[i : i + step] for i in range(0, len(ids), step)]
        logs = [log.filter(pl.col(params.user_col).is_in(p)) for p in parts]
        shown = [rows_with(items, params.item_col, lg[params.item_col].unique()) for lg in logs]
        folks = [
            None if people is None else people.filter(pl.col(params.user_col).is_in(p))
            for p in parts
        ]
        if batch:
            report["users"] = _summary(
                [
                    enrich_users_batched(lg, it, f, params)
                    for lg, it, f in zip(logs, shown, folks, strict=True)
                ],
                everyone,
                len(ids),
            )
        else:
            history = failures_on_record(params, "users", ids)
            futures = enrich_user_chunk.map(logs, shown, folks, unmapped(params), unmapped(history))
            report["users"] = _merge_all(futures, params, everyone, len(ids))
    if params.neighbour_index:
        report["neighbours"] = refresh_neighbours(params.store)
    report["audits"] = run_audits(params.store)
    report["seconds"] = round(time.perf_counter() - started, 2)
    report["finished_at"] = datetime.now().isoformat(timespec="seconds")
    _publish(report)
    return report


def one_quota(params: NightlyParams, run_id: str) -> NightlyParams:
    """``params`` whose every task shares one budget and one set of rate limits: the flow run's
    scope, in a SQLite file next to the store (or ``settings.shared_quota``)."""
    s = params.settings
    path = s.shared_quota or str(Path(params.store).resolve()) + ".quota.sqlite"
    settings = s.model_copy(
        update={"shared_quota": path, "budget_scope": s.budget_scope or f"nightly-{run_id}"}
    )
    return params.model_copy(update={"settings": settings})


def _merge_all(futures: Any, params: NightlyParams, rows_in: int, rows_todo: int) -> dict[str, Any]:
    """Merge chunks as they finish (the single writer): the chunks that finished while the last
    merge ran go in together (up to ``MERGE_GROUP``), one write per table. Read snapshots are
    published paced by ``params.snapshot_every_s``; the chunks' reports are summed. A failed
    chunk fails the flow after the chunks finished with it are merged."""
    finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
    for future in futures:
        future.add_done_callback(finished.put)
    reports, left = [], len(futures)
    last_publish, cost, unpublished = -float("inf"), 0.0, False
    while left:
        group = [finished.get()]
        while len(group) < MERGE_GROUP and not finished.empty():
            group.append(finished.get())
        left -= len(group)
        staged, failure = [], None
        for future in group:
            try:
                staged.append(future.result())
            except Exception as exc:  # merge the others first: their LLM calls are paid for
                failure = failure or exc
        if staged:
            due = time.monotonic() - last_publish >= max(params.snapshot_every_s, 9 * cost)
            took = commit(staged, params.store, publish=due)
            if due:
                last_publish, cost = time.monotonic(), took
            unpublished = not due
            reports += [s.report for s in staged]
        if failure is not None:
            raise failure
    if unpublished and snapshots.enabled(params.store):
        publish_snapshot(params.store)
    return _summary(reports, rows_in, rows_todo)


MERGE_GROUP = 64
"""Finished chunks merged in one transaction at most (64 chunks of 64 rows: 4,096 rows)."""


def _summary(reports: list[RunReport], rows_in: int, rows_todo: int) -> dict[str, Any]:
    """The chunks' reports summed. Rows not new or changed were skipped; each row sent to a
    chunk is enriched, failed or pending in a batch (each recorded in ``enrich_errors``)."""
    totals: dict[str, Any] = dict.fromkeys(
        (
            "cache_hits",
            "llm_calls",
            "rows_generated",
            "rows_enriched",
            "rows_failed",
            "tokens_in",
            "tokens_out",
            "cost",
        ),
        0,
    )
    failed: list[str] = []
    pending = 0
    for report in reports:
        for key in totals:
            value = getattr(report, key)
            totals[key] = None if value is None or totals[key] is None else totals[key] + value
        failed += sorted(report.failures)
        pending += sum(why.startswith("pending:") for why in report.failures.values())
    return {
        "rows_in": rows_in,
        "rows_skipped": rows_in - rows_todo,
        **totals,
        "rows_pending": pending,
        "chunks": len(reports),
        "failed_ids": failed,
    }


def _publish(report: dict[str, Any]) -> None:
    kinds = [k for k in ("items", "users") if k in report]
    table = [
        {
            "kind": k,
            **{c: v for c, v in report[k].items() if c != "failed_ids"},
            "seconds": report["seconds"],
        }
        for k in kinds
    ]
    failed = [i for k in kinds for i in report[k]["failed_ids"]]
    create_table_artifact(
        key="enrich-nightly-report",
        table=table,
        description="enrich nightly: rows in, skipped, cache hits, LLM calls, enriched, failed, "
        "tokens, cost, duration",
    )
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
    parser.add_argument(
        "--batch",
        action="store_true",
        help="submit the night's requests to the provider's Batches API and return; the next "
        "run collects them (settings.batch, batch_wait=False)",
    )
    args = parser.parse_args()
    result = nightly(
        NightlyParams(
            items=Source(kind="file", path=args.items),
            store=args.store,
            llm=args.llm,
            settings=EnrichSettings(
                chunk_size=args.chunk_size,
                **({"batch": True, "batch_wait": False} if args.batch else {}),
            ),
        )
    )
    print(json.dumps(result, default=str))
