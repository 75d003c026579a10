"""Parquet and CSV files (a path or a glob) in, Parquet (optionally partitioned) out.

Example:
    >>> items = FileSource("data/items-*.csv").read()                          # doctest: +SKIP
    >>> ParquetSink("export/items", partition_by=["model"]).write(features)    # doctest: +SKIP
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from connectors.errors import ConnectorError


@dataclass(frozen=True)
class FileSource:
    """Parquet or CSV files matching ``path`` (globs allowed); format from the extension."""

    path: str | Path
    format: str | None = None
    """"parquet" or "csv"; default: from the file extension."""
    batch_size: int = 100_000
    csv_options: dict[str, Any] = field(default_factory=dict)
    """Extra ``polars.scan_csv`` options (separator, encoding...)."""

    def _scan(self) -> pl.LazyFrame:
        pattern = str(self.path)
        files = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        if not files or not Path(files[0]).exists():
            raise ConnectorError(pattern, "no file matches", "check the path or glob")
        fmt = self.format or Path(files[0]).suffix.lstrip(".").lower()
        if fmt == "parquet":
            return pl.scan_parquet(files)
        if fmt in ("csv", "tsv", "txt"):
            return pl.scan_csv(files, **self.csv_options)
        raise ConnectorError(pattern, f"unknown format {fmt!r}", "pass format='parquet' or 'csv'")

    def read(self) -> pl.DataFrame:
        """All rows as one frame."""
        try:
            return self._scan().collect()
        except pl.exceptions.PolarsError as exc:
            raise ConnectorError(str(self.path), str(exc).splitlines()[0]) from exc

    def iter_batches(self) -> Iterator[pl.DataFrame]:
        """Frames of at most ``batch_size`` rows, streamed from the files."""
        try:
            yield from self._scan().collect_batches(chunk_size=self.batch_size)
        except pl.exceptions.PolarsError as exc:
            raise ConnectorError(str(self.path), str(exc).splitlines()[0]) from exc


@dataclass(frozen=True)
class ParquetSink:
    """Writes a frame as Parquet: one file, or a hive-partitioned folder."""

    path: str | Path
    partition_by: Sequence[str] = ()

    def write(self, frame: pl.DataFrame) -> dict[str, Any]:
        missing = [c for c in self.partition_by if c not in frame.columns]
        if missing:
            raise ConnectorError(str(self.path), f"partition column(s) {missing} not in frame")
        if self.partition_by:
            Path(self.path).mkdir(parents=True, exist_ok=True)
            frame.write_parquet(self.path, partition_by=list(self.partition_by))
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            frame.write_parquet(self.path)
        return {"path": str(self.path), "rows": frame.height}
