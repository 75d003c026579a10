from __future__ import annotations

import time

from enrich.engine import backoff_seconds
from enrich.limits import RateLimiter


def test_request_rate_is_capped() -> None:
    limiter = RateLimiter(requests_per_minute=600)  # 10/s, burst of ~20
    started = time.monotonic()
    for _ in range(40):
        limiter.acquire()
    elapsed = time.monotonic() - started
    assert 1.5 < elapsed < 4.0  # 20 from the burst, 20 more at 10/s


def test_token_rate_is_capped() -> None:
    limiter = RateLimiter(tokens_per_minute=60_000)  # 1,000 tokens/s, burst ~2,000
    started = time.monotonic()
    for _ in range(6):
        limiter.acquire(tokens=1_000)
    assert 3.0 < time.monotonic() - started < 6.0


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
