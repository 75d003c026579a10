"""The LLM batch engine: cache, dedup, concurrency, rate limits, retries, validation, accounting.

One engine serves items and users alike. Given requests (chat messages), it returns one
:class:`Answer` per distinct prompt: a validated output, or the error that stopped it. Nothing
is raised for a single bad row.

Example:
    >>> engine = LLMEngine(resolve_llm(None), ItemProfile, "item-profile-v1-abc",
    ...                    Store.open(None))          # doctest: +SKIP
    >>> answers = engine.run({"k1": messages})        # doctest: +SKIP
    >>> answers["k1"].output["summary"]               # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import LLMResult
from langchain_core.runnables import RunnableConfig, RunnableLambda
from pydantic import BaseModel, ValidationError

from enrich.batches import BatchRunner, Unanswered
from enrich.config import EnrichSettings
from enrich.errors import EnrichError, TransientError, redact
from enrich.hashing import sha256_hex
from enrich.llm import decoding_params, default_concurrency, model_id, structured
from enrich.llm.batch_format import LineResult, message_text
from enrich.prices import Prices, prices_for, warn_unknown
from enrich.prompts import estimate_tokens
from enrich.quota import BudgetSpent, Quota
from enrich.store import Store

log = logging.getLogger(__name__)

CACHE_ROWS = pa.schema(
    [
        ("key", pa.string()),
        ("model", pa.string()),
        ("prompt_version", pa.string()),
        ("output", pa.string()),
        ("tokens_in", pa.int32()),
        ("tokens_out", pa.int32()),
    ]
)
"""The rows :meth:`Store.cache_put` takes."""


@dataclass
class Answer:
    """The outcome of one distinct prompt."""

    output: dict[str, Any] | None = None
    error: str | None = None
    stage: str = "llm"
    raw: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.output is not None


@dataclass
class Pending:
    """Answers being had (:meth:`LLMEngine.start`): the cached ones, and the rest coming."""

    cached: dict[str, Answer]
    fresh: Future[dict[str, Answer]]


@dataclass
class Usage:
    """Counters of one run, updated from LangChain callbacks (thread-safe)."""

    llm_calls: int = 0
    llm_requests: int = 0
    """Distinct requests sent (first attempts); ``llm_calls - llm_requests`` were re-asks and
    retries."""
    tokens_in: int = 0
    tokens_out: int = 0
    cached_in: int = 0
    """Prompt tokens the provider read from its prompt cache (priced lower where it says so)."""
    cost: float | None = 0.0
    """None: the model's price is unknown."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _busy: int = field(default=0, repr=False)
    _since: float = field(default=0.0, repr=False)
    _closed: float = field(default=0.0, repr=False)

    @property
    def llm_seconds(self) -> float:
        """Wall time during which at least one request was being answered (overlapping chunks
        count once). A burst still open counts up to now: overlapped chunks keep one burst open
        for a whole run, and the ledger row a chunk writes (or a killed run leaves) must hold
        the time spent so far, or the planner would take its rate from the calls alone."""
        with self._lock:
            open_burst = time.perf_counter() - self._since if self._busy else 0.0
            return self._closed + open_burst

    def busy(self, starting: bool) -> None:
        """Mark the start or the end of a burst of requests (bursts may overlap)."""
        with self._lock:
            now = time.perf_counter()
            if starting:
                if self._busy == 0:
                    self._since = now
                self._busy += 1
            else:
                self._busy -= 1
                if self._busy == 0:
                    self._closed += now - self._since

    def add(
        self,
        calls: int = 0,
        tokens_in: int = 0,
        tokens_out: int = 0,
        cached_in: int = 0,
        cost: float | None = 0.0,
        requests: int = 0,
    ) -> None:
        with self._lock:
            self.llm_calls += calls
            self.llm_requests += requests
            self.tokens_in += tokens_in
            self.tokens_out += tokens_out
            self.cached_in += cached_in
            self.cost = None if self.cost is None or cost is None else self.cost + cost


class _Counter(BaseCallbackHandler):
    """Counts every request sent (retries included), the tokens the provider reports and their
    cost (each request priced on its own: tiered prices depend on a request's size), and adds
    them to the run's shared budget."""

    def __init__(
        self,
        usage: Usage,
        prices: Prices | None,
        quota: Quota,
        on_call: Callable[[], None] | None,
    ) -> None:
        self.usage, self.prices, self.quota, self.on_call = usage, prices, quota, on_call

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.usage.add(calls=1)

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        for generations in response.generations:
            for gen in generations:
                meta = getattr(getattr(gen, "message", None), "usage_metadata", None) or {}
                tin, tout = meta.get("input_tokens", 0), meta.get("output_tokens", 0)
                cached = (meta.get("input_token_details") or {}).get("cache_read", 0) or 0
                cost = None if self.prices is None else self.prices.cost(tin, tout, cached)
                self.usage.add(tokens_in=tin, tokens_out=tout, cached_in=cached, cost=cost)
                self.quota.spend(tin + tout, cost)
        if self.on_call:
            self.on_call()


def transient_errors() -> tuple[type[BaseException], ...]:
    """The exceptions the engine retries (with backoff): enrich's ``TransientError``, timeouts,
    connection errors, and the OpenAI client's 429/5xx/timeout/connection errors. Anything else
    is terminal for the row: recorded, not retried."""
    kinds: list[type[BaseException]] = [TransientError, TimeoutError, ConnectionError]
    try:
        import openai

        kinds += [
            openai.RateLimitError,
            openai.APITimeoutError,
            openai.APIConnectionError,
            openai.InternalServerError,
        ]
    except ImportError:  # pragma: no cover - openai comes with langchain-openai
        pass
    try:
        import httpx

        kinds += [httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError]
    except ImportError:  # pragma: no cover
        pass
    return tuple(kinds)


class LLMEngine:
    """Structured LLM calls for many prompts, paid for at most once each: one request each, or
    through the provider's Batches API when ``settings.batch`` (not when ``planning``: a plan
    only counts and prices)."""

    def __init__(
        self,
        llm: BaseChatModel,
        schema: type[BaseModel],
        prompt_version: str,
        store: Store,
        settings: EnrichSettings | None = None,
        on_call: Callable[[], None] | None = None,
        planning: bool = False,
    ) -> None:
        self.llm = llm
        self.schema = schema
        self.prompt_version = prompt_version
        self.store = store
        self.settings = settings or EnrichSettings()
        self.model = model_id(llm)
        self.usage = Usage()
        self._fingerprint = json.dumps(
            {
                "model": self.model,
                "params": decoding_params(llm),
                "prompt_version": prompt_version,
                "schema": schema.model_json_schema(),
                "method": self.settings.structured_method,
            },
            sort_keys=True,
            default=str,
        )
        self.prices = prices_for(llm, self.settings)
        if self.prices is None:
            if self.settings.max_cost is not None:
                raise EnrichError(
                    f"max_cost needs the price of {self.model}, which the price table does not "
                    "know: set price_in_per_mtok and price_out_per_mtok, or use max_tokens_total"
                )
            warn_unknown(self.model)
            self.usage.cost = None
        self.quota = Quota(self.settings)
        self._counter = _Counter(self.usage, self.prices, self.quota, on_call)
        method = self.settings.structured_method
        if self.settings.batch and method is None and not planning:
            method = "json_schema"  # re-asks use what the batch lines use: response_format
        self._structured = structured(llm, schema, method)
        self._transient = transient_errors()
        self._runnable = RunnableLambda(self._request, name="enrich-request")
        self.concurrency = self.settings.max_concurrency or default_concurrency(llm)
        self._in_flight = threading.BoundedSemaphore(self.concurrency)  # across overlapping runs
        self._generating: ThreadPoolExecutor | None = None
        self.batches = (
            BatchRunner(llm, schema, self.model, prompt_version, store, self.settings)
            if self.settings.batch and not planning
            else None
        )

    def close(self) -> None:
        """Release the quota's connections (a shared quota's SQLite file or PostgreSQL pool)
        and the thread that generates in the background."""
        if self._generating is not None:  # idle unless the run failed with a chunk in flight
            self._generating.shutdown(wait=False, cancel_futures=True)
            self._generating = None
        self.quota.close()

    # -- keys and budget -------------------------------------------------------------------------

    def cache_key(self, messages: list[BaseMessage]) -> str:
        """Content address of a request: model, decoding params, prompt version, schema, input."""
        payload = json.dumps([(m.type, m.text) for m in messages], ensure_ascii=False)
        return sha256_hex(self._fingerprint + payload)

    @property
    def cost(self) -> float | None:
        """What this engine's requests cost (None: the model's price is unknown)."""
        return self.usage.cost

    def budget_left(self) -> bool:
        """False once the run's budget (shared by every process of its scope) is spent."""
        return self.quota.left()

    # -- running ---------------------------------------------------------------------------------

    def run(self, requests: Mapping[str, list[BaseMessage]]) -> dict[str, Answer]:
        """Answers for ``{cache_key: messages}``: from the cache where possible, else the LLM.

        Successful answers are written to the cache before returning.
        """
        return self.finish(self.start(requests))

    def start(self, requests: Mapping[str, list[BaseMessage]]) -> Pending:
        """Begin answering ``requests``: the cache is read now, the rest is generated in the
        background (the LLM only: the store is touched again by :meth:`finish`, on the caller's
        thread). Started runs overlap, together never more than ``concurrency`` requests in
        flight, so the next chunk's requests fill the model's batch as the current one's end.

        Example:
            >>> pending = engine.start(next_chunk)  # doctest: +SKIP
            >>> answers = engine.finish(pending)     # doctest: +SKIP
        """
        answers = self.cached_answers(requests)
        todo = {k: m for k, m in requests.items() if k not in answers}
        fresh: Future[dict[str, Answer]]
        if self.batches is not None and todo:  # the provider's batch: waited for here
            fresh = Future()
            fresh.set_result(self._batched(todo))
        else:
            if self._generating is None:
                self._generating = ThreadPoolExecutor(2, thread_name_prefix="enrich-generate")
            fresh = self._generating.submit(self._generate, todo)
        return Pending(answers, fresh)

    def finish(self, pending: Pending) -> dict[str, Answer]:
        """Wait for a started run's answers; cache the good ones; return them all."""
        fresh = pending.fresh.result()
        good = [(k, a) for k, a in fresh.items() if a.ok]
        self.store.cache_put(
            pa.Table.from_pylist(
                [
                    {
                        "key": k,
                        "model": self.model,
                        "prompt_version": self.prompt_version,
                        "output": json.dumps(a.output),
                        "tokens_in": a.tokens_in,
                        "tokens_out": a.tokens_out,
                    }
                    for k, a in good
                ],
                schema=CACHE_ROWS,
            )
        )
        return pending.cached | fresh

    def cached_answers(self, requests: Mapping[str, list[BaseMessage]]) -> dict[str, Answer]:
        """The cached answers to ``requests`` that still pass validation and the junk rules (a
        cached answer that no longer does is asked again, and replaced)."""
        answers: dict[str, Answer] = {}
        for key, (output, tin, tout) in self.store.cache_get(list(requests)).items():
            if self._check(output, requests[key])[0] is not None:
                answers[key] = Answer(output=output, tokens_in=tin, tokens_out=tout, cached=True)
        return answers

    def _generate(
        self, todo: Mapping[str, list[BaseMessage]], first: dict[str, Answer] | None = None
    ) -> dict[str, Answer]:
        """Concurrent calls, then bounded re-asks with the validation error fed back. ``first``:
        the first attempt's answers, already had (from a batch): only the re-asks are sent."""
        answers: dict[str, Answer] = {}
        pending = dict(todo)
        self.usage.add(requests=len(todo))
        for attempt in range(self.settings.fix_attempts + 1):
            if not pending:
                break
            results = first if attempt == 0 and first is not None else self._send(pending, todo)
            retry: dict[str, list[BaseMessage]] = {}
            for key, answer in results.items():
                answers[key] = answer
                if answer.stage == "validation" and attempt < self.settings.fix_attempts:
                    retry[key] = [
                        *pending[key],
                        AIMessage(answer.raw or ""),
                        HumanMessage(
                            f"That answer does not fit what was asked: {answer.error}. Reply "
                            "again with one JSON object that fits the required JSON schema and "
                            "describes the data itself."
                        ),
                    ]
            pending = retry
        return answers

    def _send(
        self, pending: Mapping[str, list[BaseMessage]], todo: Mapping[str, list[BaseMessage]]
    ) -> dict[str, Answer]:
        """One online request per key of ``pending``, concurrently."""
        keys = list(pending)
        self.usage.busy(True)
        try:
            results = self._runnable.batch(
                [pending[k] for k in keys],
                config={"max_concurrency": self.concurrency, "callbacks": [self._counter]},
                return_exceptions=True,
            )
        finally:
            self.usage.busy(False)
        return {
            key: self._answer(result, todo[key]) for key, result in zip(keys, results, strict=True)
        }

    def _batched(self, todo: Mapping[str, list[BaseMessage]]) -> dict[str, Answer]:
        """The first attempt through the provider's Batches API (:mod:`enrich.batches`), each
        answer line validated like an online answer; re-asks go online."""
        results = self.batches.answers(todo, may_submit=self.quota.left())
        first: dict[str, Answer] = {}
        for key, result in results.items():
            if isinstance(result, Unanswered):
                if key in todo:
                    first[key] = Answer(error=result.error, stage=result.stage)
                continue
            cost = (
                None
                if self.prices is None
                else self.prices.cost(result.tokens_in, result.tokens_out, result.cached_in)
            )
            self.usage.add(
                int(result.ran), result.tokens_in, result.tokens_out, result.cached_in, cost
            )
            self.quota.spend(result.tokens_in + result.tokens_out, cost)
            if key in todo:
                first[key] = self._from_line(result, todo[key])
            else:  # its row changed or was stored since the batch was sent
                log.info("batch answer %s is for no row of this run; dropped", key[:12])
        return self._generate(todo, first)

    def _from_line(self, line: LineResult, request: list[BaseMessage]) -> Answer:
        if line.error is not None:  # "batch": it never ran; the next run asks again
            stage = "llm" if line.ran else "batch"
            return Answer(error=redact(line.error)[:2000], stage=stage)
        try:
            parsed = json.loads(line.text or "", strict=False)  # as LangChain's parser reads it
        except json.JSONDecodeError as exc:
            parsed, problem = None, f"the answer is not JSON: {exc}"
        output, problem = self._check(parsed, request) if parsed is not None else (None, problem)
        if output is None or line.finish_reason == "length":
            error = problem if line.finish_reason != "length" else "the answer hit max_tokens"
            return Answer(
                error=redact(error)[:2000],
                stage="validation",
                raw=redact(line.text or "")[:20000],
                tokens_in=line.tokens_in,
                tokens_out=line.tokens_out,
            )
        return Answer(
            output=output, raw=line.text, tokens_in=line.tokens_in, tokens_out=line.tokens_out
        )

    def _answer(self, result: Any, request: list[BaseMessage]) -> Answer:
        if isinstance(result, BudgetSpent):
            return Answer(error=f"{result}; the next run does it", stage="budget")
        if isinstance(result, BaseException):
            return Answer(error=redact(f"{type(result).__name__}: {result}")[:2000], stage="llm")
        raw_msg = result.get("raw")
        raw = message_text(raw_msg)
        meta = getattr(raw_msg, "usage_metadata", None) or {}
        tin, tout = meta.get("input_tokens", 0), meta.get("output_tokens", 0)
        parsed = result.get("parsed")
        if isinstance(parsed, BaseModel):
            parsed = parsed.model_dump(mode="json")
        output, problem = self._check(parsed, request)
        finish = (getattr(raw_msg, "response_metadata", None) or {}).get("finish_reason")
        if output is None or finish == "length":  # a cut answer is never stored, even if it parses
            error = str(result.get("parsing_error") or problem)
            if finish == "length":
                error = "the answer hit max_tokens" + (f": {error}" if output is None else "")
            return Answer(
                error=redact(error)[:2000],
                stage="validation",
                raw=redact(raw)[:20000],
                tokens_in=tin,
                tokens_out=tout,
            )
        return Answer(output=output, raw=raw, tokens_in=tin, tokens_out=tout)

    def _check(self, output: Any, request: list[BaseMessage]) -> tuple[dict[str, Any] | None, str]:
        """``(output, "")`` if it validates and is not junk, else ``(None, why)``."""
        if not isinstance(output, dict):
            return None, "the model returned no parsable answer"
        try:
            valid = self.schema.model_validate(output).model_dump(mode="json")
        except ValidationError as exc:
            return None, "it does not fit the required JSON schema: " + str(exc).replace("\n", " ")
        source = "\n".join(m.text for m in request if m.type == "human")
        junk = self.settings.junk.problems(valid, self.schema, source)
        if junk:
            return None, "junk: " + "; ".join(junk)
        return valid, ""

    def _request(self, messages: list[BaseMessage], config: RunnableConfig) -> Any:
        """One structured request, retried on transient errors with backoff and Retry-After.

        (LangChain's ``with_retry`` ignores Retry-After, and its ``batch`` fails every element
        when one raises a non-retryable error.)
        """
        for attempt in range(self.settings.max_retries + 1):
            if not self.quota.left():
                raise BudgetSpent("the run's token/cost budget was spent before this request")
            self._throttle(messages)
            try:
                with self._in_flight:
                    return self._structured.invoke(messages, config)
            except self._transient as exc:
                if attempt == self.settings.max_retries:
                    raise
                time.sleep(backoff_seconds(attempt, exc))
        raise AssertionError("unreachable")

    def _throttle(self, messages: list[BaseMessage]) -> None:
        if self.settings.requests_per_minute or self.settings.tokens_per_minute:
            text = " ".join(m.text for m in messages)
            self.quota.acquire(estimate_tokens(text) + 300)


def backoff_seconds(
    attempt: int, exc: BaseException, base: float = 0.5, cap: float = 30.0
) -> float:
    """Exponential backoff with full jitter, but never less than the server's Retry-After."""
    wait = random.uniform(0, min(cap, base * 2**attempt))
    response = getattr(exc, "response", None)
    header = getattr(response, "headers", {}).get("retry-after") if response is not None else None
    try:
        return max(wait, min(float(header), 300.0)) if header else wait
    except ValueError:  # an HTTP date: not worth parsing, use the backoff
        return wait
