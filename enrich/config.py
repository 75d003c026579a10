"""Every setting enrich reads, typed and documented, in one place; each can also come from an
``ENRICH_*`` environment variable.

- :class:`EnrichSettings`: how one run calls the LLM (concurrency, chunks, retries, rate limits,
  budget, junk rules); passed as ``settings=`` or read from the environment.
- :class:`Environment`: what belongs to the machine, not to a run (an API key, where the data
  lies, torch's threads, the nightly schedule); read when needed, never passed around.

Example:
    >>> EnrichSettings(max_concurrency=8).chunk_size
    64
    >>> # or: ENRICH_MAX_CONCURRENCY=8 in the environment, then EnrichSettings()
    >>> Environment(torch_threads=2).torch_threads
    2
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from enrich.junk import JunkRules


class EnrichSettings(BaseSettings):
    """How a run calls the LLM: concurrency, chunking, retries, rate limits and budget."""

    model_config = SettingsConfigDict(env_prefix="ENRICH_", frozen=True)

    max_concurrency: int | None = Field(None, ge=1)
    """LLM requests in flight at once (a served model batches them, and so does the embedded one,
    ``n_parallel`` at a time). None: the embedded model's ``n_parallel`` and a quarter more (a
    few waiting, so a finished sequence is replaced at once), 4 for other models."""
    chunk_size: int = Field(64, ge=1)
    """Rows per chunk: each chunk's rows, errors and spend are committed together."""
    overlap_chunks: bool = True
    """Start the next chunk's requests while the current one is embedded and committed, so the
    model (the embedded decoder's batch, a server's queue) stays busy across chunk boundaries;
    together never more than ``max_concurrency`` in flight. False: one chunk at a time."""
    max_retries: int = Field(3, ge=0)
    """Retries of a request that failed with a transient error (429, 5xx, timeout, connection)."""
    fix_attempts: int = Field(1, ge=0)
    """Extra requests for an answer that failed validation, with the error fed back."""
    timeout_s: float = Field(120.0, gt=0)
    """Per-request timeout for the OpenAI-compatible clients enrich builds."""
    requests_per_minute: float | None = Field(None, gt=0)
    """Request rate cap; None: no cap."""
    tokens_per_minute: float | None = Field(None, gt=0)
    """Token rate cap (input tokens estimated before sending); None: no cap."""
    max_tokens_total: int | None = Field(None, gt=0)
    """The run's token budget: no request is started once this many tokens were spent (by every
    process sharing ``budget_scope``); rows not started are recorded as ``budget`` errors."""
    max_cost: float | None = Field(None, gt=0)
    """The run's cost budget (needs a known price, :mod:`enrich.prices`), like
    ``max_tokens_total``."""
    shared_quota: str | None = None
    """Where processes share the rate limits and the budget (:mod:`enrich.quota`): a SQLite file
    (one machine) or a ``postgresql://`` URL (several); None: this process only. The nightly flow
    uses a file next to its store unless given one."""
    budget_scope: str | None = None
    """Which spend counter the budget applies to: processes given the same scope (and
    ``shared_quota``) share one budget. None: each run its own (the nightly flow: the flow run)."""
    price_in_per_mtok: float | None = Field(None, ge=0)
    """Price of one million prompt tokens, overriding the price table (:mod:`enrich.prices`:
    genai-prices for hosted models, free for local ones; unknown models cost NULL)."""
    price_out_per_mtok: float | None = Field(None, ge=0)
    """Price of one million completion tokens, overriding the price table."""
    price_cached_in_per_mtok: float | None = Field(None, ge=0)
    """Price of one million prompt tokens read from the provider's cache (None: as the rest)."""
    retry_failed_after_h: float = Field(36.0, ge=0)
    """Failure memory: a request whose answer failed validation (the same input, model,
    decoding and prompt) is not asked again for this many hours, doubling with each further
    failure (36 h: a nightly job skips one night, then two, four...); a changed input is asked at
    once; transient errors are always retried. 0: ask again on every run."""
    retry_failed_max_days: float = Field(30.0, gt=0)
    """The longest wait of the failure memory's backoff."""
    junk: JunkRules = JunkRules()
    """Rules that reject schema-valid answers saying nothing about the entity (re-asked like a
    validation error, ``fix_attempts`` times); ``JunkRules(enabled=False)`` turns them off."""
    structured_method: str | None = None
    """Force LangChain's structured-output method (json_schema, function_calling, json_mode)."""
    batch: bool = False
    """Send the run's requests through the provider's Batches API (OpenAI's, or a server that
    implements it) at its batch price, instead of one call each (:mod:`enrich.batches`)."""
    batch_wait: bool = True
    """Wait for the batches to finish and store their rows. False: submit and return; the rows
    are recorded as ``pending`` and the next run collects the batches (a nightly job's mode)."""
    batch_poll_s: float = Field(10.0, gt=0)
    """First wait between two status checks of a batch; it grows by half each time (to 5 min)."""
    batch_max_requests: int = Field(50_000, ge=1)
    """Requests per batch file (OpenAI's documented limit: 50,000)."""
    batch_max_bytes: int = Field(200 * 1024 * 1024, ge=1024)
    """Bytes per batch file (OpenAI's documented limit: 200 MB)."""


class Environment(BaseSettings):
    """Machine-level settings, from ``ENRICH_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="ENRICH_", frozen=True, extra="ignore")

    llm_api_key: SecretStr | None = None
    """``ENRICH_LLM_API_KEY``: the key sent to OpenAI-compatible servers enrich builds a client
    for (else ``OPENAI_API_KEY``; local servers need none). Never written to a table or a log."""
    data: Path | None = None
    """``ENRICH_DATA``: the folder holding the MovieLens data sets; when set, the only place
    looked in (default: ``../shared/data`` next to the working folder or the project)."""

    @field_validator("data", "llm_api_key", "store_memory_limit", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    torch_threads: int = Field(1, ge=1)
    """``ENRICH_TORCH_THREADS``: torch's threads, set process-wide when the embedder loads (1:
    torch's idle threads slowed the embedded LLM 1.6x on 2 cores)."""
    cron: str = "0 2 * * *"
    """``ENRICH_CRON``: the nightly deployment's schedule."""
    store_memory_limit: str | None = Field(None, pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$")
    """``ENRICH_STORE_MEMORY_LIMIT``: DuckDB's memory limit for every store enrich opens, e.g.
    ``1GB`` (default: DuckDB's own, 80% of RAM, with profile writes held to 128 MB). DuckDB keeps
    the blocks a write or a query read cached up to it, so a large store's process grows to it;
    past it DuckDB evicts and spills to disk. Set it on a shared machine or in a container."""
