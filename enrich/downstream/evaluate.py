"""``enrich evaluate``: the ablation ladder on any interaction log, under a stated protocol,
with user-level intervals and the smallest effect the data can see.

Steps, in order:
1. the data (:mod:`enrich.downstream.data`: a user's log and catalogue, or a MovieLens preset)
   and the protocol's windows (:mod:`enrich.downstream.protocols`);
2. everything that needs no LLM: raw-text vectors, and ALS candidates for every window and seed;
3. the plan: only the entities the evaluation reads (candidates, targets and the recent
   histories it averages; users of every window) — what the store and cache already hold, and
   the calls, tokens and time left to pay (``dry_run`` stops here);
4. the LLM work, through the library into the store, so a re-run pays nothing again;
5. every rung for every fold and seed; users pooled over seeds and cut-offs, intervals by
   resampling users (clusters), and per segment the minimum detectable effect at 80% power;
6. ``eval_runs`` rows and a Markdown report with a chart.

Example:
    >>> data = eval_data(events, catalogue, user_col="uid", item_col="sku", time_col="ts",
    ...                  text_cols=("title", "description"))               # doctest: +SKIP
    >>> result = evaluate(EvalConfig(protocol="rolling"), "eval.duckdb", data=data,
    ...                   out_dir="eval-report")                         # doctest: +SKIP
    >>> print(result.report_path.read_text())                            # doctest: +SKIP
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, Field

from enrich.config import EnrichSettings
from enrich.downstream.als import recent_history
from enrich.downstream.data import EvalData, movielens
from enrich.downstream.enrichment import (
    CF_PROMPT,
    Enriched,
    LLMJob,
    attribute_vectors,
    cf_item_job,
    item_job,
    job_coverage,
    new_user_job,
    new_user_prompt,
    raw_vectors,
    user_job,
)
from enrich.downstream.ladder import (
    DEFAULT_RUNGS,
    RUNGS,
    Candidates,
    Rung,
    cold_item_maps,
    run_fold,
)
from enrich.downstream.metrics import summarize, systems_summary
from enrich.downstream.new_users import new_user_systems, new_users
from enrich.downstream.protocols import Protocol, assert_before_cut, make_protocol
from enrich.embedding import resolve_embedder
from enrich.llm import model_id, resolve_llm
from enrich.plan import JobPlan, plan_table
from enrich.prompts import PromptTemplate
from enrich.report import utc_now
from enrich.schemas import FreeTextItemProfile, ItemProfile, UserProfile
from enrich.sqlfiles import read_sql
from enrich.store import Store
from enrich.vocab import INDUCTION_PROMPT, Keywords

BASELINE = "2"
CANDIDATES = "0"
CONTROLLED = "controlled item profiles"
"""The LLM job of rung 4c (:class:`enrich.ItemProfile`, beside rung 3's free-text profiles)."""
INDUCTION = "vocabulary induction"
"""Cost row of a vocabulary induction pass found in the store (per 1,000 sampled items)."""
NEW_USERS = "new users"
"""Segment (in ``eval_runs``) and cost row of users with no history before the window."""
COLD_PLACEMENT = "cold items: placement"
"""Segment (in ``eval_runs``) of the cold-item table: ALS with each map vs. popularity."""


class EvalConfig(BaseModel):
    """What an evaluation run does; stored with its results."""

    dataset: str = Field("ml-100k", description="a preset (ml-100k, ml-latest-small) or a name")
    protocol: Literal["global", "rolling", "leave-last"] = "global"
    window: float = Field(0.1, description="share of interactions in each window")
    train_windows: int = Field(
        3, description="windows before each evaluated one the ranker learns from"
    )
    cuts: int = Field(3, description="rolling: evaluated windows")
    last_n: int = Field(1, description="leave-last: each user's last n interactions are the test")
    seeds: tuple[int, ...] = (0, 1, 2)
    split_seed: int = Field(0, description="draw of the held-out cold items")
    cold_items: float = 0.1
    simulate_cold: float = Field(
        0.1, description="share of chosen items hidden in training windows (0: none)"
    )
    candidates: int = 100
    factors: int = 64
    rungs: tuple[str, ...] = RUNGS
    llm: str | None = Field(None, description="model spec; None: the embedded default")
    bootstrap: int = 2000


@dataclass
class EvalResult:
    eval_id: str
    summary: pl.DataFrame
    """Per rung and segment, users pooled over seeds and cut-offs: metric means and deltas vs
    rung 2 with user-level 95% intervals, users, (seed, window, user) rows, MDE."""
    cold: pl.DataFrame
    costs: pl.DataFrame
    plan: list[JobPlan] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    """What was done to the input data and by the protocol (see the report's data section)."""
    new_users: pl.DataFrame | None = None
    """Users of the evaluated windows with no history, by system (None: no user attributes)."""
    report_path: Path | None = None
    chart_path: Path | None = None
    leaks_global_time: bool = False
    coverage: list[dict[str, Any]] = field(default_factory=list)
    """What each LLM job returned: rows, profiled, failed (see
    :func:`enrich.downstream.enrichment.job_coverage`)."""


@dataclass
class Prepared:
    """Everything the LLM work and the ladder read, before any LLM call."""

    data: EvalData
    protocol: Protocol
    items: pl.DataFrame
    pool: Candidates
    jobs: list[LLMJob]
    counts: dict[str, int]


def prepare(
    config: EvalConfig,
    store: Store,
    data: EvalData | None = None,
    *,
    embedder: Any = None,
) -> Prepared:
    """Steps 1-2 and the LLM jobs of step 3 (see the module docstring); no LLM call."""
    data = data or movielens(config.dataset)
    protocol = make_protocol(
        data.interactions,
        config.protocol,
        window=config.window,
        train_windows=config.train_windows,
        cuts=config.cuts,
        last_n=config.last_n,
        cold_items=config.cold_items,
        seed=config.split_seed,
    )
    items = data.items_before(protocol.context_start)
    enriched = Enriched(raw=raw_vectors(items, data.text_cols, store, embedder))
    pool = Candidates(
        enriched, k=config.candidates, factors=config.factors, simulate_cold=config.simulate_cold
    )
    for fold in protocol.folds:
        for seed in config.seeds:
            pool.get(fold.test, seed)
            for window in fold.train:
                pool.get(window, seed, train=True)
    jobs = llm_jobs(config, data, protocol, items, pool)
    counts = data.counts | _protocol_counts(protocol, pool)
    return Prepared(data, protocol, items, pool, jobs, counts)


def needed_items(protocol: Protocol, pool: Candidates) -> list[str]:
    """Items the LLM rungs read: every candidate, every target item, and the recent histories
    that :func:`enrich.downstream.als.history_vectors` averages."""
    frames = [p.candidates.select("item_id") for p in pool.periods.values()]
    for window in protocol.windows():
        users = window.target.select("user_id").unique()
        frames.append(window.target.select("item_id"))
        frames.append(
            recent_history(window.history.join(users, on="user_id", how="semi")).select("item_id")
        )
    return pl.concat(frames)["item_id"].unique().sort().to_list()


def llm_jobs(
    config: EvalConfig,
    data: EvalData,
    protocol: Protocol,
    items: pl.DataFrame,
    pool: Candidates,
) -> list[LLMJob]:
    """The LLM enrichments the configured rungs need, each on only the entities it reads."""
    rungs = set(config.rungs)
    if not rungs & {"3", "3b", "4", "4c", "5"}:
        return []
    needed = needed_items(protocol, pool)
    label = (data.text_cols[0],)
    jobs = [item_job(items, data.text_cols, needed)]
    if "4c" in rungs:
        jobs.append(item_job(items, data.text_cols, needed, ItemProfile, CONTROLLED, "facets"))
    if "3b" in rungs:
        history = protocol.context_history()
        jobs.append(cf_item_job(items, data.text_cols, needed, history, data.implicit))
    if "5" in rungs:
        for window in protocol.windows():
            users = window.known_users()
            jobs.append(
                user_job(
                    window.name,
                    window.history,
                    items,
                    users,
                    window.start,
                    label,
                    data.implicit,
                )
            )
        if data.users is not None:
            prompt = new_user_prompt(data.user_attr_cols, data.domain)
            for fold in protocol.folds:
                if not new_users(fold.test):
                    continue
                jobs.append(
                    new_user_job(
                        fold.test.name,
                        data.users,
                        new_users(fold.test),
                        fold.test.earliest,
                        data.user_attr_cols,
                        prompt,
                    )
                )
    return jobs


def plan(prepared: Prepared, llm: Any, store: Store) -> list[JobPlan]:
    """What each LLM job would cost (see :mod:`enrich.plan`). A request two jobs share (the
    same user's unchanged history at two cut-offs) is counted once, in the first job: the
    second finds its answer in the cache."""
    plans, seen = [], set()
    for job in prepared.jobs:
        plans.append(job.plan(llm, store, _settings()).without(seen))
        seen |= set(plans[-1].request_tokens)
    return plans


def plan_text(plans: list[JobPlan]) -> str:
    """The plan as a small table, with totals."""
    if not plans:
        return "LLM plan: the configured rungs need no LLM call."
    return plan_table(plans, "LLM plan (only the entities this evaluation reads):")


def enrich_for(
    prepared: Prepared,
    store: Store,
    *,
    llm: Any = None,
    embedder: Any = None,
    progress: Any = None,
) -> Enriched:
    """Run the LLM jobs; the pool's :class:`Enriched` gains their vectors."""
    enriched = prepared.pool.enriched
    settings = _settings()
    users: dict[str, pl.DataFrame] = {}
    new: list[pl.DataFrame] = []
    windows = {w.name: w for w in prepared.protocol.windows()}
    enriched.coverage.clear()  # a retried task counts its jobs once
    for job in prepared.jobs:
        out = job.run(llm, embedder, store, settings, progress)
        enriched.coverage.append(job_coverage(job.label, out))
        out = out.filter(pl.col("status") != "failed")  # no profile: the rungs read a missing value
        item_id = pl.col("item_id").cast(pl.Utf8)
        if job.role == "llm":
            enriched.llm = out.select(item_id, "embedding")
            enriched.attributes = out.select(item_id, "mood", "audience")
        elif job.role == "facets":
            controlled = [f for f in ItemProfile.model_fields if f != "summary"]
            enriched.facets = out.select(item_id, *controlled)
        elif job.role == "llm_cf":
            enriched.llm_cf = out.select(item_id, "embedding")
        elif job.role == "users":
            window = windows[job.window]  # type: ignore[index]
            vectors = out.select(pl.col("user_id").cast(pl.Utf8), "embedding", "as_of")
            assert_before_cut(vectors, "as_of", window)  # no profile saw its window
            users[window.name] = vectors
        elif job.role == "new_users":
            new.append(out.select(pl.col("user_id").cast(pl.Utf8), "embedding"))
    if users:
        enriched.users = users
    if new:
        enriched.new_user_llm = pl.concat(new).unique("user_id", keep="first")
    data = prepared.data
    if data.users is not None:
        everyone = sorted({u for f in prepared.protocol.folds for u in new_users(f.test)})
        enriched.user_attrs = data.users
        enriched.new_user_text = attribute_vectors(
            data.users, everyone, data.user_attr_cols, store, embedder
        )
    return enriched


def fold_results(
    config: EvalConfig, prepared: Prepared, rungs: tuple[Rung, ...] = DEFAULT_RUNGS
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(per-user ladder metrics, per-user cold-item metrics)`` over every fold and seed."""
    chosen = tuple(r for r in rungs if r.id in config.rungs or r not in DEFAULT_RUNGS)
    ladder, cold = [], []
    for fold in prepared.protocol.folds:
        for seed in config.seeds:
            ladder.append(run_fold(fold, prepared.pool, seed, chosen))
            cold.append(cold_item_maps(fold, prepared.pool, seed))
    return pl.concat(ladder), pl.concat(cold)


def new_user_results(config: EvalConfig, prepared: Prepared) -> pl.DataFrame | None:
    """Per-user metrics of each new-user system over the evaluated windows (seed-free)."""
    enriched, data = prepared.pool.enriched, prepared.data
    if enriched.user_attrs is None or enriched.new_user_text is None:
        return None
    frames = []
    for fold in prepared.protocol.folds:
        users = new_users(fold.test)
        if not users:
            continue
        profiles = (
            enriched.new_user_llm.filter(pl.col("user_id").is_in(users))
            if enriched.new_user_llm is not None
            else None
        )
        frames.append(
            new_user_systems(
                fold.test,
                enriched.user_attrs,
                enriched,
                enriched.new_user_text.filter(pl.col("user_id").is_in(users)),
                profiles,
                config.candidates,
                data.group_cols,
            ).with_columns(pl.lit(fold.test.name).alias("window"))
        )
    return pl.concat(frames) if frames else None


def costs(store: Store, config: EvalConfig, llm_name: str, data: EvalData) -> pl.DataFrame:
    """LLM calls, tokens and LLM seconds per 1,000 entities, per rung, from the runs ledger
    (``sql/queries/llm_cost_per_prompt.sql``)."""
    ledger = store.con.sql(read_sql("queries/llm_cost_per_prompt.sql")).pl()
    ledger = ledger.filter(pl.col("model") == llm_name)
    zero = {"calls": 0.0, "tokens": 0.0, "seconds": 0.0}

    def per_1000(rows: pl.DataFrame) -> dict[str, float]:
        entities = float(rows["entities"].sum() or 0)
        if not entities:
            return zero
        return {
            "calls": 1000 * float(rows["calls"].sum()) / entities,
            "tokens": 1000 * float(rows["tokens"].sum()) / entities,
            "seconds": 1000 * float(rows["llm_seconds"].sum()) / entities,
        }

    def prompt(version: str) -> pl.DataFrame:
        return ledger.filter(pl.col("prompt_version") == version)

    items = per_1000(prompt(PromptTemplate.for_items().version_id(FreeTextItemProfile)))
    controlled = per_1000(prompt(PromptTemplate.for_items().version_id(ItemProfile)))
    cf = per_1000(prompt(CF_PROMPT.version_id(FreeTextItemProfile)))
    new_version = new_user_prompt(data.user_attr_cols, data.domain).version_id(UserProfile)
    users = per_1000(
        ledger.filter((pl.col("kind") == "users") & (pl.col("prompt_version") != new_version))
    )
    by_rung = {"0": zero, "1": zero, "2": zero, "3": items, "3b": cf, "4": items}
    by_rung["4c"] = {k: items[k] + controlled[k] for k in items}
    induction = per_1000(prompt(INDUCTION_PROMPT.version_id(Keywords)))
    if induction["calls"]:  # a vocabulary was induced in this store: per 1,000 sampled items
        by_rung[INDUCTION] = induction
    by_rung["5"] = {k: items[k] + users[k] for k in items}
    by_rung[NEW_USERS] = per_1000(prompt(new_version))  # rung 5's new-user profiles
    return pl.DataFrame(
        [
            {
                "rung": r,
                "llm_calls_per_1k": c["calls"],
                "tokens_per_1k": c["tokens"],
                "llm_seconds_per_1k": c["seconds"],
            }
            for r, c in by_rung.items()
            if r in config.rungs
            or (r == NEW_USERS and "5" in config.rungs)
            or (r == INDUCTION and "4c" in config.rungs)
        ]
    )


def conclude(
    config: EvalConfig,
    prepared: Prepared,
    ladder: pl.DataFrame,
    cold: pl.DataFrame,
    db: Store,
    model: str,
    embedding_model: str,
    seconds: float,
    out_dir: str | Path | None = None,
    new: pl.DataFrame | None = None,
    plans: list[JobPlan] | None = None,
) -> EvalResult:
    """Pool, bootstrap, record ``eval_runs``, and write the report if ``out_dir``."""
    result = EvalResult(
        uuid.uuid4().hex[:12],
        summarize(ladder, config.bootstrap),
        systems_summary(cold, config.bootstrap),
        costs(db, config, model, prepared.data),
        plan=plans or [],
        counts=prepared.counts,
        leaks_global_time=prepared.protocol.leaks_global_time,
        coverage=prepared.pool.enriched.coverage,
    )
    if new is not None:
        result.new_users = systems_summary(new, config.bootstrap)
    _record(db, result, config, model, embedding_model, seconds)
    if out_dir is not None:
        from enrich.downstream.eval_report import write_report

        result.report_path, result.chart_path = write_report(result, config, Path(out_dir))
    return result


def evaluate(
    config: EvalConfig,
    store: str | Path | Store,
    *,
    data: EvalData | None = None,
    out_dir: str | Path | None = None,
    llm: Any = None,
    embedder: Any = None,
    progress: Any = None,
    dry_run: bool = False,
    echo: Any = None,
) -> EvalResult:
    """Run the ladder (see the module docstring); store ``eval_runs``; write the report if
    ``out_dir``. ``data``: the log and catalogue (default: the ``config.dataset`` preset).
    ``dry_run``: stop after the plan (returned in ``result.plan``, no LLM call, nothing stored).
    ``echo``: called with the plan's text before any LLM call (e.g. ``print``).

    ``flows/evaluate.py`` runs the same steps as Prefect tasks.
    """
    started = time.perf_counter()
    chat = resolve_llm(llm if llm is not None else config.llm, planning=dry_run)
    embedder = resolve_embedder(embedder)
    with Store.borrow(store) as db:
        prepared = prepare(config, db, data, embedder=embedder)
        plans = plan(prepared, chat, db)
        if echo is not None:
            echo(plan_text(plans))
        if dry_run:
            empty = pl.DataFrame()
            return EvalResult("", empty, empty, empty, plan=plans, counts=prepared.counts)
        enrich_for(prepared, db, llm=chat, embedder=embedder, progress=progress)
        ladder, cold = fold_results(config, prepared)
        return conclude(
            config,
            prepared,
            ladder,
            cold,
            db,
            model_id(chat),
            embedder.name,
            time.perf_counter() - started,
            out_dir,
            new_user_results(config, prepared),
            plans,
        )


def _settings() -> EnrichSettings:
    return EnrichSettings(chunk_size=64)


def _protocol_counts(protocol: Protocol, pool: Candidates) -> dict[str, int]:
    folds = protocol.folds
    return {
        "windows": len(protocol.windows()),
        "evaluated_windows": len(folds),
        "cold_items_held_out": len(protocol.cold_items),
        "test_interactions": sum(f.test.target.height for f in folds),
        "test_users": len({u for f in folds for u in f.test.target["user_id"].to_list()}),
        "test_users_ranked": len(
            {
                u
                for (name, _, train), p in pool.periods.items()
                for u in p.candidates["user_id"].to_list()
                if not train and name in {f.test.name for f in folds}
            }
        ),
        "test_users_without_history": len({u for f in folds for u in new_users(f.test)}),
    }


def _record(
    db: Store, result: EvalResult, config: EvalConfig, model: str, embedder: str, seconds: float
) -> None:
    systems = [  # the side tables, one row per system (as rung) and metric
        frame.rename({"system": "rung"}).with_columns(pl.lit(segment).alias("segment"))
        for frame, segment in ((result.cold, COLD_PLACEMENT), (result.new_users, NEW_USERS))
        if frame is not None
    ]
    rows = pl.concat([result.summary, *systems], how="diagonal_relaxed")
    rows = rows.select([c for c in _EVAL_COLUMNS if c in rows.columns]).with_columns(
        pl.lit(result.eval_id).alias("eval_id"),
        pl.lit(utc_now()).alias("created_at"),
        pl.lit(config.dataset).alias("dataset"),
        pl.lit(model).alias("model"),
        pl.lit(PromptTemplate.for_items().version_id(FreeTextItemProfile)).alias("prompt_version"),
        pl.lit(embedder).alias("embedding_model"),
        pl.lit(config.model_dump_json()).alias("config"),
        pl.lit(seconds).alias("seconds"),
    )
    with db.transaction():
        db.record_eval(rows.to_arrow())


_EVAL_COLUMNS = (
    "rung",
    "segment",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "delta_vs_2",
    "delta_low",
    "delta_high",
    "delta_vs_0",
    "delta_vs_0_low",
    "delta_vs_0_high",
    "n_users",
    "n_rows",
    "mde",
)


__all__ = ["EvalConfig", "EvalResult", "evaluate", "prepare", "summarize"]
