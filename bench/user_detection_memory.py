"""Users' change detection at 1M and 10M events: the whole log in memory against batches.

For each size a child writes a synthetic implicit-feedback log (``--events-per-user`` events a
user, 50,000 items, shuffled: not sorted by user) as Parquet, a catalogue, and a store holding
every user's profile as of that log (their input hashes, computed as a run computes them; 4-d
vectors). Tonight's log adds one newer event for 1% of the users. Then fresh child processes
each run one detection and report seconds and peak RSS (``ru_maxrss``), in the order whole,
batched, batched, whole:

- whole: ``pending_users(read(log), read(catalogue), store)`` — the log as one frame (what the
  nightly flow did before);
- batched: ``changed_users(log.iter_batches, catalogue.iter_batches, store)`` — the log read
  250,000 events at a time into a temporary DuckDB table (held to 128 MB), users compared a
  partition of ~1M events at a time (the nightly flow's now).

    .venv/bin/python bench/user_detection_memory.py --sizes 1000000 10000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ITEMS = 50_000


def build(n: int, per_user: int, folder: Path) -> None:
    """The log (before and tonight), the catalogue and the store of profiles as of before."""
    import polars as pl
    from change_detection import profile_filler  # this folder's neighbour

    from enrich.llm import model_id, resolve_llm
    from enrich.store import Store
    from enrich.user_profiles import UserOptions, user_job

    users = n // per_user
    events = pl.select(
        user_id=(pl.int_range(n) % users).cast(pl.Utf8).str.zfill(8),
        item_id=(pl.int_range(n).hash(seed=1) % ITEMS).cast(pl.Int64),
        timestamp=pl.datetime(2026, 1, 1)
        + pl.duration(seconds=pl.int_range(n).hash(seed=2) % 10**7),
    ).sample(fraction=1.0, shuffle=True, seed=3)
    pl.select(
        item_id=pl.int_range(ITEMS, dtype=pl.Int64),
        title=pl.format("title {}", pl.int_range(ITEMS)),
        genres=pl.lit("Drama|Comedy"),
    ).write_parquet(folder / "items.parquet")
    newer = events.group_by("user_id").head(1).filter(pl.col("user_id").str.ends_with("00"))
    tonight = pl.concat([events, newer.with_columns(timestamp=pl.datetime(2026, 6, 1))])
    tonight.write_parquet(folder / "log.parquet", row_group_size=250_000)
    items = pl.read_parquet(folder / "items.parquet")
    store = Store.open(folder / "f.duckdb")
    store.ensure_profile_tables(4)
    options = UserOptions(rating_col=None)
    model = model_id(resolve_llm(None))
    parts = max(1, n // 1_000_000)
    for p in range(parts):  # profiles as of the log before tonight, a slice of users at a time
        mine = events.filter(pl.col("user_id").str.slice(0, 8).cast(pl.Int64) % parts == p)
        job, prompt = user_job(mine, items, options, None)
        rows = job.frame.select(
            user_id="_key",
            model=pl.lit(model),
            prompt_version=pl.lit(prompt.version_id(options.schema)),
            as_of="as_of",
            input_hash="input_hash",
            n_interactions=pl.col("n_interactions").cast(pl.Int32),
            is_cold="is_cold",
            **profile_filler(),
        )
        with store.transaction():
            store.upsert_profiles("users", rows.to_arrow())
    store.close()
    print(json.dumps({"users": users, "changed": newer.height}))


def child(mode: str, folder: Path) -> None:
    import polars as pl

    from connectors import FileSource
    from enrich.user_changes import changed_users
    from enrich.user_profiles import pending_users

    log, items, store = folder / "log.parquet", folder / "items.parquet", str(folder / "f.duckdb")
    t0 = time.perf_counter()
    if mode == "whole":
        ids = pending_users(pl.read_parquet(log), pl.read_parquet(items), store, rating_col=None)
    else:
        ids = changed_users(
            FileSource(str(log), batch_size=250_000).iter_batches,
            FileSource(str(items)).iter_batches,
            store,
            rating_col=None,
        ).ids
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": rss, "changed": len(ids)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--events-per-user", type=int, default=20)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FOLDER"))
    parser.add_argument("--build", nargs=2, metavar=("EVENTS", "FOLDER"))
    parser.add_argument("--out", default=str(HERE / "results" / "user_detection_memory.json"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    if args.build:
        build(int(args.build[0]), args.events_per_user, Path(args.build[1]))
        return
    sizing = ["--events-per-user", str(args.events_per_user)]
    results: dict[str, dict] = {}
    for n in args.sizes:
        with tempfile.TemporaryDirectory(dir=HERE.parent) as tmp:
            t0 = time.perf_counter()
            made = _in_child([*sizing, "--build", str(n), tmp])  # not here: Linux keeps a
            # parent's peak RSS in its children
            print(
                f"{n:,} events, {made['users']:,} users: built in {time.perf_counter() - t0:.0f} s"
            )
            runs: dict[str, list[dict]] = {"whole": [], "batched": []}
            for mode in ("whole", "batched", "batched", "whole"):
                r = _in_child(["--child", mode, tmp])
                assert r["changed"] == made["changed"], (r, made)
                runs[mode].append(r)
                print(f"  {mode:8} {r['seconds']:7.2f} s  peak RSS {r['peak_rss_mb']:7.0f} MB")
            results[str(n)] = {"users": made["users"], "changed": made["changed"], "runs": runs}
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def _in_child(args: list[str]) -> dict:
    """Run this script with ``args`` in a fresh process; the JSON line it printed last."""
    out = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
