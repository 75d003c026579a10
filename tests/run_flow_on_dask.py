"""Run the nightly flow once, on threads or on a 2-worker Dask LocalCluster (used by the tests;
workers re-import this module, so everything runs under the __main__ guard).

    python tests/run_flow_on_dask.py ITEMS STORE LLM threads|dask SCRATCH ['{"settings": ...}']
"""

from __future__ import annotations

import json
import sys

if __name__ == "__main__":
    from enrich.config import EnrichSettings
    from flows.nightly import NightlyParams, nightly
    from flows.sources import Source

    items, store, llm, runner, scratch = sys.argv[1:6]
    overrides = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
    params = NightlyParams(
        items=Source(kind="file", path=items),
        store=store,
        llm=llm,
        settings=EnrichSettings(**{"chunk_size": 5, "max_concurrency": 2, **overrides}),
    )
    flow = nightly
    if runner == "dask":
        from prefect_dask import DaskTaskRunner

        flow = nightly.with_options(
            task_runner=DaskTaskRunner(
                cluster_kwargs={
                    "n_workers": 2,
                    "threads_per_worker": 1,
                    "processes": True,
                    "dashboard_address": ":0",
                    "local_directory": scratch,
                }
            )
        )
    report = flow(params)
    items = report["items"]  # every row skipped, profiled or a recorded error (junk, budget)
    done = items["rows_skipped"] + items["rows_enriched"] + items["rows_failed"]
    assert done == items["rows_in"], report
    print(json.dumps(report, default=str))
