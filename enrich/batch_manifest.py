"""The store's batch manifest: every batch submitted to a provider, recorded before it is
created, with the requests it holds (a part of :class:`enrich.store.Store`).

Example:
    >>> from enrich.store import Store
    >>> Store.open(None).batches_open("https://api.openai.com/v1", "openai:gpt-4o-mini")
    []
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from enrich.report import utc_now
from enrich.sqlfiles import quote_ident, read_sql

_UPDATABLE = frozenset(
    {
        "input_file_id",
        "batch_id",
        "status",
        "n_answered",
        "n_failed",
        "submitted_at",
        "collected_at",
        "error",
    }
)


class BatchManifest:
    """``llm_batches`` and ``llm_batch_requests`` (mixed into :class:`enrich.store.Store`)."""

    con: duckdb.DuckDBPyConnection

    def batch_record(self, submission: dict[str, Any], request_keys: list[str]) -> None:
        """Record a submission (status ``preparing``) and its requests, committed together."""
        row = {**submission, "status": "preparing", "created_at": utc_now()}
        cols = list(row)
        keys = pa.table(  # noqa: F841 - read by the SQL below
            {
                "submission_id": [row["submission_id"]] * len(request_keys),
                "request_key": pa.array(request_keys, pa.string()),
            }
        )
        self.con.execute("BEGIN TRANSACTION")
        try:
            self.con.execute(
                f"INSERT INTO llm_batches ({', '.join(map(quote_ident, cols))}) "
                f"VALUES ({', '.join('?' for _ in cols)})",
                list(row.values()),
            )
            self.con.execute("INSERT INTO llm_batch_requests SELECT * FROM keys")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def batch_update(self, submission_id: str, **fields: Any) -> None:
        """Set some of a submission's columns (file and batch ids, status, counts, times)."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"llm_batches has no updatable column(s) {sorted(unknown)}")
        sets = ", ".join(f"{quote_ident(c)} = ?" for c in fields)
        self.con.execute(
            f"UPDATE llm_batches SET {sets} WHERE submission_id = ?",
            [*fields.values(), submission_id],
        )

    def batches_open(self, endpoint: str, model: str) -> list[dict[str, Any]]:
        """The submissions of ``endpoint`` and ``model`` not yet collected, oldest first."""
        cur = self.con.execute(
            read_sql("queries/batches_open.sql"), {"endpoint": endpoint, "model": model}
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def batch_requests(self, submission_id: str) -> list[str]:
        """The request keys (``custom_id``) of one submission."""
        rows = self.con.execute(
            "SELECT request_key FROM llm_batch_requests WHERE submission_id = ? "
            "ORDER BY request_key",
            [submission_id],
        ).fetchall()
        return [k for (k,) in rows]
