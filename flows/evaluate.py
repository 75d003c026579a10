"""The evaluation flow: enrich the dataset (cached in the store) → one task per seed (ALS,
LightGBM per rung, metrics) → pool, bootstrap, record ``eval_runs``, report as an artifact.

    python -m flows.evaluate --store eval.duckdb --out eval-report --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from enrich.downstream.enrichment import Enriched
from enrich.downstream.evaluate import (
    EvalConfig,
    conclude,
    enrich_for,
    new_user_results,
    prepare,
    seed_results,
)
from enrich.downstream.report import markdown
from enrich.downstream.split import TemporalSplit
from enrich.embedding import resolve_embedder
from enrich.llm import model_id, resolve_llm
from enrich.store import Store


@task(cache_policy=NO_CACHE, retries=1)
def enrich_task(config: EvalConfig, store: str) -> tuple[TemporalSplit, Enriched]:
    items, text_cols, split = prepare(config)
    with Store.borrow(store) as db:
        return split, enrich_for(config, split, items, text_cols, db, llm=resolve_llm(config.llm))


@task(cache_policy=NO_CACHE)
def seed_task(config: EvalConfig, split: TemporalSplit, enriched: Enriched, seed: int) -> Any:
    return seed_results(config, split, enriched, seed)


@flow(name="enrich-evaluate", log_prints=True)
def evaluate_flow(config: EvalConfig, store: str = "eval.duckdb", out: str = "eval-report") -> str:
    """The ladder for every seed; returns the eval_id."""
    started = time.perf_counter()
    split, enriched = enrich_task(config, store)
    # one seed after another: ALS and LightGBM each use every core (OpenMP teams side by side
    # would fight over them)
    per_seed = [seed_task(config, split, enriched, s) for s in config.seeds]
    with Store.borrow(store) as db:
        result = conclude(
            config,
            per_seed,
            db,
            model_id(resolve_llm(config.llm)),
            resolve_embedder(None).name,
            time.perf_counter() - started,
            out,
            new_user_results(config, split, enriched),
        )
    create_markdown_artifact(markdown(result, config), key="enrich-evaluation")
    get_run_logger().info("eval %s written to %s", result.eval_id, result.report_path)
    return result.eval_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="eval.duckdb")
    parser.add_argument("--out", default="eval-report")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rungs", nargs="+")
    args = parser.parse_args()
    config = EvalConfig(
        dataset=args.dataset,
        seeds=tuple(args.seeds),
        **({"rungs": tuple(args.rungs)} if args.rungs else {}),
    )
    print(evaluate_flow(config, str(Path(args.store)), args.out))


if __name__ == "__main__":
    main()
