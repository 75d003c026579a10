"""Feature-store write/read throughput and incremental detection, measured in one run:

- write: ``Store.upsert_profiles`` vs. the raw DuckDB Arrow insert of the same frame into an
  identical table (target: ours >= 90% of raw), for 100k and 1M rows of 384-d embeddings;
- re-write of the same rows (idempotent upsert: nothing changes);
- read: ``Store.read_profiles`` vs. a raw ``SELECT *`` to Arrow;
- "what is new or changed" for a 1M-row source with 1% changed: hashing + anti-join.

    .venv/bin/python bench/store_throughput.py [--sizes 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import polars as pl
import pyarrow as pa

from enrich.store import Store

DIM = 384


def profiles(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return pl.DataFrame(
        {
            "item_id": pl.int_range(n, eager=True).cast(pl.Utf8),
            "model": "m",
            "prompt_version": "p",
            "input_hash": pl.int_range(n, eager=True).cast(pl.Utf8).str.pad_start(64, "0"),
            "profile_text": [f"profile of item {i}" for i in range(n)],
            "attributes": '{"summary": "x"}',
            "embedding": pl.Series(vectors).cast(pl.Array(pl.Float32, DIM)),
            "embedding_model": "all-MiniLM-L6-v2",
            "run_id": "r",
            "created_at": datetime(2026, 1, 1),
        }
    ).to_arrow()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def fresh_store(path: Path) -> Store:
    """A new store file with the profile tables and a ``raw_profiles`` twin of ``item_profiles``."""
    store = Store.open(path)
    store.ensure_profile_tables(DIM)
    store.con.execute("CREATE TABLE raw_profiles AS SELECT * FROM item_profiles LIMIT 0")
    store.con.execute("ALTER TABLE raw_profiles ADD PRIMARY KEY (item_id, model, prompt_version)")
    return store


def write_read(n: int, folder: Path) -> dict[str, float]:
    """Each write goes to a fresh file, in the order raw, ours, ours, raw (ABBA), so neither side
    gains from going first (a second 1M-row bulk write into the same file measured 20-40% slower
    whichever side it was). Reads are warmed up once each, then timed raw, ours, ours, raw."""
    rows = profiles(n)

    def raw_write(store: Store) -> None:
        with store.transaction():
            store.con.register("staged_rows", rows)
            store.con.execute("INSERT INTO raw_profiles SELECT * FROM staged_rows")
            store.con.unregister("staged_rows")

    def ours_write(store: Store) -> None:
        with store.transaction():
            store.upsert_profiles("items", rows)

    for name, write in (("raw", raw_write), ("ours", ours_write)):  # warm-up, untimed
        warm = fresh_store(folder / f"warm-{n}-{name}.duckdb")
        write(warm)
        warm.close()
        (folder / f"warm-{n}-{name}.duckdb").unlink()
    seconds: dict[str, list[float]] = {"raw": [], "ours": []}
    for i, (name, write) in enumerate(
        [("raw", raw_write), ("ours", ours_write), ("ours", ours_write), ("raw", raw_write)]
    ):
        store = fresh_store(folder / f"write-{n}-{i}.duckdb")
        seconds[name].append(timed(lambda: write(store)))  # noqa: B023
        if i < 3:
            store.close()
            (folder / f"write-{n}-{i}.duckdb").unlink()
    raw_s, ours_s = sum(seconds["raw"]) / 2, sum(seconds["ours"]) / 2
    # The last store holds the raw table; fill ours into it too for the re-write and reads.
    ours_write(store)
    again_s = timed(lambda: ours_write(store))
    keys = rows.column("item_id").to_pylist()
    con = store.con

    def raw_read() -> float:
        return timed(lambda: con.sql("SELECT * FROM raw_profiles").to_arrow_table())

    def ours_read() -> float:
        return timed(lambda: store.read_profiles("items", keys, "m", "p"))

    raw_read(), ours_read()  # warm-up: both tables paged in once, untimed
    reads = {"raw": [raw_read()], "ours": [ours_read()]}  # then raw, ours, ours, raw
    reads["ours"].append(ours_read())
    reads["raw"].append(raw_read())
    raw_r, ours_r = sum(reads["raw"]) / 2, sum(reads["ours"]) / 2
    store.close()
    return {
        "rows": n,
        "raw_write_rows_s": n / raw_s,
        "ours_write_rows_s": n / ours_s,
        "write_ratio": raw_s / ours_s,
        "rewrite_s": again_s,
        "raw_read_rows_s": n / raw_r,
        "ours_read_rows_s": n / ours_r,
        "read_ratio": raw_r / ours_r,
    }


def incremental(n: int, folder: Path) -> dict[str, float]:
    from change_detection import detect, source, stored_profiles  # this folder's neighbour

    store = Store.open(folder / "incr.duckdb")
    store.ensure_profile_tables(4)
    table = stored_profiles(source(n, changed=False), "m", "p")
    with store.transaction():
        store.upsert_profiles("items", table.to_arrow())
    hash_s, total_s, needed = detect(store, source(n, changed=True), "m", "p")
    store.close()
    todo = len(needed)
    assert todo == n // 100, todo
    return {
        "rows": n,
        "changed": todo,
        "hash_s": hash_s,
        "antijoin_s": total_s - hash_s,
        "total_s": total_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    results: dict[str, object] = {"write_read": [], "incremental": None}
    with TemporaryDirectory() as tmp:
        print(
            f"{'rows':>9} {'raw w/s':>10} {'ours w/s':>10} {'ours/raw':>8} {'rewrite s':>9} "
            f"{'raw r/s':>10} {'ours r/s':>10} {'ours/raw':>8}"
        )
        for n in args.sizes:
            r = write_read(n, Path(tmp))
            results["write_read"].append(r)  # type: ignore[union-attr]
            print(
                f"{n:>9} {r['raw_write_rows_s']:>10.0f} {r['ours_write_rows_s']:>10.0f} "
                f"{r['write_ratio']:>8.2f} {r['rewrite_s']:>9.2f} {r['raw_read_rows_s']:>10.0f} "
                f"{r['ours_read_rows_s']:>10.0f} {r['read_ratio']:>8.2f}"
            )
        inc = incremental(max(args.sizes), Path(tmp))
        results["incremental"] = inc
        print(
            f"\nnew-or-changed detection, {inc['rows']} rows, {inc['changed']} changed: "
            f"{inc['total_s']:.2f}s (hashing {inc['hash_s']:.2f}s, anti-join "
            f"{inc['antijoin_s']:.2f}s)"
        )
    out = Path(__file__).with_name("results") / "store_throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
