"""The batch path's own overhead against the online path, on the same local server, in one run.

Both paths profile the same N MovieLens items through ``enrich.profile_items`` against one
local provider (``enrich batch serve``: OpenAI's Files, Batches and Chat Completions endpoints),
whose model answers at once (a scripted model: what is timed is the path — requests, files,
upload, polling, download, parsing, validation, storing — not a model). Online: one HTTP request
per item, 4 at a time. Batch: one JSONL file, uploaded, created, polled, downloaded, parsed.
Each path runs on a fresh in-memory store (nothing cached), after a warm-up on other items, in
the order online, batch, batch, online; the two runs of each are averaged. The batch run is
split into its phases: submit (request lines, JSONL, upload, create, manifest), wait (polling
while the server runs the batch) and collect (download and parse the output file).

    .venv/bin/python bench/batch_overhead.py --items 1000
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import polars as pl

import enrich
from enrich.batch_server import BatchServer
from enrich.batches import BatchRunner
from enrich.config import EnrichSettings
from enrich.movielens import find_data_dir, load_ml100k_items
from enrich.store import Store
from enrich.testing import HashEmbedder, ScriptedChat

PHASES = {"_submit": "submit", "_wait": "wait", "_collect": "collect"}


def timed_phases() -> dict[str, float]:
    """Wrap the batch runner's phases with timers (this process only)."""
    spent = dict.fromkeys(PHASES.values(), 0.0)
    for method, phase in PHASES.items():
        original = getattr(BatchRunner, method)

        def wrapper(self, *args, _original=original, _phase=phase, **kwargs):
            t0 = time.perf_counter()
            try:
                return _original(self, *args, **kwargs)
            finally:
                spent[_phase] += time.perf_counter() - t0

        setattr(BatchRunner, method, wrapper)
    return spent


def run(srv: BatchServer, items: pl.DataFrame, batch: bool, poll: float) -> tuple[float, int]:
    settings = EnrichSettings(
        batch=batch, batch_poll_s=poll, structured_method="json_schema", retry_failed_after_h=0
    )
    t0 = time.perf_counter()
    _, report = enrich.profile_items(
        items.select("item_id", "title", "genres"),
        llm=f"{srv.url}#m",
        store=Store.open(None),
        embedder=HashEmbedder(),
        settings=settings,
        with_report=True,
    )
    seconds = time.perf_counter() - t0
    assert report.rows_generated + report.cache_hits == items.height, report
    return seconds, report.llm_calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--poll", type=float, default=0.2, help="first wait between polls (s)")
    args = parser.parse_args()
    data = find_data_dir("ml-100k")
    if data is None:
        raise SystemExit("ml-100k not found: set ENRICH_DATA or keep ../shared/data")
    catalogue = load_ml100k_items(data)
    warm, items = catalogue.head(args.warmup), catalogue.slice(args.warmup, args.items)
    spent = timed_phases()
    times: dict[str, list[float]] = {"online": [], "batch": []}
    with BatchServer(ScriptedChat()) as srv:
        run(srv, warm, False, args.poll)
        run(srv, warm, True, args.poll)
        for phase in spent:
            spent[phase] = 0.0
        for name in ("online", "batch", "batch", "online"):
            seconds, calls = run(srv, items, name == "batch", args.poll)
            times[name].append(seconds)
            print(f"{name:6s} {items.height} items: {seconds:.2f} s ({calls} requests)")
    online = sum(times["online"]) / 2
    batch = sum(times["batch"]) / 2
    result = {
        "items": items.height,
        "online_s": [round(t, 2) for t in times["online"]],
        "batch_s": [round(t, 2) for t in times["batch"]],
        "batch_over_online": round(batch / online, 2),
        "batch_phases_s": {k: round(v / 2, 3) for k, v in spent.items()},
        "files_and_parsing_ms_per_item": round(
            (spent["submit"] + spent["collect"]) / 2 / items.height * 1000, 3
        ),
        "poll_s": args.poll,
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).parent / "results" / "batch_overhead.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
