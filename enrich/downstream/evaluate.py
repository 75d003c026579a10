"""``enrich evaluate``: the ablation ladder on MovieLens across seeds, with paired bootstrap
intervals against rung 2 (raw text, no LLM), stored in ``eval_runs`` and written as a Markdown
report with a PNG chart.

The LLM work (item profiles, profiles with collaborative context, user profiles as of each
period's start) goes through the library into the store, so a re-run pays nothing again. The
held-out cold items are drawn once (``split_seed``) so that enrichment is shared by all seeds;
seeds vary ALS, LightGBM and the bootstrap.

Example:
    >>> result = evaluate(EvalConfig(seeds=(0, 1, 2)), store="eval.duckdb")   # doctest: +SKIP
    >>> print(result.report_path.read_text())                                  # doctest: +SKIP
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

from enrich.config import EnrichSettings
from enrich.downstream.enrichment import (
    CF_PROMPT,
    NEW_USER_PROMPT,
    Enriched,
    item_features,
    new_user_vectors,
    user_vectors,
)
from enrich.downstream.ladder import RUNG_NAMES, RUNGS, SEGMENTS, cold_item_maps, run_seed
from enrich.downstream.metrics import METRICS, paired_bootstrap
from enrich.downstream.new_users import new_user_systems, new_users
from enrich.downstream.split import TemporalSplit, assert_before, temporal_split
from enrich.embedding import resolve_embedder
from enrich.errors import EnrichError
from enrich.llm import model_id, resolve_llm
from enrich.movielens import (
    find_data_dir,
    load_latest_small_items,
    load_latest_small_ratings,
    load_ml100k_items,
    load_ml100k_ratings,
    load_ml100k_users,
)
from enrich.prompts import PromptTemplate
from enrich.schemas import ItemProfile, UserProfile
from enrich.sqlfiles import read_sql
from enrich.store import Store

BASELINE = "2"
NEW_USERS = "new users"
"""Segment (in ``eval_runs``) and cost row of users with no history before the test period."""
COLD_PLACEMENT = "cold items: placement"
"""Segment (in ``eval_runs``) of the cold-item table: ALS with each map vs. popularity."""


class EvalConfig(BaseModel):
    """What an evaluation run does; stored with its results."""

    dataset: str = Field("ml-100k", description="ml-100k or ml-latest-small")
    seeds: tuple[int, ...] = (0, 1, 2)
    split_seed: int = Field(0, description="draw of the held-out cold items")
    validation: float = 0.1
    test: float = 0.1
    cold_items: float = 0.1
    candidates: int = 100
    factors: int = 64
    rungs: tuple[str, ...] = RUNGS
    llm: str | None = Field(None, description="model spec; None: the embedded default")
    bootstrap: int = 2000


@dataclass
class EvalResult:
    eval_id: str
    summary: pl.DataFrame
    """Per rung and segment, pooled over seeds: metric means and deltas vs rung 2 with CIs."""
    cold: pl.DataFrame
    costs: pl.DataFrame
    new_users: pl.DataFrame | None = None
    """Test-period users with no history, by system (None: the dataset has no user attributes)."""
    report_path: Path | None = None
    chart_path: Path | None = None


def load_dataset(name: str) -> tuple[pl.DataFrame, tuple[str, ...]]:
    """``(ratings, item text columns)`` of a MovieLens dataset in ../shared/data."""
    folder = find_data_dir(name)
    if folder is None:
        raise EnrichError(f"{name} not found: set ENRICH_DATA to the folder that holds {name}/")
    if name == "ml-100k":
        return load_ml100k_ratings(folder), ("title", "genres")
    if name == "ml-latest-small":
        return load_latest_small_ratings(folder), ("title", "genres", "tags")
    raise EnrichError(f"unknown dataset {name!r}; known: ml-100k, ml-latest-small")


def load_items(name: str, split: TemporalSplit) -> pl.DataFrame:
    """Item metadata; ml-latest-small's user tags only from before the first period starts."""
    folder = find_data_dir(name)
    assert folder is not None
    items = (
        load_ml100k_items(folder)
        if name == "ml-100k"
        else load_latest_small_items(folder, tags_before=split.validation_start)
    )
    return items.with_columns(pl.col("item_id").cast(pl.Utf8))


def load_user_attrs(name: str) -> pl.DataFrame | None:
    """User attributes (age, gender, occupation) where the dataset has them (ml-100k)."""
    folder = find_data_dir(name)
    if name != "ml-100k" or folder is None:
        return None
    return load_ml100k_users(folder).with_columns(pl.col("user_id").cast(pl.Utf8))


def enrich_for(
    config: EvalConfig,
    split: TemporalSplit,
    items: pl.DataFrame,
    text_cols: tuple[str, ...],
    store: Store,
    *,
    llm: Any = None,
    embedder: Any = None,
    progress: Any = None,
) -> Enriched:
    """Every feature the configured rungs need, cached in ``store``."""
    llm_rungs = {"3", "3b", "4", "5"} & set(config.rungs)
    settings = EnrichSettings(chunk_size=64)
    enriched = item_features(
        items,
        text_cols,
        store,
        llm=llm,
        embedder=embedder,
        cf_history=split.train if "3b" in config.rungs else None,
        with_llm=bool(llm_rungs),
        settings=settings,
        progress=progress,
    )
    if "5" in config.rungs:
        enriched.users = {}
        for period in ("validation", "test"):
            target = split.validation if period == "validation" else split.test
            history = split.history(period)
            users = sorted(set(target["user_id"]) & set(history["user_id"]))
            vectors = user_vectors(
                history,
                items,
                users,
                split.start(period),
                store,
                llm=llm,
                embedder=embedder,
                settings=settings,
                progress=progress,
            )
            assert_before(vectors, "as_of", split.start(period))  # no profile saw the period
            enriched.users[period] = vectors
    enriched.user_attrs = load_user_attrs(config.dataset)
    if enriched.user_attrs is not None:
        enriched.new_user_text, enriched.new_user_llm = new_user_vectors(
            enriched.user_attrs,
            new_users(split, "test"),
            split.test_start,
            store,
            llm=llm,
            embedder=embedder,
            with_llm="5" in config.rungs,
            settings=settings,
            progress=progress,
        )
    return enriched


def new_user_results(
    config: EvalConfig, split: TemporalSplit, enriched: Enriched
) -> pl.DataFrame | None:
    """Per-user metrics of each system on the test period's new users (seed-independent)."""
    if enriched.user_attrs is None or enriched.new_user_text is None:
        return None
    return new_user_systems(
        split,
        enriched.user_attrs,
        enriched,
        enriched.new_user_text,
        enriched.new_user_llm,
        config.candidates,
    )


def summarize(per_user: pl.DataFrame, n_resamples: int, seed: int = 0) -> pl.DataFrame:
    """Mean per rung and segment over (seed, user), and the paired bootstrap of the difference
    to rung 2 over the same (seed, user) pairs."""
    rows = []
    for (rung, segment), group in per_user.group_by("rung", "segment", maintain_order=True):
        base = per_user.filter((pl.col("rung") == BASELINE) & (pl.col("segment") == segment))
        paired = group.join(base, on=["seed", "user_id"], suffix="_base")
        for metric in METRICS:
            values = group[metric].to_numpy()
            mean, low, high = paired_bootstrap(values, np.zeros_like(values), n_resamples, seed)
            d, d_low, d_high = (
                paired_bootstrap(
                    paired[metric].to_numpy(),
                    paired[f"{metric}_base"].to_numpy(),
                    n_resamples,
                    seed,
                )
                if base.height
                else (np.nan, np.nan, np.nan)
            )
            rows.append(
                {
                    "rung": rung,
                    "segment": segment,
                    "metric": metric,
                    "value": mean,
                    "ci_low": low,
                    "ci_high": high,
                    "delta_vs_2": d,
                    "delta_low": d_low,
                    "delta_high": d_high,
                    "n_users": group.height,
                }
            )
    return pl.DataFrame(rows)


def costs(store: Store, config: EvalConfig, llm_name: str) -> pl.DataFrame:
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

    items = per_1000(prompt(PromptTemplate.for_items().version_id(ItemProfile)))
    cf = per_1000(prompt(CF_PROMPT.version_id(ItemProfile)))
    new_version = NEW_USER_PROMPT.version_id(UserProfile)
    users = per_1000(
        ledger.filter((pl.col("kind") == "users") & (pl.col("prompt_version") != new_version))
    )
    by_rung = {"0": zero, "1": zero, "2": zero, "3": items, "3b": cf, "4": items}
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
            if r in config.rungs or (r == NEW_USERS and "5" in config.rungs)
        ]
    )


def prepare(config: EvalConfig) -> tuple[pl.DataFrame, tuple[str, ...], TemporalSplit]:
    """``(items, text columns, split)`` of the configured dataset."""
    ratings, text_cols = load_dataset(config.dataset)
    split = temporal_split(
        ratings,
        validation=config.validation,
        test=config.test,
        cold_items=config.cold_items,
        seed=config.split_seed,
    )
    return load_items(config.dataset, split), text_cols, split


def seed_results(
    config: EvalConfig, split: TemporalSplit, enriched: Enriched, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(per-user ladder metrics, per-user cold-item metrics)`` of one seed."""
    users, _ = run_seed(split, enriched, seed, config.rungs, config.candidates, config.factors)
    return users, cold_item_maps(split, enriched, seed, config.candidates, config.factors)


def conclude(
    config: EvalConfig,
    per_seed: list[tuple[pl.DataFrame, pl.DataFrame]],
    db: Store,
    model: str,
    embedding_model: str,
    seconds: float,
    out_dir: str | Path | None = None,
    new: pl.DataFrame | None = None,
) -> EvalResult:
    """Pool the seeds, bootstrap, record ``eval_runs``, and write the report if ``out_dir``."""
    summary = summarize(pl.concat([u for u, _ in per_seed]), config.bootstrap)
    cold = _systems_summary(pl.concat([c for _, c in per_seed]), config.bootstrap)
    result = EvalResult(uuid.uuid4().hex[:12], summary, cold, costs(db, config, model))
    if new is not None:
        result.new_users = _systems_summary(new, config.bootstrap)
    _record(db, result, config, model, embedding_model, seconds)
    if out_dir is not None:
        from enrich.downstream.report import write_report

        result.report_path, result.chart_path = write_report(result, config, Path(out_dir))
    return result


def evaluate(
    config: EvalConfig,
    store: str | Path | Store,
    *,
    out_dir: str | Path | None = None,
    llm: Any = None,
    embedder: Any = None,
    progress: Any = None,
) -> EvalResult:
    """Run the ladder for every seed; store ``eval_runs``; write the report if ``out_dir``.

    ``flows/evaluate.py`` runs the same steps as Prefect tasks, one per seed.
    """
    started = time.perf_counter()
    items, text_cols, split = prepare(config)
    chat = resolve_llm(llm if llm is not None else config.llm)
    embedder = resolve_embedder(embedder)
    with Store.borrow(store) as db:
        enriched = enrich_for(
            config, split, items, text_cols, db, llm=chat, embedder=embedder, progress=progress
        )
        per_seed = [seed_results(config, split, enriched, seed) for seed in config.seeds]
        return conclude(
            config,
            per_seed,
            db,
            model_id(chat),
            embedder.name,
            time.perf_counter() - started,
            out_dir,
            new_user_results(config, split, enriched),
        )


def _systems_summary(per_user: pl.DataFrame, n_resamples: int) -> pl.DataFrame:
    """Per system (cold-item placements, new-user servers): metric means with 95% intervals."""
    rows = []
    for (system,), group in per_user.group_by("system", maintain_order=True):
        for metric in METRICS:
            v = group[metric].to_numpy()
            mean, low, high = paired_bootstrap(v, np.zeros_like(v), n_resamples)
            rows.append(
                {
                    "system": system,
                    "metric": metric,
                    "value": mean,
                    "ci_low": low,
                    "ci_high": high,
                    "n_users": group.height,
                }
            )
    return pl.DataFrame(rows)


def _record(
    db: Store, result: EvalResult, config: EvalConfig, model: str, embedder: str, seconds: float
) -> None:
    systems = [  # the side tables, one row per system (as rung) and metric
        frame.rename({"system": "rung"}).with_columns(pl.lit(segment).alias("segment"))
        for frame, segment in ((result.cold, COLD_PLACEMENT), (result.new_users, NEW_USERS))
        if frame is not None
    ]
    rows = pl.concat([result.summary, *systems], how="diagonal_relaxed").with_columns(
        pl.lit(result.eval_id).alias("eval_id"),
        pl.lit(datetime.now(UTC).replace(tzinfo=None)).alias("created_at"),
        pl.lit(config.dataset).alias("dataset"),
        pl.lit(model).alias("model"),
        pl.lit(PromptTemplate.for_items().version_id(ItemProfile)).alias("prompt_version"),
        pl.lit(embedder).alias("embedding_model"),
        pl.lit(config.model_dump_json()).alias("config"),
        pl.lit(seconds).alias("seconds"),
    )
    with db.transaction():
        db.record_eval(rows.to_arrow())


__all__ = ["RUNG_NAMES", "SEGMENTS", "EvalConfig", "EvalResult", "evaluate"]
