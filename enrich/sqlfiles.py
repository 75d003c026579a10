"""Locating and reading the project's SQL files (``sql/`` in a checkout, ``enrich/sql`` in a wheel).

Example:
    >>> "CREATE TABLE" in read_sql("migrations/0001_core.sql")
    True
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@cache
def sql_dir() -> Path:
    """The folder holding the SQL files."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "sql", here.parent / "sql"):
        if (candidate / "migrations").is_dir():
            return candidate
    raise FileNotFoundError(f"no sql/ folder next to {here}; reinstall enrich")


@cache
def read_sql(relative: str) -> str:
    """The text of one SQL file, e.g. ``read_sql("views/item_features.sql")`` (read once)."""
    return (sql_dir() / relative).read_text(encoding="utf-8")


def sql_files(folder: str) -> list[Path]:
    """The ``.sql`` files of one folder of ``sql/``, in name order."""
    return sorted((sql_dir() / folder).glob("*.sql"))


def quote_ident(name: str) -> str:
    """A validated, double-quoted SQL identifier; anything unusual is refused, not escaped.

    >>> quote_ident("item_profiles")
    '"item_profiles"'
    """
    if not _IDENT.match(name):
        raise ValueError(
            f"{name!r} is not a valid SQL identifier: use letters, digits and _ "
            "(not starting with a digit, at most 63 characters)"
        )
    return f'"{name}"'
