"""The store's ledger: one ``runs`` row per run, ``enrich_errors`` rows per failed entity, and
``eval_runs`` rows per evaluation (a part of :class:`enrich.store.Store`).

Example:
    >>> from enrich.store import Store
    >>> Store.open(None).scalar("SELECT count(*) FROM enrich_errors")
    0
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa


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
        """Append error rows (``run_id, kind, entity_id, stage, error, raw_output``)."""
        if rows.num_rows:
            self.con.execute(
                "INSERT INTO enrich_errors SELECT run_id, kind, entity_id, stage, error, "
                "raw_output, now() FROM rows"
            )

    def record_eval(self, rows: pa.Table) -> None:
        """Append ``enrich evaluate`` results (columns named as in ``eval_runs``)."""
        self.con.execute("INSERT INTO eval_runs BY NAME SELECT * FROM rows")
