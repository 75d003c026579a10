"""Rate limits and budget: in one process, and shared by processes through a SQLite file."""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from enrich.config import EnrichSettings
from enrich.engine import backoff_seconds
from enrich.quota import Quota, request_rates
from tests.servers import max_in_window, postgres_server


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def shared(request, tmp_path: Path) -> str:
    """Where processes share the quota: a SQLite file (one machine) or PostgreSQL (several)."""
    if request.param == "sqlite":
        return str(tmp_path / "q.sqlite")
    return request.getfixturevalue("postgres")


def test_request_rate_is_capped_in_every_second() -> None:
    quota = Quota(EnrichSettings(requests_per_minute=600))  # 10 a second
    stamps = []
    for _ in range(25):
        quota.acquire()
        stamps.append(time.monotonic())
    assert max_in_window(stamps) <= 10 + 1  # + 1: the stamp is taken after the admission
    assert stamps[-1] - stamps[0] >= 2.0  # 25 requests at 10/s: two full windows waited


def test_slow_request_rates_space_requests() -> None:
    assert [(r.limit, r.interval) for r in request_rates(30)] == [(1, 2000)]
    assert [(r.limit, r.interval) for r in request_rates(120)] == [(2, 1000), (120, 60_000)]
    assert [(r.limit, r.interval) for r in request_rates(150)] == [(3, 1000), (150, 60_000)]


def test_token_rate_is_capped(tmp_path: Path) -> None:
    shared = EnrichSettings(tokens_per_minute=6_000, shared_quota=str(tmp_path / "q.sqlite"))
    for quota in (Quota(EnrichSettings(tokens_per_minute=6_000)), Quota(shared)):
        assert quota.acquire(tokens=2_500, wait=False)
        assert quota.acquire(tokens=2_500, wait=False)
        assert not quota.acquire(tokens=2_500, wait=False)  # 7,500 would not fit the minute
        assert quota.acquire(tokens=900, wait=False)  # 5,900 does


def test_budget_is_spent_once_across_quotas_sharing_a_backend(shared: str, tmp_path) -> None:
    scope = f"night-1-{tmp_path.name}"  # the PostgreSQL server outlives one test
    settings = EnrichSettings(max_tokens_total=1_000, shared_quota=shared, budget_scope=scope)
    a, b = Quota(settings), Quota(settings)
    a.spend(600, None)
    assert b.left() and b.spent() == (600, 0.0)
    b.spend(500, None)
    assert not a.left()
    other_night = Quota(settings.model_copy(update={"budget_scope": f"night-2-{tmp_path.name}"}))
    assert other_night.left() and other_night.spent() == (0, 0.0)


def _hammer(path: str, n: int, out: multiprocessing.Queue, start: Any) -> None:
    quota = Quota(EnrichSettings(requests_per_minute=120, shared_quota=path))  # 2 a second
    start.wait(timeout=120)  # both processes ready: they compete from the same moment
    stamps = []
    for _ in range(n):
        quota.acquire()
        stamps.append(time.time())
    out.put((path, stamps))


def test_processes_sharing_a_backend_share_one_rate(shared: str) -> None:
    ctx = multiprocessing.get_context("spawn")  # separate interpreters, as Dask workers are
    out = ctx.Queue()
    path = shared
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_hammer, args=(path, 6, out, start)) for _ in range(2)]
    for p in procs:
        p.start()
    a, b = out.get(timeout=120)[1], out.get(timeout=120)[1]
    for p in procs:
        p.join(timeout=30)
    stamps = a + b
    assert len(stamps) == 12 and max(stamps) - min(stamps) >= 4.0  # 12 at 2 a second
    # alone, each process would send 2 a second (4 together). The admission times the shared
    # bucket recorded (the clients' own stamps lag by however long a loaded machine takes to
    # return from the limiter) hold 2 in every second
    admitted = _admitted(shared, since=min(stamps) - 1)
    assert len(admitted) == 12 and max_in_window(admitted) <= 2


def _admitted(shared: str, since: float) -> list[float]:
    """Admission times (epoch seconds) in the shared request bucket, from ``since`` on."""
    if shared.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(shared) as con:
            rows = con.execute(
                "SELECT extract(epoch FROM item_timestamp)::float8 FROM ratelimit___enrich_requests"
            ).fetchall()
        found = [float(t) for (t,) in rows]
    else:
        import sqlite3

        with contextlib.closing(sqlite3.connect(shared)) as con:
            rows = con.execute("SELECT item_timestamp FROM enrich_requests").fetchall()
        found = [t / 1000 for (t,) in rows]
    return [t for t in found if t >= since]


def test_backoff_honours_retry_after() -> None:
    class RateLimited(Exception):
        def __init__(self) -> None:
            super().__init__("429")
            self.response = type("Response", (), {})()
            self.response.headers = {"retry-after": "3"}

    assert backoff_seconds(0, RateLimited()) >= 3.0
    assert 0 <= backoff_seconds(1, ValueError()) <= 1.0
    late = [backoff_seconds(10, ValueError()) for _ in range(200)]  # 0.5 * 2**10 s, capped
    assert max(late) <= 30.0 and min(late) < 10.0 < max(late)  # capped, and still jittered
