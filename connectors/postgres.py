"""PostgreSQL: a table or query as a source, and feature tables written back (upserted).

The DSN's password never appears in errors. Reads stream through a server-side cursor.

Example:
    >>> src = PostgresSource("postgresql://app@db/shop", table="items", schema="catalog")
    >>> for frame in src.iter_batches():                                        # doctest: +SKIP
    ...     enrich.profile_items(frame, store="features.duckdb")
    >>> sink = PostgresSink("postgresql://app@db/shop", table="item_profiles")
    >>> sink.write(features)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from connectors.errors import ConnectorError
from enrich.sqlfiles import quote_ident


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        raise ConnectorError(
            "postgres", "psycopg is not installed", "pip install 'enrich[postgres]'"
        ) from None
    return psycopg


def _label(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        parts = _psycopg().conninfo.conninfo_to_dict(dsn)
    except Exception:
        return "postgres (unparsable DSN)"
    parts.pop("password", None)
    return "postgres " + " ".join(f"{k}={v}" for k, v in sorted(parts.items()))


def _name(schema: str | None, table: str) -> Any:
    sql = _psycopg().sql
    quote_ident(table)  # validate: refuse rather than escape anything unusual
    if schema:
        quote_ident(schema)
        return sql.Identifier(schema, table)
    return sql.Identifier(table)


@dataclass(frozen=True)
class PostgresSource:
    """Rows of ``table`` or of ``query`` (with ``%s`` placeholders bound from ``params``)."""

    dsn: str
    table: str | None = None
    schema: str | None = None
    query: str | None = None
    params: Sequence[Any] = ()
    columns: Sequence[str] | None = None
    batch_size: int = 50_000

    def _statement(self) -> Any:
        sql = _psycopg().sql
        if (self.table is None) == (self.query is None):
            raise ConnectorError(_label(self.dsn), "give exactly one of table= or query=")
        if self.query is not None:
            return sql.SQL(self.query)  # type: ignore[arg-type]
        try:
            cols = (
                sql.SQL(", ").join(sql.Identifier(quote_ident(c) and c) for c in self.columns)
                if self.columns
                else sql.SQL("*")
            )
            return sql.SQL("SELECT {} FROM {}").format(cols, _name(self.schema, self.table or ""))
        except ValueError as exc:
            raise ConnectorError(_label(self.dsn), str(exc)) from None

    def iter_batches(self) -> Iterator[pl.DataFrame]:
        psycopg = _psycopg()
        where = f"{_label(self.dsn)} " + (f"table {self.table!r}" if self.table else "query")
        statement = self._statement()
        try:
            with psycopg.connect(self.dsn) as conn, conn.cursor(name="enrich_read") as cur:
                cur.itersize = self.batch_size
                cur.execute(statement, list(self.params) or None)
                while rows := cur.fetchmany(self.batch_size):
                    names = [d.name for d in cur.description]
                    yield pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)
        except psycopg.Error as exc:
            raise ConnectorError(where, str(exc).strip().splitlines()[0]) from None

    def read(self) -> pl.DataFrame:
        frames = list(self.iter_batches())
        return pl.concat(frames) if frames else pl.DataFrame()


_PG_TYPES = {
    pl.Utf8: "text",
    pl.Int64: "bigint",
    pl.Int32: "integer",
    pl.Float64: "double precision",
    pl.Float32: "real",
    pl.Boolean: "boolean",
    pl.Datetime: "timestamp",
    pl.Date: "date",
}


def _pg_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Array | pl.List):
        return "real[]"
    return _PG_TYPES.get(dtype.base_type(), "text")  # type: ignore[arg-type]


@dataclass(frozen=True)
class PostgresSink:
    """Upserts a feature frame into ``table`` (created if missing), keyed by ``key``.

    A row whose ``input_hash`` did not change is left alone, so re-writing is idempotent.
    """

    dsn: str
    table: str
    schema: str | None = None
    key: Sequence[str] = ("item_id", "model", "prompt_version")

    def write(self, frame: pl.DataFrame) -> dict[str, Any]:
        psycopg = _psycopg()
        sql = psycopg.sql
        label = f"{_label(self.dsn)} table {self.table!r}"
        try:
            for col in [*frame.columns, *self.key]:
                quote_ident(col)
            target = _name(self.schema, self.table)
        except ValueError as exc:
            raise ConnectorError(label, str(exc)) from None
        missing = [k for k in self.key if k not in frame.columns]
        if missing:
            raise ConnectorError(label, f"key column(s) {missing} not in the frame")
        cols = [sql.Identifier(c) for c in frame.columns]
        defs = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_pg_type(t)))  # type: ignore[arg-type]
            for c, t in frame.schema.items()
        )
        keys = sql.SQL(", ").join(sql.Identifier(k) for k in self.key)
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c))
            for c in frame.columns
            if c not in self.key
        )
        change = (
            sql.SQL(" WHERE t.input_hash IS DISTINCT FROM excluded.input_hash")
            if "input_hash" in frame.columns
            else sql.SQL("")
        )
        rows = frame.with_columns(
            [
                pl.col(c).cast(pl.List(pl.Float32))
                for c, t in frame.schema.items()
                if isinstance(t, pl.Array)
            ]
        )
        try:
            with psycopg.connect(self.dsn) as conn, conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))").format(
                        target, defs, keys
                    )
                )
                cur.execute(
                    sql.SQL(
                        "CREATE TEMP TABLE enrich_stage (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP"
                    ).format(target)
                )
                copy_sql = sql.SQL("COPY enrich_stage ({}) FROM STDIN").format(
                    sql.SQL(", ").join(cols)
                )
                with cur.copy(copy_sql) as copy:
                    for row in rows.iter_rows():
                        copy.write_row(row)
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} AS t ({}) SELECT {} FROM enrich_stage "
                        "ON CONFLICT ({}) DO UPDATE SET {}{}"
                    ).format(
                        target,
                        sql.SQL(", ").join(cols),
                        sql.SQL(", ").join(cols),
                        keys,
                        updates,
                        change,
                    )
                )
                written = cur.rowcount
        except psycopg.Error as exc:
            raise ConnectorError(label, str(exc).strip().splitlines()[0]) from None
        return {"table": self.table, "rows": frame.height, "written": written}
