"""The nightly deployment: ``python -m flows.serve`` serves it (cron 02:00 by default).

ENRICH_CRON="30 1 * * *" python -m flows.serve --items 'catalogue/*.parquet'
prefect deployment run 'enrich-nightly/nightly'      # trigger a run by hand
"""

from __future__ import annotations

from typing import Any

from enrich.config import Environment
from flows.nightly import NightlyParams, nightly
from flows.sources import Source

DEFAULT_CRON = Environment.model_fields["cron"].default


def build_deployment(params: NightlyParams, cron: str | None = None) -> Any:
    """The deployment object: the nightly flow with ``params`` on a cron schedule."""
    return nightly.to_deployment(
        name="nightly",
        cron=cron or Environment().cron,
        parameters={"params": params.model_dump()},
        description="enrich: profile new or changed items every night",
        tags=["enrich"],
    )


if __name__ == "__main__":
    import argparse

    from prefect import serve

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", required=True)
    parser.add_argument("--store", default="features.duckdb")
    parser.add_argument("--llm")
    parser.add_argument("--cron")
    args = parser.parse_args()
    params = NightlyParams(
        items=Source(kind="file", path=args.items), store=args.store, llm=args.llm
    )
    serve(build_deployment(params, args.cron))
