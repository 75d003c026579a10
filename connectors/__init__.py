"""Where enrich's data comes from and goes to: files, DuckDB, PostgreSQL.

Each connector is a small dataclass with ``read()`` (a polars frame), ``iter_batches()`` (frames
of at most ``batch_size`` rows, for sources larger than memory) and, for sinks, ``write()``.
Identifiers are validated and quoted; values are always bound parameters.

Example:
    >>> from connectors import FileSource
    >>> items = FileSource("catalogue/*.parquet").read()   # doctest: +SKIP
"""

from connectors.duckdb_source import DuckDBSource
from connectors.errors import ConnectorError
from connectors.files import FileSource, ParquetSink
from connectors.postgres import PostgresSink, PostgresSource
from connectors.uri import source

__all__ = [
    "ConnectorError",
    "DuckDBSource",
    "FileSource",
    "ParquetSink",
    "PostgresSink",
    "PostgresSource",
    "source",
]
