"""Staged runs: enrich a chunk anywhere (a Dask worker, another process) into an in-memory
store, ship the resulting rows, and merge them into the real store in one transaction.

DuckDB has one writer per file; this is how many workers share it: they never open it, the
flow's single writer merges what they return.

Example:
    >>> staged = stage_items(chunk, llm="http://vllm:8000/v1#qwen")  # on a worker # doctest: +SKIP
    >>> merge(Store.open("features.duckdb"), staged)  # on the writer       # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from enrich.profile_rows import KINDS
from enrich.profiles import profile_items
from enrich.report import RunReport
from enrich.store import Store

STAGED_TABLES = {  # table: the columns that identify a row (merging twice adds nothing)
    "llm_cache": ("key",),
    "embedding_cache": ("text_hash", "embedding_model"),
    "enrich_errors": ("run_id", "entity_id", "stage"),
    "runs": ("run_id",),
}


@dataclass
class StagedRun:
    """The rows one chunk produced, as Arrow tables, with its report."""

    report: RunReport
    tables: dict[str, pa.Table] = field(default_factory=dict)
    dim: int | None = None


def snapshot(store: Store, report: RunReport) -> StagedRun:
    """Everything an in-memory store holds, as Arrow tables."""
    staged = StagedRun(report=report, dim=store.embedding_dim())
    names = list(STAGED_TABLES)
    if staged.dim is not None:
        names += [kind.table for kind in KINDS.values()]
    for name in names:
        staged.tables[name] = store.con.sql(f"SELECT * FROM {name}").to_arrow_table()
    return staged


def failure_history(store: Store, kind: str, ids: list[Any]) -> pa.Table:
    """The validation failures on record for ``ids`` (``enrich_errors`` rows): what a worker's
    fresh store needs for the failure memory to hold what still waits."""
    wanted = pa.table({"entity_id": pa.array([str(i) for i in ids], pa.string())})  # noqa: F841
    return store.con.sql(
        "SELECT e.* FROM enrich_errors AS e SEMI JOIN wanted AS w USING (entity_id) "
        "WHERE e.kind = ? AND e.stage = 'validation'",
        params=[kind],
    ).to_arrow_table()


def _fresh_store(history: pa.Table | None) -> Store:
    store = Store.open(None)
    if history is not None and history.num_rows:
        store.con.execute("INSERT INTO enrich_errors BY NAME SELECT * FROM history")
    return store


def stage_items(chunk: Any, history: pa.Table | None = None, **kwargs: Any) -> StagedRun:
    """``profile_items`` on ``chunk`` into a fresh in-memory store (holding ``history``, the
    :func:`failure_history` of its rows); returns its rows."""
    store = _fresh_store(history)
    _, report = profile_items(chunk, store=store, with_report=True, **kwargs)
    return snapshot(store, report)


def merge(store: Store, staged: StagedRun) -> None:
    """Write a staged run into ``store``: all of it or nothing (one transaction)."""
    if staged.dim is not None:
        store.ensure_profile_tables(staged.dim)
    with store.transaction():
        for kind in KINDS.values():
            rows = staged.tables.get(kind.table)
            if rows is not None and rows.num_rows:
                store.upsert_profiles(kind.name, rows)
        for name, keys in STAGED_TABLES.items():
            rows = staged.tables.get(name)
            if rows is None or not rows.num_rows:
                continue
            store.con.register("enrich_staged", rows)
            store.con.execute(
                f"INSERT INTO {name} SELECT s.* FROM enrich_staged AS s "
                f"ANTI JOIN {name} AS t USING ({', '.join(keys)})"
            )
            store.con.unregister("enrich_staged")


def stage_users(
    interactions: Any, items: Any | None = None, history: pa.Table | None = None, **kwargs: Any
) -> StagedRun:
    """``profile_users`` into a fresh in-memory store (holding ``history``); returns its rows."""
    from enrich.user_profiles import profile_users

    store = _fresh_store(history)
    _, report = profile_users(interactions, items, store=store, with_report=True, **kwargs)
    return snapshot(store, report)
