"""Change detection's time and peak memory, whole frame against batches, at 1M and 10M rows.

For each size the parent writes a Parquet source (id, title, genres; 1% of titles changed) and a
store holding every row's profile as of before the change (4-d vectors: the table's width is not
what is measured). Then fresh child processes each run one detection and report seconds and
peak RSS (``ru_maxrss``), in the order whole, batched, batched, whole. The parent builds nothing
itself (a child started by a process that once held gigabytes reports that as its own peak):

- whole: ``pending_items(FileSource(path).read(), store)`` — the source as one frame;
- batched: ``changed_items(FileSource(path, batch_size=B).iter_batches, store, memory_limit=M)``
  — two passes, one batch at a time, DuckDB held to M (default 250,000 rows and 128 MB).

After detecting, each child writes the changed rows' new profiles into (its own copy of) the store,
10,000 rows a transaction as the flow's merges write them, and reports the write's seconds and the
peak RSS of detection and write together — the figure issue #20 bounds at 1.5x the 1M one.
The writes are held to the store's ``write_memory_limit`` as a run's and the flow's are (128 MB
unless ``ENRICH_STORE_MEMORY_LIMIT`` is set); ``--store-memory-limit 128MB`` runs the children
with ``ENRICH_STORE_MEMORY_LIMIT`` set (DuckDB's limit for everything the store does).

    .venv/bin/python bench/detection_memory.py --sizes 1000000 10000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def child(mode: str, source: str, store: str, batch_size: int, memory_limit: str) -> None:
    import polars as pl

    from connectors import FileSource
    from enrich.changes import changed_items
    from enrich.profiles import pending_items
    from enrich.store import Store

    t0 = time.perf_counter()
    if mode == "whole":
        todo = pending_items(FileSource(source).read(), store)
    else:
        batches = FileSource(source, batch_size=batch_size).iter_batches
        todo = changed_items(batches, store, memory_limit=memory_limit).rows
    seconds = time.perf_counter() - t0
    detect_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    with Store.open(store) as opened:  # the changed rows' new profiles, as the merges write them
        dim = opened.embedding_dim()
        for start in range(0, todo.height, WRITE_CHUNK):
            with opened.transaction(opened.write_memory_limit):  # held as the merges hold it
                opened.upsert_profiles("items", new_profiles(todo.slice(start, WRITE_CHUNK), dim))
    write_s = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert isinstance(todo, pl.DataFrame)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": detect_rss,
                "changed": todo.height,
                "write_s": write_s,
                "peak_rss_with_write_mb": rss,
            }
        )
    )


WRITE_CHUNK = 10_000
"""Rows per store write after detection (one transaction each, as a merge writes its chunk)."""


def new_profiles(rows: Any, dim: int) -> Any:
    """Profile rows for ``rows`` (the changed items) as the store takes them."""
    import numpy as np
    import polars as pl

    from enrich.inputs import prepare
    from enrich.llm import model_id, resolve_llm
    from enrich.prompts import PromptTemplate
    from enrich.schemas import ItemProfile

    vectors = np.random.default_rng(0).standard_normal((rows.height, dim), dtype=np.float32)
    return (
        prepare(rows, "item_id")
        .frame.select(
            item_id="_key",
            model=pl.lit(model_id(resolve_llm(None))),
            prompt_version=pl.lit(PromptTemplate.for_items().version_id(ItemProfile)),
            input_hash="input_hash",
            profile_text=pl.lit("a new profile"),
            attributes=pl.lit("{}"),
            embedding=pl.Series(vectors).cast(pl.Array(pl.Float32, dim)),
            embedding_model=pl.lit("e"),
            run_id=pl.lit("r"),
            created_at=pl.lit(datetime(2026, 1, 2)),
        )
        .to_arrow()
    )


def build(n: int, folder: Path) -> tuple[str, str]:
    from change_detection import source, stored_profiles  # this folder's neighbour

    from enrich.llm import model_id, resolve_llm
    from enrich.prompts import PromptTemplate
    from enrich.schemas import ItemProfile
    from enrich.store import Store

    path = folder / "items.parquet"
    source(n, changed=True).write_parquet(path, row_group_size=100_000)
    store_path = folder / "f.duckdb"
    store = Store.open(store_path)
    store.ensure_profile_tables(4)
    model = model_id(resolve_llm(None))
    version = PromptTemplate.for_items().version_id(ItemProfile)
    base = source(n, changed=False)
    for start in range(0, n, 1_000_000):
        with store.transaction():
            table = stored_profiles(base.slice(start, 1_000_000), model, version)
            store.upsert_profiles("items", table.to_arrow())
    store.close()
    return str(path), str(store_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--batch-size", type=int, default=250_000)
    parser.add_argument(  # enrich.duckdb_memory.MEMORY_LIMIT (not imported: the parent stays small)
        "--memory-limit", default="128MB", help="DuckDB's, batched mode"
    )
    parser.add_argument(
        "--store-memory-limit", help="ENRICH_STORE_MEMORY_LIMIT for the children (default unset)"
    )
    parser.add_argument("--child", nargs=3, metavar=("MODE", "SOURCE", "STORE"))
    parser.add_argument("--build", nargs=2, metavar=("ROWS", "FOLDER"))
    parser.add_argument("--out", default=str(HERE / "results" / "detection_memory.json"))
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.batch_size, args.memory_limit)
        return
    if args.build:
        print(json.dumps(build(int(args.build[0]), Path(args.build[1]))))
        return
    results: dict[str, dict[str, list[dict]]] = {}
    for n in args.sizes:
        with tempfile.TemporaryDirectory(dir=HERE.parent) as tmp:
            t0 = time.perf_counter()
            built = subprocess.run(  # in a child: Linux keeps a parent's peak RSS in its children
                [sys.executable, __file__, "--build", str(n), tmp],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            source, store = json.loads(built.strip().splitlines()[-1])
            print(f"{n:,} rows: source and store written in {time.perf_counter() - t0:.0f} s")
            runs: dict[str, list[dict]] = {"whole": [], "batched": []}
            limits = ["--batch-size", str(args.batch_size), "--memory-limit", args.memory_limit]
            store_limit = (
                {"ENRICH_STORE_MEMORY_LIMIT": args.store_memory_limit}
                if args.store_memory_limit
                else {}
            )
            for mode in ("whole", "batched", "batched", "whole"):
                run_store = str(Path(tmp) / "run.duckdb")  # each child writes to its own copy
                shutil.copyfile(store, run_store)
                out = subprocess.run(
                    [sys.executable, __file__, "--child", mode, source, run_store, *limits],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=os.environ | {"HF_HUB_OFFLINE": "1"} | store_limit,
                ).stdout
                runs[mode].append(json.loads(out.strip().splitlines()[-1]))
                r = runs[mode][-1]
                print(
                    f"  {mode:8} {r['seconds']:6.2f} s  peak RSS {r['peak_rss_mb']:7.0f} MB; "
                    f"+ write {r['write_s']:5.2f} s, peak RSS {r['peak_rss_with_write_mb']:7.0f} MB"
                )
            assert {r["changed"] for v in runs.values() for r in v} == {n // 100}
            results[str(n)] = runs
    print(f"\n{'rows':>11} {'mode':8} {'seconds':>14} {'peak RSS MB':>14} {'+ write':>14}")
    for n, runs in results.items():
        for mode, rs in runs.items():
            secs = "/".join(f"{r['seconds']:.2f}" for r in rs)
            rss = "/".join(f"{r['peak_rss_mb']:.0f}" for r in rs)
            written = "/".join(f"{r['peak_rss_with_write_mb']:.0f}" for r in rs)
            print(f"{int(n):>11,} {mode:8} {secs:>14} {rss:>14} {written:>14}")
    settings = {
        "batch_size": args.batch_size,
        "memory_limit": args.memory_limit,
        "store_memory_limit": args.store_memory_limit,
    }
    Path(args.out).write_text(json.dumps({"batched": settings, **results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
