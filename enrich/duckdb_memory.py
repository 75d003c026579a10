"""DuckDB's memory limit held lower for one block of work, then set back.

DuckDB keeps every block a query or a write read cached up to its memory limit (by default 80%
of RAM), so a process working on a large store grows by what it touched. The change detection
(:mod:`enrich.changes`, :mod:`enrich.user_changes`) and the transactions that write profiles
(``Store.transaction(store.write_memory_limit)``: a run's chunks, the flow's merges) run under a
small limit instead: past it DuckDB evicts cached blocks and spills to its temporary directory
rather than grow.

Example:
    >>> import duckdb
    >>> con = duckdb.connect()
    >>> with memory_limited(con, "128MB"):
    ...     con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    '122.0 MiB'
    >>> con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == default_limit()
    True
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb

from enrich.errors import InputError

MEMORY_LIMIT = "128MB"
"""The limit the detection and the profile writes run under. At 10M rows 128 MB held the
detection's peak RSS to 548-553 MB against 636-647 MB at 256 MB, in the same time, and the
detection plus the changed rows' writes to 1.4x the 1M figure against 2.0x at DuckDB's default
(bench/detection_memory.py)."""


@contextmanager
def memory_limited(con: Any, memory_limit: str) -> Iterator[None]:
    """DuckDB connection ``con`` held to ``memory_limit`` for the block, then set back."""
    ((before,),) = con.execute("SELECT current_setting('memory_limit')").fetchall()
    con.execute(f"SET memory_limit = '{size(memory_limit)}'")
    try:
        yield
    finally:
        if before == default_limit():
            con.execute("RESET memory_limit")
        else:  # DuckDB shows a limit rounded to 0.1 GiB: set back what it showed
            con.execute(f"SET memory_limit = '{size(before)}'")


@functools.cache
def default_limit() -> str:
    """DuckDB's default memory limit on this machine, as ``current_setting`` shows it."""
    with duckdb.connect() as fresh:
        ((default,),) = fresh.execute("SELECT current_setting('memory_limit')").fetchall()
    return str(default)


def size(text: str) -> str:
    """A DuckDB memory size (``512MB``, ``1.5 GiB``), checked before it is put in a SET.

    >>> size("1.5 GiB")
    '1.5 GiB'
    """
    if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", text):
        raise InputError(f"memory_limit {text!r} is not a size such as '512MB' or '2GiB'")
    return text
