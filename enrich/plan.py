"""The bill before the run: what an enrichment would skip, take from the cache and generate, and
the tokens and time that costs — computed the way the run itself decides, without an LLM call.

- rows already stored with the same input hash, model and prompt version: skipped;
- rows with nothing to describe: recorded as input errors, no call;
- rows whose request failed validation before and still waits (the failure memory): held, no
  call;
- the rest: one request per distinct prompt (identical prompts are sent once), of which those in
  ``llm_cache`` cost nothing;
- prompt tokens of the requests to generate: counted with the model's own tokenizer where it is
  available offline (:mod:`enrich.tokens`: llama.cpp's for the embedded model, tiktoken for
  OpenAI models), otherwise estimated (~4 characters a token) and marked as an estimate;
- completion tokens per call and LLM seconds per token (prompt + completion): from the
  ``runs`` ledger of this model and prompt version (``sql/queries/plan_rates.sql``), else of this
  model with any prompt, else unknown (tokens: the schema's upper bound);
- re-asks: an answer that fails validation is asked again in the same run (``fix_attempts``),
  with the request, the answer and the error as the prompt. The ledger's calls per first request
  for this model and prompt with the same ``fix_attempts`` (not another prompt's) gives the expected
  re-asks; each is planned at the request's prompt, one answer and ~60 tokens of error, and
  counted in the completion tokens, the time and the cost. Nothing on record: none planned, and
  the plan says so;
- cost: each request priced on its own (:mod:`enrich.prices`: the run's prices, else
  genai-prices' table, free for local models; None when unknown).

Example:
    >>> p = plan_items(catalogue, store="features.duckdb")          # doctest: +SKIP
    >>> p.to_generate, p.calls, p.prompt_tokens, p.seconds          # doctest: +SKIP
    (1682, 2119.3, 237814, 2187.3)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from enrich.config import EnrichSettings
from enrich.engine import LLMEngine
from enrich.inputs import HASH, KEY
from enrich.job import JobInput
from enrich.prompts import PromptTemplate
from enrich.report import utc_now
from enrich.sqlfiles import read_sql
from enrich.store import Store
from enrich.tokens import tokenizer_for


@dataclass(frozen=True)
class JobPlan:
    """What one enrichment would do (see the module docstring)."""

    kind: str
    model: str
    prompt_version: str
    rows: int
    stored: int
    no_text: int
    held: int
    """Rows the failure memory holds back (failed validation, still waiting)."""
    cached: int
    """Rows whose answer is in ``llm_cache``."""
    to_generate: int
    """Distinct requests the LLM would be sent (first attempts; re-asks are ``reasks``)."""
    prompt_tokens: int
    tokens_exact: bool
    """True: ``prompt_tokens`` counted by the model's tokenizer; False: an estimate."""
    tokenizer: str
    """What counted them (:mod:`enrich.tokens`)."""
    completion_tokens: float
    seconds: float | None
    """LLM time at the ledger's measured rate (None: no run of this model on record)."""
    rate_source: str
    """Where the per-request rates come from."""
    cost: float | None = None
    """What the requests to generate would cost (None: the model's price is unknown)."""
    price_source: str = "unknown"
    reasks: float = 0.0
    """Expected re-asks of answers that fail validation (the ledger's rate; 0: none on record)."""
    reask_source: str = "no re-ask rate of this prompt on record"
    request_tokens: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    """Prompt tokens of each request to generate, by cache key."""

    @property
    def calls(self) -> float:
        """The LLM calls expected: requests to generate and their expected re-asks."""
        return self.to_generate + self.reasks

    def without(self, keys: set[str]) -> JobPlan:
        """This plan less the requests in ``keys`` (already planned by another job)."""
        left = {k: t for k, t in self.request_tokens.items() if k not in keys}
        if len(left) == len(self.request_tokens):
            return self
        share = len(left) / len(self.request_tokens)
        return replace(
            self,
            cost=None if self.cost is None else self.cost * share,
            cached=self.cached + len(self.request_tokens) - len(left),
            to_generate=len(left),
            prompt_tokens=sum(left.values()),
            completion_tokens=self.completion_tokens * share,
            seconds=None if self.seconds is None else self.seconds * share,
            reasks=self.reasks * share,
            request_tokens=left,
        )

    @property
    def shared(self) -> int:
        """Rows whose prompt another row of the run sends (identical input: asked once)."""
        return self.rows - self.stored - self.no_text - self.held - self.cached - self.to_generate

    def line(self, width: int = 10) -> str:
        """One line for a plan table (the job's name ``width`` wide)."""
        secs = "unknown" if self.seconds is None else f"{self.seconds / 60:.1f} min"
        approx = "" if self.tokens_exact else "~"
        return (
            f"{self.kind:<{width}} {self.rows:>7} {self.stored:>7} {self.no_text:>6} "
            f"{self.held:>5} {self.cached:>7} {self.shared:>6} {self.to_generate:>8} "
            f"{self.reasks:>7.0f} "
            f"{approx + str(self.prompt_tokens):>11} {self.completion_tokens:>9.0f} {secs:>10} "
            f"{_money(self.cost):>9}"
        )


def header(width: int = 10) -> str:
    """The header of a plan table."""
    return (
        f"{'job':<{width}} {'rows':>7} {'stored':>7} {'empty':>6} {'held':>5} {'cached':>7} "
        f"{'shared':>6} {'generate':>8} {'re-asks':>7} {'prompt tok':>11} {'out tok':>9} "
        f"{'LLM time':>10} "
        f"{'cost':>9}"
    )


HEADER = header()
"""Rows: stored (skipped), empty (nothing to describe: recorded), held (failure memory), cached
(answer in ``llm_cache``), shared (a prompt another row sends), generate (requests to send);
re-asks: the calls expected beyond them (answers that fail validation, asked again)."""


def plan_table(plans: list[JobPlan], title: str = "LLM plan:") -> str:
    """Plans as a small table with totals and where each figure comes from.

    >>> p = JobPlan("items", "m", "v", rows=10, stored=4, no_text=0, held=1, cached=2,
    ...             to_generate=3, prompt_tokens=900, tokens_exact=True, tokenizer="tiktoken",
    ...             completion_tokens=150,
    ...             seconds=30.0, rate_source="ledger: this prompt", cost=0.0012,
    ...             price_source="genai-prices 0.2.3: openai/gpt-4o-mini")
    >>> print(plan_table([p]))  # doctest: +NORMALIZE_WHITESPACE
    LLM plan:
    job rows stored empty held cached shared generate re-asks prompt tok out tok LLM time cost
    items 10     4     0    1      2      0        3       0        900     150  0.5 min $0.0012
    total: 3 LLM requests to generate, 900 prompt tokens, ~150 completion tokens, LLM time
    0.5 min, cost $0.0012
    sources: m: prompt tokens by tiktoken; rates from ledger: this prompt; no re-ask rate of
    this prompt on record; prices from genai-prices 0.2.3: openai/gpt-4o-mini
    """
    if not plans:
        return "LLM plan: nothing needs an LLM call."
    width = max(10, *(len(p.kind) for p in plans))
    lines = [title, header(width), *(p.line(width) for p in plans)]
    generate = sum(p.to_generate for p in plans)
    reasks = sum(p.reasks for p in plans)
    calls = f" (~{generate + reasks:.0f} LLM calls with ~{reasks:.0f} re-asks)" if reasks else ""
    seconds = [p.seconds for p in plans if p.to_generate]
    known = all(s is not None for s in seconds)
    total = f"{sum(seconds) / 60:.1f} min" if known and seconds else "unknown"  # type: ignore[arg-type]
    costs = [p.cost for p in plans if p.to_generate]
    cost = None if any(c is None for c in costs) else sum(costs)  # type: ignore[arg-type]
    lines.append(
        f"total: {generate} LLM requests to generate{calls}, "
        f"{sum(p.prompt_tokens for p in plans)} prompt tokens"
        f"{'' if all(p.tokens_exact for p in plans) else ' (estimated)'}, "
        f"~{sum(p.completion_tokens for p in plans):.0f} completion tokens, LLM time {total}, "
        f"cost {_money(cost)}"
    )
    for model, tokenizer, rates, reask, prices in {
        (p.model, p.tokenizer, p.rate_source, p.reask_source, p.price_source): None for p in plans
    }:
        lines.append(
            f"sources: {model}: prompt tokens by {tokenizer}; rates from {rates}; {reask}; "
            f"prices from {prices}"
        )
    return "\n".join(lines)


def _money(cost: float | None) -> str:
    return "unknown" if cost is None else f"${cost:.4f}" if cost < 1 else f"${cost:,.2f}"


def plan_job(
    kind: str,
    label: str,
    job: JobInput,
    schema: type[BaseModel],
    prompt: PromptTemplate,
    llm: Any,
    store: Store,
    settings: EnrichSettings | None = None,
) -> JobPlan:
    """The plan of ``job`` (a :class:`JobInput` as the profile functions build it)."""
    engine = LLMEngine(llm, schema, prompt.version_id(schema), store, settings, planning=True)
    try:
        return _plan(kind, label, job, schema, llm, store, engine)
    finally:
        engine.close()


def _plan(
    kind: str,
    label: str,
    job: JobInput,
    schema: type[BaseModel],
    llm: Any,
    store: Store,
    engine: LLMEngine,
) -> JobPlan:
    needed = set(
        store.not_profiled(
            kind, job.frame.select(KEY, HASH), engine.model, engine.prompt_version
        ).to_list()
    )
    todo = [m for k, m in zip(job.frame[KEY].to_list(), job.messages, strict=True) if k in needed]
    requests: dict[str, list[BaseMessage]] = {}
    row_keys: list[str] = []
    for messages in todo:
        if messages is not None:
            row_keys.append(engine.cache_key(messages))
            requests.setdefault(row_keys[-1], messages)
    s = engine.settings
    held: set[str] = set()
    if s.retry_failed_after_h and requests:
        held = set(
            store.held_requests(
                list(requests),
                utc_now(),
                s.retry_failed_after_h * 3600,
                s.retry_failed_max_days * 86400,
            )["request_key"].to_list()
        )
        requests = {k: m for k, m in requests.items() if k not in held}
    cached = set(engine.cached_answers(requests))
    fresh = {k: m for k, m in requests.items() if k not in cached}
    tokenizer = tokenizer_for(llm, schema)
    counts = tokenizer(list(fresh.values()))
    rates = _rates(store, engine.model, engine.prompt_version, s.fix_attempts)
    per_request, seconds_per_token, source = rates.per_call, rates.seconds_per_token, rates.source
    if per_request is None:
        per_request = float(getattr(llm, "max_tokens", None) or _schema_bound(schema))
        source += "; output tokens: upper bound"
    prices = engine.prices
    if s.batch:  # the provider's queue sets the time, within its completion window
        seconds_per_token, source = None, source + "; time: the batch window (up to 24 h)"
    reasks = rates.reasks_per_request * len(fresh)
    # a re-ask's prompt: the request, the answer it failed with and the error (~60 tokens)
    reask_prompt = (sum(counts) / len(fresh) + per_request + 60.0) if fresh else 0.0
    calls = len(fresh) + reasks
    return JobPlan(
        kind=label,
        model=engine.model,
        prompt_version=engine.prompt_version,
        rows=job.frame.height,
        stored=job.frame.height - len(needed),
        no_text=sum(m is None for m in todo),
        held=sum(k in held for k in row_keys),
        cached=sum(k in cached for k in row_keys),
        to_generate=len(fresh),
        prompt_tokens=sum(counts),
        tokens_exact=tokenizer.exact,
        tokenizer=tokenizer.name,
        completion_tokens=per_request * calls,
        seconds=None
        if seconds_per_token is None
        else seconds_per_token * (sum(counts) + reasks * reask_prompt + per_request * calls),
        rate_source=source,
        cost=None
        if prices is None
        else sum(prices.cost(t, round(per_request)) for t in counts)
        + reasks * prices.cost(round(reask_prompt), round(per_request)),
        price_source="unknown" if prices is None else prices.source,
        reasks=reasks,
        reask_source=rates.reask_source,
        request_tokens=dict(zip(fresh, counts, strict=True)),
    )


def plan_items(data: Any, *, label: str = "items", **options: Any) -> JobPlan:
    """What :func:`enrich.profile_items` with the same arguments would do, without doing it
    (``profile_items(..., dry_run=True)``); ``label`` names the job in a plan table."""
    from enrich.profiles import profile_items

    return replace(profile_items(data, dry_run=True, **options), kind=label)  # type: ignore[arg-type]


def plan_users(
    interactions: Any, items: Any | None = None, *, label: str = "users", **options: Any
) -> JobPlan:
    """What :func:`enrich.profile_users` with the same arguments would do, without doing it
    (``profile_users(..., dry_run=True)``)."""
    from enrich.user_profiles import profile_users

    plan = profile_users(interactions, items, dry_run=True, **options)
    return replace(plan, kind=label)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Rates:
    per_call: float | None
    """Completion tokens per call (None: nothing on record)."""
    seconds_per_token: float | None
    """LLM seconds per token, prompt and completion (None: nothing on record)."""
    source: str
    reasks_per_request: float
    """Calls beyond the first per request (re-asks and retries; 0: nothing on record)."""
    reask_source: str


def _rates(store: Store, model: str, prompt_version: str, fix_attempts: int) -> _Rates:
    """Completion tokens per call, LLM seconds per token and re-asks per request from the
    ledger, and their sources. Time is charged per token (prompt + completion), not per request,
    so requests with longer prompts than the ledger's plan longer."""
    rows = store.con.execute(
        read_sql("queries/plan_rates.sql"),
        {"model": model, "prompt_version": prompt_version, "fix_attempts": fix_attempts},
    ).fetchall()
    by_scope = {scope: rest for scope, *rest in rows}
    nothing = (None, None, None, 0, 0, 0)
    scopes = (("prompt", "ledger: this prompt"), ("model", "ledger: this model"))
    per_call = seconds_per_token = None
    source = "no run of this model on record"
    for scope, label in scopes:
        tin, tout, secs, n, _, _ = by_scope.get(scope, nothing)
        if n:
            per_call, seconds_per_token, source = tout / n, secs / max(tin + tout, 1.0), label
            break
    # re-asks from this prompt only: another prompt's failure rate says little of this one's
    # (bench/plan_accuracy.py: 1% of the embedded model's item answers re-asked, 74% of users')
    *_, requests, calls = by_scope.get("prompt", nothing)
    if not requests:
        return _Rates(per_call, seconds_per_token, source, 0.0, _NO_REASK_RATE)
    reask_source = f"re-asks {calls / requests:.2f} calls a request (ledger: this prompt, "
    return _Rates(
        per_call,
        seconds_per_token,
        source,
        calls / requests - 1.0,
        f"{reask_source}{requests} requests)",
    )


_NO_REASK_RATE = "no re-ask rate of this prompt on record (re-asks not planned)"


def _schema_bound(schema: type[BaseModel]) -> int:
    """An upper bound of an answer's tokens: every string at its longest, ~4 characters a token,
    plus the JSON around them."""
    total = 0
    for prop in schema.model_json_schema().get("properties", {}).values():
        if prop.get("type") == "array":
            total += prop.get("maxItems", 4) * prop.get("items", {}).get("maxLength", 24)
        else:
            total += prop.get("maxLength", 64)
    return total // 4 + 10 * len(schema.model_fields)
