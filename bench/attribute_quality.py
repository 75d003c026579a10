"""Are the LLM's attributes features a ranker can use? Measured on every ML-100K item.

Profiles the catalogue (title and genres, as the evaluation does) with the default, controlled
:class:`enrich.ItemProfile`, then reports, from what was stored:

- distinct values of each categorical field (target: at most 30) and the spread of the scales;
- how many stored values the junk rules reject (target: none) and how many rows ended in
  ``enrich_errors`` instead (with their reasons);
- plausibility on a seeded sample of 50 items, checked against MovieLens' own genres where they
  overlap (audience "children"/"families" iff the Children's genre; a mood a genre admits; a theme
  a genre implies; family-friendliness >= 4 for Children's, <= 2 for Horror), beside what a
  constant answer can score on the same items (the best value of the vocabulary for all);
- the LLM calls, tokens and seconds per 1,000 items;
- with ``--induce N``: a themes vocabulary induced from a seeded sample of N items
  (:func:`enrich.induce_vocabulary`), its labels, and the induction pass's calls, tokens and
  seconds per 1,000 sampled items.

The LLM answers are cached in the store: a second run costs only the report.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/attribute_quality.py --store /tmp/attrs.duckdb
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import polars as pl

import enrich
from enrich.downstream.data import movielens
from enrich.schemas import AUDIENCES, MOODS, THEMES, ItemProfile
from enrich.sqlfiles import read_sql
from enrich.store import Store

MOODS_BY_GENRE = {
    "Comedy": {"funny", "light-hearted", "heartwarming"},
    "Horror": {"scary", "dark", "tense"},
    "Thriller": {"tense", "dark", "exciting", "scary"},
    "Romance": {"romantic", "heartwarming"},
    "Action": {"exciting", "tense"},
    "War": {"dark", "sad", "tense"},
    "Drama": {"sad", "thought-provoking", "dark", "inspiring", "heartwarming", "tense"},
    "Children's": {"funny", "light-hearted", "heartwarming"},
    "Animation": {"funny", "light-hearted", "heartwarming"},
    "Documentary": {"thought-provoking", "inspiring", "calm"},
    "Crime": {"dark", "tense"},
    "Film-Noir": {"dark", "tense"},
    "Musical": {"light-hearted", "heartwarming", "funny"},
    "Sci-Fi": {"exciting", "thought-provoking", "tense"},
    "Adventure": {"exciting"},
    "Fantasy": {"exciting", "heartwarming"},
    "Mystery": {"tense", "dark"},
    "Western": {"exciting", "tense"},
}
THEMES_BY_GENRE = {
    "War": {"war"},
    "Crime": {"crime", "justice"},
    "Romance": {"love"},
    "Musical": {"music"},
    "Sci-Fi": {"science", "technology"},
    "Fantasy": {"fantasy"},
    "Mystery": {"mystery"},
    "Adventure": {"adventure"},
}


def checks(genres: set[str], row: dict) -> dict[str, bool | None]:
    """Plausible (True/False) per field, or None where the genres say nothing about it."""
    moods = set().union(*(MOODS_BY_GENRE.get(g, set()) for g in genres))
    themes = set().union(*(THEMES_BY_GENRE.get(g, set()) for g in genres))
    children = "Children's" in genres
    family = None
    if children or "Horror" in genres:
        family = row["family_friendly"] >= 4 if children else row["family_friendly"] <= 2
    return {
        "audience": children == (row["audience"] in ("children", "families")),
        "mood": row["mood"] in moods if moods else None,
        "themes": bool(themes & set(row["themes"])) if themes else None,
        "family_friendly": family,
    }


def plausibility(sample: pl.DataFrame) -> dict[str, dict[str, float | int]]:
    """Share of plausible values per field, beside the best any constant answer scores on the
    same items (each value of the vocabulary tried as the answer for every item)."""
    vocab = {
        "audience": [{"audience": v} for v in AUDIENCES],
        "mood": [{"mood": v} for v in MOODS],
        "themes": [{"themes": [v]} for v in THEMES],
        "family_friendly": [{"family_friendly": v} for v in range(1, 6)],
    }
    rows = [(set(r["genres"].split("|")), r) for r in sample.to_dicts()]
    counts: dict[str, dict[str, float | int]] = {}
    for field, constants in vocab.items():
        judged = [(g, r) for g, r in rows if checks(g, r)[field] is not None]
        if not judged:
            continue
        ours = sum(bool(checks(g, r)[field]) for g, r in judged)
        best = max(sum(bool(checks(g, {**r, **c})[field]) for g, r in judged) for c in constants)
        counts[field] = {
            "n": len(judged),
            "plausible": ours,
            "share": round(ours / len(judged), 3),
            "best_constant_share": round(best / len(judged), 3),
        }
    return counts


def induce(
    items: pl.DataFrame, text_cols: tuple[str, ...], size: int, seed: int, store: Store
) -> dict[str, object]:
    """Induce a themes vocabulary; what it cost per 1,000 sampled items (cached calls are free:
    the seconds are this run's)."""
    started = time.perf_counter()
    vocab = enrich.induce_vocabulary(
        items, name="themes", k=30, sample=size, seed=seed, text_cols=text_cols, store=store
    )
    seconds = time.perf_counter() - started
    per_1000 = 1000 / vocab.sample_size
    return {
        "sample": vocab.sample_size,
        "version": vocab.version,
        "labels": dict(zip(vocab.labels, vocab.counts, strict=True)),
        "per_1000_items": {
            "llm_calls": round(vocab.llm_calls * per_1000),
            "tokens_in": round(vocab.tokens_in * per_1000),
            "tokens_out": round(vocab.tokens_out * per_1000),
            "minutes": round(seconds * per_1000 / 60, 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="attribute_quality.duckdb")
    parser.add_argument("--limit", type=int, default=None, help="first N items only")
    parser.add_argument("--sample", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--induce", type=int, default=0, help="also induce themes from N items")
    parser.add_argument(
        "--induce-seed",
        type=int,
        default=0,
        help="sample seed of the induction (its cost is measured only on answers not cached)",
    )
    args = parser.parse_args()

    data = movielens("ml-100k")
    items = data.items.select("item_id", *data.text_cols)
    if args.limit:
        items = items.head(args.limit)
    with Store.borrow(args.store) as store:
        out, report = enrich.profile_items(
            items, text_cols=list(data.text_cols), store=store, with_report=True
        )
        params = {"kind": "items", "model": report.model, "prompt_version": report.prompt_version}
        runs = store.con.execute(read_sql("queries/prompt_spend.sql"), params).fetchone()
        errors = store.con.execute(read_sql("queries/prompt_failures.sql"), params).fetchall()
        induced = (
            induce(items, data.text_cols, args.induce, args.induce_seed, store)
            if args.induce
            else None
        )
    ok = out.filter(pl.col("status") != "failed").join(
        data.items.select("item_id", "genres"), on="item_id"
    )
    rules = enrich.EnrichSettings().junk
    junk = [
        r["item_id"]
        for r in ok.to_dicts()
        if rules.problems(
            {f: r[f] for f in ItemProfile.model_fields},
            ItemProfile,
            "\n".join(
                f"{c}: {items.filter(pl.col('item_id') == r['item_id'])[c][0]}"
                for c in data.text_cols
            ),
        )
    ]
    sample_ids = random.Random(args.seed).sample(
        ok["item_id"].to_list(), min(args.sample, ok.height)
    )
    calls, tin, tout, seconds = (float(x or 0) for x in runs)
    per_1000 = 1000 / max(items.height, 1)
    result = {
        "items": items.height,
        "profiled": ok.height,
        "failed": out.filter(pl.col("status") == "failed").height,
        "errors": [{"error": e[:300], "rows": n} for e, n in errors],
        "distinct": {c: ok[c].n_unique() for c in ("audience", "mood")}
        | {"themes": ok["themes"].explode().n_unique()},
        "values": {
            c: dict(ok[c].value_counts(sort=True).iter_rows())
            for c in ("audience", "mood", "family_friendly", "intensity")
        }
        | {"themes": dict(ok["themes"].explode().value_counts(sort=True).iter_rows())},
        "junk_values": len(junk),
        "plausibility": plausibility(ok.filter(pl.col("item_id").is_in(sample_ids))),
        "per_1000_items": {
            "llm_calls": round(calls * per_1000),
            "tokens_in": round(tin * per_1000),
            "tokens_out": round(tout * per_1000),
            "llm_minutes": round(seconds * per_1000 / 60, 1),
        },
        "prompt_version": report.prompt_version,
        "model": report.model,
        "induction": induced,
    }
    print(json.dumps(result, indent=2, default=str))
    if not args.limit:
        path = Path(__file__).with_name("results") / "attribute_quality.json"
        path.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
