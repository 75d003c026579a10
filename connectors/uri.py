"""One string names a source on the command line: a file path or glob, a DuckDB table, or a
PostgreSQL table.

    events/*.parquet                     FileSource (Parquet or CSV, by extension)
    duckdb:warehouse.duckdb#events       DuckDBSource, table ``events`` (``#schema.table`` too)
    postgresql://user@host/db#events     PostgresSource, table ``events`` (password from PGPASSWORD)

Example:
    >>> source("duckdb:shop.duckdb#sales.events")
    DuckDBSource(database='shop.duckdb', table='events', schema='sales', query=None, params=(), columns=None, batch_size=100000)
"""  # noqa: E501

from __future__ import annotations

from connectors.duckdb_source import DuckDBSource
from connectors.errors import ConnectorError
from connectors.files import FileSource
from connectors.postgres import PostgresSource


def source(spec: str) -> FileSource | DuckDBSource | PostgresSource:
    """The connector ``spec`` names (see the module docstring)."""
    if spec.startswith(("postgresql://", "postgres://")):
        dsn, table = _split_table(spec)
        schema, name = _schema_table(table, spec)
        return PostgresSource(dsn, table=name, schema=schema)
    if spec.startswith("duckdb:"):
        database, table = _split_table(spec.removeprefix("duckdb:"))
        schema, name = _schema_table(table, spec)
        return DuckDBSource(database, table=name, schema=schema)
    return FileSource(spec)


def _split_table(spec: str) -> tuple[str, str]:
    where, sep, table = spec.rpartition("#")
    if not sep or not table:
        raise ConnectorError(spec, "no table named", "end the source with #table or #schema.table")
    return where, table


def _schema_table(table: str, spec: str) -> tuple[str | None, str]:
    parts = table.split(".")
    if len(parts) > 2:
        raise ConnectorError(spec, f"table {table!r} has more than one dot", "use #schema.table")
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
