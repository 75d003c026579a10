"""One rate limit and one budget, whatever the topology: threads of a run, chunks, processes,
Dask workers on one machine.

- **Rates** (requests and tokens per minute) are pyrate-limiter's sliding-window limiters. In
  one process they live in memory; with ``EnrichSettings(shared_quota="/path/quota.sqlite")``
  every process opening the same file shares them (pyrate-limiter's SQLite bucket under a file
  lock: processes on one machine); with ``shared_quota="postgresql://…"`` every process that
  reaches the database does (its PostgreSQL bucket, on the server's clock: several machines).
  The request cap is also applied per second (``rpm / 60``), so no one-second window
  holds a minute's burst. Tokens are counted in units of ``tpm / 1000`` (a bucket row per
  unit), so a high token cap costs no more than a low one.
- **The budget** (``max_tokens_total``, ``max_cost``) is a spend counter per ``budget_scope``
  (the run) in the same place: every request adds what it spent; a request is not started once
  the scope's spend reached the budget. Overshoot is bounded by the requests in flight.

The nightly flow gives its workers one scope per flow run, in a file next to the store.

Example:
    >>> q = Quota(EnrichSettings(requests_per_minute=600, max_tokens_total=1_000))
    >>> q.acquire(tokens=300)   # returns at once while the limits have room
    True
    >>> q.spend(tokens=400, cost=None); q.left()
    True
    >>> q.spend(tokens=700, cost=None); q.left()
    False
"""

from __future__ import annotations

import math
import re
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from pyrate_limiter import Duration, InMemoryBucket, Limiter, PostgresBucket, Rate, SQLiteBucket

from enrich.config import EnrichSettings
from enrich.errors import EnrichError, redact
from enrich.sqlfiles import read_sql

POSTGRES = ("postgresql://", "postgres://")


class BudgetSpent(Exception):
    """The run's budget was spent before this request started (it was not sent)."""


class Quota:
    """The rate limits and budget of one run (see the module docstring)."""

    def __init__(self, settings: EnrichSettings, scope: str | None = None) -> None:
        self.settings = settings
        self.scope = settings.budget_scope or scope or uuid.uuid4().hex
        self.path = settings.shared_quota
        self._lock = threading.Lock()
        self._spent = (0, 0.0)
        self._db: sqlite3.Connection | None = None
        self._pool: Any = None
        if self.path is None:
            pass
        elif self.path.startswith(POSTGRES):
            self._pool = _postgres_pool(self.path)
            self._sql(read_sql("quota/spend_table.sql"), {})
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._sql(read_sql("quota/spend_table.sql"), {})
        self._requests = self._limiter("requests", request_rates(settings.requests_per_minute))
        tpm = settings.tokens_per_minute or 0
        self._unit = max(1, math.ceil(tpm / 1000))
        self._unit_limit = math.ceil(tpm / self._unit)
        self._tokens = (
            self._limiter("tokens", [Rate(self._unit_limit, Duration.MINUTE)]) if tpm else None
        )

    def _limiter(self, table: str, rates: list[Rate]) -> Limiter | None:
        if not rates:
            return None
        if self.path is None:
            return Limiter(InMemoryBucket(rates))
        if self._pool is not None:
            return Limiter(PostgresBucket(self._pool, f"enrich_{table}", rates))
        try:
            bucket = SQLiteBucket.init_from_file(
                rates, table=f"enrich_{table}", db_path=self.path, use_file_lock=True
            )
        except sqlite3.Error as exc:
            raise EnrichError(f"cannot share rate limits through {self.path}: {exc}") from None
        return Limiter(bucket)

    # -- rates -----------------------------------------------------------------------------------

    def acquire(self, tokens: int = 0, wait: bool = True) -> bool:
        """Block until one more request of ``tokens`` (estimated) tokens fits every limit
        (``wait=False``: return False at once instead of waiting)."""
        if self._requests is not None and not _take(self._requests, "request", 1, wait):
            return False
        if self._tokens is not None and tokens > 0:  # a request above the cap waits for all of it
            units = min(math.ceil(tokens / self._unit), self._unit_limit)
            return _take(self._tokens, "tokens", units, wait)
        return True

    # -- budget ----------------------------------------------------------------------------------

    def spend(self, tokens: int, cost: float | None) -> None:
        """Add one request's spend to the scope's counter."""
        if self.path is None:
            with self._lock:
                self._spent = (self._spent[0] + tokens, self._spent[1] + (cost or 0.0))
            return
        params = {"scope": self.scope, "tokens": tokens, "cost": cost or 0.0}
        self._sql(read_sql("quota/spend_add.sql"), params)

    def spent(self) -> tuple[int, float]:
        """``(tokens, cost)`` spent so far in this scope, by every process sharing it."""
        if self.path is None:
            return self._spent
        rows = self._sql(read_sql("quota/spend_read.sql"), {"scope": self.scope})
        return (int(rows[0][0]), float(rows[0][1])) if rows else (0, 0.0)

    def _sql(self, text: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run one statement of ``sql/quota`` (``:name`` parameters) on the shared backend."""
        if self._pool is not None:
            with self._pool.connection() as con:
                cur = con.execute(re.sub(r":(\w+)", r"%(\1)s", text), params)
                return cur.fetchall() if cur.description else []
        assert self._db is not None
        with self._lock:
            rows = self._db.execute(text, params).fetchall()
            self._db.commit()
        return rows

    def left(self) -> bool:
        """False once the scope spent ``max_tokens_total`` or ``max_cost``."""
        s = self.settings
        if s.max_tokens_total is None and s.max_cost is None:
            return True
        tokens, cost = self.spent()
        if s.max_tokens_total is not None and tokens >= s.max_tokens_total:
            return False
        return not (s.max_cost is not None and cost >= s.max_cost)

    def close(self) -> None:
        """Stop the limiters' cleanup and release the shared backend's connections."""
        for limiter in (self._requests, self._tokens):
            if limiter is not None:
                limiter.close()
        if self._db is not None:
            self._db.close()
        if self._pool is not None:
            self._pool.close()


def _postgres_pool(url: str) -> Any:
    """A small psycopg pool to ``url`` (a connection borrowed from it commits when returned;
    pyrate-limiter's bucket locks its table inside such a transaction)."""
    try:
        from psycopg_pool import ConnectionPool
    except ImportError:  # pragma: no cover - psycopg-pool is in requirements.lock
        raise EnrichError("a PostgreSQL quota needs psycopg-pool: pip install it") from None
    try:
        pool = ConnectionPool(url, min_size=1, max_size=4, open=True, timeout=30)
        pool.wait(timeout=30)
    except Exception as exc:  # say where, without the password
        why = redact(str(exc))
        raise EnrichError(f"cannot share the quota through PostgreSQL: {why}") from None
    return pool


def _take(limiter: Limiter, name: str, weight: int, wait: bool) -> bool:
    """One attempt at the current time, repeated every 20 ms while ``wait``; without ``wait``,
    attempts for 50 ms (an attempt also fails while the limiter's cleanup thread holds its lock).
    (pyrate-limiter's own blocking wait dates its retry by the time slept, so one process could
    take every permit while another waited; its ``blocking=False`` fails under filelock 4.)"""
    deadline = time.monotonic() + 0.05
    while not limiter.try_acquire(name, weight=weight, timeout=0):
        if not wait and time.monotonic() > deadline:
            return False
        time.sleep(0.01 if not wait else 0.02)
    return True


def request_rates(per_minute: float | None) -> list[Rate]:
    """Sliding windows for a request cap: per minute, and per second at a 60th of it (under
    60 a minute: one request per ``60 / rpm`` seconds)."""
    if not per_minute:
        return []
    if per_minute < 60:
        return [Rate(1, int(60_000 / per_minute))]
    return [
        Rate(math.ceil(per_minute / 60), Duration.SECOND),  # no stricter per ms than a minute
        Rate(int(per_minute), Duration.MINUTE),
    ]
