"""What a reader costs the nightly flow, and what publishing read snapshots costs it, in one run.

The nightly flow (real Prefect flow runs, a local Prefect server from ``prefect_test_harness``,
the shipped MiniLM embedder) profiles N MovieLens items in chunks against a local OpenAI-
compatible server whose model answers at once (a scripted model: what is timed is the flow —
extract, change detection, chunks, merges, snapshots — not a model). Three set-ups, each on an
empty store, in the order A B C C B A after a warm-up run:

- A: ``read_snapshots=False``, no reader (the flow as it was before snapshots);
- B: ``read_snapshots=True``, ``snapshot_every_s=0`` (a snapshot after every merge), no reader;
- C: as B, with another process reading the newest snapshot in a loop (``Store.open_reader``,
  one query of every stored item id, then a pause) for the whole run.

    .venv/bin/python bench/reader_during_flow.py --items 800 --chunk-size 100
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prefect.testing.utilities import prefect_test_harness

from enrich.batch_server import BatchServer
from enrich.config import EnrichSettings
from enrich.movielens import find_data_dir, load_ml100k_items
from enrich.testing import ScriptedChat
from flows.nightly import NightlyParams, nightly
from flows.sources import Source

ROOT = Path(__file__).resolve().parents[1]


def run(url: str, source: Path, chunk: int, snapshots: bool, pause: float | None) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="enrich-reader-bench-"))
    store, stop = folder / "f.duckdb", folder / "stop"
    params = NightlyParams(
        items=Source(kind="file", path=str(source)),
        store=str(store),
        llm=f"{url}#m",
        read_snapshots=snapshots,
        snapshot_every_s=0,  # the worst case: a snapshot after every merge
        settings=EnrichSettings(chunk_size=chunk, structured_method="json_schema"),
    )
    reader = None
    if pause is not None:
        reader = subprocess.Popen(
            [sys.executable, "-m", "tests.read_during_flow", str(store), str(stop), str(pause)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(3.0)  # the reader's imports are done: it waits for the first snapshot
    t0 = time.perf_counter()
    report = nightly(params)["items"]
    seconds = time.perf_counter() - t0
    reads = 0
    if reader is not None:
        stop.touch()
        out, _ = reader.communicate(timeout=120)
        if reader.returncode != 0:
            raise SystemExit("the reader failed")
        reads = len(json.loads(out))
    assert report["rows_enriched"] == report["rows_in"], report
    return {"seconds": seconds, "reads": reads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=800)
    parser.add_argument("--chunk-size", type=int, default=100)
    parser.add_argument("--pause", type=float, default=0.05, help="reader's pause between reads")
    args = parser.parse_args()
    data = find_data_dir("ml-100k")
    if data is None:
        raise SystemExit("ml-100k not found: set ENRICH_DATA or keep ../shared/data")
    folder = Path(tempfile.mkdtemp(prefix="enrich-reader-bench-"))
    source, warm = folder / "items.parquet", folder / "warm.parquet"
    catalogue = load_ml100k_items(data).select("item_id", "title", "genres")
    catalogue.slice(0, args.items).write_parquet(source)
    catalogue.slice(args.items, 50).write_parquet(warm)
    setups = {"A": (False, None), "B": (True, None), "C": (True, args.pause)}
    times: dict[str, list[float]] = {k: [] for k in setups}
    reads: list[int] = []
    with prefect_test_harness(server_startup_timeout=180), BatchServer(ScriptedChat()) as srv:
        run(srv.url, warm, args.chunk_size, True, args.pause)
        for name in "ABCCBA":
            snapshots_on, pause = setups[name]
            done = run(srv.url, source, args.chunk_size, snapshots_on, pause)
            times[name].append(done["seconds"])
            reads += [done["reads"]] if pause is not None else []
            print(f"{name}: {done['seconds']:.2f} s, {done['reads']} reads", flush=True)
    mean = {k: sum(v) / len(v) for k, v in times.items()}
    result = {
        "items": args.items,
        "chunks": -(-args.items // args.chunk_size),
        "seconds": {k: [round(t, 2) for t in v] for k, v in times.items()},
        "snapshots_over_none": round(mean["B"] / mean["A"], 3),
        "reader_over_no_reader": round(mean["C"] / mean["B"], 3),
        "reads_per_run": reads,
        "reader_pause_s": args.pause,
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).parent / "results" / "reader_during_flow.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
