"""Does the bill before the run match the run? Plan vs. actual with the embedded model.

1. Calibration (also the warm-up): 40 ML-100K items and 20 users are profiled into a fresh
   store, so the ledger holds this model's and prompt's completion tokens and seconds per call
   and its calls per request (answers that fail validation are asked again: ``fix_attempts=1``,
   the default).
2. The plan (:func:`enrich.plan_items`, :func:`enrich.plan_users`) of 200 other items and 50
   other users: requests, expected re-asks (the ledger's rate), prompt tokens (llama.cpp's
   tokenizer), completion tokens and LLM time (the ledger's rates).
3. The runs themselves, with the same settings: the requests and calls made, the prompt and
   completion tokens the model reported and the LLM seconds measured. Prompt tokens are
   compared on the first requests (re-asks' prompts hold the failed answer: estimated).
4. What the same requests would cost on two hosted models, from genai-prices' table (no
   network): the plan for each model (OpenAI's tokens counted with tiktoken; Anthropic's
   estimated) and the embedded run's actual tokens at each model's prices.

Run it alone (another LLM process on the same cores changes the time per call):

    HF_HUB_OFFLINE=1 .venv/bin/python bench/plan_accuracy.py
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path

import polars as pl

import enrich
from enrich.config import EnrichSettings
from enrich.downstream.data import movielens
from enrich.plan import JobPlan, plan_items, plan_table, plan_users
from enrich.prices import model_prices
from enrich.store import Store

HOSTED = ("openai:gpt-4o-mini", "anthropic:claude-3-5-haiku-latest")


def _actual(store: Store, run_id: str) -> dict[str, float]:
    row = store.con.execute(
        "SELECT llm_requests, llm_calls, tokens_in, tokens_out, llm_seconds, rows_failed "
        "FROM runs WHERE run_id = ?",
        [run_id],
    ).fetchone()
    names = ("requests", "calls", "prompt", "completion", "seconds", "failed")
    return dict(zip(names, row, strict=True))


def _compare(label: str, plan: JobPlan, actual: dict[str, float]) -> dict[str, object]:
    seconds = plan.seconds or float("nan")
    row = {
        "job": label,
        "planned_requests": plan.to_generate,
        "requests": actual["requests"],
        "planned_calls": round(plan.calls, 1),
        "calls": actual["calls"],
        "calls_error": plan.calls / actual["calls"] - 1,
        "reask_source": plan.reask_source,
        "planned_prompt_tokens": plan.prompt_tokens,
        "prompt_tokens_all_calls": actual["prompt"],
        "planned_completion_tokens": round(plan.completion_tokens),
        "completion_tokens": actual["completion"],
        "completion_error": plan.completion_tokens / actual["completion"] - 1,
        "planned_seconds": round(seconds, 1),
        "seconds": round(actual["seconds"], 1),
        "time_error": seconds / actual["seconds"] - 1,
        "failed_validation": actual["failed"],
    }
    print(
        f"{label}: requests {plan.to_generate} planned / {actual['requests']} sent; calls "
        f"{plan.calls:.1f} planned / {actual['calls']} made ({row['calls_error']:+.1%}; "
        f"{plan.reask_source}); prompt tokens of first requests {plan.prompt_tokens}, of all "
        f"calls {actual['prompt']}; completion {plan.completion_tokens:.0f} / "
        f"{actual['completion']} "
        f"({row['completion_error']:+.1%}); LLM time {seconds:.0f} s / {actual['seconds']:.0f} s "
        f"({row['time_error']:+.1%})"
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    data = movielens("ml-100k")
    items = data.items.select("item_id", *data.text_cols).sort("item_id")
    log = data.interactions
    text_cols = list(data.text_cols)
    calib_items, bench_items = items.head(40), items.slice(40, args.items)
    user_ids = log.select("user_id").unique().sort("user_id")["user_id"]
    calib_users, bench_users = user_ids.head(20), user_ids.slice(20, args.users)
    settings = EnrichSettings()  # fix_attempts=1: re-asks happen, and are planned
    user_opts = {
        "time_col": "timestamp",
        "rating_col": "rating",
        "item_text_cols": ("title",),
        "settings": settings,
    }
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "plan.duckdb")
        t0 = time.perf_counter()
        enrich.profile_items(calib_items, text_cols=text_cols, store=store, settings=settings)
        enrich.profile_users(
            log.filter(pl.col("user_id").is_in(calib_users.implode())),
            items,
            store=store,
            **user_opts,
        )
        print(f"calibration (40 items, 20 users): {time.perf_counter() - t0:.0f} s")
        users_log = log.filter(pl.col("user_id").is_in(bench_users.implode()))
        item_plan = plan_items(bench_items, text_cols=text_cols, store=store, settings=settings)
        user_plan = plan_users(users_log, items, store=store, **user_opts)
        print(plan_table([item_plan, user_plan], "plan (embedded model):"))
        _, item_run = enrich.profile_items(
            bench_items, text_cols=text_cols, store=store, settings=settings, with_report=True
        )
        _, user_run = enrich.profile_users(
            users_log, items, store=store, with_report=True, **user_opts
        )
        rows = [
            _compare("items", item_plan, _actual(store, item_run.run_id)),
            _compare("users", user_plan, _actual(store, user_run.run_id)),
        ]
        hosted = []
        fresh = Store.open(None)  # nothing stored or cached: every request priced
        for model in HOSTED:
            plans = [
                plan_items(bench_items, text_cols=text_cols, llm=model, store=fresh),
                plan_users(users_log, items, llm=model, store=fresh, **user_opts),
            ]
            print(plan_table(plans, f"plan ({model}, no call made):"))
            prices = model_prices(model)
            assert prices is not None
            actual_cost = sum(
                prices.cost(int(r["prompt_tokens_all_calls"]), int(r["completion_tokens"]))
                for r in rows
            )
            hosted.append(
                {
                    "model": model,
                    "price_source": prices.source,
                    "tokenizer": plans[0].tokenizer,
                    "planned_prompt_tokens": sum(p.prompt_tokens for p in plans),
                    "planned_cost": sum(p.cost or 0.0 for p in plans),
                    "embedded_run_tokens_at_these_prices": actual_cost,
                }
            )
            print(
                f"{model}: planned ${hosted[-1]['planned_cost']:.4f}; the embedded run's tokens "
                f"at its prices ${actual_cost:.4f} ({prices.source})"
            )
        store.close()
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "measured_at": datetime.now().isoformat(timespec="seconds"),
        "items": args.items,
        "users": args.users,
        "jobs": rows,
        "hosted": hosted,
    }
    (args.out / "plan_accuracy.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
