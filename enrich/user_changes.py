"""Which users changed, over an interaction log read in batches, in bounded memory.

A user's input is their whole history, so a user's events must be seen together, but a log
rarely comes sorted by user. :func:`changed_users` reads the log once, a batch at a time, into a
temporary DuckDB table of the store (held to a memory limit, past which DuckDB spills to disk),
each event tagged with a hash of its user id. It then takes the users a partition at a time —
every event of the users whose hash falls in it, about ``partition_rows`` events — and asks
:func:`enrich.user_profiles.pending_users` which of them changed, as it would of the whole log.
It keeps the changed users' events, their attribute rows and the catalogue rows those events
name (the catalogue read a batch at a time, :func:`enrich.changes.rows_named`).

Memory holds one batch or one partition, the catalogue rows the log names, the changed users'
events and what DuckDB is allowed.

Example:
    >>> from connectors import FileSource
    >>> users = changed_users(FileSource("events/*.parquet").iter_batches,
    ...                       FileSource("catalogue.parquet").iter_batches,
    ...                       "features.duckdb", time_col="ts")  # doctest: +SKIP
    >>> len(users.ids), users.users_in  # doctest: +SKIP
    (2300, 410000)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from enrich.changes import rows_named, rows_with
from enrich.duckdb_memory import MEMORY_LIMIT, memory_limited
from enrich.errors import InputError
from enrich.inputs import to_polars
from enrich.store import Store
from enrich.user_profiles import UserOptions, pending_users

PARTITION_ROWS = 1_000_000
"""Events per partition, about: the users whose histories are built and compared at once."""

_HASH, _ROW = "_enrich_user_hash", "_enrich_row"


@dataclass(frozen=True)
class UserChanges:
    """The users whose history shown to the LLM changed, with what their profiles need."""

    ids: list[Any]
    """The changed users' ids, as the log gives them."""
    log: pl.DataFrame
    """Their events (every event of theirs, not only the new ones), as the log gave them."""
    items: pl.DataFrame | None
    """The catalogue rows their events name (None: no catalogue given)."""
    people: pl.DataFrame | None
    """Their rows of the users' attribute table (None: none given)."""
    users_in: int
    """Distinct users in the log and the attribute table together."""


def changed_users(
    log_batches: Callable[[], Iterable[Any]],
    items_batches: Callable[[], Iterable[Any]] | None,
    store: str | Path | Store | None,
    *,
    people: Any | None = None,
    llm: Any = None,
    partition_rows: int = PARTITION_ROWS,
    memory_limit: str = MEMORY_LIMIT,
    **options: Any,
) -> UserChanges:
    """The users :func:`enrich.user_profiles.pending_users` would find in the whole log (new, or
    whose shown history changed), reading ``log_batches()`` once and ``items_batches()`` once.
    ``people``: the users' attribute rows (a frame); ``options``: those of
    :func:`enrich.user_profiles.profile_users` (:class:`enrich.user_profiles.UserOptions`)."""
    o = UserOptions(**options)
    user, item = o.user_col, o.item_col
    people = None if people is None else _tagged(to_polars(people), user, "users frame")
    with Store.borrow(store) as opened, memory_limited(opened.con, memory_limit):
        con = opened.con
        rows_in, created, named = 0, False, []
        try:
            for batch in log_batches():
                frame = to_polars(batch)
                if not frame.width:
                    continue
                if item not in frame.columns:
                    raise InputError(
                        f"interactions lack column {item!r}; they have {frame.columns}. "
                        "Name it with item_col="
                    )
                frame = _tagged(frame, user, "interactions").with_columns(
                    pl.int_range(rows_in, rows_in + frame.height, dtype=pl.UInt64).alias(_ROW)
                )
                named.append(frame.get_column(item).cast(pl.Utf8).unique())
                con.register("enrich_batch", frame.to_arrow())
                con.execute(
                    "INSERT INTO enrich_log BY NAME SELECT * FROM enrich_batch"
                    if created
                    else "CREATE OR REPLACE TEMP TABLE enrich_log AS SELECT * FROM enrich_batch"
                )
                con.unregister("enrich_batch")
                created = True
                rows_in += frame.height
            if not created:
                raise InputError("the interaction log has no rows and no columns")
            ids = pl.concat(named).unique() if named else pl.Series([], dtype=pl.Utf8)
            items = None if items_batches is None else rows_named(items_batches, item, ids)
            parts = max(1, math.ceil(rows_in / partition_rows))
            found, logs, folks, users_in = [], [], [], 0
            for p in range(parts):
                log = con.sql(
                    f"SELECT * FROM enrich_log WHERE {_HASH} % $parts = $p ORDER BY {_ROW}",
                    params={"parts": parts, "p": p},
                ).pl()
                log = log.drop(_HASH, _ROW)
                folk = None if people is None else people.filter(pl.col(_HASH) % parts == p)
                users_in += _distinct_users(log, folk, user)
                folk = None if folk is None else folk.drop(_HASH)
                changed = pending_users(log, items, opened, llm=llm, users=folk, **options)
                found += changed
                logs.append(rows_with(log, user, changed))
                if folk is not None:
                    folks.append(rows_with(folk, user, changed))
        finally:
            con.execute("DROP TABLE IF EXISTS enrich_log")
    log = pl.concat(logs, how="vertical_relaxed")
    return UserChanges(
        ids=found,
        log=log,
        items=None if items is None else rows_with(items, item, log.get_column(item).unique()),
        people=None if people is None else pl.concat(folks, how="vertical_relaxed"),
        users_in=users_in,
    )


def _tagged(frame: pl.DataFrame, user: str, what: str) -> pl.DataFrame:
    """``frame`` with a hash of each row's user id (as text) in column ``_HASH``."""
    if user not in frame.columns:
        raise InputError(
            f"{what} lack column {user!r}; they have {frame.columns}. Name it with user_col="
        )
    return frame.with_columns(pl.col(user).cast(pl.Utf8).hash(seed=0).alias(_HASH))


def _distinct_users(log: pl.DataFrame, people: pl.DataFrame | None, user: str) -> int:
    ids = [log.get_column(user).cast(pl.Utf8)]
    if people is not None:
        ids.append(people.get_column(user).cast(pl.Utf8))
    return pl.concat(ids).drop_nulls().n_unique()
