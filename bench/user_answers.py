"""How many user answers of the embedded model pass validation, and what they cost: the default
``UserProfile`` (a sentence that starts with a word, labels in words: part of the grammar) against
the same schema without those patterns (the default before 2026-12-02).

Each schema profiles the same ML-100K users (default: 32 users from the 501st by id; the patterns
were chosen on the 101st-116th and the 301st-332nd, not on these) into a fresh store with the
default settings (``fix_attempts=1``), in the order A B B A so each is measured warm and at both
ends of the run. Decoding is greedy, but 16 sequences decoded together do not always give the
same last digits of a logit, so the two runs of a schema may differ in a few answers: the first
run's answers are reported, and whether the second's were the same.

Per schema: first answers that failed validation (a run's calls less its first requests, each
failed first answer being asked once more), rows still failed after the re-ask, summaries that
open with punctuation or a space, LLM seconds per user.

Run it alone (another LLM process on the same cores changes the time per call):

    HF_HUB_OFFLINE=1 .venv/bin/python bench/user_answers.py
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

import enrich
from enrich.downstream.data import movielens
from enrich.schemas import Keyword, UserProfile
from enrich.store import Store


class UnpatternedUserProfile(UserProfile):
    """``UserProfile`` as it was before: the same fields and bounds, no pattern."""

    model_config = ConfigDict(title="UserProfile")

    summary: str = Field(
        min_length=10, max_length=220, description="One sentence on what this user enjoys."
    )
    liked: list[Keyword] = Field(
        min_length=1, max_length=4, description="Genres or themes the user likes."
    )
    disliked: list[Keyword] = Field(
        min_length=0, max_length=3, description="Genres or themes the user avoids."
    )
    keywords: list[Keyword] = Field(
        min_length=1, max_length=4, description="Free-form preference keywords."
    )


def _run(log: pl.DataFrame, items: pl.DataFrame, schema: type[BaseModel]) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "users.duckdb"
        started = time.perf_counter()
        out, report = enrich.profile_users(
            log,
            items,
            store=str(path),
            schema=schema,
            time_col="timestamp",
            rating_col="rating",
            with_report=True,
        )
        wall = time.perf_counter() - started
        store = Store.open(path)
        raw = store.con.execute(
            "SELECT raw_output FROM enrich_errors WHERE raw_output IS NOT NULL"
        ).fetchall()
        errors = [e for (e,) in store.con.execute("SELECT error FROM enrich_errors").fetchall()]
        store.close()
    summaries = out["summary"].drop_nulls().to_list()
    return {
        "users": log["user_id"].n_unique(),
        "requests": report.llm_requests,
        "calls": report.llm_calls,
        "first_answers_failed": report.llm_calls - report.llm_requests,
        "rows_failed": report.rows_failed,
        "errors": errors,
        "summaries": summaries,
        "summaries_opening_with_punctuation": sum(not s[:1].isalnum() for s in summaries),
        "failed_answers_opening_with_punctuation": sum(
            '"summary": ",' in (r or "").replace('":"', '": "') for (r,) in raw
        ),
        "llm_seconds": report.llm_seconds,
        "wall_seconds": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--offset", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    data = movielens("ml-100k")
    items = data.items.select("item_id", *data.text_cols)
    ids = data.interactions.select("user_id").unique().sort("user_id")["user_id"]
    chosen = ids.slice(args.offset, args.users)
    log = data.interactions.filter(pl.col("user_id").is_in(chosen.implode()))
    enrich.profile_users(  # warm-up: the model loaded, its decoder started (no store)
        data.interactions.filter(pl.col("user_id") == ids[0]),
        items,
        time_col="timestamp",
        rating_col="rating",
    )
    schemas = {"unpatterned": UnpatternedUserProfile, "patterned": UserProfile}
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in schemas}
    for name in ("unpatterned", "patterned", "patterned", "unpatterned"):
        runs[name].append(_run(log, items, schemas[name]))
        r = runs[name][-1]
        print(
            f"{name}: {r['requests']} requests, {r['calls']} calls, "
            f"{r['first_answers_failed']} first answers failed, {r['rows_failed']} rows failed "
            f"after the re-ask; {r['llm_seconds']:.0f} s of LLM time",
            flush=True,
        )
    result: dict[str, object] = {
        "measured_at": datetime.now().isoformat(timespec="seconds"),
        "users": args.users,
        "offset": args.offset,
    }
    for name, (first, second) in runs.items():
        same = first["summaries"] == second["summaries"]
        seconds = [float(r["llm_seconds"]) for r in (first, second)]  # type: ignore[arg-type]
        row = {k: v for k, v in first.items() if k not in ("llm_seconds", "wall_seconds")}
        row |= {
            "llm_seconds_both": seconds,
            "llm_seconds_per_user": sum(seconds) / 2 / args.users,
            "same_answers_both_times": same,
        }
        result[name] = row
        print(
            f"{name}: first answers failed {row['first_answers_failed']}/{args.users}, rows failed "
            f"{row['rows_failed']}/{args.users}, calls {row['calls']}, summaries opening with "
            f"punctuation {row['summaries_opening_with_punctuation']} stored + "
            f"{row['failed_answers_opening_with_punctuation']} failed, "
            f"{row['llm_seconds_per_user']:.2f} LLM s/user (runs {seconds[0]:.0f} s, "
            f"{seconds[1]:.0f} s; same answers both times: {same})"
        )
        for s in row["summaries"][:5]:  # type: ignore[index]
            print(f"    {s}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "user_answers.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
