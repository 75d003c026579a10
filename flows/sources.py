"""Typed source settings for flow parameters, turned into connectors.

Example:
    >>> Source(kind="file", path="catalogue/*.parquet").connector()
    FileSource(path='catalogue/*.parquet', format=None, batch_size=100000, csv_options={})
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from connectors import DuckDBSource, FileSource, PostgresSource


class Source(BaseModel):
    """Where a flow reads a frame from."""

    kind: Literal["file", "duckdb", "postgres"]
    path: str | None = Field(None, description="file path or glob, or DuckDB database file")
    dsn: str | None = Field(None, description="PostgreSQL connection string (kind=postgres)")
    table: str | None = None
    schema_name: str | None = None
    query: str | None = None
    csv_options: dict[str, Any] = Field(default_factory=dict)

    def connector(self) -> FileSource | DuckDBSource | PostgresSource:
        if self.kind == "file":
            return FileSource(self.path or "", csv_options=self.csv_options)
        if self.kind == "duckdb":
            return DuckDBSource(
                self.path or "", table=self.table, schema=self.schema_name, query=self.query
            )
        return PostgresSource(
            self.dsn or "", table=self.table, schema=self.schema_name, query=self.query
        )
