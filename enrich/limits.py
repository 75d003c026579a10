"""Request and token rate limits shared by all the threads of a run.

LangChain's ``InMemoryRateLimiter`` caps requests only; providers also cap tokens per minute,
so both are token buckets here, and a request waits until both allow it.

Example:
    >>> limiter = RateLimiter(requests_per_minute=600, tokens_per_minute=100_000)
    >>> limiter.acquire(tokens=300)  # returns at once while the buckets have room
"""

from __future__ import annotations

import threading
import time


class _Bucket:
    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(per_minute / 60.0, 1.0) * 2  # a burst of up to ~2 s of budget
        self.level = self.capacity
        self.stamp = time.monotonic()

    def wait_for(self, amount: float) -> float:
        """Seconds to wait before ``amount`` fits (0 takes it now)."""
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        amount = min(
            amount, self.capacity
        )  # a request larger than the burst waits for a full bucket
        if self.level >= amount:
            self.level -= amount
            return 0.0
        return (amount - self.level) / self.rate


class RateLimiter:
    """Blocks callers so that requests and tokens per minute stay under their caps."""

    def __init__(
        self, requests_per_minute: float | None = None, tokens_per_minute: float | None = None
    ) -> None:
        self._requests = _Bucket(requests_per_minute) if requests_per_minute else None
        self._tokens = _Bucket(tokens_per_minute) if tokens_per_minute else None
        self._lock = threading.Lock()

    def acquire(self, tokens: int = 0) -> None:
        while True:
            with self._lock:
                wait = self._requests.wait_for(1) if self._requests else 0.0
                if wait == 0.0 and self._tokens is not None:
                    wait = self._tokens.wait_for(tokens)
                    if wait and self._requests is not None:
                        self._requests.level += 1  # give the request slot back while waiting
            if wait == 0.0:
                return
            time.sleep(min(wait, 5.0))
