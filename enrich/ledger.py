"""The store's ledger: one ``runs`` row per run, ``enrich_errors`` rows per failed entity, and
``eval_runs`` rows per evaluation (a part of :class:`enrich.store.Store`).

Example:
    >>> from enrich.store import Store
    >>> Store.open(None).scalar("SELECT count(*) FROM enrich_errors")
    0
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from enrich.report import utc_now
from enrich.sqlfiles import read_sql


class Ledger:
    """Runs, errors and evaluation results (mixed into :class:`enrich.store.Store`)."""

    con: duckdb.DuckDBPyConnection

    def record_run(self, run: dict[str, Any]) -> None:
        """Insert or update the ``runs`` row of a run (called at its start and its end)."""
        cols = list(run)
        params = ", ".join("?" for _ in cols)
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "run_id")
        self.con.execute(
            f"INSERT INTO runs ({', '.join(cols)}) VALUES ({params}) "
            f"ON CONFLICT DO UPDATE SET {updates}",
            list(run.values()),
        )

    def record_errors(self, rows: pa.Table) -> None:
        """Append error rows (``run_id, kind, entity_id, stage, error, raw_output,
        request_key``)."""
        if rows.num_rows:
            self.con.execute(
                "INSERT INTO enrich_errors BY NAME SELECT run_id, kind, entity_id, stage, error, "
                "raw_output, request_key, ? AS created_at FROM rows",
                [utc_now()],
            )

    def held_requests(
        self, request_keys: list[str], now: datetime, base_s: float, max_s: float
    ) -> pl.DataFrame:
        """Failure memory: the requests among ``request_keys`` that failed validation before and
        still wait (``request_key, attempts, last_error, retry_at``; see
        ``sql/queries/held_requests.sql``)."""
        wanted = pa.table({"request_key": pa.array(request_keys, pa.string())})
        self.con.register("wanted", wanted)
        try:
            return self.con.sql(
                read_sql("queries/held_requests.sql"),
                params={"now": now, "base_s": float(base_s), "max_s": float(max_s)},
            ).pl()
        finally:
            self.con.unregister("wanted")

    def failing_rows(self, base_s: float, max_s: float) -> pl.DataFrame:
        """What keeps failing: each entity whose newest record is an error, why, its attempts
        and when it is asked again (``sql/queries/failing_rows.sql``; ``enrich errors``)."""
        parts = ["SELECT NULL::VARCHAR AS kind, NULL::VARCHAR AS entity_id, NULL::TIMESTAMP AS at"]
        if self.scalar("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'item_profiles'"):
            parts += [
                "SELECT 'items', item_id, max(created_at) FROM item_profiles GROUP BY ALL",
                "SELECT 'users', user_id, max(created_at) FROM user_profiles GROUP BY ALL",
            ]
        self.con.execute("CREATE OR REPLACE TEMP VIEW profiled AS " + " UNION ALL ".join(parts))
        return self.con.sql(
            read_sql("queries/failing_rows.sql"),
            params={"base_s": float(base_s), "max_s": float(max_s)},
        ).pl()

    def record_eval(self, rows: pa.Table) -> None:
        """Append ``enrich evaluate`` results (columns named as in ``eval_runs``)."""
        self.con.execute("INSERT INTO eval_runs BY NAME SELECT * FROM rows")
