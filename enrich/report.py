"""The run report: what one run read, skipped, took from cache, generated, failed and spent.

The identity ``rows_in == rows_skipped + cache_hits + rows_generated + rows_failed`` always holds;
the same numbers land in the ``runs`` table.

Example:
    >>> r = RunReport(kind="items", model="m", prompt_version="p", embedding_model="e", rows_in=3)
    >>> r.rows_skipped, r.rows_generated, r.rows_failed = 1, 1, 1
    >>> r.balanced()
    True
    >>> r.rows_failed = 0  # a row neither stored nor recorded: the ledger says so
    >>> r.balanced()
    False
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


def utc_now() -> datetime:
    """Now in UTC, without a time zone (as every timestamp column of the store holds it)."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class RunReport:
    kind: str
    model: str
    prompt_version: str
    embedding_model: str
    rows_in: int = 0
    rows_skipped: int = 0
    cache_hits: int = 0
    rows_generated: int = 0
    rows_failed: int = 0
    llm_calls: int = 0
    llm_requests: int = 0
    """Distinct requests sent (first attempts): ``llm_calls`` less re-asks and retries."""
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float | None = 0.0
    """None: the model's price is unknown (:mod:`enrich.prices`)."""
    llm_seconds: float = 0.0
    embed_seconds: float = 0.0
    total_seconds: float = 0.0
    status: str = "running"
    error: str | None = None
    settings: str | None = None
    """The run's :class:`EnrichSettings` as JSON."""
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: datetime = field(default_factory=utc_now)
    finished_at: datetime | None = None
    failures: dict[str, str] = field(default_factory=dict)
    """Failed entity id -> ``stage: error`` (also in the ``enrich_errors`` table)."""

    @property
    def rows_enriched(self) -> int:
        """Feature rows written by this run (from the cache or from new LLM answers)."""
        return self.cache_hits + self.rows_generated

    def balanced(self) -> bool:
        parts = self.rows_skipped + self.cache_hits + self.rows_generated + self.rows_failed
        return parts == self.rows_in

    def as_row(self) -> dict[str, Any]:
        """The ``runs`` table row."""
        row = asdict(self)
        row.pop("failures")
        row["rows_enriched"] = self.rows_enriched
        return row

    def summary(self) -> str:
        return (
            f"{self.kind}: {self.rows_in} in, {self.rows_skipped} skipped, {self.cache_hits} from "
            f"cache, {self.rows_generated} generated, {self.rows_failed} failed; "
            f"{self.llm_calls} LLM calls, {self.tokens_in}+{self.tokens_out} tokens, "
            f"{self.total_seconds:.1f}s ({self.status})"
        )
