"""One reading of "a time" everywhere enrich takes one: a column or a cut-off may be a datetime,
a date, an ISO string, or unix epoch **seconds** (integers or floats), and all become naive
UTC ``datetime`` (microseconds). A column of integers and an integer cut-off therefore compare
the same way (the bug this module replaced: an integer ``as_of`` read as microseconds).

Example:
    >>> to_datetime(881250949)
    datetime.datetime(1997, 12, 4, 15, 55, 49)
    >>> import polars as pl
    >>> frame = datetime_column(pl.DataFrame({"ts": [881250949]}), "ts")
    >>> frame["ts"].dtype
    Datetime(time_unit='us', time_zone=None)
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import polars as pl

from enrich.errors import InputError

TimeLike = datetime | date | int | float | str
"""What a caller may pass as a time: a datetime, a date, an ISO string or unix epoch seconds."""

DTYPE = pl.Datetime("us")
"""The time type of every frame enrich builds: naive, UTC, microseconds."""


def to_datetime(value: Any, what: str = "time") -> datetime:
    """``value`` (datetime, date, ISO string, or epoch seconds) as a naive UTC datetime."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, bool):
        raise InputError(f"{what} must be a datetime or unix seconds, not {value!r}")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC).replace(tzinfo=None)
    if isinstance(value, str):
        try:
            return to_datetime(datetime.fromisoformat(value), what)
        except ValueError:
            pass
    if hasattr(value, "item"):  # numpy scalars
        return to_datetime(value.item(), what)
    raise InputError(
        f"{what} {value!r} is not a time: give a datetime, an ISO date string or unix seconds"
    )


def datetime_column(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """``frame`` with ``column`` as :data:`DTYPE`: integers and floats are epoch seconds,
    strings are parsed (ISO), dates become midnight, time zones are converted to UTC."""
    if column not in frame.columns:
        raise InputError(f"time column {column!r} not found; the frame has {frame.columns}")
    dtype = frame.schema[column]
    col = pl.col(column)
    if dtype.is_integer() or dtype.is_float():
        expr = (col.cast(pl.Float64) * 1_000_000).round().cast(pl.Int64).cast(DTYPE)
    elif dtype == pl.Utf8:
        expr = col.str.to_datetime(time_unit="us", strict=False)
        parsed = frame.select(expr.is_null() & col.is_not_null()).to_series()
        if parsed.any():
            row = int(parsed.arg_true()[0])
            raise InputError(
                f"time column {column!r}: row {row} ({frame[column][row]!r}) is not a time; "
                "use ISO dates (2024-01-31T12:00:00), datetimes or unix seconds"
            )
    elif isinstance(dtype, pl.Datetime):
        expr = (
            col.dt.convert_time_zone("UTC").dt.replace_time_zone(None) if dtype.time_zone else col
        )
        expr = expr.cast(DTYPE)
    elif dtype == pl.Date:
        expr = col.cast(DTYPE)
    else:
        raise InputError(
            f"time column {column!r} has dtype {dtype}; use datetimes, ISO strings or unix seconds"
        )
    return frame.with_columns(expr.alias(column))
