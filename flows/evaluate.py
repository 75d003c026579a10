"""The evaluation flow: data and candidates → the LLM plan (an artifact) → the LLM work (cached
in the store) → one task per (fold, seed): every rung, metrics → pool, bootstrap users, record
``eval_runs``, report as an artifact.

    python -m flows.evaluate --store eval.duckdb --out eval-report --protocol rolling
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from enrich.downstream.eval_report import markdown
from enrich.downstream.evaluate import (
    EvalConfig,
    Prepared,
    conclude,
    enrich_for,
    new_user_results,
    plan,
    plan_text,
    prepare,
)
from enrich.downstream.ladder import cold_item_maps, run_fold
from enrich.embedding import resolve_embedder
from enrich.llm import model_id, resolve_llm
from enrich.store import Store


@task(cache_policy=NO_CACHE, retries=1)
def enrich_task(config: EvalConfig, store: str) -> tuple[Prepared, Any]:
    chat, embedder = resolve_llm(config.llm), resolve_embedder(None)
    with Store.borrow(store) as db:
        prepared = prepare(config, db, embedder=embedder)
        plans = plan(prepared, chat, db)
        create_markdown_artifact(f"```\n{plan_text(plans)}\n```", key="enrich-evaluation-plan")
        enrich_for(prepared, db, llm=chat, embedder=embedder)
    return prepared, plans


@task(cache_policy=NO_CACHE)
def fold_task(
    config: EvalConfig, prepared: Prepared, fold: int, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    chosen = prepared.protocol.folds[fold]
    return run_fold(chosen, prepared.pool, seed, _rungs(config)), cold_item_maps(
        chosen, prepared.pool, seed
    )


def _rungs(config: EvalConfig) -> tuple:
    from enrich.downstream.ladder import DEFAULT_RUNGS

    return tuple(r for r in DEFAULT_RUNGS if r.id in config.rungs)


@flow(name="enrich-evaluate", log_prints=True)
def evaluate_flow(config: EvalConfig, store: str = "eval.duckdb", out: str = "eval-report") -> str:
    """The ladder for every fold and seed; returns the eval_id."""
    started = time.perf_counter()
    prepared, plans = enrich_task(config, store)
    # one (fold, seed) after another: ALS and LightGBM each use every core (OpenMP teams side
    # by side would fight over them)
    parts = [
        fold_task(config, prepared, f, s)
        for f in range(len(prepared.protocol.folds))
        for s in config.seeds
    ]
    with Store.borrow(store) as db:
        result = conclude(
            config,
            prepared,
            pl.concat([p[0] for p in parts]),
            pl.concat([p[1] for p in parts]),
            db,
            model_id(resolve_llm(config.llm)),
            resolve_embedder(None).name,
            time.perf_counter() - started,
            out,
            new_user_results(config, prepared),
            plans,
        )
    create_markdown_artifact(markdown(result, config), key="enrich-evaluation")
    get_run_logger().info("eval %s written to %s", result.eval_id, result.report_path)
    return result.eval_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="eval.duckdb")
    parser.add_argument("--out", default="eval-report")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--protocol", default="global", choices=["global", "rolling", "leave-last"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rungs", nargs="+")
    args = parser.parse_args()
    config = EvalConfig(
        dataset=args.dataset,
        protocol=args.protocol,
        seeds=tuple(args.seeds),
        **({"rungs": tuple(args.rungs)} if args.rungs else {}),
    )
    print(evaluate_flow(config, str(Path(args.store)), args.out))


if __name__ == "__main__":
    main()
