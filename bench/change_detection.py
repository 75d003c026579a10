"""Change detection's hashing, vectorized against row by row, in one run.

A source of N items (id, title, genres; 1% of titles changed since the store was written) is
hashed two ways, in the order A B B A after a warm-up of both on 10,000 rows:

- A, ours: ``enrich.inputs.row_hashes`` (DuckDB builds each row's canonical JSON with
  ``to_json`` and hashes it with ``sha256`` over Arrow);
- B, the previous way: ``enrich.inputs.row_hash`` called once per row in Python.

Both must give the same hashes. Then the whole detection of a frame as ``profile_items`` and
``pending_items`` run it (``prepare`` + the anti-join against the store) is timed four times
after one untimed warm-up.

    .venv/bin/python bench/change_detection.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from datetime import datetime
from pathlib import Path

import polars as pl

from enrich.inputs import prepare, row_hash, row_hashes
from enrich.store import Store

HERE = Path(__file__).parent


def source(n: int, changed: bool) -> pl.DataFrame:
    titles = pl.format("title {}", pl.int_range(n))
    if changed:
        titles = (
            pl.when(pl.int_range(n) % 100 == 0).then(titles + " (remastered)").otherwise(titles)
        )
    return pl.select(item_id=pl.int_range(n), title=titles, genres=pl.lit("Drama|Comedy"))


def stored_profiles(frame: pl.DataFrame, model: str, prompt_version: str) -> pl.DataFrame:
    """Profile rows as the store holds them for ``frame``'s items (their hashes; 4-d vectors)."""
    return prepare(frame, "item_id").frame.select(
        item_id="_key",
        model=pl.lit(model),
        prompt_version=pl.lit(prompt_version),
        input_hash="input_hash",
        **profile_filler(),
    )


def profile_filler() -> dict[str, pl.Expr]:
    """A stored profile's columns that no detection reads: text, attributes, a 4-d vector."""
    return {
        "profile_text": pl.lit("t"),
        "attributes": pl.lit("{}"),
        "embedding": pl.lit([1.0, 0.0, 0.0, 0.0]).cast(pl.Array(pl.Float32, 4)),
        "embedding_model": pl.lit("e"),
        "run_id": pl.lit("r"),
        "created_at": pl.lit(datetime(2026, 1, 1)),
    }


def detect(
    store: Store, frame: pl.DataFrame, model: str, prompt_version: str
) -> tuple[float, float, pl.Series]:
    """Change detection as a run does it, timed: seconds to ``prepare`` (validate and hash),
    seconds in all (with the store's anti-join), and the keys to profile."""
    t0 = time.perf_counter()
    rows = prepare(frame, "item_id").frame
    hashed = time.perf_counter() - t0
    needed = store.not_profiled("items", rows.select("_key", "input_hash"), model, prompt_version)
    return hashed, time.perf_counter() - t0, needed


def per_row(frame: pl.DataFrame, cols: list[str]) -> list[str]:
    return [row_hash(dict(zip(cols, r, strict=True))) for r in frame.select(cols).iter_rows()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--detection-only", action="store_true", help="skip the row-by-row comparison (10M rows)"
    )
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results/change_detection.json")
    )
    args = parser.parse_args()
    cols = ["genres", "title"]
    frame = source(args.rows, changed=True)
    warm = frame.head(10_000)
    row_hashes(warm, cols), per_row(warm, cols)
    times: dict[str, list[float]] = {"ours": [], "per_row": []}
    results: dict[str, list[str]] = {}
    order = ("ours", "ours") if args.detection_only else ("ours", "per_row", "per_row", "ours")
    for name in order:
        t0 = time.perf_counter()
        hashes = row_hashes(frame, cols).to_list() if name == "ours" else per_row(frame, cols)
        times[name].append(time.perf_counter() - t0)
        results[name] = hashes
        print(f"{name:8s} {args.rows} rows: {times[name][-1]:.2f} s", flush=True)
    if not args.detection_only:
        assert results["ours"] == results["per_row"]

    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(Path(folder) / "f.duckdb")
        store.ensure_profile_tables(4)
        table = stored_profiles(source(args.rows, changed=False), "m", "p")
        with store.transaction():
            store.upsert_profiles("items", table.to_arrow())
        detect(store, frame, "m", "p")  # warm-up: the store's pages read once, untimed
        runs = [detect(store, frame, "m", "p") for _ in range(4)]
        store.close()
    needed = runs[0][2]
    assert len(needed) == args.rows // 100
    mean = {k: sum(v) / len(v) for k, v in times.items() if v}
    result = {
        "rows": args.rows,
        "hash_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "per_row_over_ours": round(mean["per_row"] / mean["ours"], 1)
        if "per_row" in mean
        else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "detection_s": {
            "prepare": [round(r[0], 3) for r in runs],
            "total": [round(r[1], 3) for r in runs],
        },
        "changed": len(needed),
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }
    print(json.dumps(result, indent=2))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
