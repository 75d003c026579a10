"""One enrichment run, for items or users: skip what is stored, generate, embed, upsert, account.

:func:`enrich.profile_items` and :func:`enrich.profile_users` build the prompts and call
:func:`run_job`; everything after the prompt is shared.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa
from langchain_core.messages import BaseMessage

from enrich.config import EnrichSettings
from enrich.embedding import Embedder, embed_texts
from enrich.engine import Answer, LLMEngine, Pending
from enrich.errors import redact
from enrich.inputs import HASH, KEY
from enrich.profile_rows import profile_kind
from enrich.report import RunReport, utc_now
from enrich.schemas import profile_text
from enrich.store import Store

Progress = Callable[[int], None]
Failure = tuple[str, str, str, str | None, str | None]
"""A failed row: ``(entity id, stage, error, raw output, request key)``."""


@dataclass
class JobInput:
    """Rows to profile: ``frame`` has ``_key`` and ``input_hash`` (+ the kind's extra columns,
    :class:`enrich.store.ProfileKind`), one message list per row (``None`` where the row has
    nothing to describe: recorded as an input error)."""

    frame: pl.DataFrame
    messages: list[list[BaseMessage] | None]
    empty_reason: str = "the row has no text to describe"


@dataclass
class Run:
    """What every step of one run works with (the run context)."""

    kind: str
    job: JobInput
    engine: LLMEngine
    embedder: Embedder
    store: Store
    settings: EnrichSettings
    report: RunReport
    seen: dict[str, Answer] = field(default_factory=dict)
    """Answers of this run by cache key, so a prompt repeated across chunks is sent once."""
    asked: set[str] = field(default_factory=set)
    """Cache keys of the chunk whose answers are still coming (not asked twice meanwhile)."""
    batched: dict[str, Answer] | None = None
    """Batch mode: every answer of the run, had from the provider's batches before the chunks
    are embedded and stored."""


def run_job(
    kind: str,
    job: JobInput,
    engine: LLMEngine,
    embedder: Embedder,
    store: Store,
    settings: EnrichSettings,
    progress: Progress | None = None,
) -> tuple[pl.DataFrame, RunReport]:
    """Run one enrichment; returns the profile rows (one per input row) and the report."""
    started = time.perf_counter()
    report = RunReport(
        kind=kind,
        model=engine.model,
        prompt_version=engine.prompt_version,
        embedding_model=embedder.name,
        rows_in=job.frame.height,
        settings=settings.model_dump_json(),
    )
    run = Run(kind, job, engine, embedder, store, settings, report)
    store.ensure_profile_tables(embedder.dim)
    store.record_run(report.as_row())
    try:
        fresh = _enrich(run, progress)
    except BaseException as exc:
        report.status, report.error = "failed", redact(f"{type(exc).__name__}: {exc}")[:2000]
        _finish(run, started)
        raise
    _finish(run, started)
    return _output(run, fresh), report


def _enrich(run: Run, progress: Progress | None) -> list[pl.DataFrame]:
    engine, report = run.engine, run.report
    frame = run.job.frame.with_columns(pl.Series("_msg", range(run.job.frame.height), pl.Int64))
    needed = run.store.not_profiled(
        run.kind, frame.select(KEY, HASH), engine.model, engine.prompt_version
    )
    todo = frame.filter(pl.col(KEY).is_in(needed.implode()))
    report.rows_skipped = frame.height - todo.height
    todo = _hold(run, todo.with_columns(_request_keys(run, todo)))
    if engine.batches is not None:  # one submission for the run, cut only at the file limits
        engine.batches.run_id = report.run_id
        messages = run.job.messages
        run.batched = engine.run(
            {ck: messages[i] for ck, i in zip(todo["_ck"], todo["_msg"], strict=True) if ck}
        )
    fresh: list[pl.DataFrame] = []
    waiting: tuple[pl.DataFrame, Pending | None] | None = None  # asked, not yet stored

    def store(chunk: pl.DataFrame, asked: Pending | None) -> None:
        fresh.append(_chunk(run, chunk, asked))
        if progress:
            progress(chunk.height)

    for start in range(0, todo.height, run.settings.chunk_size):
        chunk = todo.slice(start, run.settings.chunk_size)
        if run.batched is None and not engine.budget_left():  # a batch's answers are paid for
            report.status = "budget_exceeded"
            _record_failures(
                run,
                chunk[KEY].to_list(),
                "budget",
                "the run's token/cost budget was spent before this row; run again",
            )
            continue
        asked = _ask(run, chunk)
        if waiting is not None:  # stored while this chunk's answers are being generated
            store(*waiting)
        waiting = (chunk, asked)
        if not run.settings.overlap_chunks:
            store(*waiting)
            waiting = None
    if waiting is not None:
        store(*waiting)
    return fresh


def _ask(run: Run, chunk: pl.DataFrame) -> Pending | None:
    """Start generating the answers ``chunk`` needs that this run has not had or asked for
    (None in batch mode: the answers are had already)."""
    if run.batched is not None:
        return None
    messages = [run.job.messages[i] for i in chunk["_msg"].to_list()]
    requests = {
        ck: m
        for ck, m in zip(chunk["_ck"].to_list(), messages, strict=True)
        if ck and ck not in run.asked and (ck not in run.seen or run.seen[ck].stage == "budget")
    }
    run.asked = set(requests)
    return run.engine.start(requests)


def _request_keys(run: Run, todo: pl.DataFrame) -> pl.Series:
    """``_ck``: each row's request key (the LLM cache key; None for a row with nothing to
    describe), computed once per run for the failure memory and the chunks."""
    messages = [run.job.messages[i] for i in todo["_msg"].to_list()]
    keys = [run.engine.cache_key(m) if m is not None else None for m in messages]
    return pl.Series("_ck", keys, pl.Utf8)


def _hold(run: Run, todo: pl.DataFrame) -> pl.DataFrame:
    """Failure memory: rows whose request failed validation before and still waits are not
    asked again (recorded as ``held`` with the reason and when they are asked again); the rest
    is returned."""
    s = run.settings
    if not s.retry_failed_after_h or todo.is_empty():
        return todo
    by_key = {k: ck for k, ck in zip(todo[KEY], todo["_ck"], strict=True) if ck is not None}
    held = run.store.held_requests(
        list(set(by_key.values())),
        utc_now(),
        s.retry_failed_after_h * 3600,
        s.retry_failed_max_days * 86400,
    )
    if held.is_empty():
        return todo
    why = {
        r["request_key"]: (
            f"failed validation in {r['attempts']} run(s) with this input, model, decoding and "
            f"prompt (last: {r['last_error'][:300]}); asked again after "
            f"{r['retry_at']:%Y-%m-%d %H:%M} UTC, or at once if its input changes"
        )
        for r in held.iter_rows(named=True)
    }
    failures = [(k, "held", why[ck], None, ck) for k, ck in by_key.items() if ck in why]
    with run.store.transaction():
        _record_errors(run, failures)
    return todo.filter(~pl.col(KEY).is_in([f[0] for f in failures]))


def _chunk(run: Run, chunk: pl.DataFrame, asked: Pending | None) -> pl.DataFrame:
    """Wait for ``chunk``'s answers, embed the good ones and commit rows, errors and the
    ledger's counters in one transaction."""
    job, engine, embedder, store, report, seen = (
        run.job,
        run.engine,
        run.embedder,
        run.store,
        run.report,
        run.seen,
    )
    keys: list[str] = chunk[KEY].to_list()
    messages = [job.messages[i] for i in chunk["_msg"].to_list()]
    empty = [k for k, m in zip(keys, messages, strict=True) if m is None]
    cache_keys: list[str | None] = chunk["_ck"].to_list()
    if asked is None:  # batch mode
        answers = {ck: run.batched[ck] for ck in cache_keys if ck and ck not in seen}
    else:
        answers = engine.finish(asked)
    ok_keys, outputs, failures = [], [], []
    counted: set[str] = set()
    generated = hits = 0
    for key, ck in zip(keys, cache_keys, strict=True):
        if ck is None:
            continue
        answer = answers.get(ck) or seen[ck]  # seen: asked by an earlier chunk
        if not answer.ok:
            failures.append((key, answer.stage, answer.error or "failed", answer.raw, ck))
            continue
        fresh_call = ck in answers and not answer.cached and ck not in counted
        counted.add(ck)
        generated += fresh_call
        hits += not fresh_call
        ok_keys.append(key)
        outputs.append(answer.output)
    seen.update(answers)  # a budget failure is asked again by a later chunk (_ask)
    if any(f[1] == "budget" for f in failures):
        report.status = "budget_exceeded"
    elif any(f[1] == "pending" for f in failures):
        report.status = "pending"
    rows = chunk.filter(pl.col(KEY).is_in(ok_keys)) if ok_keys else chunk.clear()
    table = pl.DataFrame()
    if ok_keys:
        texts = [profile_text(engine.schema.model_validate(o)) for o in outputs]
        t0 = time.perf_counter()
        try:
            vectors = embed_texts(embedder, texts, store)
        except Exception as exc:  # no row is stored without its embedding
            error = redact(f"{type(exc).__name__}: {exc}")[:2000]
            failures += [(k, "embedding", error, None, None) for k in ok_keys]
        else:
            report.rows_generated += generated
            report.cache_hits += hits
            report.embed_seconds += time.perf_counter() - t0
            by_key = dict(zip(ok_keys, range(len(ok_keys)), strict=True))
            order = [by_key[k] for k in rows[KEY].to_list()]
            table = _profile_rows(
                run,
                rows,
                [texts[i] for i in order],
                [outputs[i] for i in order],
                vectors[order],
            )
    # the rows and the ledger's counters land together
    with store.transaction(store.write_memory_limit):
        if table.height:
            store.upsert_profiles(run.kind, table.to_arrow())
        _record_failures(run, empty, "input", job.empty_reason, in_transaction=True)
        _record_errors(run, failures)
        account(report, engine)
        store.record_run(report.as_row())
    return table


def _profile_rows(
    run: Run, rows: pl.DataFrame, texts: list[str], outputs: list[dict[str, Any]], vectors: Any
) -> pl.DataFrame:
    kind = profile_kind(run.kind)
    return rows.select(
        pl.col(KEY).alias(kind.id_col),
        pl.lit(run.engine.model).alias("model"),
        pl.lit(run.engine.prompt_version).alias("prompt_version"),
        pl.col(HASH),
        *[pl.col(c) for c in kind.extra_cols],
        pl.Series("profile_text", texts, pl.Utf8),
        pl.Series("attributes", [json.dumps(o) for o in outputs], pl.Utf8),
        pl.Series("embedding", vectors, pl.Array(pl.Float32, run.embedder.dim)),
        pl.lit(run.embedder.name).alias("embedding_model"),
        pl.lit(run.report.run_id).alias("run_id"),
        pl.lit(utc_now()).alias("created_at"),
    )


def _record_errors(run: Run, failures: list[Failure]) -> None:
    if not failures:
        return
    store, report = run.store, run.report
    report.rows_failed += len(failures)
    report.failures.update({f[0]: f"{f[1]}: {f[2]}" for f in failures})
    store.record_errors(
        pa.table(
            {
                "run_id": [report.run_id] * len(failures),
                "kind": [report.kind] * len(failures),
                "entity_id": [f[0] for f in failures],
                "stage": [f[1] for f in failures],
                "error": [f[2] for f in failures],
                "raw_output": pa.array([f[3] for f in failures], pa.string()),
                "request_key": pa.array([f[4] for f in failures], pa.string()),
            }
        )
    )


def _record_failures(
    run: Run, keys: list[str], stage: str, error: str, in_transaction: bool = False
) -> None:
    failures: list[Failure] = [(k, stage, error, None, None) for k in keys]
    if in_transaction:
        _record_errors(run, failures)
    else:
        with run.store.transaction():
            _record_errors(run, failures)


def account(report: RunReport, engine: LLMEngine) -> None:
    """Copy the engine's spend so far into the report (a killed run's ledger row then shows
    what it spent: its committed chunks and the requests answered for the next one)."""
    usage = engine.usage
    report.llm_calls, report.llm_requests, report.tokens_in, report.tokens_out = (
        usage.llm_calls,
        usage.llm_requests,
        usage.tokens_in,
        usage.tokens_out,
    )
    report.cost, report.llm_seconds = engine.cost, usage.llm_seconds
    report.total_seconds = (utc_now() - report.started_at).total_seconds()


def _finish(run: Run, started: float) -> None:
    report, store = run.report, run.store
    account(report, run.engine)
    report.finished_at = utc_now()
    report.total_seconds = time.perf_counter() - started
    if report.status == "running":
        report.status = "partial" if report.rows_failed else "ok"
    store.record_run(report.as_row())


def _output(run: Run, fresh: list[pl.DataFrame]) -> pl.DataFrame:
    """One row per input row: the stored profile (new or skipped), or nulls and the error."""
    kind, frame, store, report = run.kind, run.job.frame, run.store, run.report
    id_col = profile_kind(kind).id_col
    new = (
        pl.concat([f for f in fresh if f.height], how="vertical")
        if any(f.height for f in fresh)
        else None
    )
    new_keys = set(new[id_col].to_list()) if new is not None else set()
    old_rows = frame.filter(~pl.col(KEY).is_in(list(new_keys)))
    old = store.read_profiles(
        kind,
        old_rows[KEY].to_list(),
        report.model,
        report.prompt_version,
        hashes=old_rows[HASH].to_list(),  # the stored profile of this input (a user's as_of)
    )
    parts = [p for p in (new, old if old.height else None) if p is not None]
    profiles = (
        pl.concat([p.select(parts[0].columns) for p in parts], how="vertical_relaxed")
        if parts
        else None
    )
    base = frame.select(pl.exclude("_msg"))
    if profiles is None:
        return base.with_columns(pl.lit(None, pl.Utf8).alias("profile_text"))
    profiles = profiles.drop(HASH).rename({id_col: KEY})
    drop = [c for c in profiles.columns if c != KEY and c in base.columns]
    return base.join(profiles.drop(drop), on=KEY, how="left", maintain_order="left")
