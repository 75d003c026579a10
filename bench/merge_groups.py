"""Merging finished chunks into a large store: one transaction per chunk against one for all.

Each ``upsert_profiles`` scans the profile table's keys, so at catalogue scale a merge costs the
same whether it writes 64 rows or 4,096. The nightly flow merges the chunks that finished while
the last merge ran together (``flows.nightly._merge_all``, ``enrich.staging.merge(store, *runs)``);
this measures what that saves. A store of ``--stored`` item profiles (4-d vectors: the width is
not what is measured) is built once by a child; then, each on a fresh copy of it, ``--chunks``
staged chunks of 64 changed items are merged one per transaction ("apart") or all in one
("together"), in the order apart, together, together, apart.

    .venv/bin/python bench/merge_groups.py --stored 10000000 --chunks 32
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHUNK = 64


def staged_chunks(n_chunks: int, stored: int) -> list:
    """``n_chunks`` staged runs, each re-profiling 64 stored items (spread over the table)."""
    from datetime import datetime

    import numpy as np
    import pyarrow as pa

    from enrich.report import RunReport
    from enrich.staging import StagedRun

    step = stored // (n_chunks * CHUNK)
    runs = []
    for c in range(n_chunks):
        ids = [str((c * CHUNK + i) * step) for i in range(CHUNK)]
        vectors = np.random.default_rng(c).standard_normal((CHUNK, 4), dtype=np.float32)
        rows = pa.table(
            {
                "item_id": ids,
                "model": ["m"] * CHUNK,
                "prompt_version": ["p"] * CHUNK,
                "input_hash": [f"new-{i}" for i in ids],
                "profile_text": ["a new profile"] * CHUNK,
                "attributes": ["{}"] * CHUNK,
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 4),
                "embedding_model": ["e"] * CHUNK,
                "run_id": [f"r{c}"] * CHUNK,
                "created_at": [datetime(2026, 1, 2)] * CHUNK,
            }
        )
        report = RunReport(kind="items", model="m", prompt_version="p", embedding_model="e")
        runs.append(StagedRun(report=report, tables={"item_profiles": rows}, dim=4))
    return runs


def build(stored: int, path: Path) -> None:
    """A store of ``stored`` item profiles, written a million at a time."""
    from change_detection import source, stored_profiles  # this folder's neighbour

    from enrich.store import Store

    with Store.open(path) as store:
        store.ensure_profile_tables(4)
        base = source(stored, changed=False)
        for start in range(0, stored, 1_000_000):
            with store.transaction():
                rows = stored_profiles(base.slice(start, 1_000_000), "m", "p")
                store.upsert_profiles("items", rows.to_arrow())


def child(mode: str, path: Path, n_chunks: int, stored: int) -> None:
    from enrich.staging import merge
    from enrich.store import Store

    runs = staged_chunks(n_chunks, stored)
    with Store.open(path) as store:
        t0 = time.perf_counter()
        if mode == "together":
            merge(store, *runs)
        else:
            for run in runs:
                merge(store, run)
        seconds = time.perf_counter() - t0
        changed = store.scalar("SELECT count(*) FROM item_profiles WHERE input_hash LIKE 'new-%'")
    print(json.dumps({"seconds": seconds, "changed": changed}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=10_000_000)
    parser.add_argument("--chunks", type=int, default=32)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "STORE"))
    parser.add_argument("--build", metavar="STORE")
    parser.add_argument("--out", default=str(HERE / "results" / "merge_groups.json"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), args.chunks, args.stored)
        return
    if args.build:
        build(args.stored, Path(args.build))
        return
    seconds: dict[str, list[float]] = {"apart": [], "together": []}
    with tempfile.TemporaryDirectory(dir=HERE.parent) as tmp:
        built = Path(tmp) / "built.duckdb"
        run = [sys.executable, __file__, "--stored", str(args.stored), "--chunks", str(args.chunks)]
        subprocess.run([*run, "--build", str(built)], check=True)
        for mode in ("apart", "together", "together", "apart"):
            copy = Path(tmp) / "run.duckdb"
            shutil.copyfile(built, copy)
            out = subprocess.run(
                [*run, "--child", mode, str(copy)], capture_output=True, text=True, check=True
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            assert result["changed"] == args.chunks * CHUNK, result
            seconds[mode].append(result["seconds"])
            print(f"  {mode:8} {result['seconds']:7.2f} s", flush=True)
            copy.unlink()
    mean = {k: sum(v) / len(v) for k, v in seconds.items()}
    result = {
        "stored": args.stored,
        "chunks": args.chunks,
        "rows_per_chunk": CHUNK,
        "seconds": {k: [round(s, 3) for s in v] for k, v in seconds.items()},
        "apart_over_together": round(mean["apart"] / mean["together"], 1),
        "apart_s_per_chunk": round(mean["apart"] / args.chunks, 3),
    }
    print(json.dumps(result, indent=2))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
