"""A DuckDB table or query as a source.

Example:
    >>> items = DuckDBSource("shop.duckdb", table="items").read()  # doctest: +SKIP
    >>> books = DuckDBSource("shop.duckdb", query="SELECT * FROM items WHERE cat = ?",
    ...                      params=["books"]).read()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from connectors.errors import ConnectorError
from enrich.sqlfiles import quote_ident


@dataclass(frozen=True)
class DuckDBSource:
    """Rows of ``table`` (optionally in ``schema``) or of ``query`` with bound ``params``."""

    database: str | Path
    table: str | None = None
    schema: str | None = None
    query: str | None = None
    params: Sequence[Any] = ()
    columns: Sequence[str] | None = None
    batch_size: int = 100_000

    def _sql(self) -> str:
        if (self.table is None) == (self.query is None):
            raise ConnectorError(str(self.database), "give exactly one of table= or query=")
        if self.query is not None:
            return self.query
        try:
            name = quote_ident(self.table or "")
            if self.schema:
                name = f"{quote_ident(self.schema)}.{name}"
            cols = ", ".join(quote_ident(c) for c in self.columns) if self.columns else "*"
        except ValueError as exc:
            raise ConnectorError(str(self.database), str(exc)) from None
        return f"SELECT {cols} FROM {name}"

    def _relation(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
        try:
            return con.sql(self._sql(), params=list(self.params) or None)
        except duckdb.Error as exc:
            where = f"table {self.table!r}" if self.table else "query"
            raise ConnectorError(f"{self.database} {where}", str(exc).splitlines()[0]) from None

    def read(self) -> pl.DataFrame:
        with duckdb.connect(str(self.database), read_only=True) as con:
            return self._relation(con).pl()

    def iter_batches(self) -> Iterator[pl.DataFrame]:
        with duckdb.connect(str(self.database), read_only=True) as con:
            reader = self._relation(con).to_arrow_reader(self.batch_size)
            for batch in reader:
                frame = pl.from_arrow(batch)
                assert isinstance(frame, pl.DataFrame)
                yield frame
